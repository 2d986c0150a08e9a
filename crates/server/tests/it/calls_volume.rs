//! Finding calls among many: every filter form, pages by cursor, the
//! bounded count (SPEC §12).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::*;

/// The agents of a list answer, in order.
fn agents(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["agent_id"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[tokio::test]
async fn every_filter_form_finds_what_it_says() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("forms");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    app.upload(&t, "crm", SPEC_TABLE).await;
    // Oldest first: alice (diamond), bob (ruby), cindy (diamond), dylan
    // (saphire), zed (no row), and a call with no agent at all.
    let calls = [
        json!({"agent_id": "alice", "site": "paris-1"}),
        json!({"agent_id": "bob", "site": "paris-2"}),
        json!({"agent_id": "cindy", "site": "lyon-1"}),
        json!({"agent_id": "dylan", "site": "pa"}),
        json!({"agent_id": "zed", "site": "Paris-3"}),
        json!({"site": "nice", "note": "a value, with \"quotes\""}),
    ];
    for (i, metadata) in calls.iter().enumerate() {
        let (status, body) = app
            .post_json(
                &t,
                "/api/v1/calls",
                json!({"metadata": metadata, "timestamp": format!("2026-01-30T12:00:0{i}Z")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let cases: &[(&str, &[&str])] = &[
        ("metadata.team_name=diamond", &["cindy", "alice"]),
        (
            "metadata.team_name=diamond&metadata.team_name=ruby",
            &["cindy", "bob", "alice"],
        ),
        (
            "metadata.team_name=ruby&metadata.team_name=diamond&metadata.agent_id=bob",
            &["bob"],
        ),
        ("metadata.site.prefix=paris", &["bob", "alice"]),
        ("metadata.site.prefix=pa", &["dylan", "bob", "alice"]),
        ("metadata.site.prefix=Paris", &["zed"]),
        ("metadata.team_name.missing=true", &["-", "zed"]),
        (
            "metadata.team_name.missing=false&metadata.site.prefix=pa",
            &["dylan", "bob", "alice"],
        ),
        ("metadata.agent_id.missing=true", &["-"]),
        ("enrichment.crm=matched", &["dylan", "cindy", "bob", "alice"]),
        ("enrichment.crm=no_match", &["zed"]),
        ("enrichment.crm=key_missing", &["-"]),
        (
            "enrichment.crm=no_match&enrichment.crm=key_missing",
            &["-", "zed"],
        ),
        ("enrichment.crm=matched&metadata.city=Cape%20Town", &["dylan"]),
        (
            "enrichment.crm=matched&metadata.team_name=ruby&metadata.site.prefix=lyon",
            &[],
        ),
        ("metadata.note=a%20value%2C%20with%20%22quotes%22", &["-"]),
        ("enrichment.other=matched", &[]),
        (
            "enrichment.crm=matched&timestamp_from=2026-01-30T12:00:01Z&timestamp_to=2026-01-30T12:00:02Z",
            &["cindy", "bob"],
        ),
    ];
    for (query, expected) in cases {
        let (status, list) = app.get(&t, &format!("/api/v1/calls?{query}")).await;
        assert_eq!(status, 200, "{query}: {list}");
        assert_eq!(agents(&list), *expected, "{query}");
        assert_eq!(list["count"], expected.len(), "{query}");
        assert_eq!(list["count_exact"], true, "{query}");
    }
    for (query, field) in [
        ("enrichment.crm=found", "enrichment.crm"),
        ("metadata.site.missing=maybe", "metadata.site.missing"),
        ("cursor=abc", "cursor"),
    ] {
        let (status, body) = app.get(&t, &format!("/api/v1/calls?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{query}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_cursor_walks_every_call_once_while_calls_arrive() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("walk");
    // Several calls share each millisecond: the cursor still tells them apart.
    for i in 0..23 {
        let (status, _) = app
            .post_json(
                &t,
                "/api/v1/calls",
                json!({"metadata": {"agent_id": format!("a{i}"), "team": if i % 2 == 0 { "even" } else { "odd" }},
                       "timestamp": format!("2026-01-30T12:00:{:02}Z", i / 3)}),
            )
            .await;
        assert_eq!(status, 201);
    }
    for filter in ["", "&metadata.team=even"] {
        let (_, all) = app.get(&t, &format!("/api/v1/calls?limit=1000{filter}")).await;
        let expected = agents(&all);
        let mut walked = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/calls?limit=4{filter}&cursor={c}"),
                None => format!("/api/v1/calls?limit=4{filter}"),
            };
            let (status, page) = app.get(&t, &path).await;
            assert_eq!(status, 200, "{page}");
            walked.extend(agents(&page));
            pages += 1;
            // A call arriving mid-walk is newer than every page: not seen.
            let (status, _) = app
                .post_json(
                    &t,
                    "/api/v1/calls",
                    json!({"metadata": {"agent_id": format!("late{pages}{filter}"), "team": "even"},
                           "timestamp": "2026-01-30T13:00:00Z"}),
                )
                .await;
            assert_eq!(status, 201);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(walked, expected, "{filter}");
        assert_eq!(walked.iter().collect::<BTreeSet<_>>().len(), walked.len());
        assert_eq!(pages, expected.len().div_ceil(4), "{filter}");
    }
    app.stop().await;
}

#[tokio::test]
async fn facets_count_the_values_of_a_key_among_the_matching_calls() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("facets");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    app.upload(&t, "crm", SPEC_TABLE).await;
    for agent in ["alice", "bob", "cindy", "dylan", "alice", "zed", "cindy", "alice"] {
        let (status, _) = app
            .post_json(&t, "/api/v1/calls", json!({"metadata": {"agent_id": agent}}))
            .await;
        assert_eq!(status, 201);
    }
    let (status, f) = app.get(&t, "/api/v1/calls/facets?key=team_name").await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(
        f["values"],
        json!([{"value": "diamond", "count": 5}, {"value": "ruby", "count": 1}, {"value": "saphire", "count": 1}])
    );
    assert_eq!(
        (f["missing"].clone(), f["calls"].clone(), f["exact"].clone()),
        (json!(1), json!(8), json!(true))
    );
    let (_, f) = app
        .get(
            &t,
            "/api/v1/calls/facets?key=agent_id&top=1&metadata.team_name=diamond",
        )
        .await;
    assert_eq!(f["values"], json!([{"value": "alice", "count": 3}]));
    assert_eq!(f["calls"], 5);
    let (_, f) = app
        .get(&t, "/api/v1/calls/facets?key=agent_id&enrichment.crm=no_match")
        .await;
    assert_eq!(f["values"], json!([{"value": "zed", "count": 1}]));
    for (query, status, field) in [
        ("", 422, "key"),
        ("key=team_name&top=0", 422, "top"),
        ("key=team_name&top=many", 400, "top"),
        ("key=team_name&colour=red", 400, "colour"),
    ] {
        let (got, body) = app.get(&t, &format!("/api/v1/calls/facets?{query}")).await;
        assert_eq!(
            (got, body["errors"][0]["field"].as_str()),
            (status, Some(field)),
            "{query}: {body}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_export_round_trips_through_a_csv_reader_and_ndjson() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("export");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    app.upload(
        &t,
        "crm",
        "agent_id,team_name,formula,note\n\
         alice,diamond,=HYPERLINK(\"http://x\"),\"multi\nline, with \"\"quotes\"\"\"\n\
         bob,ruby,+1,@home\n",
    )
    .await;
    // More calls than a page of the export, so that it pages.
    let calls = 2_345;
    let mut posts = tokio::task::JoinSet::new();
    for chunk in 0..8 {
        let (client, url, token) = (app.http.clone(), app.url("/api/v1/calls"), t.token.clone());
        posts.spawn(async move {
            for i in (chunk..calls).step_by(8) {
                let agent = ["alice", "bob", "zed"][i % 3];
                let r = client
                    .post(&url)
                    .header("Authorization", format!("Token {token}"))
                    .json(&json!({"metadata": {"agent_id": agent, "n": i.to_string(), "comment": "-neg, \"q\""}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        });
    }
    while let Some(done) = posts.join_next().await {
        done.unwrap();
    }
    let get = |path: &str| {
        app.http
            .get(app.url(path))
            .header("Authorization", format!("Token {}", t.token))
            .send()
    };
    let r = get("/api/v1/calls/export?format=csv&bom=true").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let body = r.bytes().await.unwrap();
    assert!(body.starts_with("\u{feff}".as_bytes()), "a BOM first");
    let mut reader = csv::Reader::from_reader(&body[3..]);
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "unique_id",
            "timestamp",
            "source",
            "external_id",
            "agent_id",
            "comment",
            "formula",
            "n",
            "note",
            "team_name",
            "crm.status"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), calls, "every call once");
    let ns: BTreeSet<&str> = rows.iter().map(|r| &r[7]).collect();
    assert_eq!(ns.len(), calls);
    let alice = rows.iter().find(|r| &r[4] == "alice").unwrap();
    assert_eq!(&alice[5], "'-neg, \"q\"");
    assert_eq!(&alice[6], "'=HYPERLINK(\"http://x\")");
    assert_eq!(&alice[8], "multi\nline, with \"quotes\"");
    assert_eq!(&alice[9], "diamond");
    assert_eq!(&alice[10], "matched");
    let bob = rows.iter().find(|r| &r[4] == "bob").unwrap();
    assert_eq!((&bob[6], &bob[8]), ("'+1", "'@home"));
    let zed = rows.iter().find(|r| &r[4] == "zed").unwrap();
    assert_eq!((&zed[9], &zed[10]), ("", "no_match"));

    // NDJSON, filtered: one call per line, as the API shows it.
    let r = get("/api/v1/calls/export?format=ndjson&metadata.team_name=ruby")
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), (0..calls).filter(|i| i % 3 == 1).count());
    assert!(
        lines
            .iter()
            .all(|c| c["metadata"]["team_name"] == "ruby" && c["metadata"]["formula"] == "+1")
    );

    let (status, body) = app.get(&t, "/api/v1/calls/export?format=xlsx").await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (400, Some("format"))
    );
    app.stop().await;
}

#[tokio::test]
async fn the_cli_exports_what_the_api_does() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("cliexport");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    app.upload(&t, "crm", SPEC_TABLE).await;
    for agent in ["alice", "bob", "zed"] {
        let (status, _) = app
            .post_json(
                &t,
                "/api/v1/calls",
                json!({"metadata": {"agent_id": agent, "phone": "+3312"}}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let out = app
        .cli(&[
            "calls",
            "export",
            "cliexport",
            "--filter",
            "metadata.team_name=diamond",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = app
        .http
        .get(app.url("/api/v1/calls/export?metadata.team_name=diamond"))
        .header("Authorization", format!("Token {}", t.token))
        .send()
        .await
        .unwrap();
    let api = r.bytes().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&api)
    );
    let mut reader = csv::Reader::from_reader(&out.stdout[..]);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1);
    let out = app
        .cli(&[
            "calls",
            "export",
            "cliexport",
            "--format",
            "ndjson",
            "--filter",
            "enrichment.crm=sometimes",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("enrichment.crm must be one of matched"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}
