//! Webhooks: endpoints added through the API, events delivered signed to a
//! real HTTP receiver on loopback that checks the signature as a customer
//! does (`openssl dgst -sha256 -hmac SECRET` over `timestamp.body`), fails
//! when told to, and records what it got.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use callmeta::config::Config;
use serde_json::{Value, json};

use crate::helpers::{Tenant, TestApp, error_detail, eventually};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    delivery: String,
    event: String,
    body: Value,
    /// Whether `X-Callmeta-Signature` matched, as openssl computes it.
    signed: bool,
    /// What the receiver answered.
    answered: u16,
    at: Instant,
}

#[derive(Default)]
struct ReceiverState {
    secret: String,
    /// Requests still to answer 500.
    fail: usize,
    /// Requests still to leave unanswered (until the sender gives up).
    hang: usize,
    got: Vec<Received>,
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    /// A receiver on loopback that answers 500 to its first `fail` requests.
    async fn start(secret: &str, fail: usize) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState {
            secret: secret.into(),
            fail,
            hang: 0,
            got: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Received> {
        self.state.lock().unwrap().got.clone()
    }

    /// The event ids it acknowledged (2xx), each once.
    fn acknowledged(&self) -> BTreeSet<String> {
        self.got()
            .into_iter()
            .filter(|r| r.answered == 200)
            .map(|r| r.delivery)
            .collect()
    }
}

/// `HMAC-SHA256(secret, timestamp + "." + body)` in hex, by openssl.
async fn openssl_hmac(secret: &str, signed: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(signed).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // `SHA2-256(stdin)= 1698a5...`
    text.trim().rsplit(' ').next().unwrap_or_default().to_string()
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let timestamp = header("x-callmeta-timestamp");
    let secret = state.lock().unwrap().secret.clone();
    let mut signed = timestamp.clone().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(&body);
    let expected = format!("sha256={}", openssl_hmac(&secret, &signed).await);
    // As a customer would: a recent timestamp and the right signature.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let recent = timestamp.parse::<i64>().is_ok_and(|t| (now - t).abs() < 300);
    let signed = recent && header("x-callmeta-signature") == expected;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let hang = {
        let mut s = state.lock().unwrap();
        let hang = s.hang > 0;
        if hang {
            s.hang -= 1;
            s.got.push(Received {
                delivery: header("x-callmeta-delivery"),
                event: body["event"].as_str().unwrap_or_default().to_string(),
                body: body.clone(),
                signed,
                answered: 0,
                at,
            });
        }
        hang
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(60)).await;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let mut s = state.lock().unwrap();
    let answered = if s.fail > 0 {
        s.fail -= 1;
        500
    } else {
        200
    };
    s.got.push(Received {
        delivery: header("x-callmeta-delivery"),
        event: body["event"].as_str().unwrap_or_default().to_string(),
        body,
        signed,
        answered,
        at,
    });
    StatusCode::from_u16(answered).unwrap()
}

/// The app on either backend, private destinations allowed (the receiver
/// is on loopback), retries after 5 s then 10 s (with jitter: at most).
async fn spawn() -> TestApp {
    TestApp::spawn_configured(|c: &mut Config| {
        c.webhooks.allow_private = true;
        c.webhooks.first_retry_secs = 5;
    })
    .await
}

async fn add_endpoint(app: &TestApp, t: &Tenant, url: &str, events: &[&str], secret: &str) -> String {
    let (status, body) = app
        .post_json(
            t,
            "/api/v1/webhooks",
            json!({"url": url, "events": events, "secret": secret}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(body.get("secret").is_none(), "the secret is write-only: {body}");
    body["id"].as_str().unwrap().to_string()
}

async fn create_call(app: &TestApp, t: &Tenant, agent: &str) -> Value {
    let (status, call) = app
        .post_json(t, "/api/v1/calls", json!({"metadata": {"agent_id": agent}}))
        .await;
    assert_eq!(status, 201, "{call}");
    call
}

async fn deliveries(app: &TestApp, t: &Tenant, id: &str) -> Vec<Value> {
    let (status, list) = app.get(t, &format!("/api/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_created_call_is_delivered_signed_within_a_second() {
    let app = spawn().await;
    let t = app.create_tenant("hooked");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    app.upload(&t, "crm", crate::helpers::SPEC_TABLE).await;
    let receiver = Receiver::start("whsec-0123", 0).await;
    let id = add_endpoint(&app, &t, &receiver.url(), &["call.created"], "whsec-0123").await;
    let (_, list) = app.get(&t, "/api/v1/webhooks").await;
    assert_eq!(list["data"][0]["id"], id.as_str(), "{list}");
    assert_eq!(list["data"][0]["url"], receiver.url(), "{list}");
    assert_eq!(list["data"][0]["events"], json!(["call.created"]), "{list}");
    assert!(list["data"][0].get("secret").is_none(), "{list}");

    let mut latencies = Vec::new();
    for agent in ["cindy", "alice", "erin"] {
        let sent = Instant::now();
        let call = create_call(&app, &t, agent).await;
        let unique_id = call["unique_id"].as_str().unwrap().to_string();
        let got = eventually("the call.created delivery", Duration::from_secs(1), || {
            let got = receiver.got();
            let unique_id = unique_id.clone();
            async move {
                got.into_iter()
                    .find(|r| r.body["data"]["unique_id"] == unique_id.as_str())
                    .ok_or("not yet")
            }
        })
        .await;
        latencies.push(got.at.duration_since(sent));
        assert!(got.signed, "the signature verifies: {got:?}");
        assert_eq!(got.event, "call.created");
        assert_eq!(
            got.body["id"],
            got.delivery.as_str(),
            "X-Callmeta-Delivery is the event id"
        );
        assert!(got.body["created"].is_string(), "{:?}", got.body);
        // The data is the call as the API shows it, enriched.
        let (_, shown) = app.get(&t, &format!("/api/v1/calls/{unique_id}")).await;
        assert_eq!(got.body["data"], shown);
        assert_eq!(got.body["data"], call);
    }
    eprintln!("call.created delivered after {latencies:?}");
    assert_eq!(receiver.got()[0].body["data"]["metadata"]["team_name"], "diamond");

    // The delivery list shows each attempt.
    let attempts = eventually("three attempts listed", Duration::from_secs(2), || {
        let app = &app;
        let t = &t;
        let id = id.clone();
        async move {
            let list = deliveries(app, t, &id).await;
            if list.len() == 3 {
                Ok(list)
            } else {
                Err(format!("{list:?}"))
            }
        }
    })
    .await;
    for a in &attempts {
        assert_eq!(a["status_code"], 200, "{a}");
        assert_eq!(a["event"], "call.created", "{a}");
        assert_eq!(a["attempt"], 1, "{a}");
        assert!(a["error"].is_null(), "{a}");
        assert!(a["latency_ms"].is_u64(), "{a}");
        assert!(a["time"].is_string(), "{a}");
    }

    // Removed: no longer listed, then 404.
    let r = app
        .http
        .delete(app.url(&format!("/api/v1/webhooks/{id}")))
        .header("Authorization", format!("Token {}", t.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app
        .http
        .delete(app.url(&format!("/api/v1/webhooks/{id}")))
        .header("Authorization", format!("Token {}", t.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (status, _) = app.get(&t, &format!("/api/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(status, 404);
    let (_, list) = app.get(&t, "/api/v1/webhooks").await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff_and_every_event_arrives() {
    let app = spawn().await;
    let t = app.create_tenant("flaky");
    // The first four requests fail: two calls' first and second attempts.
    let receiver = Receiver::start("s3cret", 4).await;
    let id = add_endpoint(&app, &t, &receiver.url(), &["call.created"], "s3cret").await;
    let mut expected = BTreeSet::new();
    for agent in ["a1", "a2"] {
        let call = create_call(&app, &t, agent).await;
        expected.insert(call["unique_id"].as_str().unwrap().to_string());
    }
    // Waits for `n` attempts in the delivery list: an attempt is listed
    // once its next attempt is scheduled, so the clock moves after that.
    let wait_for = |n: usize| {
        let (app, t, id) = (&app, &t, id.clone());
        async move {
            eventually(&format!("{n} attempts"), Duration::from_secs(5), || {
                let id = id.clone();
                async move {
                    let seen = deliveries(app, t, &id).await.len();
                    if seen >= n {
                        Ok(())
                    } else {
                        Err(format!("{seen} attempts"))
                    }
                }
            })
            .await
        }
    };
    wait_for(2).await;
    // Not retried before the backoff: the clock moves past it (5 s at most).
    app.clock.advance(Duration::from_millis(5_001));
    wait_for(4).await;
    app.clock.advance(Duration::from_millis(10_001));
    wait_for(6).await;

    let got = receiver.got();
    assert_eq!(got.len(), 6, "{got:?}");
    assert!(got.iter().all(|r| r.signed), "{got:?}");
    // Each event kept its id on every attempt: three requests per id.
    let ids: BTreeSet<String> = got.iter().map(|r| r.delivery.clone()).collect();
    assert_eq!(ids.len(), 2, "{got:?}");
    for id in &ids {
        let attempts: Vec<&Received> = got.iter().filter(|r| &r.delivery == id).collect();
        assert_eq!(attempts.len(), 3, "{got:?}");
        assert!(
            attempts.windows(2).all(|w| w[0].body == w[1].body),
            "the same body each time"
        );
    }
    assert_eq!(receiver.acknowledged(), ids);
    let calls: BTreeSet<String> = got
        .iter()
        .map(|r| r.body["data"]["unique_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(calls, expected);

    // The list shows two failed attempts then a delivered one per event.
    let attempts = eventually("six attempts listed", Duration::from_secs(2), || {
        let (app, t, id) = (&app, &t, id.clone());
        async move {
            let list = deliveries(app, t, &id).await;
            if list.len() == 6 {
                Ok(list)
            } else {
                Err(format!("{list:?}"))
            }
        }
    })
    .await;
    for event in &ids {
        let mut of_event: Vec<&Value> = attempts
            .iter()
            .filter(|a| a["event_id"] == event.as_str())
            .collect();
        of_event.sort_by_key(|a| a["attempt"].as_i64());
        let seen: Vec<(i64, i64)> = of_event
            .iter()
            .map(|a| (a["attempt"].as_i64().unwrap(), a["status_code"].as_i64().unwrap()))
            .collect();
        assert_eq!(seen, vec![(1, 500), (2, 500), (3, 200)], "{attempts:?}");
        assert!(
            of_event[0]["error"].as_str().unwrap().contains("500"),
            "{:?}",
            of_event[0]
        );
        assert!(of_event[2]["error"].is_null());
    }

    // Nothing more comes: every event was acknowledged.
    app.clock.advance(Duration::from_secs(3600));
    let more = create_call(&app, &t, "a3").await;
    let unique_id = more["unique_id"].as_str().unwrap().to_string();
    eventually("the next call", Duration::from_secs(1), || {
        let got = receiver.got();
        let unique_id = unique_id.clone();
        async move {
            got.iter()
                .any(|r| r.body["data"]["unique_id"] == unique_id.as_str())
                .then_some(())
                .ok_or("not yet")
        }
    })
    .await;
    assert_eq!(receiver.got().len(), 7, "{:?}", receiver.got());
}

#[tokio::test]
async fn events_reach_only_their_tenants_endpoints() {
    let app = spawn().await;
    let a = app.create_tenant("alpha");
    let b = app.create_tenant("beta");
    let to_a = Receiver::start("secret-a", 0).await;
    let to_b = Receiver::start("secret-b", 0).await;
    let a_id = add_endpoint(
        &app,
        &a,
        &to_a.url(),
        &[
            "call.created",
            "table.version.activated",
            "table.version.rejected",
            "call.updated",
        ],
        "secret-a",
    )
    .await;
    add_endpoint(
        &app,
        &b,
        &to_b.url(),
        &[
            "call.created",
            "table.version.activated",
            "table.version.rejected",
            "call.updated",
        ],
        "secret-b",
    )
    .await;

    app.create_table(&a, "crm", json!({"key": "agent_id"})).await;
    let (status, first) = app.upload(&a, "crm", crate::helpers::SPEC_TABLE).await;
    assert_eq!(status, 201);
    let (status, rejected) = app.upload(&a, "crm", "team_name\nonly\n").await;
    assert_eq!(status, 422, "{rejected}");
    let call = create_call(&app, &a, "erin").await;
    // A new version and a back-fill update the call.
    app.upload(&a, "crm", "agent_id,team_name\nerin,topaz\n").await;
    let (status, done) = app
        .post_json(&a, "/api/v1/backfill", json!({"dry_run": false}))
        .await;
    assert_eq!(status, 200, "{done}");
    // A rollback is an activation too.
    let first_id = first["version"]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/tables/crm/versions/{first_id}/activate");
    let (status, body) = app.post_json(&a, &path, json!({})).await;
    assert_eq!(status, 200, "{body}");

    let got = eventually("tenant A's six events", Duration::from_secs(2), || {
        let got = to_a.got();
        async move {
            if got.len() >= 6 {
                Ok(got)
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await;
    // Deliveries run side by side: they may arrive in any order.
    let mut events: Vec<&str> = got.iter().map(|r| r.event.as_str()).collect();
    events.sort();
    assert_eq!(
        events,
        [
            "call.created",
            "call.updated",
            "table.version.activated",
            "table.version.activated",
            "table.version.activated",
            "table.version.rejected",
        ]
    );
    let first_activations = got
        .iter()
        .filter(|r| r.body["data"]["id"] == first_id.as_str())
        .count();
    assert_eq!(
        first_activations, 2,
        "the first version, activated twice: {got:?}"
    );
    assert!(got.iter().all(|r| r.signed));
    let of = |event: &str| got.iter().find(|r| r.event == event).unwrap().body["data"].clone();
    let activated = of("table.version.activated");
    assert_eq!(activated["table"], "crm");
    assert!(
        activated["state"] == "active" || activated["state"] == "inactive",
        "{activated}"
    );
    let rejected_data = of("table.version.rejected");
    assert_eq!(rejected_data["state"], "rejected");
    assert_eq!(
        rejected_data["report"], rejected["version"]["report"],
        "{rejected}"
    );
    assert_eq!(rejected_data["id"], rejected["version"]["id"], "{rejected}");
    assert_eq!(of("call.created")["unique_id"], call["unique_id"]);
    let updated = of("call.updated");
    assert_eq!(updated["unique_id"], call["unique_id"]);
    assert_eq!(updated["metadata"]["team_name"], "topaz");

    // Tenant B's endpoint got nothing of A's, and cannot see A's endpoint.
    assert!(to_b.got().is_empty(), "{:?}", to_b.got());
    let (_, list) = app.get(&b, "/api/v1/webhooks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_ne!(list["data"][0]["id"], a_id.as_str());
    let (status, _) = app.get(&b, &format!("/api/v1/webhooks/{a_id}/deliveries")).await;
    assert_eq!(status, 404);
    let r = app
        .http
        .delete(app.url(&format!("/api/v1/webhooks/{a_id}")))
        .header("Authorization", format!("Token {}", b.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (_, list) = app.get(&a, "/api/v1/webhooks").await;
    assert_eq!(list["data"][0]["id"], a_id.as_str());
}

#[tokio::test]
async fn bad_endpoints_and_private_destinations_are_refused() {
    let app = TestApp::spawn_configured(|c: &mut Config| {
        c.webhooks.allow_private = false;
        c.webhooks.max_endpoints_per_tenant = 2;
    })
    .await;
    let t = app.create_tenant("careful");
    let post = |body: Value| {
        let (app, t) = (&app, &t);
        async move { app.post_json(t, "/api/v1/webhooks", body).await }
    };
    let ok = json!({"url": "https://hooks.example.com/in", "events": ["call.created"], "secret": "x"});
    for (field, value, says) in [
        ("url", json!("http://127.0.0.1:9/hook"), "allow_private"),
        ("url", json!("http://localhost:9/hook"), "allow_private"),
        ("url", json!("http://[::1]/hook"), "allow_private"),
        (
            "url",
            json!("http://169.254.169.254/latest/meta-data"),
            "allow_private",
        ),
        ("url", json!("http://10.0.0.8/hook"), "allow_private"),
        ("url", json!("ftp://hooks.example.com/in"), "http or https"),
        ("url", json!("file:///etc/passwd"), "http or https"),
        ("url", json!("not a url"), "valid absolute URL"),
        ("events", json!(["call.deleted"]), "unknown event"),
        ("events", json!([]), "at least one"),
        ("secret", json!(""), "1 to 256"),
    ] {
        let mut body = ok.clone();
        body[field] = value.clone();
        let (status, json) = post(body).await;
        assert_eq!(status, 422, "{field} {value}: {json}");
        assert_eq!(json["errors"][0]["field"], field, "{json}");
        assert!(error_detail(&json).contains(says), "{field} {value}: {json}");
    }
    let (status, json) = post(json!({"url": "https://hooks.example.com/in"})).await;
    assert_eq!(status, 422, "{json}");
    assert!(error_detail(&json).contains("missing field `events`"), "{json}");
    let r = app
        .http
        .post(app.url("/api/v1/webhooks"))
        .header("Authorization", format!("Token {}", t.token))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // At most two endpoints here, and the error says so.
    for _ in 0..2 {
        let (status, json) = post(ok.clone()).await;
        assert_eq!(status, 201, "{json}");
    }
    let (status, json) = post(ok.clone()).await;
    assert_eq!(status, 400, "{json}");
    assert!(
        error_detail(&json).contains("at most 2 webhook endpoints"),
        "{json}"
    );

    // Without a token, nothing.
    let r = app.http.get(app.url("/api/v1/webhooks")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// The job lease of the two nodes below.
const LEASE_MS: u64 = 1_500;

#[tokio::test]
async fn a_delivery_left_by_a_stopped_node_is_finished_by_the_other() {
    use callmeta_app::clock::Clock;
    let Some(db) = crate::helpers::PgDatabase::create().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    let shared = tempfile::tempdir().unwrap();
    let node = |name: &str| {
        let mut config = crate::helpers::test_config(&shared.path().join(name));
        config.database = Some(db.url.clone());
        config.blobs = Some(format!("file://{}", shared.path().join("blobs").display()));
        config.job_lease_ms = LEASE_MS;
        config.webhooks.allow_private = true;
        config.webhooks.first_retry_secs = 5;
        config
    };
    let a = TestApp::spawn_with(node("a")).await;
    let b = TestApp::spawn_with(node("b")).await;
    let t = a.create_tenant("nodes");
    // The first attempt fails: node A gives the delivery back, due in 5 s at most.
    let receiver = Receiver::start("shared-secret", 1).await;
    let id = add_endpoint(&a, &t, &receiver.url(), &["call.created"], "shared-secret").await;
    let call = create_call(&a, &t, "n1").await;
    eventually("the first attempt listed", Duration::from_secs(2), || {
        let (a, t, id) = (&a, &t, id.clone());
        async move {
            let seen = deliveries(a, t, &id).await.len();
            if seen == 1 {
                Ok(())
            } else {
                Err(format!("{seen} attempts"))
            }
        }
    })
    .await;
    let a_now = a.clock.now_ms();
    a.stop().await;

    // Node B retries it once due on its clock, and it arrives.
    b.clock.advance_to(a_now + 5_001 + LEASE_MS as i64);
    let got = eventually("the retry from node B", Duration::from_secs(3), || {
        let receiver = receiver.clone();
        async move {
            let got = receiver.got();
            if got.len() >= 2 {
                Ok(got)
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0].delivery, got[1].delivery,
        "the same event id on both attempts"
    );
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(got[1].answered, 200);
    assert!(got.iter().all(|r| r.signed), "{got:?}");
    assert_eq!(got[1].body["data"]["unique_id"], call["unique_id"]);
    let attempts = eventually("both attempts listed", Duration::from_secs(2), || {
        let (b, t, id) = (&b, &t, id.clone());
        async move {
            let list = deliveries(b, t, &id).await;
            if list.len() == 2 {
                Ok(list)
            } else {
                Err(format!("{list:?}"))
            }
        }
    })
    .await;
    let codes: Vec<(i64, i64)> = attempts
        .iter()
        .map(|a| (a["attempt"].as_i64().unwrap(), a["status_code"].as_i64().unwrap()))
        .collect();
    assert_eq!(codes, vec![(2, 200), (1, 500)], "{attempts:?}");
    b.stop().await;
}

/// A client that keeps no cookies and follows no redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in to the web app: the session cookie and the CSRF token of its forms.
pub(crate) async fn web_session(app: &TestApp, t: &Tenant) -> (String, String) {
    let r = browser()
        .post(app.url("/login"))
        .form(&[
            ("tenant", t.slug.as_str()),
            ("password", t.password.as_str()),
            ("next", "/webhooks"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (_, page) = web_page(app, &cookie, "/webhooks").await;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("forms carry the CSRF token")
        .to_string();
    (cookie, csrf)
}

pub(crate) async fn web_page(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let r = browser()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub(crate) async fn web_post(
    app: &TestApp,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let r = browser()
        .post(app.url(path))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn the_web_page_adds_tests_and_removes_endpoints() {
    let app = spawn().await;
    let t = app.create_tenant("webby");
    let other = app.create_tenant("other");
    let receiver = Receiver::start("page-secret", 0).await;
    let (cookie, csrf) = web_session(&app, &t).await;
    let url = receiver.url();

    // Forms without the session's token change nothing.
    let add = |csrf: &str| {
        vec![
            ("csrf", csrf.to_string()),
            ("url", url.clone()),
            ("secret", "page-secret".to_string()),
            ("events", "call.created".to_string()),
            ("events", "call.updated".to_string()),
        ]
    };
    let form = add("forged");
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(web_post(&app, &cookie, "/webhooks", &pairs).await.0, 403);
    let form = add(&csrf);
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(web_post(&app, &cookie, "/webhooks", &pairs).await.0, 303);
    let (_, list) = app.get(&t, "/api/v1/webhooks").await;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list["data"][0]["events"], json!(["call.created", "call.updated"]));

    // A refused endpoint is shown on the page with the reason.
    let (status, page) = web_post(
        &app,
        &cookie,
        "/webhooks",
        &[
            ("csrf", &csrf),
            ("url", "gopher://x"),
            ("secret", "s"),
            ("events", "call.created"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("http or https"), "{page}");

    // The test event arrives, signed, and its attempt is shown.
    let path = format!("/webhooks/{id}/test");
    assert_eq!(web_post(&app, &cookie, &path, &[("csrf", "forged")]).await.0, 403);
    assert_eq!(web_post(&app, &cookie, &path, &[("csrf", &csrf)]).await.0, 303);
    let got = eventually("the test event", Duration::from_secs(1), || {
        let got = receiver.got();
        async move { got.first().cloned().ok_or("not yet") }
    })
    .await;
    assert_eq!(got.event, "ping");
    assert!(got.signed);
    let page = eventually("the attempt on the page", Duration::from_secs(2), || {
        let (app, cookie) = (&app, &cookie);
        async move {
            let (_, page) = web_page(app, cookie, "/webhooks").await;
            if page.contains("ping") && page.contains(">200<") {
                Ok(page)
            } else {
                Err(page)
            }
        }
    })
    .await;
    assert!(page.contains(&url), "{page}");
    assert!(!page.contains("page-secret"), "the secret is never shown");

    // Another tenant can neither test nor remove it.
    let (other_cookie, other_csrf) = web_session(&app, &other).await;
    let (_, other_page) = web_page(&app, &other_cookie, "/webhooks").await;
    assert!(!other_page.contains(&url));
    assert_eq!(
        web_post(&app, &other_cookie, &path, &[("csrf", &other_csrf)])
            .await
            .0,
        404
    );
    let remove = format!("/webhooks/{id}/delete");
    assert_eq!(
        web_post(&app, &other_cookie, &remove, &[("csrf", &other_csrf)])
            .await
            .0,
        404
    );

    assert_eq!(
        web_post(&app, &cookie, &remove, &[("csrf", "forged")]).await.0,
        403
    );
    assert_eq!(web_post(&app, &cookie, &remove, &[("csrf", &csrf)]).await.0, 303);
    let (_, list) = app.get(&t, "/api/v1/webhooks").await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn a_siprec_call_is_told_when_created_updated_and_its_audio_stored() {
    use crate::siprec::{free_udp_port, have_sipp, sipp, sipp_failure, tone_file};
    if !have_sipp() {
        return;
    }
    let app = spawn().await;
    let t = app.create_tenant("acme");
    app.register_sbc(&t, "127.0.0.1");
    let receiver = Receiver::start("sip-secret", 0).await;
    add_endpoint(
        &app,
        &t,
        &receiver.url(),
        &["call.created", "call.updated", "call.audio_available"],
        "sip-secret",
    )
    .await;
    // A vendor's call whose UPDATE brings new metadata mid-call.
    let dir = tempfile::tempdir().unwrap();
    tone_file(dir.path());
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/avaya-sbce-2.xml");
    let out = sipp(&scenario, app.sip, "u1", dir.path(), free_udp_port() & !1).await;
    assert!(out.status.success(), "{}", sipp_failure(&out, dir.path()));

    let got = eventually("the three kinds of events", Duration::from_secs(2), || {
        let got = receiver.got();
        async move {
            let has = |e: &str| got.iter().any(|r| r.event == e);
            if has("call.created") && has("call.updated") && has("call.audio_available") {
                Ok(got)
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await;
    assert!(got.iter().all(|r| r.signed));
    let of = |event: &str| got.iter().find(|r| r.event == event).unwrap().body["data"].clone();
    let (created, updated, audio) = (of("call.created"), of("call.updated"), of("call.audio_available"));
    assert_eq!(created["source"], "siprec");
    assert_eq!(created["audio_state"], "missing");
    assert_eq!(updated["unique_id"], created["unique_id"]);
    assert_ne!(
        updated["own_metadata"], created["own_metadata"],
        "the UPDATE's metadata"
    );
    assert_eq!(audio["unique_id"], created["unique_id"]);
    assert_eq!(audio["audio_state"], "available");
    let id = audio["unique_id"].as_str().unwrap();
    let (_, shown) = app.get(&t, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(audio, shown);
}

#[tokio::test]
async fn a_node_stopped_mid_attempt_leaves_the_delivery_to_the_other() {
    use callmeta_app::clock::Clock;
    let Some(db) = crate::helpers::PgDatabase::create().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    let shared = tempfile::tempdir().unwrap();
    let node = |name: &str| {
        let mut config = crate::helpers::test_config(&shared.path().join(name));
        config.database = Some(db.url.clone());
        config.blobs = Some(format!("file://{}", shared.path().join("blobs").display()));
        config.job_lease_ms = LEASE_MS;
        config.webhooks.allow_private = true;
        config
    };
    let a = TestApp::spawn_with(node("a")).await;
    let t = a.create_tenant("midway");
    let receiver = Receiver::start("mid-secret", 0).await;
    receiver.state.lock().unwrap().hang = 1;
    let id = add_endpoint(&a, &t, &receiver.url(), &["call.created"], "mid-secret").await;
    // Node B starts once node A holds the delivery, so that A makes the attempt.
    let call = create_call(&a, &t, "m1").await;
    eventually("node A's attempt under way", Duration::from_secs(2), || {
        let n = receiver.got().len();
        async move {
            if n == 1 {
                Ok(())
            } else {
                Err(format!("{n} requests"))
            }
        }
    })
    .await;
    let b = TestApp::spawn_with(node("b")).await;
    let a_now = a.clock.now_ms();
    a.stop().await;

    // Node A's lease runs out on node B's clock: B claims it and delivers.
    b.clock
        .advance_to(a_now.max(b.clock.now_ms()) + LEASE_MS as i64 + 1);
    let got = eventually("the delivery from node B", Duration::from_secs(3), || {
        let receiver = receiver.clone();
        async move {
            let got = receiver.got();
            if got.iter().any(|r| r.answered == 200) {
                Ok(got)
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].delivery, got[1].delivery, "the same event id");
    assert_eq!(got[1].body["data"]["unique_id"], call["unique_id"]);
    assert!(got[1].signed);
    let attempts = eventually("the attempt listed", Duration::from_secs(2), || {
        let (b, t, id) = (&b, &t, id.clone());
        async move {
            let list = deliveries(b, t, &id).await;
            if list.is_empty() {
                Err("none".to_string())
            } else {
                Ok(list)
            }
        }
    })
    .await;
    // Node A never finished its attempt: only B's is recorded, as the second.
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["attempt"], 2, "{attempts:?}");
    assert_eq!(attempts[0]["status_code"], 200, "{attempts:?}");
    b.stop().await;
}

#[tokio::test]
async fn events_beyond_the_pending_bound_are_not_recorded_and_the_list_says_so() {
    let app = TestApp::spawn_configured(|c: &mut Config| {
        c.webhooks.allow_private = true;
        c.webhooks.max_pending_per_tenant = 1;
    })
    .await;
    let t = app.create_tenant("bounded");
    // Failing: the first event's delivery stays pending.
    let receiver = Receiver::start("b-secret", 1_000).await;
    let id = add_endpoint(&app, &t, &receiver.url(), &["call.created"], "b-secret").await;
    create_call(&app, &t, "b1").await;
    // The second event finds one delivery pending, the bound: it is not
    // recorded, and the endpoint's list says why.
    let call = create_call(&app, &t, "b2").await;
    assert_eq!(call["metadata"]["agent_id"], "b2", "the call itself is created");
    let attempts = eventually("the note and the first attempt", Duration::from_secs(2), || {
        let (app, t, id) = (&app, &t, id.clone());
        async move {
            let list = deliveries(app, t, &id).await;
            if list.len() >= 2 {
                Ok(list)
            } else {
                Err(format!("{list:?}"))
            }
        }
    })
    .await;
    let note = attempts
        .iter()
        .find(|a| a["attempt"] == 0)
        .unwrap_or_else(|| panic!("{attempts:?}"));
    let error = note["error"].as_str().unwrap();
    assert!(error.contains("events not recorded"), "{note}");
    assert!(error.contains("the most a tenant may have is 1"), "{note}");
    let got = receiver.got();
    assert!(
        got.iter().all(|r| r.body["data"]["metadata"]["agent_id"] == "b1"),
        "only the first event is delivered: {got:?}"
    );

    // Removing the endpoint removes its pending delivery: a new endpoint's
    // events are recorded again.
    let r = app
        .http
        .delete(app.url(&format!("/api/v1/webhooks/{id}")))
        .header("Authorization", format!("Token {}", t.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let healthy = Receiver::start("b-secret", 0).await;
    add_endpoint(&app, &t, &healthy.url(), &["call.created"], "b-secret").await;
    let call = create_call(&app, &t, "b3").await;
    eventually("the next event, delivered", Duration::from_secs(1), || {
        let got = healthy.got();
        let unique_id = call["unique_id"].clone();
        async move {
            got.iter()
                .any(|r| r.body["data"]["unique_id"] == unique_id)
                .then_some(())
                .ok_or("not yet")
        }
    })
    .await;
}

#[tokio::test]
async fn an_erased_calls_waiting_deliveries_are_dropped() {
    let app = spawn().await;
    let t = app.create_tenant("forgetful");
    // The first two requests fail: both calls' first attempts.
    let receiver = Receiver::start("s3cret", 2).await;
    let id = add_endpoint(
        &app,
        &t,
        &receiver.url(),
        &["call.created", "call.erased"],
        "s3cret",
    )
    .await;
    let erased = create_call(&app, &t, "erased").await["unique_id"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = create_call(&app, &t, "kept").await["unique_id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("both first attempts failed", Duration::from_secs(5), || async {
        let seen = deliveries(&app, &t, &id).await.len();
        if seen >= 2 {
            Ok(())
        } else {
            Err(format!("{seen} attempts"))
        }
    })
    .await;
    let r = app
        .http
        .delete(app.url(&format!("/api/v1/calls/{erased}")))
        .header("Authorization", format!("Token {}", t.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Past every backoff: the kept call's retry arrives, the erased one's
    // does not.
    app.clock.advance(Duration::from_secs(3600));
    eventually("the kept call's retry", Duration::from_secs(5), || async {
        let ok = receiver
            .got()
            .iter()
            .any(|r| r.answered == 200 && r.body["data"]["unique_id"] == kept);
        if ok {
            Ok(())
        } else {
            Err(format!("{:?}", receiver.got().len()))
        }
    })
    .await;
    app.clock.advance(Duration::from_secs(3600));
    // Another event after it, delivered at once: anything still queued
    // before it would have been claimed first.
    let last = create_call(&app, &t, "last").await["unique_id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("the last call's delivery", Duration::from_secs(5), || async {
        let ok = receiver.got().iter().any(|r| r.body["data"]["unique_id"] == last);
        if ok { Ok(()) } else { Err("not yet".to_string()) }
    })
    .await;
    let about_erased: Vec<(String, u16)> = receiver
        .got()
        .iter()
        .filter(|r| r.body["data"]["unique_id"] == erased)
        .map(|r| (r.event.clone(), r.answered))
        .collect();
    assert_eq!(
        about_erased,
        vec![
            ("call.created".to_string(), 500),
            ("call.erased".to_string(), 200)
        ],
        "only the attempt made before the erasure, then the erasure itself"
    );
    let told = receiver
        .got()
        .into_iter()
        .find(|r| r.event == "call.erased")
        .unwrap();
    assert_eq!(told.body["data"], json!({"unique_id": erased}), "its id only");
    app.stop().await;
}

/// Runs statements on the app's database, as an operator would.
async fn run_sql(app: &TestApp, sqlite: &str, postgres: &str) {
    use sqlx::Connection;
    match &app.database {
        Some(url) => {
            let mut db = sqlx::postgres::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(postgres.to_string()))
                .execute(&mut db)
                .await
                .unwrap();
        }
        None => {
            let url = format!("sqlite://{}", app.data_dir.join("callmeta.db").display());
            let mut db = sqlx::sqlite::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sqlite.to_string()))
                .execute(&mut db)
                .await
                .unwrap();
        }
    }
}

/// Makes every write of webhook deliveries fail (a trigger on `jobs`, on
/// either database), or work again.
async fn deliveries_fail(app: &TestApp, fail: bool) {
    if fail {
        run_sql(
            app,
            "CREATE TRIGGER outbox_fails BEFORE INSERT ON jobs WHEN NEW.kind = 'webhook' \
             BEGIN SELECT RAISE(ABORT, 'deliveries cannot be written'); END;",
            "CREATE FUNCTION outbox_fails() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN IF NEW.kind = 'webhook' THEN RAISE EXCEPTION 'deliveries cannot be written'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER outbox_fails BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION outbox_fails();",
        )
        .await;
    } else {
        run_sql(
            app,
            "DROP TRIGGER outbox_fails;",
            "DROP TRIGGER outbox_fails ON jobs; DROP FUNCTION outbox_fails();",
        )
        .await;
    }
}

/// Waits (2 s at most) for the receiver to get `event` whose data's
/// `member` is `value`.
async fn delivered(receiver: &Receiver, event: &str, member: &str, value: &str) {
    eventually(&format!("the {event} delivery"), Duration::from_secs(2), || {
        let got = receiver.got();
        async move {
            got.into_iter()
                .find(|r| r.event == event && r.body["data"][member] == value)
                .ok_or("not yet")
        }
    })
    .await;
}

/// The outbox: a call and its event commit in one transaction. With the
/// write of deliveries failing, a creation fails whole (no call without
/// its event); once it works again, both are there and the event arrives.
#[tokio::test]
async fn a_call_and_its_event_commit_together_or_not_at_all() {
    let app = spawn().await;
    let t = app.create_tenant("outbox");
    let receiver = Receiver::start("whsec-outbox", 0).await;
    add_endpoint(
        &app,
        &t,
        &receiver.url(),
        &["call.created", "call.updated"],
        "whsec-outbox",
    )
    .await;
    deliveries_fail(&app, true).await;
    let (status, body) = app
        .post_json(
            &t,
            "/api/v1/calls",
            json!({"metadata": {"agent_id": "lost"}, "external_id": "ext-lost"}),
        )
        .await;
    assert!(status >= 500, "the creation fails whole: {status} {body}");
    let (status, list) = app.get(&t, "/api/v1/calls").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"], json!([]), "no call without its event: {list}");

    deliveries_fail(&app, false).await;
    let call = create_call(&app, &t, "kept").await;
    let unique_id = call["unique_id"].as_str().unwrap().to_string();
    let (_, list) = app.get(&t, "/api/v1/calls").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    delivered(&receiver, "call.created", "unique_id", &unique_id).await;
    assert!(
        receiver
            .got()
            .iter()
            .all(|r| r.body["data"]["metadata"]["agent_id"] != "lost"),
        "the failed creation told of nothing"
    );
}

/// The outbox for versions: with the write of deliveries failing, an
/// upload is neither recorded nor activated; once it works, the version
/// and its `table.version.activated` are both there.
#[tokio::test]
async fn a_version_and_its_event_commit_together_or_not_at_all() {
    let app = spawn().await;
    let t = app.create_tenant("outboxed");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let receiver = Receiver::start("whsec-versions", 0).await;
    add_endpoint(
        &app,
        &t,
        &receiver.url(),
        &["table.version.activated", "table.version.rejected"],
        "whsec-versions",
    )
    .await;
    deliveries_fail(&app, true).await;
    let (status, body) = app.upload(&t, "crm", crate::helpers::SPEC_TABLE).await;
    assert!(status >= 500, "the upload fails whole: {status} {body}");
    let (_, table) = app.get(&t, "/api/v1/tables/crm").await;
    assert!(table["active_version"].is_null(), "{table}");
    assert_eq!(
        table["versions"],
        json!([]),
        "no version without its event: {table}"
    );

    deliveries_fail(&app, false).await;
    let (status, body) = app.upload(&t, "crm", crate::helpers::SPEC_TABLE).await;
    assert!(status < 300, "{status} {body}");
    let (_, table) = app.get(&t, "/api/v1/tables/crm").await;
    let id = table["active_version"]["id"].as_str().unwrap().to_string();
    delivered(&receiver, "table.version.activated", "id", &id).await;
    assert_eq!(receiver.got().len(), 1, "the failed upload told of nothing");
}

/// Makes writes of webhook deliveries fail while a row is in
/// `outbox_off`: a trigger made once, at the start (on SQLite, a schema
/// change made while the server runs leaves its pooled connections unable
/// to delete calls, so the switch is data, not a trigger made and dropped).
async fn switchable_outbox(app: &TestApp) {
    run_sql(
        app,
        "CREATE TABLE outbox_off (x INTEGER); \
         CREATE TRIGGER outbox_switch BEFORE INSERT ON jobs \
         WHEN NEW.kind = 'webhook' AND EXISTS (SELECT 1 FROM outbox_off) \
         BEGIN SELECT RAISE(ABORT, 'deliveries cannot be written'); END;",
        "CREATE TABLE outbox_off (x INTEGER); \
         CREATE FUNCTION outbox_switch() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN IF NEW.kind = 'webhook' AND EXISTS (SELECT 1 FROM outbox_off) THEN \
         RAISE EXCEPTION 'deliveries cannot be written'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER outbox_switch BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION outbox_switch();",
    )
    .await;
}

async fn outbox_off(app: &TestApp, off: bool) {
    let sql = if off {
        "INSERT INTO outbox_off VALUES (1);"
    } else {
        "DELETE FROM outbox_off;"
    };
    run_sql(app, sql, sql).await;
}

/// The outbox for erasures: with the write of deliveries failing, a
/// DELETE fails whole and the call is still there; once it works, the call
/// is gone and `call.erased` arrives.
#[tokio::test]
async fn an_erasure_and_its_event_commit_together_or_not_at_all() {
    let app = spawn().await;
    switchable_outbox(&app).await;
    let t = app.create_tenant("erasing");
    let receiver = Receiver::start("whsec-erased", 0).await;
    add_endpoint(&app, &t, &receiver.url(), &["call.erased"], "whsec-erased").await;
    let unique_id = create_call(&app, &t, "gone").await["unique_id"]
        .as_str()
        .unwrap()
        .to_string();
    let erase = || {
        app.http
            .delete(app.url(&format!("/api/v1/calls/{unique_id}")))
            .header("Authorization", format!("Token {}", t.token))
            .send()
    };
    outbox_off(&app, true).await;
    let r = erase().await.unwrap();
    assert!(
        r.status().is_server_error(),
        "the erasure fails whole: {}",
        r.status()
    );
    let (status, call) = app.get(&t, &format!("/api/v1/calls/{unique_id}")).await;
    assert_eq!(status, 200, "no erasure without its event: {call}");

    outbox_off(&app, false).await;
    assert_eq!(erase().await.unwrap().status(), 204);
    let (status, _) = app.get(&t, &format!("/api/v1/calls/{unique_id}")).await;
    assert_eq!(status, 404);
    delivered(&receiver, "call.erased", "unique_id", &unique_id).await;
    assert_eq!(receiver.got().len(), 1, "the failed erasure told of nothing");
    app.stop().await;
}
