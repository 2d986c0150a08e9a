//! Trace export: `callmeta serve` with `OTEL_EXPORTER_OTLP_ENDPOINT` set
//! posts its use cases' spans to an OTLP/HTTP receiver (a small one in the
//! test, as a collector listens on 4318), in JSON or protobuf as
//! `OTEL_EXPORTER_OTLP_PROTOCOL` says; a protocol it does not speak stops it
//! at start with a clear error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};

use crate::helpers::{eventually, spawn_serve};

/// What the receiver got: each request's content type and body.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(r): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    let kind = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    r.lock().unwrap().push((kind, body));
                    "{}"
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// Creates a tenant with the real CLI on `dir` (the server's data dir);
/// its API token.
fn tenant(dir: &std::path::Path, slug: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callmeta"))
        .args([
            "tenant",
            "create",
            slug,
            "--password",
            "long-enough",
            "--data-dir",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["api_token"].as_str().unwrap().to_string()
}

/// Every span of the JSON exports: (service name, span name, attributes).
fn spans(bodies: &[(String, Bytes)]) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (_, body) in bodies {
        let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_string();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for span in ss["spans"].as_array().into_iter().flatten() {
                    let attributes: serde_json::Map<String, Value> = span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            (
                                a["key"].as_str().unwrap_or_default().to_string(),
                                a["value"].clone(),
                            )
                        })
                        .collect();
                    out.push((
                        service.clone(),
                        span["name"].as_str().unwrap_or_default().to_string(),
                        Value::Object(attributes),
                    ));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn a_calls_spans_reach_the_collector_with_its_tenant() {
    let (collector, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let token = tenant(dir.path(), "acme");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let (mut server, url, _) = spawn_serve(dir.path(), &[], &env);
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/calls"))
        .header("Authorization", format!("Token {token}"))
        .json(&json!({"metadata": {"agent_id": "cindy"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let found = eventually("the call's span exported", Duration::from_secs(20), || {
        let received = received.clone();
        async move {
            let bodies = received.lock().unwrap().clone();
            let spans = spans(&bodies);
            match spans.iter().find(|(_, name, _)| name == "create_call") {
                Some(span) => Ok(span.clone()),
                None => Err(format!(
                    "{} exports, spans: {:?}",
                    bodies.len(),
                    spans.iter().map(|s| &s.1).collect::<Vec<_>>()
                )),
            }
        }
    })
    .await;
    let _ = server.kill();
    let _ = server.wait();
    let (service, _, attributes) = found;
    assert_eq!(service, "callmeta");
    assert!(
        attributes.get("tenant").is_some(),
        "the span names its tenant: {attributes}"
    );
    let kinds: Vec<String> = received.lock().unwrap().iter().map(|(k, _)| k.clone()).collect();
    assert!(
        kinds.iter().all(|k| k.starts_with("application/json")),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn protobuf_is_the_default_protocol() {
    let (collector, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let token = tenant(dir.path(), "acme");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let (mut server, url, _) = spawn_serve(dir.path(), &[], &env);
    let r = reqwest::Client::new()
        .get(format!("{url}/api/v1/calls"))
        .header("Authorization", format!("Token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let kind = eventually("an export", Duration::from_secs(20), || {
        let received = received.clone();
        async move {
            let got = received.lock().unwrap().first().cloned();
            got.map(|(kind, body)| (kind, body.len())).ok_or("nothing yet")
        }
    })
    .await;
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(kind.0, "application/x-protobuf");
    assert!(kind.1 > 0);
}

#[test]
fn a_protocol_it_does_not_speak_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callmeta"))
        .args(["serve", "--http", "127.0.0.1:0", "--ftp", "127.0.0.1:0"])
        .args(["--sftp", "127.0.0.1:0", "--sip", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OTLP/HTTP only") && err.contains("http/protobuf"),
        "{err}"
    );
}
