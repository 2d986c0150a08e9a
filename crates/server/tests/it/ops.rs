//! Operations: the health endpoint and `callmeta migrate`.

use crate::helpers::*;

#[tokio::test]
async fn health_checks_the_database_and_the_blob_storage() {
    let app = TestApp::spawn().await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["blobs"], "ok");

    // Blob storage that cannot be written makes the node unhealthy, and says so.
    let blobs = app.data_dir.join("blobs");
    std::fs::remove_dir_all(&blobs).ok();
    std::fs::write(&blobs, b"not a directory").unwrap();
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "ok");
    assert_ne!(body["blobs"], "ok");
    app.stop().await;
}

#[test]
fn migrate_brings_a_new_database_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callmeta"))
        .args(["migrate", "--data-dir"])
        .arg(dir.path())
        .env_remove("CALLMETA_DATABASE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("callmeta.db").exists());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callmeta"))
        .args(["migrate", "--database", "mysql://nope"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
}

/// The final answer to an INVITE without an offer, sent from `socket`.
async fn invite_answer(socket: &tokio::net::UdpSocket, sip: std::net::SocketAddr, call_id: &str) -> String {
    use std::time::Duration;

    let branch = format!("z9hG4bK-{call_id}-{}", next_probe());
    let invite = format!(
        "INVITE sip:acme@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch}\r\nFrom: <sip:sbc@{local}>;tag=1\r\nTo: <sip:acme@{sip}>\r\nCall-ID: {call_id}-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:sbc@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: 0\r\n\r\n",
        local = socket.local_addr().unwrap()
    );
    socket.send_to(invite.as_bytes(), sip).await.unwrap();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .expect("the recorder answers")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !answer.starts_with("SIP/2.0 100") && answer.contains(&branch) {
            return answer;
        }
    }
}

fn next_probe() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A shutdown drains: a call under way goes on to its BYE and keeps its
/// audio, a new INVITE is answered 503, an FTP upload under way completes
/// and becomes the active version; then the server stops.
#[tokio::test]
async fn a_shutdown_lets_calls_and_uploads_under_way_finish() {
    use std::time::{Duration, Instant};

    use serde_json::json;

    if !crate::siprec::have_sipp() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config = test_config(data.path());
    let app = TestApp::spawn_with(config.clone()).await;
    let t = app.create_tenant("acme");
    app.register_sbc(&t, "127.0.0.1");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let (status, _) = app
        .put_json(
            &t,
            "/api/v1/siprec",
            json!({"mapping": {"x_agent_id": "agent_id"}}),
        )
        .await;
    assert_eq!(status, 200);
    let (sip, ftp) = (app.sip, app.ftp);

    // A call of about 2.6 s, and a 1 MB export sent at 300 kB/s.
    let dir = tempfile::tempdir().unwrap();
    let tone = crate::siprec::tone_file(dir.path());
    let media_port = crate::siprec::free_udp_port() & !1;
    let xml = dir.path().join("call.xml");
    std::fs::write(&xml, crate::siprec::scenario(&tone, media_port)).unwrap();
    let call = {
        let (xml, cwd) = (xml.clone(), dir.path().to_path_buf());
        tokio::spawn(async move { crate::siprec::sipp(&xml, sip, "u1", &cwd, media_port).await })
    };
    let mut csv = String::from("agent_id,team_name\n");
    for i in 0..40_000 {
        csv.push_str(&format!("agent{i},team{}\n", i % 9));
    }
    csv.push_str("cindy,diamond\n");
    let file = dir.path().join("crm.csv");
    std::fs::write(&file, &csv).unwrap();
    let upload = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "60", "--limit-rate", "300K", "-T"])
        .arg(&file)
        .arg(format!("ftp://{}:{}@{}/", t.slug, t.password, ftp))
        .output();
    let upload = tokio::spawn(upload);
    // Both under way: the call exists (it is created before its INVITE is
    // answered) and the export has started to arrive in the drop tree.
    let dropped = app.data_dir.join("drop/acme/crm.csv");
    eventually(
        "the call and the upload under way",
        Duration::from_secs(20),
        || async {
            let (_, calls) = app.get(&t, "/api/v1/calls").await;
            let received = std::fs::metadata(&dropped).map(|m| m.len()).unwrap_or(0);
            if calls["count"] == 1 && received > 0 {
                Ok(())
            } else {
                Err(format!("{} calls, {received} bytes received", calls["count"]))
            }
        },
    )
    .await;

    // Stop while both are under way.
    let stopping = Instant::now();
    let stopped = tokio::spawn(app.stop());
    // An INVITE (one the recorder answers without keeping anything) until the
    // answer says the recorder is draining: from an address no tenant
    // registered, it is refused 403 before the shutdown and 503 after.
    let unregistered = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    eventually("the recorder draining", Duration::from_secs(5), || async {
        let answer = invite_answer(&unregistered, sip, "probe").await;
        if answer.starts_with("SIP/2.0 503") {
            Ok(())
        } else {
            Err(answer)
        }
    })
    .await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let answer = invite_answer(&socket, sip, "late-call").await;
    assert!(
        answer.starts_with("SIP/2.0 503"),
        "a new call while draining: {answer}"
    );

    let call = call.await.unwrap();
    assert!(
        call.status.success(),
        "the call under way ends normally: {}",
        String::from_utf8_lossy(&call.stdout)
    );
    let upload = upload.await.unwrap().unwrap();
    assert!(
        upload.status.success(),
        "the upload under way completes: {}",
        String::from_utf8_lossy(&upload.stderr)
    );
    stopped.await.unwrap();
    eprintln!("stopped {:?} after the shutdown began", stopping.elapsed());

    // Everything is there after a restart.
    let app = TestApp::spawn_with(config).await;
    let (_, table) = app.get(&t, "/api/v1/tables/crm").await;
    assert_eq!(table["active_version"]["rows"], 40_001, "{table}");
    let (_, calls) = app.get(&t, "/api/v1/calls?metadata.agent_id=cindy").await;
    assert_eq!(calls["count"], 1, "{calls}");
    assert_eq!(calls["data"][0]["audio_state"], "available", "{calls}");
}
