//! Several nodes on one PostgreSQL database and one blob store: a version
//! activated through one node enriches the calls of the other within a second.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_version_activated_on_one_node_reaches_the_other_within_a_second() {
    let Some(db) = PgDatabase::create().await else {
        eprintln!("CALLMETA_TEST_DATABASE_URL is not set: the two-node test is not run");
        return;
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

    for (uploader, caller, team) in [(&a, &b, "diamond"), (&b, &a, "onyx")] {
        let csv = format!("agent_id,team_name\ncindy,{team}\n");
        let (status, body) = uploader.upload(&t, "crm", csv).await;
        assert_eq!(status, 201, "{body}");
        let activated = Instant::now();
        loop {
            let (status, call) = caller
                .post_json(&t, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
                .await;
            assert_eq!(status, 201);
            if call["metadata"]["team_name"] == team {
                break;
            }
            assert!(
                activated.elapsed() < Duration::from_secs(1),
                "the other node still enriches from the previous version after a second: {call}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("version reached the other node in {:?}", activated.elapsed());
    }
    // Both nodes list the same calls.
    let (_, on_a) = a.get(&t, "/api/v1/calls?metadata.agent_id=cindy").await;
    let (_, on_b) = b.get(&t, "/api/v1/calls?metadata.agent_id=cindy").await;
    assert_eq!(on_a["count"], on_b["count"]);
    a.stop().await;
    b.stop().await;
}
