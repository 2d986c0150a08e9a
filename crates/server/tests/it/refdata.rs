//! Reference data that behaves like the CRM (SPEC §11), through the API:
//! pasted tables, compound and fallback keys, prefixes, rows valid over an
//! interval, activating an earlier version again.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{PgDatabase, Tenant, TestApp, error_detail, eventually, test_config};

async fn call(app: &TestApp, t: &Tenant, metadata: Value) -> Value {
    let (status, call) = app
        .post_json(t, "/api/v1/calls", json!({ "metadata": metadata }))
        .await;
    assert_eq!(status, 201, "{call}");
    call
}

#[tokio::test]
async fn a_pasted_table_with_a_trailing_pipe_on_the_header_only() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    // As pasted from a chat: the header without its leading pipe but with a
    // trailing one, the rows in every form.
    let pasted = "agent_id | team_name | expertise | city |\n\
                  |---|---|---|---|\n\
                  | alice | diamond | sales | Helsinki |\n\
                  bob | ruby | support | Helsinki\n\
                  | cindy | diamond | sales | Helsinki\n\
                  dylan | saphire | sales | Cape Town |\n";
    let (status, body) = app.upload(&t, "crm", pasted).await;
    assert_eq!(status, 201, "{body}");
    let report = &body["version"]["report"];
    assert_eq!(report["rows_accepted"], 4, "{report}");
    assert_eq!(
        report["columns"],
        json!(["agent_id", "team_name", "expertise", "city"])
    );
    assert_eq!(report["pipe_table"], true);
    let c = call(&app, &t, json!({"agent_id": "dylan"})).await;
    assert_eq!(c["metadata"]["city"], "Cape Town", "{c}");

    // An export whose lines all end with a delimiter.
    let (status, body) = app
        .upload(
            &t,
            "crm",
            "agent_id;team_name;\r\nalice;diamond;\r\nbob;ruby;\r\n",
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["version"]["report"]["columns"],
        json!(["agent_id", "team_name"])
    );
    // A value in the unnamed column is a row with one field too many.
    let (status, body) = app
        .upload(&t, "crm", "agent_id,team_name,\nalice,diamond,x\n")
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        error_detail(&body),
        "line 2: 3 fields, expected 2 (the header has 2 columns)"
    );
    app.stop().await;
}

const DIRECTORY: &str = "site,extension,agent_email,team\n\
                         paris,101,alice@example.com,diamond\n\
                         paris,102,bob@example.com,ruby\n\
                         ,,dylan@example.com,emerald\n";

