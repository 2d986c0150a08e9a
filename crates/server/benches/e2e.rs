//! End-to-end benchmark (not a test): prints figures for SPEC §9.
//!
//! usage: cargo bench -p callmeta --bench e2e -- CRM.csv [CALLS]
//!
//! 1. Ingest to active: the CSV received into the spool as a channel
//!    receives it, then uploaded through the same use case as every channel
//!    (blob write, parse, index, activation); the median of 5 uploads (the
//!    first version, then swaps between two versions), next to DuckDB's
//!    single-threaded `read_csv` of the same file in the same run.
//! 2. Resident memory of the active version (process RSS delta) and the
//!    peak (VmHWM) over the RSS before the first upload, through the swaps:
//!    the old and the new version are both resident during a swap.
//! 3. FTP: the file uploaded by an FTP client to the real server; the time
//!    from the end of the upload (data connection closed) to the server's
//!    226 reply, which is sent once the version is active.
//! 4. API: durable call creations per second through the real HTTP server,
//!    with a version swap every 2 s, p50/p99 latency, and a check that no call
//!    was enriched from a mix of versions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use callmeta::config::Config;
use callmeta::startup::{App, open_services};
use callmeta_app::clock::SystemClock;
use callmeta_app::usecases::audit::Actor;
use callmeta_app::usecases::tables::{self, Channel};
use callmeta_app::usecases::{tenants, uploads};
use callmeta_core::csv::TableOptions;
use callmeta_core::domain::{ColumnName, TableName};

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A new empty database on the server of `admin`, for one measurement.
async fn fresh_postgres(admin: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::postgres::PgConnection::connect(admin).await.unwrap();
    let name = format!("callmeta_bench_{}", uuid_like());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    format!("{base}/{name}")
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}")
}

/// DuckDB's single-threaded `read_csv` time, from the core benchmark's script.
fn duckdb_seconds(path: &str) -> Option<f64> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/benches/duckdb_read.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Uploads timed for the ingest figure: the first version, then swaps.
const INGEST_RUNS: usize = 5;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The file, or the file with one more row, received into the spool in
/// pieces as a channel receives it (never whole in memory).
async fn receive_version(
    services: &callmeta_app::usecases::Services,
    path: &str,
    extra_row: bool,
) -> uploads::Received {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await.unwrap();
    let mut incoming = uploads::Incoming::start(services).await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        incoming.write(&buf[..n]).await.unwrap();
    }
    if extra_row {
        incoming
            .write(b"agent-extra,x,x,x,x,x,x,x,x,x,x,x\n")
            .await
            .unwrap();
    }
    incoming.finish().await.unwrap()
}

fn options(key: &str) -> TableOptions {
    TableOptions {
        key: ColumnName::parse(key).unwrap(),
        max_row_drop_pct: None,
        on_header_change: Default::default(),
        as_of: Default::default(),
        valid_from: None,
        valid_to: None,
        keys: None,
        match_mode: Default::default(),
        region: None,
        duplicates: Default::default(),
        bad_rows: Default::default(),
    }
}

fn main() {
    // The allocator as the binary sets it up.
    callmeta::memory::fix_mmap_threshold();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(path) = args.first() else {
        eprintln!("usage: cargo bench -p callmeta --bench e2e -- CRM.csv [CALLS]");
        std::process::exit(2);
    };
    let calls: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(path.clone(), calls));
}

