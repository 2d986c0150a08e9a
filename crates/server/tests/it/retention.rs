//! Retention: `PUT /api/v1/retention` and the hourly job that applies it.
//! The app's clock is moved forward instead of waiting; the job's run is
//! awaited through the API. On SQLite with local blobs, or on PostgreSQL
//! with S3 (`CALLMETA_TEST_BACKEND=postgres`), as in `erasure`.

use std::time::Duration;

use callmeta_app::clock::Clock;
use callmeta_app::usecases::calls::format_timestamp;
use serde_json::{Value, json};

use crate::erasure::{drop_call_with_audio, spawn_backend, spec_tenant};
use crate::helpers::*;

const DAY_MS: i64 = 86_400_000;

/// The policy's view once its job has run at or after `after_ms` (the
/// app's clock).
async fn run_after(app: &TestApp, t: &Tenant, after_ms: i64) -> Value {
    eventually("the retention job running", Duration::from_secs(10), || async {
        let (status, view) = app.get(t, "/api/v1/retention").await;
        assert_eq!(status, 200, "{view}");
        let ran = view["last_run"]["at"]
            .as_str()
            .and_then(callmeta_app::usecases::calls::parse_timestamp);
        match ran {
            Some(at) if at >= after_ms => Ok(view),
            _ => Err(view),
        }
    })
    .await
}

