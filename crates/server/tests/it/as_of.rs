//! `"as_of": "call_time"` (SPEC §11): a call enriched from the version that
//! was active at its timestamp, on creation, on back-fill, after retention
//! removed that version, and on a second node.

use std::time::Duration;

use callmeta_app::clock::Clock;
use callmeta_app::usecases::calls::format_timestamp;
use serde_json::{Value, json};

use crate::helpers::{PgDatabase, Tenant, TestApp, error_detail, test_config};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A call at `timestamp` (RFC 3339), or at the app's now.
async fn call(app: &TestApp, t: &Tenant, timestamp: Option<&str>, agent: &str) -> Value {
    let mut body = json!({ "metadata": {"agent_id": agent} });
    if let Some(ts) = timestamp {
        body["timestamp"] = ts.into();
    }
    let (status, call) = app.post_json(t, "/api/v1/calls", body).await;
    assert_eq!(status, 201, "{call}");
    call
}

async fn upload(app: &TestApp, t: &Tenant, csv: &str) -> String {
    let (status, body) = app.upload(t, "crm", csv.to_string()).await;
    assert_eq!(status, 201, "{body}");
    body["version"]["id"].as_str().unwrap().to_string()
}

async fn dry_run(app: &TestApp, t: &Tenant) -> (u64, u64) {
    let (status, report) = app.post_json(t, "/api/v1/backfill", json!({})).await;
    assert_eq!(status, 200, "{report}");
    (
        report["examined"].as_u64().unwrap(),
        report["changed"].as_u64().unwrap(),
    )
}

const JANUARY: &str = "agent_id,team\nalice,diamond\nbob,ruby\n";
const JUNE: &str = "agent_id,team\nalice,onyx\nbob,ruby\n";