async fn run(path: String, calls: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".into(),
        ..Config::default()
    };
    let services = open_services(&config, Arc::new(SystemClock)).await.unwrap();
    let created = tenants::create_tenant(&services, "bench", "bench-password")
        .await
        .unwrap();
    let tenant = services
        .store
        .tenant_by_token(&tenants::hash_token(&created.api_token))
        .await
        .unwrap();
    let crm = TableName::parse("crm").unwrap();
    tables::configure_table(&services, &tenant.id, &crm, options("agent_id"), &Actor::cli())
        .await
        .unwrap();

    let file_bytes = std::fs::metadata(&path).unwrap().len();
    let mb = file_bytes as f64 / 1e6;
    let rss_before = rss_kib("VmRSS:");
    // Receiving (copying into the spool, hashing on the way) is what a
    // channel does while the bytes arrive; it is timed on its own. The
    // versions alternate between the file and the file with one more row,
    // so each upload differs from the active version and is ingested and
    // swapped in.
    let mut times = Vec::new();
    let mut receive = Vec::new();
    for run in 0..INGEST_RUNS {
        let t = Instant::now();
        let data = receive_version(&services, &path, run % 2 == 1).await;
        receive.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let outcome = tables::upload_reference_table(
            &services,
            &tenant.id,
            &crm,
            data,
            Channel::Cli,
            None,
            None,
            &Actor::cli(),
        )
        .await
        .unwrap();
        times.push(t.elapsed().as_secs_f64());
        assert!(outcome.activated, "{:?}", outcome.version.report.error);
        println!(
            "  upload {run}: {:.3} s; RSS {:.1} MB, peak so far {:.1} MB over the RSS before the first",
            times[run],
            rss_kib("VmRSS:").saturating_sub(rss_before) as f64 * 1024.0 / 1e6,
            rss_kib("VmHWM:").saturating_sub(rss_before) as f64 * 1024.0 / 1e6
        );
        if run == 0 {
            let rss_active = rss_kib("VmRSS:");
            let heap = services.tables.total_heap_bytes();
            println!(
                "active version: index heap {:.1} MB ({:.2}x the file), process RSS delta {:.1} MB ({:.2}x the file)",
                heap as f64 / 1e6,
                heap as f64 / file_bytes as f64,
                (rss_active.saturating_sub(rss_before)) as f64 * 1024.0 / 1e6,
                (rss_active.saturating_sub(rss_before)) as f64 * 1024.0 / file_bytes as f64
            );
        }
    }
    let peak = rss_kib("VmHWM:");
    {
        // The parse and index alone, from the same spool file, on every core.
        let spool = receive_version(&services, &path, false).await;
        let dir = config.data_dir.join("spool");
        let file = std::fs::read_dir(&dir).unwrap().flatten().next().unwrap().path();
        let source = callmeta_app::spool::SpoolSource::open(&file).unwrap();
        let mut parse = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let parsed = callmeta_core::csv::ingest_from(
                &source,
                &options("agent_id"),
                &services.limits,
                callmeta_core::csv::Parallelism::default(),
                &mut |_| {},
            );
            parse.push(t.elapsed().as_secs_f64());
            assert!(parsed.unwrap().is_ok());
        }
        drop(spool);
        println!(
            "  of which parse and index (csv::ingest_from over the spool file, {} threads): median {:.3} s",
            callmeta_core::csv::Parallelism::default().threads,
            median(&mut parse)
        );
    }
    println!(
        "receive (spool copy + sha256, as the bytes arrive): median {:.3} s",
        median(&mut receive)
    );
    let ingest = median(&mut times);
    println!(
        "ingest to active: median {ingest:.3} s of {INGEST_RUNS} uploads (first, then swaps; {}), {mb:.1} MB, {:.0} MB/s, \
         blob write and activation included",
        times
            .iter()
            .map(|t| format!("{t:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        mb / ingest
    );
    match duckdb_seconds(&path) {
        Some(duckdb) => println!(
            "duckdb read_csv, 1 thread, same file, same run: {duckdb:.3} s -> callmeta ingest to active is \
             {:.2}x DuckDB's time (target: at most 0.50x)",
            ingest / duckdb
        ),
        None => println!("duckdb: not measured (pip install duckdb)"),
    }
    println!(
        "peak RSS over baseline during the first upload and {} swaps: {:.1} MB ({:.2}x the file; target: at most 1.5x)",
        INGEST_RUNS - 1,
        (peak.saturating_sub(rss_before)) as f64 * 1024.0 / 1e6,
        (peak.saturating_sub(rss_before)) as f64 * 1024.0 / file_bytes as f64
    );
    drop(services);

    ftp_upload_to_active(&path).await;
    api_throughput(calls, "SQLite, one node", None, 1).await;
    if let Ok(admin) = std::env::var("CALLMETA_TEST_DATABASE_URL") {
        for nodes in [1, 2] {
            let db = fresh_postgres(&admin).await;
            api_throughput(
                calls,
                &format!("PostgreSQL, {nodes} node(s) on this machine"),
                Some(db),
                nodes,
            )
            .await;
        }
    } else {
        println!("API on PostgreSQL: not measured (set CALLMETA_TEST_DATABASE_URL)");
    }
}

/// Call creations through `nodes` servers sharing `database` (SQLite in a
/// temp dir when `None`), clients spread evenly over the nodes.
async fn api_throughput(calls: usize, label: &str, database: Option<String>, nodes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut apps = Vec::new();
    for n in 0..nodes {
        let config = Config {
            data_dir: dir.path().join(format!("node{n}")),
            http: "127.0.0.1:0".into(),
            ftp: "127.0.0.1:0".into(),
            sftp: "127.0.0.1:0".into(),
            sip: "127.0.0.1:0".into(),
            database: database.clone(),
            blobs: Some(format!("file://{}", dir.path().join("blobs").display())),
            ..Config::default()
        };
        apps.push(App::build(config, Arc::new(SystemClock)).await.unwrap());
    }
    let bases: Vec<String> = apps.iter().map(|a| format!("http://{}", a.http_addr())).collect();
    let services = apps[0].services.clone();
    let created = tenants::create_tenant(&services, "load", "load-password")
        .await
        .unwrap();
    let tenant = services
        .store
        .tenant_by_token(&tenants::hash_token(&created.api_token))
        .await
        .unwrap();
    let crm = TableName::parse("crm").unwrap();
    tables::configure_table(&services, &tenant.id, &crm, options("agent_id"), &Actor::cli())
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for app in apps {
        let mut rx = rx.clone();
        servers.push(tokio::spawn(app.run_until(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        })));
    }

    // Each version writes its own marker in every column: a call enriched
    // from a mix of versions would show two markers.
    let version = |n: usize| {
        let mut csv = String::from("agent_id");
        for c in 0..20 {
            csv.push_str(&format!(",col{c}"));
        }
        csv.push('\n');
        for i in 0..10_000 {
            csv.push_str(&format!("agent{i}"));
            for _ in 0..20 {
                csv.push_str(&format!(",v{n}"));
            }
            csv.push('\n');
        }
        Bytes::from(csv)
    };
    let first = uploads::Received::from_bytes(&services, version(0))
        .await
        .unwrap();
    tables::upload_reference_table(
        &services,
        &tenant.id,
        &crm,
        first,
        Channel::Http,
        None,
        None,
        &Actor::cli(),
    )
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (services, tenant, crm, stop) = (services.clone(), tenant.clone(), crm.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 1;
            let mut swaps = 0;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let data = uploads::Received::from_bytes(&services, version(n))
                    .await
                    .unwrap();
                tables::upload_reference_table(
                    &services,
                    &tenant.id,
                    &crm,
                    data,
                    Channel::Http,
                    None,
                    None,
                    &Actor::cli(),
                )
                .await
                .unwrap();
                n += 1;
                swaps += 1;
            }
            swaps
        })
    };

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let concurrency = 64;
    let per_worker = calls / concurrency;
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (client, base, token) = (
            client.clone(),
            bases[w % bases.len()].clone(),
            created.api_token.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            let mut mixed = 0usize;
            for i in 0..per_worker {
                let body = serde_json::json!({"metadata": {
                    "datetime": "2026-01-30T12:34:56Z",
                    "phonenumber": "+33102030405",
                    "agent_id": format!("agent{}", (w * per_worker + i) % 11_000),
                }});
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/api/v1/calls"))
                    .header("Authorization", format!("Token {token}"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
                let call: serde_json::Value = r.json().await.unwrap();
                latencies.push(t.elapsed());
                let m = &call["metadata"];
                if m.get("col0").is_some() && (0..20).any(|c| m[format!("col{c}")] != m["col0"]) {
                    mixed += 1;
                }
            }
            (latencies, mixed)
        }));
    }
    let mut latencies = Vec::new();
    let mut mixed = 0;
    for w in workers {
        let (l, m) = w.await.unwrap();
        latencies.extend(l);
        mixed += m;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.await.unwrap();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "API ({label}): {} durable call creations in {:.2} s = {:.0}/s with {concurrency} clients; p50 {:.1} ms, p99 {:.1} ms; {swaps} version swaps; calls enriched from a mix of versions: {mixed}",
        latencies.len(),
        secs,
        latencies.len() as f64 / secs,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    let _ = tx.send(true);
    for server in servers {
        let _ = server.await;
    }
}