#[tokio::test]
async fn compound_and_fallback_keys() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme");
    // Settings are checked.
    for (body, field) in [
        (json!({"keys": []}), "keys"),
        (json!({"keys": [["site", "site"]]}), "keys"),
        (json!({"match": "exact"}), "key"),
        (
            json!({"key": "agent_email", "keys": [["site", "extension"]]}),
            "keys",
        ),
    ] {
        let (status, err) = app.put_json(&t, "/api/v1/tables/crm", body.clone()).await;
        assert_eq!(status, 422, "{body}: {err}");
        assert_eq!(err["errors"][0]["field"], field, "{body}: {err}");
    }
    let (status, table) = app
        .put_json(
            &t,
            "/api/v1/tables/crm",
            json!({"keys": [["site", "extension"], ["agent_email"]]}),
        )
        .await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(table["keys"], json!([["site", "extension"], ["agent_email"]]));
    assert_eq!(table["key"], "site");
    let (status, body) = app.upload(&t, "crm", DIRECTORY).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"]["report"]["rows_accepted"], 3);

    // The compound key matches first; its columns are the call's own.
    let c = call(
        &app,
        &t,
        json!({"site": "paris", "extension": "102", "agent_email": "alice@example.com"}),
    )
    .await;
    let r = &c["enrichment"][0];
    assert_eq!(r["status"], "matched", "{c}");
    assert_eq!(r["matched_by"], json!(["site", "extension"]));
    assert_eq!(c["metadata"]["team"], "ruby");
    assert_eq!(c["metadata"]["agent_email"], "alice@example.com");
    // The row's other key column differs from the call's: recorded, not added.
    assert_eq!(r["collisions"][0]["key"], "agent_email", "{r}");
    assert_eq!(r["collisions"].as_array().map(Vec::len), Some(1), "{r}");

    // Fallback: the call has no site.
    let c = call(&app, &t, json!({"agent_email": "dylan@example.com"})).await;
    let r = &c["enrichment"][0];
    assert_eq!(r["matched_by"], json!(["agent_email"]), "{c}");
    assert_eq!(c["metadata"]["team"], "emerald");
    assert_eq!(r["keys_tried"][0]["status"], "key_missing", "{r}");
    assert_eq!(r["keys_tried"][1]["status"], "matched", "{r}");

    // A miss explains each key.
    let c = call(&app, &t, json!({"site": "paris", "extension": "999"})).await;
    let r = &c["enrichment"][0];
    assert_eq!(r["status"], "no_match", "{c}");
    assert!(r.get("matched_by").is_none(), "{r}");
    assert_eq!(
        r["keys_tried"],
        json!([
            {"key": ["site", "extension"], "status": "no_match", "value": ["paris", "999"]},
            {"key": ["agent_email"], "status": "key_missing"},
        ])
    );
    let c = call(&app, &t, json!({"other": "x"})).await;
    assert_eq!(c["enrichment"][0]["status"], "key_missing", "{c}");

    // A single key says what matched too.
    app.create_table(&t, "teams", json!({"key": "team_id"})).await;
    let (status, _) = app.upload(&t, "teams", "team_id,floor\nt1,3\n").await;
    assert_eq!(status, 201);
    let c = call(&app, &t, json!({"team_id": "t1"})).await;
    assert_eq!(c["enrichment"][1]["matched_by"], json!(["team_id"]), "{c}");

    // Duplicate key tuples follow the policy; reject names the key.
    let (status, _) = app
        .put_json(
            &t,
            "/api/v1/tables/crm",
            json!({"keys": [["site", "extension"], ["agent_email"]], "duplicates": "reject"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .upload(
            &t,
            "crm",
            "site,extension,agent_email,team\nparis,101,a@x,red\nlyon,1,a@x,blue\n",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        error_detail(&body),
        "line 3: the key \"agent_email=a@x\" is already on an earlier line, and the table's duplicates policy is reject (1 key is duplicated)"
    );
    // A row without a complete key.
    let (status, body) = app
        .upload(&t, "crm", "site,extension,agent_email,team\nparis,,,red\n")
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        error_detail(&body),
        "line 2: no key is complete (keys: site+extension, agent_email): each has an empty column"
    );
    app.stop().await;
}

#[tokio::test]
async fn longest_prefix_ranges() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme");
    app.create_table(&t, "ranges", json!({"key": "dialled", "match": "prefix"}))
        .await;
    let (status, body) = app
        .upload(&t, "ranges", "dialled,area\n+33,France\n+331,Paris\n+44,UK\n")
        .await;
    assert_eq!(status, 201, "{body}");
    let c = call(&app, &t, json!({"dialled": "+33102030405"})).await;
    assert_eq!(c["metadata"]["area"], "Paris", "{c}");
    let c = call(&app, &t, json!({"dialled": "+33612345678"})).await;
    assert_eq!(c["metadata"]["area"], "France", "{c}");
    let c = call(&app, &t, json!({"dialled": "+1650"})).await;
    assert_eq!(c["enrichment"][0]["status"], "no_match", "{c}");

    // phone_prefix: the call's number in E.164 with the table's region, the
    // cells as E.164 prefixes.
    app.create_table(
        &t,
        "ranges",
        json!({"key": "dialled", "match": "phone_prefix", "region": "FR"}),
    )
    .await;
    let (status, body) = app
        .upload(&t, "ranges", "dialled,area\n+33,France\n01,Paris\n0033 4,Lyon\n")
        .await;
    assert_eq!(status, 201, "{body}");
    let c = call(&app, &t, json!({"dialled": "01 02 03 04 05"})).await;
    assert_eq!(c["metadata"]["area"], "Paris", "{c}");
    assert_eq!(c["enrichment"][0]["normalized_key"], "+33102030405", "{c}");
    let c = call(&app, &t, json!({"dialled": "04 72 00 00 00"})).await;
    assert_eq!(c["metadata"]["area"], "Lyon", "{c}");
    let (status, body) = app.upload(&t, "ranges", "dialled,area\nParis,x\n").await;
    assert_eq!(status, 422, "{body}");
    app.stop().await;
}

async fn call_at(app: &TestApp, t: &Tenant, timestamp: &str, metadata: Value) -> Value {
    let (status, call) = app
        .post_json(
            t,
            "/api/v1/calls",
            json!({ "metadata": metadata, "timestamp": timestamp }),
        )
        .await;
    assert_eq!(status, 201, "{call}");
    call
}

