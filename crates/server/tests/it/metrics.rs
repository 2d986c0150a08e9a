//! Prometheus metrics: `GET /metrics` after a scripted workload, read with
//! the Prometheus text parser of the official Python client
//! (`prometheus_client.parser`); tenant labels past the cap; the endpoint
//! turned off, and served on a listener of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use callmeta::config::Config;
use serde_json::{Value, json};

use crate::helpers::*;

/// The app on the test backend with `edit` applied to its configuration;
/// the database (PostgreSQL) and directory live as long as the test keeps them.
async fn spawn_configured(
    edit: impl FnOnce(&mut Config),
) -> (TestApp, Option<PgDatabase>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    let db = if std::env::var("CALLMETA_TEST_BACKEND").as_deref() == Ok("postgres") {
        let db = PgDatabase::create()
            .await
            .expect("CALLMETA_TEST_BACKEND=postgres needs CALLMETA_TEST_DATABASE_URL");
        config.database = Some(db.url.clone());
        Some(db)
    } else {
        None
    };
    edit(&mut config);
    (TestApp::spawn_with(config).await, db, dir)
}

#[derive(Debug, serde::Deserialize)]
struct Sample {
    /// The family's name and type as the parser saw them.
    family: String,
    #[serde(rename = "type")]
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

/// Whether python3 and `prometheus_client` are there: if not, the calling
/// test is skipped with a line saying so, or fails under
/// `CALLMETA_TEST_CLIENTS=required` (CI, whose `.ci/run` installs them).
fn parser_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import prometheus_client.parser"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let test = std::thread::current().name().unwrap_or("this test").to_string();
        assert!(
            std::env::var("CALLMETA_TEST_CLIENTS").as_deref() != Ok("required"),
            "{test} needs python3 with prometheus_client (pip install prometheus-client); \
             CALLMETA_TEST_CLIENTS=required does not let it be skipped"
        );
        eprintln!(
            "skipping {test}: python3 with prometheus_client is not installed (pip install prometheus-client)"
        );
    }
    ok
}

/// `text` read by the Prometheus text parser; a text it refuses fails the test.
fn parse(text: &str) -> Vec<Sample> {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", PARSER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// The sum of the samples named `name` that carry every label of `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&r.text().await.unwrap())
}

/// A tenant made with the real CLI, with the id the metrics label it by.
fn create_tenant_with_id(app: &TestApp, slug: &str) -> (Tenant, String) {
    let password = format!("{slug}-secret-pw");
    let out = app
        .cli(&["tenant", "create", slug, "--password", &password])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tenant = Tenant {
        slug: slug.into(),
        token: json["api_token"].as_str().unwrap().into(),
        password,
    };
    (tenant, json["tenant_id"].as_str().unwrap().into())
}

