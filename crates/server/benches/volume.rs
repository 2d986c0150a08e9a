//! Calls at volume (SPEC §12): loads N calls through the store (as the
//! call writer commits them), then times the first page of each filter
//! form, as `GET /api/v1/calls` runs it (the calls use case).
//!
//! usage: cargo bench -p callmeta --bench volume -- [CALLS]
//!   CALLS   calls to load (default 1,000,000)
//! Env: CALLMETA_BENCH_DATABASE_URL=postgres://... for PostgreSQL (a fresh
//! database is made); the embedded SQLite otherwise.
//! CALLMETA_BENCH_KEEP=NAME keeps the calls for the next run: the data
//! directory `target/volume-NAME` (SQLite) or the database
//! `callmeta_volume_NAME` (PostgreSQL). A run that finds them loads only the
//! calls still missing (10M calls take long to load), then measures.
//! CALLMETA_BENCH_ONLY=export measures the exports alone.
//!
//! Each call: agent_id (10,000 agents), queue (20), phonenumber, campaign
//! (on 70%), a `crm` result (90% matched with team_name of 50 teams and
//! region of 10, 8% no_match, 2% key_missing), timestamps over 60 days.

use std::sync::Arc;
use std::time::Instant;

use callmeta::config::Config;
use callmeta::startup::open_services;
use callmeta_app::clock::SystemClock;
use callmeta_app::store::{CallRecord, CallSource, TenantId};
use callmeta_app::usecases::Services;
use callmeta_app::usecases::export::{Export, ExportFormat};
use callmeta_app::usecases::{calls, tenants};
use callmeta_core::enrich::{EnrichmentResult, EnrichmentStatus, Metadata};

const DAY_MS: i64 = 86_400_000;
const START_MS: i64 = 1_767_225_600_000; // 2026-01-01

/// A small deterministic generator (no dependency).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn call(i: u64, calls: u64) -> CallRecord {
    let r = mix(i);
    let agent = r % 10_000;
    let ts = START_MS + ((i as i128 * 60 * DAY_MS as i128) / calls as i128) as i64;
    let mut metadata = Metadata::new();
    metadata.insert("agent_id".into(), format!("agent{agent}"));
    metadata.insert("queue".into(), format!("queue{}", (r >> 20) % 20));
    metadata.insert(
        "phonenumber".into(),
        format!("+33{:09}", mix(i ^ 0xabc) % 1_000_000_000),
    );
    if (r >> 30) % 10 < 7 {
        metadata.insert("campaign".into(), format!("spring-{}", (r >> 34) % 5));
    }
    let roll = (r >> 40) % 100;
    let (status, added) = if roll < 2 {
        metadata.remove("agent_id");
        (EnrichmentStatus::KeyMissing, Metadata::new())
    } else if roll < 10 {
        (EnrichmentStatus::NoMatch, Metadata::new())
    } else {
        let mut added = Metadata::new();
        added.insert("team_name".into(), format!("team{}", agent % 50));
        added.insert("region".into(), format!("region{}", agent % 10));
        added.insert("manager".into(), format!("manager{}", agent % 200));
        added.insert("site".into(), format!("site{}", agent % 30));
        added.insert("email".into(), format!("agent{agent}@example.com"));
        (EnrichmentStatus::Matched, added)
    };
    CallRecord {
        unique_id: format!("{:016x}-{i}", r),
        timestamp_ms: ts,
        source: CallSource::Api,
        external_id: None,
        enrichment: vec![EnrichmentResult {
            table: "crm".into(),
            version: Some("v1".into()),
            status,
            key: "agent_id".into(),
            key_value: metadata.get("agent_id").cloned(),
            normalized_key: metadata.get("agent_id").cloned(),
            added: added.into(),
            collisions: vec![],
            at_ms: ts,
            matched_by: None,
            keys_tried: vec![],
            interval: None,
            as_of: None,
        }],
        metadata,
        audio_key: None,
        audio_pruned_ms: None,
        created_ms: ts,
        updated_ms: ts,
    }
}

fn main() {
    let calls: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(calls));
}