/// The bug the option fixes: after June's upload, a back-fill would give
/// January's calls June's teams, and its dry run counts them as changed.
/// Under `call_time` they stay with January's version; under `processing`
/// (the default) the dry run still reports them, as before.
#[tokio::test]
async fn a_backfill_after_a_new_upload_changes_nothing_under_call_time() {
    let app = TestApp::spawn().await;
    let by_time = app.create_tenant("bytime");
    let by_processing = app.create_tenant("byprocessing");
    let (status, table) = app
        .put_json(
            &by_time,
            "/api/v1/tables/crm",
            json!({"key": "agent_id", "as_of": "call_time"}),
        )
        .await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(table["as_of"], "call_time", "{table}");
    app.create_table(&by_processing, "crm", json!({"key": "agent_id"}))
        .await;
    let (_, table) = app.get(&by_processing, "/api/v1/tables/crm").await;
    assert_eq!(table["as_of"], "processing", "{table}");

    let t0 = app.clock.now_ms();
    let january = upload(&app, &by_time, JANUARY).await;
    upload(&app, &by_processing, JANUARY).await;
    app.clock.advance(DAY);
    let mut early = Vec::new();
    for t in [&by_time, &by_processing] {
        early.push(call(&app, t, None, "alice").await);
        call(&app, t, None, "bob").await;
    }
    let c = &early[0];
    assert_eq!(c["metadata"]["team"], "diamond", "{c}");
    let e = &c["enrichment"][0];
    assert_eq!(e["version"], january.as_str(), "{c}");
    assert_eq!(
        e["as_of"],
        json!({"call_time": c["timestamp"], "reason": "active_at_call_time",
               "activated": format_timestamp(t0)}),
        "{c}"
    );
    // The default says nothing of it.
    assert!(early[1]["enrichment"][0].get("as_of").is_none(), "{}", early[1]);
    // A call older than the table's first version gets none, and says why.
    let before = call(&app, &by_time, Some("2020-01-30T12:00:00Z"), "alice").await;
    let e = &before["enrichment"][0];
    assert_eq!(e["status"], "no_version", "{before}");
    assert_eq!(e["version"], Value::Null, "{before}");
    assert_eq!(e["as_of"]["reason"], "before_first_activation", "{before}");
    assert!(before["metadata"].get("team").is_none(), "{before}");

    app.clock.advance(30 * DAY);
    let june = upload(&app, &by_time, JUNE).await;
    upload(&app, &by_processing, JUNE).await;

    assert_eq!(dry_run(&app, &by_time).await, (3, 0));
    assert_eq!(dry_run(&app, &by_processing).await, (2, 1));

    // A call of January that arrives now (a late drop) is enriched from
    // January's version, loaded again from its original; one of now from
    // June's.
    let january_ts = early[0]["timestamp"].as_str().unwrap();
    let late = call(&app, &by_time, Some(january_ts), "alice").await;
    assert_eq!(late["metadata"]["team"], "diamond", "{late}");
    assert_eq!(late["enrichment"][0]["version"], january.as_str(), "{late}");
    let now = call(&app, &by_time, None, "alice").await;
    assert_eq!(now["metadata"]["team"], "onyx", "{now}");
    assert_eq!(now["enrichment"][0]["version"], june.as_str(), "{now}");
    assert_eq!(now["enrichment"][0]["as_of"]["reason"], "active_at_call_time");

    // A rollback is an activation like any other: calls after it get the
    // version it made active again, calls before it keep theirs.
    app.clock.advance(DAY);
    let (status, body) = app
        .post_json(
            &by_time,
            &format!("/api/v1/tables/crm/versions/{january}/activate"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let after = call(&app, &by_time, None, "alice").await;
    assert_eq!(after["metadata"]["team"], "diamond", "{after}");
    let between = call(&app, &by_time, now["timestamp"].as_str(), "alice").await;
    assert_eq!(between["metadata"]["team"], "onyx", "{between}");
    assert_eq!(dry_run(&app, &by_time).await, (7, 0));

    // Back to `processing`: every call is enriched from the active version
    // again, and the dry run says which would change.
    app.clock.advance(DAY);
    let (status, table) = app
        .put_json(
            &by_time,
            "/api/v1/tables/crm",
            json!({"key": "agent_id", "as_of": "processing"}),
        )
        .await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(table["as_of"], "processing", "{table}");
    // January's data is active: the June calls (now, between) would
    // change, the one before the first version too.
    assert_eq!(dry_run(&app, &by_time).await, (7, 3));
    app.stop().await;
}

/// Two activations in one millisecond: the later is the one in force.
#[tokio::test]
async fn of_two_activations_in_one_millisecond_the_later_counts() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme");
    app.create_table(&t, "crm", json!({"key": "agent_id", "as_of": "call_time"}))
        .await;
    upload(&app, &t, JANUARY).await;
    let june = upload(&app, &t, JUNE).await;
    let c = call(&app, &t, None, "alice").await;
    assert_eq!(c["enrichment"][0]["version"], june.as_str(), "{c}");
    assert_eq!(c["metadata"]["team"], "onyx", "{c}");
    app.stop().await;
}

#[tokio::test]
async fn the_option_is_checked() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme");
    let (status, body) = app
        .put_json(
            &t,
            "/api/v1/tables/crm",
            json!({"key": "agent_id", "as_of": "yesterday"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "as_of", "{body}");
    assert!(error_detail(&body).contains("call_time"), "{body}");
    // The document declares the option and the reasons a result gives.
    let doc = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for word in [
        "\"call_time\"",
        "\"before_first_activation\"",
        "\"version_removed\"",
    ] {
        assert!(doc.contains(word), "the OpenAPI document names {word}");
    }
    app.stop().await;
}

/// The version a call's time needs, deleted by retention: the call gets
/// `no_version` naming it, and a back-fill reports the change.
#[tokio::test]
async fn a_version_removed_by_retention_gives_no_version() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme");
    app.create_table(&t, "crm", json!({"key": "agent_id", "as_of": "call_time"}))
        .await;
    let january = upload(&app, &t, JANUARY).await;
    app.clock.advance(DAY);
    let early = call(&app, &t, None, "alice").await;
    assert_eq!(early["metadata"]["team"], "diamond", "{early}");
    for csv in [JUNE, "agent_id,team\nalice,jade\n"] {
        app.clock.advance(DAY);
        upload(&app, &t, csv).await;
    }
    let (status, view) = app
        .put_json(&t, "/api/v1/retention", json!({"versions_kept": 1}))
        .await;
    assert_eq!(status, 200, "{view}");
    crate::helpers::eventually(
        "retention removing old versions",
        Duration::from_secs(10),
        || async {
            let (_, view) = app.get(&t, "/api/v1/retention").await;
            match view["last_run"]["versions_removed"].as_u64() {
                Some(n) if n > 0 => Ok(()),
                _ => Err(view),
            }
        },
    )
    .await;
    let (_, table) = app.get(&t, "/api/v1/tables/crm").await;
    assert!(
        table["versions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["id"] != january.as_str()),
        "{table}"
    );
    let late = call(&app, &t, early["timestamp"].as_str(), "alice").await;
    let e = &late["enrichment"][0];
    assert_eq!(e["status"], "no_version", "{late}");
    assert_eq!(e["version"], january.as_str(), "{late}");
    assert_eq!(e["as_of"]["reason"], "version_removed", "{late}");
    assert!(late["metadata"].get("team").is_none(), "{late}");
    // The stored call keeps what it had until a back-fill is asked for,
    // whose dry run counts it.
    let (_, dry) = app.post_json(&t, "/api/v1/backfill", json!({})).await;
    assert_eq!(dry["after"]["crm"]["no_version"], 2, "{dry}");
    app.stop().await;
}

/// Two nodes on one PostgreSQL database: the activation history is in the
/// store, so the node that did not see January's upload as active still
/// enriches January's calls from it.
#[tokio::test]
async fn a_second_node_enriches_from_the_version_active_at_the_call() {
    let Some(db) = PgDatabase::create().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    let shared = tempfile::tempdir().unwrap();
    let blobs = format!("file://{}", shared.path().join("blobs").display());
    let node = |name: &str| {
        let mut config = test_config(&shared.path().join(name));
        config.database = Some(db.url.clone());
        config.blobs = Some(blobs.clone());
        config
    };
    let a = TestApp::spawn_with(node("a")).await;
    let b = TestApp::spawn_with(node("b")).await;
    let t = a.create_tenant("multi");
    a.create_table(&t, "crm", json!({"key": "agent_id", "as_of": "call_time"}))
        .await;
    let january = upload(&a, &t, JANUARY).await;
    a.clock.advance(DAY);
    let early = call(&a, &t, None, "alice").await;
    a.clock.advance(30 * DAY);
    let june = upload(&a, &t, JUNE).await;
    b.clock.advance(40 * DAY);
    let now = call(&b, &t, None, "alice").await;
    assert_eq!(now["enrichment"][0]["version"], june.as_str(), "{now}");
    let late = call(&b, &t, early["timestamp"].as_str(), "alice").await;
    assert_eq!(late["enrichment"][0]["version"], january.as_str(), "{late}");
    assert_eq!(late["metadata"]["team"], "diamond", "{late}");
    assert_eq!(dry_run(&b, &t).await, (3, 0));
    a.stop().await;
    b.stop().await;
}