/// A webhook endpoint on loopback that answers every POST with `status`.
async fn endpoint_answering(status: u16) -> String {
    let code = axum::http::StatusCode::from_u16(status).unwrap();
    let app = axum::Router::new().route("/hook", axum::routing::post(move || async move { code }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn metrics_count_what_a_workload_did() {
    if !parser_available() {
        return;
    }
    let (app, _db, _dir) = spawn_configured(|c| c.webhooks.allow_private = true).await;
    let (t, tenant_id) = create_tenant_with_id(&app, "metered");
    // Two webhook endpoints: one that takes every event, one that fails.
    for status in [200u16, 500] {
        let url = endpoint_answering(status).await;
        let body = json!({"url": url, "events": ["call.created"], "secret": "s3cret-s3cret"});
        let (code, reply) = app.post_json(&t, "/api/v1/webhooks", body).await;
        assert_eq!(code, 201, "{reply}");
    }
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let (status, body) = app.upload(&t, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201, "{body}");
    let agents = [
        Some("alice"),
        Some("bob"),
        Some("cindy"),
        Some("zed"),
        Some("yann"),
        None,
    ];
    for agent in agents {
        let metadata = match agent {
            Some(a) => json!({"agent_id": a}),
            None => json!({"phonenumber": "+33102030405"}),
        };
        let (status, call) = app
            .post_json(&t, "/api/v1/calls", json!({"metadata": metadata}))
            .await;
        assert_eq!(status, 201, "{call}");
    }
    let (status, _) = app.get(&t, "/api/v1/no/such/route/42").await;
    assert_eq!(status, 404);
    // Each call's event: delivered to one endpoint, to be retried at the other.
    let delivery = |outcome: &'static str| ("outcome", outcome);
    eventually("the deliveries counted", Duration::from_secs(20), || async {
        let samples = scrape(&app).await;
        let got = |o| value(&samples, "callmeta_webhook_deliveries_total", &[delivery(o)]);
        if got("delivered") == 6.0 && got("retrying") == 6.0 {
            Ok(())
        } else {
            Err(format!(
                "delivered {}, retrying {}",
                got("delivered"),
                got("retrying")
            ))
        }
    })
    .await;
    app.clock.advance(Duration::from_secs(120));

    let samples = scrape(&app).await;
    let tenant = tenant_id.as_str();
    assert_eq!(
        value(
            &samples,
            "callmeta_calls_created_total",
            &[("source", "api"), ("tenant", tenant)]
        ),
        6.0
    );
    for (status, n) in [("matched", 3.0), ("no_match", 2.0), ("key_missing", 1.0)] {
        assert_eq!(
            value(
                &samples,
                "callmeta_enrichment_results_total",
                &[("table", "crm"), ("status", status)]
            ),
            n,
            "{status}"
        );
    }
    assert_eq!(
        value(
            &samples,
            "callmeta_uploads_total",
            &[("channel", "http"), ("outcome", "activated")]
        ),
        1.0
    );
    assert_eq!(value(&samples, "callmeta_uploads_total", &[]), 1.0);
    assert_eq!(
        value(&samples, "callmeta_ingest_duration_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "callmeta_active_version_age_seconds",
            &[("tenant", tenant), ("table", "crm")]
        ),
        120.0
    );
    let calls = [("route", "/api/v1/calls"), ("method", "POST"), ("status", "201")];
    assert_eq!(value(&samples, "callmeta_http_requests_total", &calls), 6.0);
    let upload = [
        ("route", "/api/v1/tables/{name}/data"),
        ("method", "PUT"),
        ("status", "201"),
    ];
    assert_eq!(value(&samples, "callmeta_http_requests_total", &upload), 1.0);
    assert_eq!(
        value(
            &samples,
            "callmeta_http_request_duration_seconds_count",
            &[("route", "/api/v1/calls")]
        ),
        6.0
    );
    // Routes are labelled by their template, never by the raw path.
    for s in samples.iter().filter(|s| s.labels.contains_key("route")) {
        let route = &s.labels["route"];
        assert!(
            !route.contains("crm") && !route.contains("42"),
            "a raw path as a label: {s:?}"
        );
    }
    assert_eq!(value(&samples, "callmeta_jobs", &[("kind", "ingest")]), 0.0);
    assert_eq!(value(&samples, "callmeta_sip_calls_in_progress", &[]), 0.0);
    assert_eq!(value(&samples, "callmeta_rtp_packets_received_total", &[]), 0.0);
    assert_eq!(value(&samples, "callmeta_rtp_packets_lost_total", &[]), 0.0);
    // The parser reads them as the types they are.
    let kind = |family: &str| {
        samples
            .iter()
            .find(|s| s.family == family)
            .map(|s| s.kind.clone())
            .unwrap_or_default()
    };
    assert_eq!(kind("callmeta_calls_created"), "counter");
    assert_eq!(kind("callmeta_ingest_duration_seconds"), "histogram");
    assert_eq!(kind("callmeta_http_request_duration_seconds"), "histogram");
    assert_eq!(kind("callmeta_jobs"), "gauge");
    app.stop().await;
}

#[tokio::test]
async fn tenants_past_the_label_cap_count_as_other() {
    if !parser_available() {
        return;
    }
    let (app, _db, _dir) = spawn_configured(|c| c.metrics.tenant_label_cap = 1).await;
    let (first, first_id) = create_tenant_with_id(&app, "first");
    let (second, _) = create_tenant_with_id(&app, "second");
    for t in [&first, &second, &second] {
        app.create_table(t, "crm", json!({"key": "agent_id"})).await;
        let (status, body) = app
            .post_json(t, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let samples = scrape(&app).await;
    let created: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "callmeta_calls_created_total")
        .collect();
    assert_eq!(created.len(), 2, "{created:?}");
    assert_eq!(
        value(
            &samples,
            "callmeta_calls_created_total",
            &[("tenant", first_id.as_str())]
        ),
        1.0
    );
    assert_eq!(
        value(&samples, "callmeta_calls_created_total", &[("tenant", "other")]),
        2.0
    );
    // The unlabelled tenant's tables are not named either.
    assert_eq!(
        value(
            &samples,
            "callmeta_enrichment_results_total",
            &[("table", "other")]
        ),
        2.0
    );
    assert_eq!(
        value(&samples, "callmeta_enrichment_results_total", &[("table", "crm")]),
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn metrics_can_be_turned_off_and_served_on_their_own_listener() {
    let (app, _db, _dir) = spawn_configured(|c| {
        c.metrics.enabled = false;
        c.metrics.listen = Some("127.0.0.1:0".into());
    })
    .await;
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let own = app.metrics.expect("the metrics listener");
    let r = app
        .http
        .get(format!("http://{own}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("callmeta_jobs{kind=\"ingest\"} 0"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn serve_with_the_metrics_flag_serves_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_callmeta"))
        .args(["serve", "--http", "127.0.0.1:0", "--ftp", "127.0.0.1:0"])
        .args(["--sftp", "127.0.0.1:0", "--sip", "127.0.0.1:0"])
        .args(["--metrics", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("CALLMETA_DATABASE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("metrics="))
        .map(str::to_string);
    let fetched = match &url {
        Some(url) => reqwest::get(url.as_str()).await.map(|r| r.status().as_u16()),
        None => Ok(0),
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(url.is_some(), "no metrics address in {line:?}");
    assert_eq!(fetched.unwrap(), 200, "{line}");
}