/// Audio older than `audio_days` is pruned (the call keeps its metadata,
/// says `audio_state: pruned`, its audio answers 451, the web page says
/// so), calls older than `calls_days` are erased, rejected originals older
/// than `rejected_uploads_days` are removed, and only the newest
/// `versions_kept` versions stay, besides the active one, however old.
#[tokio::test]
async fn the_policy_prunes_audio_erases_calls_and_keeps_the_active_version() {
    let backend = spawn_backend(|_| {}).await;
    let app = &backend.app;
    let acme = spec_tenant(app, "acme").await;
    let t0 = app.clock.now_ms();

    // Versions: the first, two newer ones, then a rollback to the first.
    let first = app.get(&acme, "/api/v1/tables/crm").await.1["versions"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut newer = Vec::new();
    for team in ["onyx", "jade"] {
        let (status, body) = app
            .upload(&acme, "crm", format!("agent_id,team_name\ncindy,{team}\n"))
            .await;
        assert_eq!(status, 201, "{body}");
        newer.push(body["version"]["id"].as_str().unwrap().to_string());
    }
    let (status, body) = app
        .post_json(
            &acme,
            &format!("/api/v1/tables/crm/versions/{first}/activate"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A rejected upload (no key column): its original is kept for now.
    let (status, rejected) = app.upload(&acme, "crm", "name,team_name\ncindy,ruby\n").await;
    assert_eq!(status, 422, "{rejected}");
    let rejected = rejected["version"]["id"].as_str().unwrap().to_string();
    assert_eq!(backend.blobs_with(&rejected).await.len(), 1);

    // Calls: one with audio (now), one 80 days old, one of now.
    let Some(pruned) = drop_call_with_audio(
        app,
        &acme,
        "p",
        json!({"agent_id": "cindy", "case": "audio", "datetime": format_timestamp(t0)}),
    )
    .await
    else {
        return;
    };
    let (status, old) = app
        .post_json(
            &acme,
            "/api/v1/calls",
            json!({"metadata": {"agent_id": "bob", "case": "old"}, "timestamp": format_timestamp(t0 - 80 * DAY_MS)}),
        )
        .await;
    assert_eq!(status, 201, "{old}");
    let old = old["unique_id"].as_str().unwrap().to_string();
    let (status, recent) = app
        .post_json(
            &acme,
            "/api/v1/calls",
            json!({"metadata": {"agent_id": "dylan", "case": "recent"}}),
        )
        .await;
    assert_eq!(status, 201, "{recent}");
    let recent = recent["unique_id"].as_str().unwrap().to_string();

    let policy = json!({"audio_days": 30, "calls_days": 90, "rejected_uploads_days": 7, "versions_kept": 1});
    let (status, view) = app.put_json(&acme, "/api/v1/retention", policy).await;
    assert_eq!(status, 200, "{view}");
    for (k, v) in [
        ("audio_days", 30),
        ("calls_days", 90),
        ("rejected_uploads_days", 7),
        ("versions_kept", 1),
    ] {
        assert_eq!(view[k], v, "{view}");
    }

    // The first run, at once: nothing is old enough yet; of the versions,
    // the newest (the rejected upload) and the active one stay.
    let view = run_after(app, &acme, t0).await;
    let run = &view["last_run"];
    assert_eq!(
        (
            &run["audio_pruned"],
            &run["calls_erased"],
            &run["rejected_originals_removed"]
        ),
        (&json!(0), &json!(0), &json!(0)),
        "{view}"
    );
    assert_eq!(run["versions_removed"], 2, "{view}");
    let (_, table) = app.get(&acme, "/api/v1/tables/crm").await;
    let mut ids: Vec<&str> = table["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected = vec![first.as_str(), rejected.as_str()];
    expected.sort();
    assert_eq!(ids, expected, "{table}");
    assert_eq!(table["active_version"]["id"], first.as_str(), "{table}");
    for id in &newer {
        assert_eq!(
            backend.blobs_with(id).await,
            Vec::<String>::new(),
            "{id}'s original"
        );
    }
    assert_eq!(
        backend.blobs_with(&first).await.len(),
        1,
        "the active version's original"
    );
    let (_, call) = app
        .post_json(&acme, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
        .await;
    assert_eq!(
        call["metadata"]["team_name"], "diamond",
        "the active version still enriches"
    );
    assert_eq!(app.get(&acme, &format!("/api/v1/calls/{old}")).await.0, 200);
    let (_, call) = app.get(&acme, &format!("/api/v1/calls/{pruned}")).await;
    assert_eq!(call["audio_state"], "available", "{call}");
    let next = view["next_run"]
        .as_str()
        .and_then(callmeta_app::usecases::calls::parse_timestamp);
    assert!(next.is_some_and(|n| n >= t0 + 3_600_000), "{view}");

    // 31 days later, the hourly run removes what aged.
    app.clock.advance(Duration::from_millis(31 * DAY_MS as u64));
    let later = app.clock.now_ms();
    let view = run_after(app, &acme, later).await;
    let run = &view["last_run"];
    assert_eq!(run["audio_pruned"], 1, "{view}");
    assert_eq!(run["calls_erased"], 1, "{view}");
    assert_eq!(run["rejected_originals_removed"], 1, "{view}");

    let (_, call) = app.get(&acme, &format!("/api/v1/calls/{pruned}")).await;
    assert_eq!(call["audio_state"], "pruned", "{call}");
    assert_eq!(
        call["metadata"]["agent_id"], "cindy",
        "the call keeps its metadata: {call}"
    );
    assert_eq!(call["metadata"]["team_name"], "diamond", "{call}");
    let (status, body) = app.get(&acme, &format!("/api/v1/calls/{pruned}/audio")).await;
    assert_eq!(status, 451, "{body}");
    assert_eq!(body["errors"][0]["id"], "pruned", "{body}");
    let detail = error_detail(&body);
    assert!(
        detail.contains("retention") && detail.contains(&format_timestamp(later)[..10]),
        "{detail}"
    );
    assert_eq!(
        backend.blobs_with(&pruned).await,
        Vec::<String>::new(),
        "the audio blob"
    );
    let (_, list) = app.get(&acme, "/api/v1/calls?metadata.case=audio").await;
    assert_eq!(list["data"][0]["audio_state"], "pruned", "{list}");

    assert_eq!(app.get(&acme, &format!("/api/v1/calls/{old}")).await.0, 404);
    let (_, list) = app.get(&acme, "/api/v1/calls?metadata.case=old").await;
    assert_eq!(list["count"], 0, "{list}");
    assert_eq!(backend.index_entries("acme", "case", "old").await, 0);
    assert_eq!(app.get(&acme, &format!("/api/v1/calls/{recent}")).await.0, 200);

    // The rejected upload's report stays; its original is gone.
    assert_eq!(backend.blobs_with(&rejected).await, Vec::<String>::new());
    let (_, table) = app.get(&acme, "/api/v1/tables/crm").await;
    let states: Vec<&Value> = table["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["state"])
        .collect();
    assert_eq!(states, [&json!("rejected"), &json!("active")], "{table}");
    assert_eq!(
        backend.blobs_with(&first).await.len(),
        1,
        "the active version, 31 days old"
    );

    // The web app's call page says so.
    let (cookie, _) = crate::webhooks::web_session(app, &acme).await;
    let (status, page) = crate::webhooks::web_page(app, &cookie, &format!("/calls/{pruned}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Audio pruned"), "{page}");
    let (status, _) = crate::webhooks::web_page(app, &cookie, &format!("/calls/{pruned}/audio")).await;
    assert_eq!(status, 451);
}

/// The policy is read back as set; numbers that are not whole numbers
/// within bounds, unknown fields and bodies that are not JSON get a clear
/// 422 or 400 naming the field; null keeps forever; only an admin token
/// changes it.
#[tokio::test]
async fn the_policy_is_validated_and_read_back() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme");
    let (status, view) = app.get(&acme, "/api/v1/retention").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        view,
        json!({"audio_days": null, "calls_days": null, "rejected_uploads_days": null, "versions_kept": null,
               "updated": null, "next_run": null, "last_run": null})
    );
    for (body, field, says) in [
        (json!({"audio_days": 0}), "audio_days", "from 1 to 36500"),
        (json!({"calls_days": -3}), "calls_days", "from 1 to 36500"),
        (json!({"audio_days": 36501}), "audio_days", "from 1 to 36500"),
        (json!({"versions_kept": 0}), "versions_kept", "from 1 to 100000"),
        (json!({"audio_days": "ten"}), "audio_days", "whole number"),
        (
            json!({"rejected_uploads_days": 1.5}),
            "rejected_uploads_days",
            "whole number",
        ),
        (json!({"audio_days": 1e300}), "audio_days", "from 1 to 36500"),
        (json!({"audio_days": [30]}), "audio_days", "whole number"),
    ] {
        let (status, err) = app.put_json(&acme, "/api/v1/retention", body.clone()).await;
        assert_eq!(status, 422, "{body}: {err}");
        assert_eq!(err["errors"][0]["field"], field, "{body}: {err}");
        assert!(error_detail(&err).contains(says), "{body}: {err}");
    }
    let (status, err) = app
        .put_json(&acme, "/api/v1/retention", json!({"audio_dayz": 3}))
        .await;
    assert_eq!(status, 422, "{err}");
    assert!(error_detail(&err).contains("unknown field"), "{err}");
    let r = app
        .http
        .put(app.url("/api/v1/retention"))
        .header("Authorization", format!("Token {}", acme.token))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (_, view) = app.get(&acme, "/api/v1/retention").await;
    assert_eq!(
        view["updated"],
        Value::Null,
        "refused bodies change nothing: {view}"
    );

    let (status, view) = app
        .put_json(
            &acme,
            "/api/v1/retention",
            json!({"audio_days": 30.0, "calls_days": null}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["audio_days"], 30);
    assert_eq!(view["calls_days"], Value::Null);
    assert_eq!(view["versions_kept"], Value::Null);
    assert!(view["updated"].is_string(), "{view}");
    let (_, read) = app.get(&acme, "/api/v1/retention").await;
    assert_eq!(read["audio_days"], 30, "{read}");

    // Only an admin changes it; an analyst reads it.
    let (status, analyst) = app
        .post_json(
            &acme,
            "/api/v1/tokens",
            json!({"name": "reader", "role": "analyst"}),
        )
        .await;
    assert_eq!(status, 201, "{analyst}");
    let reader = Tenant {
        slug: "acme".into(),
        token: analyst["token"].as_str().unwrap().into(),
        password: String::new(),
    };
    let (status, body) = app.put_json(&reader, "/api/v1/retention", json!({})).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = app.get(&reader, "/api/v1/retention").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["audio_days"], 30);
}