#[tokio::test]
async fn rows_valid_over_intervals_and_a_backfill_that_follows_them() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme");
    let (status, table) = app
        .put_json(
            &t,
            "/api/v1/tables/crm",
            json!({"key": "agent_id", "valid_from": "from", "valid_to": "to", "duplicates": "reject"}),
        )
        .await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(table["valid_from"], "from");
    let (status, body) = app
        .upload(
            &t,
            "crm",
            "agent_id,team,from,to\nalice,diamond,,2026-01-01\nalice,ruby,2026-01-01,\n",
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let before = call_at(&app, &t, "2025-06-01T10:00:00Z", json!({"agent_id": "alice"})).await;
    assert_eq!(before["metadata"]["team"], "diamond", "{before}");
    assert_eq!(
        before["enrichment"][0]["interval"],
        json!({"valid_from": "", "valid_to": "2026-01-01"})
    );
    let after = call_at(&app, &t, "2026-06-01T10:00:00Z", json!({"agent_id": "alice"})).await;
    assert_eq!(after["metadata"]["team"], "ruby", "{after}");

    // A later upload splits the open interval: only the call in the part
    // that changed would change.
    let (status, body) = app
        .upload(
            &t,
            "crm",
            "agent_id,team,from,to\nalice,diamond,,2026-01-01\nalice,ruby,2026-01-01,2026-03-01\nalice,onyx,2026-03-01,\n",
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, dry) = app.post_json(&t, "/api/v1/backfill", json!({})).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (dry["examined"].as_u64(), dry["changed"].as_u64()),
        (Some(2), Some(1)),
        "{dry}"
    );
    let (_, done) = app
        .post_json(&t, "/api/v1/backfill", json!({"dry_run": false}))
        .await;
    assert_eq!(done["changed"], 1, "{done}");
    let id = after["unique_id"].as_str().unwrap();
    let (_, call) = app.get(&t, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(call["metadata"]["team"], "onyx", "{call}");

    // Overlapping intervals for one key under reject: both lines named.
    let (status, body) = app
        .upload(
            &t,
            "crm",
            "agent_id,team,from,to\nalice,diamond,,2026-02-01\nalice,ruby,2026-01-01,\n",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        error_detail(&body),
        "line 3: the key \"agent_id=alice\" has a row valid over an interval that overlaps the one of line 2, and the table's duplicates policy is reject"
    );
    // A bound that is not a date.
    let (status, body) = app
        .upload(&t, "crm", "agent_id,team,from,to\nalice,x,soon,\n")
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        error_detail(&body).starts_with("line 2: the \"from\" field"),
        "{body}"
    );
    // Options that do not go together.
    let (status, body) = app
        .put_json(
            &t,
            "/api/v1/tables/ranges",
            json!({"key": "p", "match": "prefix", "valid_from": "from"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "match", "{body}");
    app.stop().await;
}

async fn activate(app: &TestApp, t: &Tenant, version: &str) -> (u16, Value) {
    let path = format!("/api/v1/tables/crm/versions/{version}/activate");
    app.post_json(t, &path, json!({})).await
}

#[tokio::test]
async fn an_earlier_version_is_activated_again() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme");
    let other = app.create_tenant("other");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let (_, v1) = app.upload(&t, "crm", "agent_id,team\nalice,diamond\n").await;
    let v1 = v1["version"]["id"].as_str().unwrap().to_string();
    let (_, v2) = app.upload(&t, "crm", "agent_id,team\nalice,ruby\n").await;
    let v2 = v2["version"]["id"].as_str().unwrap().to_string();
    let (status, rejected) = app.upload(&t, "crm", "team\nx\n").await;
    assert_eq!(status, 422);
    let rejected = rejected["version"]["id"].as_str().unwrap().to_string();
    let c = call(&app, &t, json!({"agent_id": "alice"})).await;
    assert_eq!(c["metadata"]["team"], "ruby");

    let (status, table) = activate(&app, &t, &v1).await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(table["active_version"]["id"], v1.as_str());
    assert_eq!(table["activations"][0]["version"], v1.as_str(), "{table}");
    assert_eq!(table["activations"][0]["channel"], "http");
    assert_eq!(table["activations"][1]["version"], v2.as_str(), "{table}");
    let c = call(&app, &t, json!({"agent_id": "alice"})).await;
    assert_eq!(c["metadata"]["team"], "diamond", "{c}");
    assert_eq!(c["enrichment"][0]["version"], v1.as_str());

    // Roll forward again; a rejected version, an unknown one and another
    // tenant's cannot be activated.
    let (status, _) = activate(&app, &t, &v2).await;
    assert_eq!(status, 200);
    let c = call(&app, &t, json!({"agent_id": "alice"})).await;
    assert_eq!(c["metadata"]["team"], "ruby", "{c}");
    let (status, body) = activate(&app, &t, &rejected).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = activate(&app, &t, "no-such-version").await;
    assert_eq!(status, 404);
    let (status, _) = activate(&app, &other, &v1).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_rollback_reaches_the_other_node_within_a_second() {
    let Some(db) = PgDatabase::create().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    let shared = tempfile::tempdir().unwrap();
    let blobs = format!("file://{}", shared.path().join("blobs").display());
    let node = |name: &str| {
        let mut config = test_config(&shared.path().join(name));
        config.database = Some(db.url.clone());
        config.blobs = Some(blobs.clone());
        // Polling is only the fallback: a long interval shows the notification works.
        config.refresh_interval_ms = 30_000;
        config
    };
    let a = TestApp::spawn_with(node("a")).await;
    let b = TestApp::spawn_with(node("b")).await;
    let t = a.create_tenant("multi");
    a.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let (_, v1) = a.upload(&t, "crm", "agent_id,team\ncindy,diamond\n").await;
    let v1 = v1["version"]["id"].as_str().unwrap().to_string();
    let (status, _) = a.upload(&t, "crm", "agent_id,team\ncindy,onyx\n").await;
    assert_eq!(status, 201);
    let (status, body) = a
        .post_json(
            &t,
            &format!("/api/v1/tables/crm/versions/{v1}/activate"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        "node B enriching from the version activated again",
        Duration::from_secs(1),
        || async {
            let c = call(&b, &t, json!({"agent_id": "cindy"})).await;
            if c["metadata"]["team"] == "diamond" {
                Ok(())
            } else {
                Err(c)
            }
        },
    )
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn activation_guards_hold_an_upload_back_unless_forced() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme");
    let (status, table) = app
        .put_json(
            &t,
            "/api/v1/tables/crm",
            json!({"key": "agent_id", "max_row_drop_pct": 50, "on_header_change": "reject"}),
        )
        .await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(table["max_row_drop_pct"], 50.0);
    assert_eq!(table["on_header_change"], "reject");
    let (status, _) = app
        .upload(&t, "crm", "agent_id,team,city\na,1,x\nb,2,x\nc,3,x\nd,4,x\n")
        .await;
    assert_eq!(status, 201);

    // 3 rows of 4 dropped: recorded, not activated, and the report says why.
    let (status, body) = app.upload(&t, "crm", "agent_id,team,city\na,9,x\n").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["id"], "not_activated", "{body}");
    assert_eq!(
        error_detail(&body),
        "1 rows against 4 in the active version: 75.0% fewer, over the table's max_row_drop_pct of 50; upload again with force to activate it anyway"
    );
    assert_eq!(body["version"]["state"], "inactive");
    assert_eq!(body["version"]["report"]["accepted"], true);
    let c = call(&app, &t, json!({"agent_id": "a"})).await;
    assert_eq!(c["metadata"]["team"], "1", "{c}");
    // Half the rows is within the limit.
    let (status, body) = app.upload(&t, "crm", "agent_id,team,city\na,5,x\nb,6,x\n").await;
    assert_eq!(status, 201, "{body}");

    // A column gone.
    let (status, body) = app.upload(&t, "crm", "agent_id,team\na,7\nb,8\n").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        error_detail(&body),
        "the active version's column \"city\" is missing or renamed, and the table's on_header_change is reject; upload again with force to activate it anyway"
    );
    // Forced.
    let r = app
        .http
        .put(app.url("/api/v1/tables/crm/data?force=true"))
        .header("Authorization", format!("Token {}", t.token))
        .body("agent_id,team\na,7\n")
        .send()
        .await
        .unwrap();
    let (status, body) = crate::helpers::status_json(r).await;
    assert_eq!(status, 201, "{body}");
    let c = call(&app, &t, json!({"agent_id": "a"})).await;
    assert_eq!(c["metadata"]["team"], "7", "{c}");
    let r = app
        .http
        .put(app.url("/api/v1/tables/crm/data?force=maybe"))
        .header("Authorization", format!("Token {}", t.token))
        .body("agent_id,team\na,7\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    // A percentage out of range.
    let (status, body) = app
        .put_json(
            &t,
            "/api/v1/tables/crm",
            json!({"key": "agent_id", "max_row_drop_pct": 150}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "max_row_drop_pct");
    // An optional setting is left out, not null.
    for null in ["valid_to", "keys", "max_row_drop_pct"] {
        let mut body = json!({"key": "agent_id"});
        body[null] = Value::Null;
        let (status, reply) = app.put_json(&t, "/api/v1/tables/crm", body).await;
        assert_eq!(status, 422, "{null}: {reply}");
    }
    app.stop().await;
}

#[tokio::test]
async fn delta_uploads_make_a_new_full_version() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let (status, _) = app
        .upload(&t, "crm", "agent_id,team\nalice,diamond\nbob,ruby\ncindy,onyx\n")
        .await;
    assert_eq!(status, 201);
    let put = |query: &'static str, header: Option<&'static str>, body: &'static str| {
        let mut r = app
            .http
            .put(app.url(&format!("/api/v1/tables/crm/data{query}")))
            .header("Authorization", format!("Token {}", t.token));
        if let Some(mode) = header {
            r = r.header("X-Upload-Mode", mode);
        }
        async move { crate::helpers::status_json(r.body(body).send().await.unwrap()).await }
    };
    let (status, body) = put(
        "?mode=delta",
        None,
        "_op,agent_id,team\nupsert,bob,topaz\ndelete,cindy,\ndelete,zoe,\nupsert,dylan,saphire\n",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let report = &body["version"]["report"];
    assert_eq!(
        report["delta"],
        json!({"inserted": 1, "updated": 1, "deleted": 1, "unknown_deletes": 1}),
        "{report}"
    );
    assert_eq!(body["version"]["rows"], 3, "{body}");
    for (agent, team) in [("alice", "diamond"), ("bob", "topaz"), ("dylan", "saphire")] {
        let c = call(&app, &t, json!({"agent_id": agent})).await;
        assert_eq!(c["metadata"]["team"], team, "{c}");
    }
    let c = call(&app, &t, json!({"agent_id": "cindy"})).await;
    assert_eq!(c["enrichment"][0]["status"], "no_match", "{c}");

    // The header says so too; a delta without `_op` is refused.
    let (status, body) = put("", Some("delta"), "_op,agent_id,team\ndelete,alice,\n").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"]["rows"], 2);
    let (status, body) = put("?mode=delta", None, "agent_id,team\nalice,x\n").await;
    assert_eq!(status, 422, "{body}");
    assert!(error_detail(&body).contains("\"_op\""), "{body}");
    let (status, _) = put("?mode=sideways", None, "agent_id\n").await;
    assert_eq!(status, 422);
    app.stop().await;
}

#[tokio::test]
async fn a_delta_file_over_ftp() {
    if !crate::filedrop::have("curl") {
        return;
    }
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let (status, _) = app
        .upload(&t, "crm", "agent_id,team\nalice,diamond\nbob,ruby\n")
        .await;
    assert_eq!(status, 201);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("changes.delta.csv");
    std::fs::write(&file, "_op,agent_id,team\nupsert,alice,onyx\ndelete,bob,\n").unwrap();
    let url = |path: &str| format!("ftp://{}:{}@{}{path}", t.slug, t.password, app.ftp);
    let (ok, _, err) = crate::filedrop::run(
        tokio::process::Command::new("curl")
            .args(["-sS", "-T"])
            .arg(&file)
            .arg(url("/")),
    )
    .await;
    assert!(ok, "{err}");
    let (ok, report, err) = crate::filedrop::run(
        tokio::process::Command::new("curl")
            .args(["-sS"])
            .arg(url("/changes.delta.csv.report.txt")),
    )
    .await;
    assert!(ok, "{err}");
    assert!(report.starts_with("ACCEPTED: 1 row, 1 key"), "{report}");
    assert!(
        report.contains("delta:      0 inserted, 1 updated, 1 deleted, 0 unknown deletes"),
        "{report}"
    );
    let c = call(&app, &t, json!({"agent_id": "alice"})).await;
    assert_eq!(c["metadata"]["team"], "onyx", "{c}");
    app.stop().await;
}