/// Uploads the file over FTP (a minimal client: USER, PASS, EPSV, STOR) and
/// times the end of the transfer to the 226 reply (sent after activation).
async fn ftp_upload_to_active(path: &str) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".into(),
        ftp: "127.0.0.1:0".into(),
        sftp: "127.0.0.1:0".into(),
        sip: "127.0.0.1:0".into(),
        ..Config::default()
    };
    let app = App::build(config, Arc::new(SystemClock)).await.unwrap();
    let services = app.services.clone();
    let ftp = app.ftp_addr();
    tenants::create_tenant(&services, "bench", "bench-password")
        .await
        .unwrap();
    let tenant = services
        .store
        .tenant_by_slug(&callmeta_core::domain::TenantSlug::parse("bench").unwrap())
        .await
        .unwrap();
    let crm = TableName::parse("crm").unwrap();
    tables::configure_table(&services, &tenant.id, &crm, options("agent_id"), &Actor::cli())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let data = std::fs::read(path).unwrap();
    let control = TcpStream::connect(ftp).await.unwrap();
    let (read, mut write) = control.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut reply = async || lines.next_line().await.unwrap().unwrap_or_default();
    reply().await;
    for command in ["USER bench", "PASS bench-password", "TYPE I"] {
        write
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        reply().await;
    }
    write.write_all(b"EPSV\r\n").await.unwrap();
    let epsv = reply().await;
    let port: u16 = epsv
        .split("|||")
        .nth(1)
        .and_then(|s| s.split('|').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("EPSV reply: {epsv}"));
    let mut data_conn = TcpStream::connect((ftp.ip(), port)).await.unwrap();
    write.write_all(b"STOR crm-export.csv\r\n").await.unwrap();
    reply().await;
    let t_start = Instant::now();
    data_conn.write_all(&data).await.unwrap();
    data_conn.shutdown().await.unwrap();
    drop(data_conn);
    let t_end = Instant::now();
    let done = reply().await;
    let to_active = t_end.elapsed().as_secs_f64();
    assert!(done.starts_with("226"), "{done}");
    let table = tables::table_details(&services, &tenant.id, &crm).await.unwrap();
    assert!(table.table.active_version.is_some());
    println!(
        "FTP upload of {:.1} MB: transfer {:.3} s; end of upload to version active (226 reply): {:.3} s",
        data.len() as f64 / 1e6,
        t_end.duration_since(t_start).as_secs_f64(),
        to_active
    );
    let _ = write.write_all(b"QUIT\r\n").await;
    let _ = stop.send(());
    let _ = server.await;
}
