//! Several nodes on one PostgreSQL database and one blob store: a version
//! activated through one node enriches the calls of the other within a second;
//! an FTP upload to one and a SIPREC call to the other end enriched; an upload
//! a recording or a back-fill cut short by a node's death is finished by the
//! other.

use std::time::{Duration, Instant};

use callmeta_app::clock::{Clock, SystemClock};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_version_activated_on_one_node_reaches_the_other_within_a_second() {
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

    for (uploader, caller, team) in [(&a, &b, "diamond"), (&b, &a, "onyx")] {
        let csv = format!("agent_id,team_name\ncindy,{team}\n");
        let (status, body) = uploader.upload(&t, "crm", csv).await;
        assert_eq!(status, 201, "{body}");
        let activated = Instant::now();
        eventually(
            "the other node enriching from the new version",
            Duration::from_secs(1),
            || async {
                let (status, call) = caller
                    .post_json(&t, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
                    .await;
                assert_eq!(status, 201);
                if call["metadata"]["team_name"] == team {
                    Ok(())
                } else {
                    Err(call)
                }
            },
        )
        .await;
        eprintln!("version reached the other node in {:?}", activated.elapsed());
    }
    // Both nodes list the same calls.
    let (_, on_a) = a.get(&t, "/api/v1/calls?metadata.agent_id=cindy").await;
    let (_, on_b) = b.get(&t, "/api/v1/calls?metadata.agent_id=cindy").await;
    assert_eq!(on_a["count"], on_b["count"]);
    a.stop().await;
    b.stop().await;
}

/// The job lease of the nodes of these tests.
const LEASE_MS: i64 = 1_500;

/// Node B, in this process, with a job lease of 1.5 s.
async fn spawn_node_b(db: &PgDatabase, blobs: &str, shared: &std::path::Path) -> TestApp {
    let mut config = test_config(&shared.join("b"));
    config.database = Some(db.url.clone());
    config.blobs = Some(blobs.to_string());
    config.job_lease_ms = LEASE_MS as u64;
    TestApp::spawn_with(config).await
}

/// Moves node B's clock past the lease of every job a killed node held:
/// that node renewed its leases, on the wall clock, until it died, for
/// `LEASE_MS` at most. B claims them at its next look for stale jobs.
fn past_the_leases_of_a_killed_node(b: &TestApp) {
    b.clock.advance_to(SystemClock.now_ms() + LEASE_MS + 1);
}

/// A real `callmeta serve` process on `database` and `blobs` with a job
/// lease of 1.5 s: its HTTP URL and SIP address.
fn spawn_node(
    database: &str,
    blobs: &str,
    data_dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, String, std::net::SocketAddr) {
    let mut env = env.to_vec();
    env.push(("CALLMETA_JOB_LEASE_MS", "1500"));
    spawn_serve(data_dir, &["--database", database, "--blobs", blobs], &env)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test]
async fn a_node_killed_mid_ingestion_leaves_no_half_version_and_another_finishes_it() {
    let Some(db) = PgDatabase::create().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    let shared = tempfile::tempdir().unwrap();
    let blob_dir = shared.path().join("blobs");
    let blobs = format!("file://{}", blob_dir.display());
    let b = spawn_node_b(&db, &blobs, shared.path()).await;
    let t = b.create_tenant("killed");
    b.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let (_, first) = b.upload(&t, "crm", SPEC_TABLE).await;
    let first_id = first["version"]["id"].clone();
    let before = files_under(&blob_dir).len();

    // Node A is a real `callmeta serve` process on the same database and blobs.
    let (mut a, a_url, _) = spawn_node(&db.url, &blobs, &shared.path().join("a"), &[]);
    let mut big = String::from("agent_id,team_name,notes\n");
    for i in 0..400_000 {
        big.push_str(&format!(
            "agent{i},team{},\"some notes, quoted, for row {i}\"\n",
            i % 7
        ));
    }
    let upload = tokio::spawn({
        let (client, token) = (b.http.clone(), t.token.clone());
        async move {
            client
                .put(format!("{a_url}/api/v1/tables/crm/data"))
                .header("Authorization", format!("Token {token}"))
                .body(big)
                .send()
                .await
        }
    });
    // The original reaches blob storage while the CSV is parsed, and its
    // ingest job is recorded right after it: kill then.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    eventually(
        "node A ingesting (its original stored, its job recorded)",
        Duration::from_secs(30),
        || async {
            let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'ingest'")
                .fetch_one(&pool)
                .await
                .unwrap();
            let stored = files_under(&blob_dir).len() > before;
            if jobs == 1 && stored {
                Ok(())
            } else {
                Err(format!("{jobs} ingest jobs, original stored: {stored}"))
            }
        },
    )
    .await;
    a.kill().unwrap();
    a.wait().unwrap();
    pool.close().await;
    assert!(
        upload.await.unwrap().is_err(),
        "the client sees the connection drop"
    );

    // No half version: node B still has only the first version, active.
    let (_, table) = b.get(&t, "/api/v1/tables/crm").await;
    assert_eq!(table["versions"].as_array().unwrap().len(), 1, "{table}");
    assert_eq!(table["active_version"]["id"], first_id);
    let (_, call) = b
        .post_json(&t, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
        .await;
    assert_eq!(call["metadata"]["team_name"], "diamond");

    // Once A's lease on the upload runs out, B finishes it from the stored
    // original: one new version, complete, active.
    let killed = Instant::now();
    past_the_leases_of_a_killed_node(&b);
    let table = eventually("node B finishing the upload", Duration::from_secs(15), || async {
        let (_, table) = b.get(&t, "/api/v1/tables/crm").await;
        // The table and its versions are two reads: wait for the activation.
        if table["active_version"]["rows"] == 400_000 {
            Ok(table)
        } else {
            Err(table)
        }
    })
    .await;
    eprintln!("node B finished the upload {:?} after the kill", killed.elapsed());
    assert_eq!(table["versions"].as_array().unwrap().len(), 2, "{table}");
    assert_eq!(table["active_version"]["rows"], 400_000, "{table}");
    assert_ne!(table["active_version"]["id"], first_id);
    // The store points at it first, then B's memory: calls follow at once.
    eventually(
        "calls enriched from the finished upload",
        Duration::from_secs(1),
        || async {
            let (_, call) = b
                .post_json(&t, "/api/v1/calls", json!({"metadata": {"agent_id": "agent15"}}))
                .await;
            if call["metadata"]["team_name"] == "team1" {
                Ok(())
            } else {
                Err(call)
            }
        },
    )
    .await;
    b.stop().await;
}

#[tokio::test]
async fn an_ftp_upload_to_one_node_enriches_a_siprec_call_taken_by_the_other() {
    let Some(db) = PgDatabase::create().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    if !crate::siprec::have_sipp() {
        return;
    }
    let shared = tempfile::tempdir().unwrap();
    let blobs = format!("file://{}", shared.path().join("blobs").display());
    let node = |name: &str| {
        let mut config = test_config(&shared.path().join(name));
        config.database = Some(db.url.clone());
        config.blobs = Some(blobs.clone());
        config.refresh_interval_ms = 30_000;
        config
    };
    let a = TestApp::spawn_with(node("a")).await;
    let b = TestApp::spawn_with(node("b")).await;
    let t = a.create_tenant("acme");
    a.register_sbc(&t, "127.0.0.1");
    a.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let (status, body) = b
        .put_json(
            &t,
            "/api/v1/siprec",
            json!({"mapping": {"x_agent_id": "agent_id"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The CRM export over FTP to node A: active when curl returns.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("crm.csv");
    std::fs::write(&csv, SPEC_TABLE).unwrap();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", "-T"])
        .arg(&csv)
        .arg(format!("ftp://{}:{}@{}/", t.slug, t.password, a.ftp))
        .output()
        .await
        .expect("curl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A SIPREC call to node B, sent by sipp with audio.
    let tone = crate::siprec::tone_file(dir.path());
    let media_port = crate::siprec::free_udp_port() & !1;
    let xml = dir.path().join("siprec.xml");
    std::fs::write(&xml, crate::siprec::scenario(&tone, media_port)).unwrap();
    let out = crate::siprec::sipp(&xml, b.sip, "u1", dir.path(), media_port).await;
    assert!(
        out.status.success(),
        "sipp: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Either node serves it, enriched from the version A activated.
    let (_, on_a) = a.get(&t, "/api/v1/calls?metadata.team_name=diamond").await;
    assert_eq!(on_a["count"], 1, "{on_a}");
    let call = &on_a["data"][0];
    assert_eq!(call["source"], "siprec");
    assert_eq!(call["metadata"]["agent_id"], "cindy", "{call}");
    assert_eq!(call["enrichment"][0]["status"], "matched", "{call}");
    let id = call["unique_id"].as_str().unwrap();
    assert_eq!(
        crate::siprec::audio_state(&a, &t, id).await,
        "available",
        "B's recording is served by A"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_node_killed_mid_call_has_its_recording_finished_by_the_other() {
    let Some(db) = PgDatabase::create().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    if !crate::siprec::have_sipp() {
        return;
    }
    let shared = tempfile::tempdir().unwrap();
    let blobs = format!("file://{}", shared.path().join("blobs").display());
    let b = spawn_node_b(&db, &blobs, shared.path()).await;
    let t = b.create_tenant("acme");
    b.register_sbc(&t, "127.0.0.1");

    // Node A, a real process, stores the audio in blob storage every second.
    let a_dir = shared.path().join("a");
    let part_secs = [("CALLMETA_SIPREC__AUDIO_PART_SECS", "1")];
    let (mut a, _, a_sip) = spawn_node(&db.url, &blobs, &a_dir, &part_secs);

    // A call to A whose tone lasts 2 s; A dies before the BYE, once half a
    // second of audio (16,000 bytes of stereo 16-bit 8 kHz) is stored in parts.
    let dir = tempfile::tempdir().unwrap();
    let tone = crate::siprec::tone_file(dir.path());
    let media_port = crate::siprec::free_udp_port();
    let xml = dir.path().join("call.xml");
    std::fs::write(&xml, crate::siprec::scenario(&tone, media_port)).unwrap();
    let call = {
        let (xml, cwd) = (xml.clone(), dir.path().to_path_buf());
        tokio::spawn(async move { crate::siprec::sipp(&xml, a_sip, "u1", &cwd, media_port).await })
    };
    let blob_dir = shared.path().join("blobs");
    let stored = || {
        files_under(&blob_dir)
            .iter()
            .filter(|f| f.to_string_lossy().contains("/recordings/"))
            // Parts as stored; not one still being written under a temporary name.
            .filter(|f| f.extension().is_some_and(|e| e == "part"))
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum::<u64>()
    };
    eventually("node A storing audio parts", Duration::from_secs(20), || async {
        match stored() {
            bytes if bytes >= 16_000 => Ok(()),
            bytes => Err(format!("{bytes} bytes stored")),
        }
    })
    .await;
    a.kill().unwrap();
    a.wait().unwrap();
    let killed = Instant::now();
    past_the_leases_of_a_killed_node(&b);
    call.abort(); // sipp would wait for its BYE to be answered

    // B finishes the recording from the parts A stored, once A's lease ran
    // out: the audio up to a second or two before the kill.
    let (_, list) = b.get(&t, "/api/v1/calls").await;
    assert_eq!(list["count"], 1, "{list}");
    let id = list["data"][0]["unique_id"].as_str().unwrap().to_string();
    eventually(
        "node B finishing the recording",
        Duration::from_secs(15),
        || async {
            let (_, call) = b.get(&t, &format!("/api/v1/calls/{id}")).await;
            if call["audio_state"] == "available" {
                Ok(())
            } else {
                Err(call)
            }
        },
    )
    .await;
    eprintln!(
        "node B finished the recording {:?} after the kill",
        killed.elapsed()
    );
    let wav = crate::siprec::recording(&b, &t, &id).await;
    let (channels, rate, frames, left, _) = crate::siprec::wav_summary(&wav);
    assert_eq!((channels, rate), (2, 8000));
    let seconds = frames as f64 / 8000.0;
    assert!(
        (0.4..=2.1).contains(&seconds),
        "{seconds} s kept of the 2 s sent before the kill"
    );
    assert!(left / frames.max(1) as u64 > 1000, "the tone is there");
    assert!(
        files_under(&shared.path().join("blobs"))
            .iter()
            .all(|f| !f.to_string_lossy().contains("/recordings/")),
        "the parts are removed once the recording is attached"
    );

    // A, restarted on its data, finds its local file of the call already
    // finished elsewhere: it removes it and leaves the call as it is.
    let local: Vec<_> = files_under(&a_dir.join("recordings"));
    assert_eq!(local.len(), 1, "A's local file of the call: {local:?}");
    let (mut a, _, _) = spawn_node(&db.url, &blobs, &a_dir, &part_secs);
    eventually("A removing its local file", Duration::from_secs(10), || async {
        match files_under(&a_dir.join("recordings")) {
            files if files.is_empty() => Ok(()),
            files => Err(format!("{files:?}")),
        }
    })
    .await;
    a.kill().unwrap();
    a.wait().unwrap();
    assert_eq!(
        crate::siprec::recording(&b, &t, &id).await,
        wav,
        "the call's audio is unchanged"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_node_killed_mid_backfill_has_it_finished_by_the_other() {
    let Some(db) = PgDatabase::create().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    let shared = tempfile::tempdir().unwrap();
    let blobs = format!("file://{}", shared.path().join("blobs").display());
    let b = spawn_node_b(&db, &blobs, shared.path()).await;
    let t = b.create_tenant("fill");
    b.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    b.upload(&t, "crm", SPEC_TABLE).await;
    // 4,000 calls, 1,000 per agent, enriched from the first version.
    const CALLS: usize = 4_000;
    let mut posts = tokio::task::JoinSet::new();
    for chunk in 0..16 {
        let (client, url, token) = (b.http.clone(), b.url("/api/v1/calls"), t.token.clone());
        posts.spawn(async move {
            for i in (chunk..CALLS).step_by(16) {
                let agent = ["alice", "bob", "cindy", "dylan"][i % 4];
                let r = client
                    .post(&url)
                    .header("Authorization", format!("Token {token}"))
                    .json(&json!({"metadata": {"agent_id": agent, "n": i.to_string()}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        });
    }
    while let Some(done) = posts.join_next().await {
        done.unwrap();
    }
    b.upload(
        &t,
        "crm",
        "agent_id,team_name\nalice,onyx\nbob,onyx\ncindy,onyx\ndylan,onyx\n",
    )
    .await;

    // The back-fill is asked of node A, a real process, which is killed
    // once it has saved its first pages.
    let (mut a, a_url, _) = spawn_node(&db.url, &blobs, &shared.path().join("a"), &[]);
    let request = tokio::spawn({
        let (client, token) = (b.http.clone(), t.token.clone());
        async move {
            client
                .post(format!("{a_url}/api/v1/backfill"))
                .header("Authorization", format!("Token {token}"))
                .json(&json!({"dry_run": false}))
                .send()
                .await
        }
    });
    let id = eventually("node A saving a page", Duration::from_secs(30), || async {
        let (_, list) = b.get(&t, "/api/v1/backfills").await;
        match list["data"].as_array().and_then(|d| d.first()) {
            Some(fill) if fill["examined"].as_u64().unwrap_or(0) >= 500 => {
                assert_eq!(
                    fill["state"], "running",
                    "killed too late to test anything: {fill}"
                );
                Ok(fill["id"].as_str().unwrap().to_string())
            }
            _ => Err(list),
        }
    })
    .await;
    a.kill().unwrap();
    a.wait().unwrap();
    let killed = Instant::now();
    past_the_leases_of_a_killed_node(&b);
    assert!(
        request.await.unwrap().is_err(),
        "the client sees the connection drop"
    );

    // B goes on from A's last saved page once A's lease ran out.
    let fill = eventually(
        "node B finishing the back-fill",
        // Each of its 4,000 updates is a commit (a WAL flush): a disk
        // shared with builds makes that seconds slower, not wrong.
        Duration::from_secs(90),
        || async {
            let (_, fill) = b.get(&t, &format!("/api/v1/backfills/{id}")).await;
            if fill["state"] == "finished" {
                Ok(fill)
            } else {
                Err(fill)
            }
        },
    )
    .await;
    eprintln!(
        "node B finished the back-fill {:?} after the kill: {fill}",
        killed.elapsed()
    );
    assert_eq!(fill["examined"], CALLS, "every call once: {fill}");
    assert_eq!(fill["after"]["crm"]["matched"], CALLS, "{fill}");
    let (_, behind) = b.get(&t, "/api/v1/calls?metadata.team_name=onyx&limit=1").await;
    assert_eq!(behind["count"], CALLS, "every call re-enriched");
    b.stop().await;
}
