//! SPEC §1, end to end through the API, with two tenants kept apart.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_worked_example_enriches_cindys_call_and_tenants_are_isolated() {
    worked_example(TestApp::spawn().await).await;
}

#[tokio::test]
async fn the_worked_example_on_postgresql() {
    let Some(app) = TestApp::spawn_postgres().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    worked_example(app).await;
}

async fn worked_example(app: TestApp) {
    let acme = app.create_tenant("acme");
    let other = app.create_tenant("other");

    app.create_table(&acme, "crm", json!({"key": "agent_id"})).await;
    let (status, upload) = app.upload(&acme, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201, "{upload}");
    assert_eq!(upload["activated"], true);
    let report = &upload["version"]["report"];
    assert_eq!(report["rows_accepted"], 4);
    assert_eq!(report["delimiter"], "pipe");
    assert_eq!(
        report["columns"],
        json!(["agent_id", "team_name", "expertise", "city"])
    );
    let version = upload["version"]["id"].as_str().unwrap().to_string();

    let (status, call) = app
        .post_json(
            &acme,
            "/api/v1/calls",
            json!({"metadata": {"datetime": "2026-01-30T12:34:56Z", "phonenumber": "+33102030405", "agent_id": "cindy"}}),
        )
        .await;
    assert_eq!(status, 201, "{call}");
    assert_eq!(call["source"], "api");
    assert_eq!(call["timestamp"], "2026-01-30T12:34:56Z");
    assert_eq!(call["metadata"]["team_name"], "diamond");
    assert_eq!(call["metadata"]["expertise"], "sales");
    assert_eq!(call["metadata"]["city"], "Helsinki");
    assert_eq!(call["metadata"]["agent_id"], "cindy");
    let result = &call["enrichment"][0];
    assert_eq!(result["status"], "matched");
    assert_eq!(result["table"], "crm");
    assert_eq!(result["version"], version.as_str());
    assert_eq!(result["key_value"], "cindy");
    assert_eq!(
        result["added"],
        json!({"team_name": "diamond", "expertise": "sales", "city": "Helsinki"})
    );
    assert_eq!(call["audio_state"], "missing");
    let id = call["unique_id"].as_str().unwrap().to_string();

    // Read back, listed, filtered on an added key.
    let (status, got) = app.get(&acme, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["metadata"], call["metadata"]);
    let (_, list) = app.get(&acme, "/api/v1/calls?metadata.team_name=diamond").await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["data"][0]["unique_id"], id.as_str());
    let (_, list) = app.get(&acme, "/api/v1/calls?metadata.team_name=ruby").await;
    assert_eq!(list["count"], 0);

    // The other tenant sees none of it.
    let (status, err) = app.get(&other, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(status, 404, "{err}");
    let (_, list) = app.get(&other, "/api/v1/calls").await;
    assert_eq!(list["count"], 0);
    let (status, _) = app.get(&other, "/api/v1/tables/crm").await;
    assert_eq!(status, 404);
    let (_, tables) = app.get(&other, "/api/v1/tables").await;
    assert_eq!(tables["count"], 0);
    // ...and its calls are not enriched from acme's table.
    let (status, call) = app
        .post_json(
            &other,
            "/api/v1/calls",
            json!({"metadata": {"agent_id": "cindy"}}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(call["enrichment"], json!([]));
    assert!(call["metadata"].get("team_name").is_none());
    app.stop().await;
}

#[tokio::test]
async fn statuses_and_collisions_are_reported_per_table() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("stat");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    app.create_table(
        &t,
        "phones",
        json!({"key": "phonenumber", "match": "phone", "region": "FR"}),
    )
    .await;

    // No version yet: said so, not silently skipped.
    let (_, call) = app
        .post_json(&t, "/api/v1/calls", json!({"metadata": {"agent_id": "alice"}}))
        .await;
    assert_eq!(call["enrichment"][0]["status"], "no_version");

    app.upload(&t, "crm", SPEC_TABLE).await;
    app.upload(
        &t,
        "phones",
        "phonenumber;account_tier;city\n01 02 03 04 05;gold;Paris\n",
    )
    .await;

    let (_, call) = app
        .post_json(
            &t,
            "/api/v1/calls",
            json!({"metadata": {"agent_id": "alice", "phonenumber": "+33102030405"}}),
        )
        .await;
    let results = call["enrichment"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{call}");
    assert_eq!(results[0]["table"], "crm");
    assert_eq!(results[0]["status"], "matched");
    assert_eq!(results[1]["table"], "phones");
    assert_eq!(results[1]["status"], "matched");
    assert_eq!(results[1]["normalized_key"], "+33102030405");
    assert_eq!(call["metadata"]["account_tier"], "gold");
    // city comes from crm (the earlier table); phones' Paris is a recorded collision.
    assert_eq!(call["metadata"]["city"], "Helsinki");
    assert_eq!(results[1]["collisions"][0]["key"], "city");
    assert_eq!(results[1]["collisions"][0]["dropped_value"], "Paris");

    let (_, call) = app
        .post_json(
            &t,
            "/api/v1/calls",
            json!({"metadata": {"agent_id": "zoe", "city": "Oslo"}}),
        )
        .await;
    assert_eq!(call["enrichment"][0]["status"], "no_match");
    assert_eq!(call["enrichment"][1]["status"], "key_missing");
    assert_eq!(call["metadata"]["city"], "Oslo");

    // Own metadata wins over an added key, and the collision is recorded.
    let (_, call) = app
        .post_json(
            &t,
            "/api/v1/calls",
            json!({"metadata": {"agent_id": "bob", "city": "Oslo"}}),
        )
        .await;
    assert_eq!(call["metadata"]["city"], "Oslo");
    assert_eq!(call["metadata"]["team_name"], "ruby");
    assert_eq!(call["enrichment"][0]["collisions"][0]["key"], "city");
    assert_eq!(call["enrichment"][0]["collisions"][0]["kept_value"], "Oslo");
    app.stop().await;
}
