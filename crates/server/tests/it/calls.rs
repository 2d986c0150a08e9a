//! Call creation and listing through the API.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn calls_are_listed_newest_first_with_filters_and_pages() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("list");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    app.upload(&t, "crm", SPEC_TABLE).await;
    for (i, agent) in ["alice", "bob", "cindy", "dylan", "zed"].iter().enumerate() {
        let (status, _) = app
            .post_json(&t, "/api/v1/calls", json!({"metadata": {"agent_id": agent, "n": i}, "timestamp": format!("2026-01-30T12:00:0{i}Z")}))
            .await;
        assert_eq!(status, 201);
    }
    let (_, all) = app.get(&t, "/api/v1/calls").await;
    assert_eq!(all["count"], 5);
    let agents: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["zed", "dylan", "cindy", "bob", "alice"]);

    let (_, page) = app.get(&t, "/api/v1/calls?limit=2&offset=1").await;
    assert_eq!(page["count"], 5);
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["metadata"]["agent_id"], "dylan");

    let (_, diamond) = app.get(&t, "/api/v1/calls?metadata.team_name=diamond").await;
    assert_eq!(diamond["count"], 2);
    let (_, both) = app
        .get(
            &t,
            "/api/v1/calls?metadata.team_name=diamond&metadata.agent_id=alice",
        )
        .await;
    assert_eq!(both["count"], 1);
    let (_, own) = app.get(&t, "/api/v1/calls?metadata.n=3").await;
    assert_eq!(own["data"][0]["metadata"]["agent_id"], "dylan");
    let (_, window) = app
        .get(
            &t,
            "/api/v1/calls?timestamp_from=2026-01-30T12:00:01Z&timestamp_to=2026-01-30T12:00:03Z",
        )
        .await;
    assert_eq!(window["count"], 3);
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_external_id_returns_the_same_call() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("ext");
    let body = json!({"metadata": {"agent_id": "alice"}, "external_id": "pbx-42"});
    let (s1, c1) = app.post_json(&t, "/api/v1/calls", body.clone()).await;
    let (s2, c2) = app.post_json(&t, "/api/v1/calls", body).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(c1["unique_id"], c2["unique_id"]);
    let (_, list) = app.get(&t, "/api/v1/calls").await;
    assert_eq!(list["count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_calls_during_version_swaps_never_mix_versions() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("swap");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    // Each version gives every column the version's own marker, so a call
    // enriched from a mix would show two markers.
    let version = |n: usize| {
        let mut csv = String::from("agent_id,a,b,c\n");
        for i in 0..200 {
            csv.push_str(&format!("agent{i},v{n},v{n},v{n}\n"));
        }
        csv
    };
    app.upload(&t, "crm", version(0)).await;
    let uploads = async {
        for n in 1..6 {
            let (status, _) = app.upload(&t, "crm", version(n)).await;
            assert_eq!(status, 201);
        }
    };
    let calls = async {
        let mut seen = Vec::new();
        for i in 0..150 {
            let (status, call) = app
                .post_json(
                    &t,
                    "/api/v1/calls",
                    json!({"metadata": {"agent_id": format!("agent{}", i % 200)}}),
                )
                .await;
            assert_eq!(status, 201);
            let m = &call["metadata"];
            assert_eq!(m["a"], m["b"]);
            assert_eq!(m["b"], m["c"]);
            seen.push(m["a"].as_str().unwrap().to_string());
        }
        seen
    };
    let ((), seen) = tokio::join!(uploads, calls);
    assert!(seen.iter().all(|v| v.starts_with('v')));
    app.stop().await;
}

#[tokio::test]
async fn backfill_re_enriches_past_calls_only_when_asked() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("fill");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    app.upload(&t, "crm", SPEC_TABLE).await;
    let (_, old) = app
        .post_json(&t, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
        .await;
    let (_, erin) = app
        .post_json(&t, "/api/v1/calls", json!({"metadata": {"agent_id": "erin"}}))
        .await;
    assert_eq!(erin["enrichment"][0]["status"], "no_match");

    // A new version does not rewrite past calls by itself.
    app.upload(&t, "crm", "agent_id,team_name\ncindy,onyx\nerin,topaz\n")
        .await;
    let id = old["unique_id"].as_str().unwrap();
    let (_, call) = app.get(&t, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(call["metadata"]["team_name"], "diamond");

    // The dry run (the default) says what would change and changes nothing.
    let (status, dry) = app.post_json(&t, "/api/v1/backfill", json!({})).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["examined"], 2);
    assert_eq!(dry["changed"], 2);
    assert_eq!(dry["before"]["crm"]["no_match"], 1);
    assert_eq!(dry["after"]["crm"]["matched"], 2);
    let (_, call) = app.get(&t, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(call["metadata"]["team_name"], "diamond");

    // Filtered, for real.
    let (_, done) = app
        .post_json(
            &t,
            "/api/v1/backfill",
            json!({"dry_run": false, "metadata": {"agent_id": "erin"}}),
        )
        .await;
    assert_eq!(
        (done["examined"].as_u64(), done["changed"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, list) = app.get(&t, "/api/v1/calls?metadata.team_name=topaz").await;
    assert_eq!(list["count"], 1);
    let (_, call) = app.get(&t, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(call["metadata"]["team_name"], "diamond");
    let (_, again) = app
        .post_json(&t, "/api/v1/backfill", json!({"dry_run": false}))
        .await;
    assert_eq!(again["changed"], 1, "only cindy's call is still behind: {again}");
    let (_, call) = app.get(&t, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(call["metadata"]["team_name"], "onyx");

    // Each back-fill is recorded with its report, newest first.
    assert_eq!(again["state"], "finished", "{again}");
    assert!(again["finished_at"].is_string(), "{again}");
    let (status, one) = app
        .get(
            &t,
            &format!("/api/v1/backfills/{}", again["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(one, again);
    let (_, all) = app.get(&t, "/api/v1/backfills").await;
    let ids: Vec<&Value> = all["data"].as_array().unwrap().iter().map(|b| &b["id"]).collect();
    assert_eq!(ids, [&again["id"], &done["id"], &dry["id"]], "{all}");
    let other = app.create_tenant("other");
    let (status, _) = app
        .get(
            &other,
            &format!("/api/v1/backfills/{}", again["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, 404, "another tenant's back-fill");
    app.stop().await;
}
