//! Webhook delivery latency (not a test): prints figures for SPEC §9's
//! "p99 delivery under 1 s after the event".
//!
//! usage: cargo bench -p callmeta --bench webhooks -- [EVENTS] [POSTGRES_URL] [--rate=R[,R...]]
//!
//! The real server (SQLite, or a fresh database on the PostgreSQL server
//! given) with one endpoint subscribed to `call.created`, on a receiver on
//! loopback. Without `--rate`, calls are created through the API by 8
//! clients at once, as fast as it takes them (a burst: latency is mostly
//! queueing). With `--rate=R`, one call is sent every 1/R s whatever the
//! answers (an open loop), for each rate given in turn on a fresh server:
//! the steady load one node sustains. The latency of an event is from the
//! moment its call's creation was sent to the moment the receiver has its
//! delivery; printed as p50, p99 and max, with the calls' own p99 for
//! comparison.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use callmeta::config::Config;
use callmeta::startup::App;
use callmeta_app::clock::SystemClock;
use callmeta_app::usecases::tenants;
use callmeta_app::usecases::webhooks::{self, NewEndpoint};

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let rates: Vec<f64> = all
        .iter()
        .filter_map(|a| a.strip_prefix("--rate="))
        .flat_map(|r| r.split(',').map(|r| r.parse::<f64>().expect("--rate=R[,R...]")))
        .collect();
    let args: Vec<&String> = all.iter().filter(|a| !a.starts_with("--")).collect();
    let events: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(2_000);
    let database = args.get(1).map(|s| s.to_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if rates.is_empty() {
        rt.block_on(run(events, database, None));
    } else {
        for rate in rates {
            rt.block_on(run(events, database.clone(), Some(rate)));
        }
    }
}

async fn receive(State(arrivals): State<Arrivals>, body: Bytes) -> &'static str {
    let at = Instant::now();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(id) = body["data"]["unique_id"].as_str() {
        arrivals.lock().unwrap().insert(id.to_string(), at);
    }
    "ok"
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run(events: usize, database: Option<String>, rate: Option<f64>) {
    let dir = tempfile::tempdir().unwrap();
    let database = match database {
        Some(admin) => Some(fresh_postgres(&admin).await),
        None => None,
    };
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".into(),
        ftp: "127.0.0.1:0".into(),
        sftp: "127.0.0.1:0".into(),
        sip: "127.0.0.1:0".into(),
        database: database.clone(),
        ..Config::default()
    };
    config.webhooks.allow_private = true;
    config.webhooks.max_pending_per_tenant = events as u64 + 10;
    let app = App::build(config, Arc::new(SystemClock)).await.unwrap();
    let base = format!("http://{}", app.http_addr());
    let services = app.services.clone();
    let created = tenants::create_tenant(&services, "hooks", "hooks-password")
        .await
        .unwrap();
    let tenant = services
        .store
        .tenant_by_token(&tenants::hash_token(&created.api_token))
        .await
        .unwrap();

    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let receiver = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    webhooks::create_endpoint(
        &services,
        &tenant.id,
        NewEndpoint {
            url,
            events: vec!["call.created".into()],
            secret: "bench-secret".into(),
        },
    )
    .await
    .unwrap();

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let sent: Arc<Mutex<Vec<(String, Instant, Duration)>>> = Arc::default();
    let started = Instant::now();
    let token = created.api_token.clone();
    // One call, sent at once: its id, when it was sent and how long it took.
    let send = move |n: usize| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            let at = Instant::now();
            let r = client
                .post(format!("{base}/api/v1/calls"))
                .header("Authorization", format!("Token {token}"))
                .json(&serde_json::json!({"metadata": {"agent_id": format!("a{n}")}}))
                .send()
                .await
                .unwrap();
            let took = at.elapsed();
            let status = r.status();
            let body = r.text().await.unwrap();
            let call: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let Some(id) = call["unique_id"].as_str() else {
                panic!("the call was not created: {status} {body}");
            };
            (id.to_string(), at, took)
        }
    };
    let mut clients = Vec::new();
    match rate {
        None => {
            for c in 0..8 {
                let (send, sent) = (send.clone(), sent.clone());
                clients.push(tokio::spawn(async move {
                    for n in (c..events).step_by(8) {
                        let one = send(n).await;
                        sent.lock().unwrap().push(one);
                    }
                }));
            }
        }
        Some(rate) => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for n in 0..events {
                tick.tick().await;
                let (one, sent) = (send(n), sent.clone());
                clients.push(tokio::spawn(async move {
                    let one = one.await;
                    sent.lock().unwrap().push(one);
                }));
            }
        }
    }
    for c in clients {
        c.await.unwrap();
    }
    let sending = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap().len() < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrivals = arrivals.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, at, _)| arrivals.get(id).map(|got| got.duration_since(*at)))
        .collect();
    latencies.sort();
    let mut calls: Vec<Duration> = sent.iter().map(|(_, _, took)| *took).collect();
    calls.sort();
    let backend = if database.is_some() { "postgres" } else { "sqlite" };
    let load = rate.map_or("burst, 8 clients".to_string(), |r| {
        format!("steady, {r:.0}/s offered")
    });
    let delivered_in = arrivals
        .values()
        .max()
        .map_or(0.0, |last| last.duration_since(started).as_secs_f64());
    println!(
        "webhooks ({backend}, {load}): {events} call.created events in {:.1} s ({:.0}/s), {} delivered \
         ({:.0}/s); \
         event to delivery p50 {:?}, p99 {:?}, max {:?} (target: p99 under 1 s); call creation p99 {:?}",
        sending.as_secs_f64(),
        events as f64 / sending.as_secs_f64(),
        latencies.len(),
        latencies.len() as f64 / delivered_in.max(f64::EPSILON),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        percentile(&calls, 0.99),
    );
    let _ = tx.send(());
    let _ = server.await;
}

/// A new empty database on the server of `admin`.
async fn fresh_postgres(admin: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::postgres::PgConnection::connect(admin).await.unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("callmeta_bench_hooks_{nanos:x}");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    format!("{base}/{name}")
}