async fn run(n: u64) {
    let keep = std::env::var("CALLMETA_BENCH_KEEP").ok();
    let temp = tempfile::tempdir().unwrap();
    let data_dir = match &keep {
        Some(name) => {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target")
                .join(format!("volume-{name}"));
            std::fs::create_dir_all(&dir).unwrap();
            dir
        }
        None => temp.path().to_path_buf(),
    };
    let mut database = None;
    if let Ok(url) = std::env::var("CALLMETA_BENCH_DATABASE_URL") {
        let name = format!(
            "callmeta_volume_{}",
            keep.clone().unwrap_or_else(|| std::process::id().to_string())
        );
        // Fails harmlessly when a kept database is already there.
        let _ = std::process::Command::new("psql")
            .args([&url, "-qc", &format!("CREATE DATABASE {name}")])
            .status()
            .expect("psql");
        database = Some(format!("{}/{name}", url.rsplit_once('/').unwrap().0));
    }
    let backend = if database.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let config = Config {
        data_dir,
        database,
        ..Config::default()
    };
    let services = open_services(&config, Arc::new(SystemClock)).await.unwrap();
    let tenant = match tenants::tenant_by_slug(&services, "volume").await {
        Ok(kept) => kept.id,
        Err(_) => {
            tenants::create_tenant(&services, "volume", "volume-password")
                .await
                .unwrap();
            tenants::tenant_by_slug(&services, "volume").await.unwrap().id
        }
    };
    // Kept calls: those already there (by their unique id) are not loaded again.
    let mut first = 0;
    while first < n
        && services
            .store
            .call(&tenant, &call(first, n).unique_id)
            .await
            .is_ok()
    {
        first += 1_000;
    }
    let first = first.saturating_sub(1_000).min(n);
    if first > 0 {
        println!("{first} calls were kept from an earlier run");
    }

    // Load: many concurrent creations, as the API's would be.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 256u64;
    for w in 0..workers {
        let (services, tenant) = (services.clone(), tenant.clone());
        tasks.spawn(async move {
            let mut i = first + w;
            while i < n {
                let c = call(i, n);
                if let Err(e) = services.store.insert_call(&tenant, &c, &[]).await {
                    // A kept call loaded by an interrupted run is no error.
                    assert!(services.store.call(&tenant, &c.unique_id).await.is_ok(), "{e}");
                }
                i += workers;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let load = started.elapsed().as_secs_f64();
    if let Some(url) = &config.database {
        // What autovacuum does to an insert-only table within minutes
        // (statistics, and the visibility map that index-only scans
        // need): a bench that queries right after the load would
        // otherwise measure plans made for an empty table.
        let status = std::process::Command::new("psql")
            .args([url.as_str(), "-qc", "VACUUM ANALYZE"])
            .status()
            .expect("psql");
        assert!(status.success());
    }
    println!(
        "{backend}: loaded {} calls in {load:.1} s ({:.0} calls/s through the store, index included)",
        n - first,
        (n - first) as f64 / load
    );

    // `CALLMETA_BENCH_ONLY=export` skips them (to profile the exports).
    if std::env::var("CALLMETA_BENCH_ONLY").as_deref() != Ok("export") {
        pages_and_facets(&services, &tenant, backend, n).await;
    }

    // Export: every call, as the API streams it (the bytes are counted,
    // not kept), and how much the process grew meanwhile.
    for (name, format, filter) in [
        ("CSV, every call", ExportFormat::Csv { bom: false }, ""),
        ("NDJSON, every call", ExportFormat::Ndjson, ""),
        (
            "CSV, one team",
            ExportFormat::Csv { bom: false },
            "metadata.team_name=team7",
        ),
    ] {
        let query = calls::parse_call_query(&url_pairs(filter)).unwrap();
        let rss_before = rss_kib();
        let t = Instant::now();
        let mut export = Export::start(&services, &tenant, &query, format).await.unwrap();
        let (mut bytes, mut peak) = (0usize, rss_before);
        let mut chunks = 0u64;
        // No value here holds a line break: lines are calls (and a header).
        let mut lines = 0usize;
        while let Some(chunk) = export.next_chunk(&services, &tenant).await.unwrap() {
            bytes += chunk.len();
            lines += chunk.iter().filter(|b| **b == b'\n').count();
            chunks += 1;
            if chunks.is_multiple_of(50) {
                peak = peak.max(rss_kib());
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let rows = match format {
            ExportFormat::Csv { .. } => lines.saturating_sub(1),
            ExportFormat::Ndjson => lines,
        } as f64;
        println!(
            "export {name:<22} {:>8} calls {:>8.1} s  {:>7.0} MB  {:>9.0} calls/s  RSS growth {:>6.1} MB",
            rows,
            secs,
            bytes as f64 / 1e6,
            rows / secs,
            peak.saturating_sub(rss_before) as f64 / 1024.0
        );
    }
}

/// The first page of each filter form (p50, p95 and max of 21 runs) and
/// the facets of a few keys (of 5 runs).
async fn pages_and_facets(services: &Services, tenant: &TenantId, backend: &str, n: u64) {
    let forms: &[(&str, &dyn Fn(u64) -> String)] = &[
        ("no filter", &|_| String::new()),
        ("agent (1 in 10,000)", &|i| {
            format!("metadata.agent_id=agent{}", i * 97 % 10_000)
        }),
        ("team (1 in 55)", &|i| {
            format!("metadata.team_name=team{}", i % 50)
        }),
        ("3 teams (any of)", &|i| {
            format!(
                "metadata.team_name=team{}&metadata.team_name=team{}&metadata.team_name=team{}",
                i % 50,
                (i + 1) % 50,
                (i + 2) % 50
            )
        }),
        ("matches nothing", &|i| format!("metadata.agent_id=nobody{i}")),
        ("enrichment no_match (8%)", &|_| "enrichment.crm=no_match".into()),
        ("enrichment key_missing (2%)", &|_| {
            "enrichment.crm=key_missing".into()
        }),
        ("prefix, rare (phone +33123...)", &|i| {
            format!("metadata.phonenumber.prefix=%2B33{:04}", i % 10_000)
        }),
        ("prefix, common (agent1...)", &|_| {
            "metadata.agent_id.prefix=agent1".into()
        }),
        ("missing (campaign, 30%)", &|_| {
            "metadata.campaign.missing=true".into()
        }),
        ("one day", &|i| day(i, "")),
        ("one day + team", &|i| {
            day(i, &format!("&metadata.team_name=team{}", i % 50))
        }),
        ("team + region (disjoint)", &|i| {
            format!(
                "metadata.team_name=team{}&metadata.region=region{}",
                i % 50,
                (i + 1) % 10
            )
        }),
        ("team + queue", &|i| {
            format!("metadata.team_name=team{}&metadata.queue=queue{}", i % 50, i % 20)
        }),
    ];
    println!("first page (50 calls, with the bounded count), {backend}, {n} calls:");
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>8}",
        "filter", "p50 ms", "p95 ms", "max ms", "count"
    );
    for (name, form) in forms {
        let mut times = Vec::new();
        let mut count = String::new();
        for i in 0..21 {
            let pairs: Vec<(String, String)> = url_pairs(&form(i));
            let query = calls::parse_call_query(&pairs).unwrap();
            let t = Instant::now();
            let page = calls::list_calls(services, tenant, &query).await.unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            count = format!("{}{}", page.count, if page.count_exact { "" } else { "+" });
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<34} {:>9.2} {:>9.2} {:>9.2} {:>8}",
            times[times.len() / 2],
            times[times.len() * 95 / 100],
            times[times.len() - 1],
            count
        );
    }

    // Facets: the top 20 values of a key, with and without a filter.
    println!(
        "facets (top 20, over the newest {} matching calls):",
        calls::FACET_SAMPLE
    );
    for (name, key, filter) in [
        ("team_name, all calls", "team_name", ""),
        ("agent_id, all calls", "agent_id", ""),
        ("agent_id, one team", "agent_id", "metadata.team_name=team7"),
        ("queue, no_match", "queue", "enrichment.crm=no_match"),
    ] {
        let query = calls::parse_call_query(&url_pairs(filter)).unwrap();
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            calls::call_facets(services, tenant, &query, key, 20)
                .await
                .unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!("{name:<34} p50 {:>8.1} ms  max {:>8.1} ms", times[2], times[4]);
    }
}

/// The process's resident memory (KiB), from /proc.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn day(i: u64, rest: &str) -> String {
    let from = START_MS + (i as i64 % 59) * DAY_MS;
    format!(
        "timestamp_from={}&timestamp_to={}{rest}",
        rfc3339(from),
        rfc3339(from + DAY_MS - 1)
    )
}

fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// `a=b&c=d` with `%2B` for `+`.
fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_string(), v.replace("%2B", "+"))
        })
        .collect()
}
