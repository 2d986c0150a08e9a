//! Erasure: `DELETE /api/v1/calls/{id}` and `DELETE /api/v1/tables/{name}`
//! remove what they name from the store, the index of calls, blob storage
//! and every node's memory. Each test runs on SQLite with blobs in the data
//! directory, or, with `CALLMETA_TEST_BACKEND=postgres`, on PostgreSQL with
//! blobs in an S3 server (moto's); what is left is read from the database
//! and the blob storage themselves.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use callmeta::config::Config;
use callmeta_app::blobs::s3::S3Settings;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::net::UdpSocket;

use crate::helpers::*;
use crate::s3::{S3Server, start_s3};

/// The bucket of these tests' S3 server.
const BUCKET: &str = "aging";

/// The real app on the test's backend, with what is needed to look inside
/// its database and blob storage.
pub(crate) struct Backend {
    pub(crate) app: TestApp,
    s3: Option<S3Server>,
}

/// The app on SQLite and local blobs, or on PostgreSQL and S3 when
/// `CALLMETA_TEST_BACKEND=postgres`; its job lease is short so that its
/// background loops look for due jobs five times a second.
pub(crate) async fn spawn_backend(configure: impl FnOnce(&mut Config)) -> Backend {
    let postgres = std::env::var("CALLMETA_TEST_BACKEND").as_deref() == Ok("postgres");
    let s3 = if postgres { start_s3().await } else { None };
    if let Some(s3) = &s3 {
        let r = reqwest::Client::new()
            .put(format!("{}/{BUCKET}", s3.endpoint))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "creating the bucket: {}", r.status());
    }
    let endpoint = s3.as_ref().map(|s| s.endpoint.clone());
    let app = TestApp::spawn_configured(|config| {
        config.job_lease_ms = 600;
        if let Some(endpoint) = endpoint {
            use_s3(config, &endpoint);
        }
        configure(config);
    })
    .await;
    Backend { app, s3 }
}

fn use_s3(config: &mut Config, endpoint: &str) {
    config.blobs = Some(format!("s3://{BUCKET}"));
    config.s3 = S3Settings {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
    };
}

impl Backend {
    /// A second node on the same database and blob storage (PostgreSQL
    /// only), polling the store only every 30 s: what reaches it sooner was
    /// announced.
    async fn second_node(&self, dir: &Path) -> Option<TestApp> {
        let database = self.app.database.clone()?;
        let mut config = test_config(dir);
        config.database = Some(database);
        config.refresh_interval_ms = 30_000;
        match &self.s3 {
            Some(s3) => use_s3(&mut config, &s3.endpoint),
            None => {
                config.blobs = Some(format!("file://{}", self.app.data_dir.join("blobs").display()));
            }
        }
        Some(TestApp::spawn_with(config).await)
    }

    /// Every key in blob storage, read from the S3 server's listing or the
    /// blob directory.
    pub(crate) async fn blob_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        match &self.s3 {
            Some(s3) => {
                let listing = reqwest::Client::new()
                    .get(format!("{}/{BUCKET}?list-type=2&max-keys=1000", s3.endpoint))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                for part in listing.split("<Key>").skip(1) {
                    keys.push(part.split("</Key>").next().unwrap_or_default().to_string());
                }
            }
            None => {
                let root = self.app.data_dir.join("blobs");
                let mut dirs = vec![root.clone()];
                while let Some(dir) = dirs.pop() {
                    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                        let path = entry.path();
                        if path.is_dir() {
                            dirs.push(path);
                        } else {
                            let key = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
                            keys.push(key);
                        }
                    }
                }
            }
        }
        keys.retain(|k| !k.starts_with("health/"));
        keys.sort();
        keys
    }

    /// The keys that hold `needle`.
    pub(crate) async fn blobs_with(&self, needle: &str) -> Vec<String> {
        let mut keys = self.blob_keys().await;
        keys.retain(|k| k.contains(needle));
        keys
    }

    /// One number read from the app's database: `sqlite` on SQLite,
    /// `postgres` on PostgreSQL, each binding `binds` in order.
    pub(crate) async fn count(&self, sqlite: &str, postgres: &str, binds: &[&str]) -> i64 {
        match &self.app.database {
            Some(url) => {
                let mut db = sqlx::postgres::PgConnection::connect(url).await.unwrap();
                let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(postgres.to_string()));
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_one(&mut db).await.unwrap()
            }
            None => {
                let url = format!(
                    "sqlite://{}?mode=ro",
                    self.app.data_dir.join("callmeta.db").display()
                );
                let mut db = sqlx::sqlite::SqliteConnection::connect(&url).await.unwrap();
                let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sqlite.to_string()));
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_one(&mut db).await.unwrap()
            }
        }
    }

    /// Rows of `jobs` with this id.
    pub(crate) async fn jobs(&self, id: &str) -> i64 {
        let sql = "SELECT COUNT(*) FROM jobs WHERE id = $1";
        self.count(sql, sql, &[id]).await
    }

    /// Calls the index of calls holds under `key` = `value` for the tenant
    /// `slug`: SQLite's full-text terms (`call_terms`), PostgreSQL's
    /// `call_keys` entries.
    pub(crate) async fn index_entries(&self, slug: &str, key: &str, value: &str) -> i64 {
        if self.app.database.is_some() {
            let entry = format!("m:{key}");
            let sql = "SELECT COUNT(*) FROM call_keys k JOIN tenants t ON t.num = k.tenant \
                       WHERE t.slug = $1 AND k.k = $2 AND k.v = $3";
            return self.count(sql, sql, &[slug, &entry, value]).await;
        }
        // A term spells the tenant's number, the key and the value in hex
        // (migration 0012).
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02X}")).collect::<String>();
        let num = "SELECT num FROM tenants WHERE slug = $1";
        let num = self.count(num, num, &[slug]).await;
        let term = format!("\"t{num}k{}v{}\"", hex(key), hex(value));
        let sql = "SELECT COUNT(*) FROM call_terms WHERE call_terms MATCH $1";
        self.count(sql, sql, &[&term]).await
    }
}

pub(crate) async fn delete(app: &TestApp, t: &Tenant, path: &str) -> (u16, Value) {
    let r = app
        .http
        .delete(app.url(path))
        .header("Authorization", format!("Token {}", t.token))
        .send()
        .await
        .unwrap();
    status_json(r).await
}

pub(crate) async fn spec_tenant(app: &TestApp, slug: &str) -> Tenant {
    let t = app.create_tenant(slug);
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let (status, body) = app.upload(&t, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201, "{body}");
    t
}

/// Drops a call with its audio over FTP, as customers do (curl: the
/// sidecar, then the WAV); its id. `None` when curl is not installed.
pub(crate) async fn drop_call_with_audio(
    app: &TestApp,
    t: &Tenant,
    name: &str,
    metadata: Value,
) -> Option<String> {
    if !crate::filedrop::have("curl") {
        return None;
    }
    let files = tempfile::tempdir().unwrap();
    let json_path = files.path().join(format!("{name}.json"));
    std::fs::write(&json_path, metadata.to_string()).unwrap();
    let wav_path = files.path().join(format!("{name}.wav"));
    std::fs::write(&wav_path, tiny_wav()).unwrap();
    for file in [&json_path, &wav_path] {
        let url = format!("ftp://{}:{}@{}/calls/", t.slug, t.password, app.ftp);
        let (ok, _, err) = crate::filedrop::run(
            tokio::process::Command::new("curl")
                .args(["-sS", "--max-time", "30", "-T"])
                .arg(file)
                .arg(&url),
        )
        .await;
        assert!(ok, "{err}");
    }
    let marker = metadata["case"].as_str().expect("a case marker");
    let (_, list) = app.get(t, &format!("/api/v1/calls?metadata.case={marker}")).await;
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(list["data"][0]["audio_state"], "available", "{list}");
    Some(list["data"][0]["unique_id"].as_str().unwrap().to_string())
}

/// 0.1 s of 8 kHz mono silence.
fn tiny_wav() -> Vec<u8> {
    let data_len = 1600u32;
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.resize(wav.len() + data_len as usize, 0);
    wav
}

/// A SIPREC recording client on UDP: an INVITE with one PCMU stream, then
/// RTP to the port answered.
struct Sbc {
    socket: UdpSocket,
    media: UdpSocket,
    server: SocketAddr,
    call_id: String,
    to_tag: String,
}

impl Sbc {
    fn request(&self, method: &str, cseq: u32, extra: &str, body: &str) -> String {
        let from = self.socket.local_addr().unwrap();
        let to_tag = if self.to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={}", self.to_tag)
        };
        format!(
            "{method} sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{}{cseq}\r\n\
             From: <sip:sbc@127.0.0.1>;tag=sbc\r\nTo: <sip:srs@127.0.0.1>{to_tag}\r\nCall-ID: {}\r\n\
             CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            self.call_id,
            self.call_id,
            body.len(),
        )
    }

    /// The final response to `method`.
    async fn send(&self, message: &str, method: &str) -> String {
        self.socket
            .send_to(message.as_bytes(), self.server)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, _) = tokio::time::timeout(Duration::from_secs(10), self.socket.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no response to {method}"))
                .unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let cseq = text
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("cseq:"))
                .unwrap_or("");
            if cseq.ends_with(method) && !text.starts_with("SIP/2.0 1") {
                return text;
            }
        }
    }

    /// Starts a recorded call: INVITE, 200, ACK. Returns the RTP port answered.
    async fn start(server: SocketAddr, call_id: &str) -> (Sbc, SocketAddr) {
        let mut sbc = Sbc {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            media: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
            call_id: call_id.into(),
            to_tag: String::new(),
        };
        let port = sbc.media.local_addr().unwrap().port();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n"
        );
        let invite = sbc.request(
            "INVITE",
            1,
            "X-Agent-Id: cindy\r\nContent-Type: application/sdp\r\n",
            &sdp,
        );
        let ok = sbc.send(&invite, "INVITE").await;
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        sbc.to_tag = ok
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("to:"))
            .and_then(|l| l.split(";tag=").nth(1))
            .expect("a To tag")
            .trim()
            .to_string();
        let rtp_port: u16 = ok
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next())
            .and_then(|p| p.parse().ok())
            .expect("an m-line in the answer");
        let ack = sbc.request("ACK", 1, "", "");
        sbc.socket.send_to(ack.as_bytes(), server).await.unwrap();
        (sbc, SocketAddr::new("127.0.0.1".parse().unwrap(), rtp_port))
    }

    /// One RTP packet of 20 ms of PCMU.
    async fn rtp(&self, to: SocketAddr, seq: u16) {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend(std::iter::repeat_n(0xA0u8, 160));
        self.media.send_to(&p, to).await.unwrap();
    }
}

/// A call dropped with its audio and a SIPREC call being recorded (parts in
/// blob storage, a recording job) are erased: 204, then 404; their audio,
/// parts, job and index entries are gone, read from the blob storage and
/// the database themselves; the tenant's other calls stay, and neither
/// another tenant nor an analyst token can erase a call.
#[tokio::test]
async fn an_erased_call_leaves_nothing_behind() {
    let backend = spawn_backend(|config| config.siprec.audio_part_secs = Some(1)).await;
    let app = &backend.app;
    let acme = spec_tenant(app, "acme").await;
    app.register_sbc(&acme, "127.0.0.1");
    let other = app.create_tenant("other");

    let Some(dropped) =
        drop_call_with_audio(app, &acme, "a", json!({"agent_id": "cindy", "case": "erase"})).await
    else {
        return;
    };
    let (status, kept) = app
        .post_json(
            &acme,
            "/api/v1/calls",
            json!({"metadata": {"agent_id": "cindy", "case": "keep"}}),
        )
        .await;
    assert_eq!(status, 201, "{kept}");
    let kept = kept["unique_id"].as_str().unwrap().to_string();

    // Before: indexed, listed, its audio stored.
    assert_eq!(backend.index_entries("acme", "case", "erase").await, 1);
    assert_eq!(backend.index_entries("acme", "team_name", "diamond").await, 2);
    assert_eq!(backend.blobs_with(&dropped).await.len(), 1);

    // Not by another tenant, nor by a token that may only read.
    let (status, body) = delete(app, &other, &format!("/api/v1/calls/{dropped}")).await;
    assert_eq!(status, 404, "{body}");
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
    let (status, body) = delete(app, &reader, &format!("/api/v1/calls/{dropped}")).await;
    assert_eq!(status, 403, "{body}");

    let (status, body) = delete(app, &acme, &format!("/api/v1/calls/{dropped}")).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = delete(app, &acme, &format!("/api/v1/calls/{dropped}")).await;
    assert_eq!(status, 404, "{body}");
    // Who erased it is in the audit log (once: the second DELETE erased nothing).
    let (_, audit) = app.get(&acme, "/api/v1/audit?action=call.erase").await;
    let entries = audit["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["object"], format!("calls/{dropped}"), "{audit}");
    assert_eq!(entries[0]["channel"], "api", "{audit}");
    assert_eq!(app.get(&acme, &format!("/api/v1/calls/{dropped}")).await.0, 404);
    assert_eq!(
        app.get(&acme, &format!("/api/v1/calls/{dropped}/audio")).await.0,
        404
    );
    let (_, list) = app.get(&acme, "/api/v1/calls?metadata.case=erase").await;
    assert_eq!(list["count"], 0, "{list}");
    let (_, list) = app.get(&acme, "/api/v1/calls?metadata.team_name=diamond").await;
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(list["data"][0]["unique_id"], kept.as_str());
    assert_eq!(backend.index_entries("acme", "case", "erase").await, 0);
    assert_eq!(backend.index_entries("acme", "case", "keep").await, 1);
    assert_eq!(backend.index_entries("acme", "team_name", "diamond").await, 1);
    assert_eq!(backend.blobs_with(&dropped).await, Vec::<String>::new());

    // A SIPREC call being recorded: its job, and parts of its audio in blob
    // storage (one a second).
    let (sbc, rtp_to) = Sbc::start(app.sip, "erase-mid-call").await;
    let (_, list) = app.get(&acme, "/api/v1/calls?metadata.case.missing=true").await;
    assert_eq!(list["count"], 1, "{list}");
    let recorded = list["data"][0]["unique_id"].as_str().unwrap().to_string();
    assert_eq!(backend.jobs(&recorded).await, 1, "the recording's job");
    let mut seq = 0u16;
    eventually(
        "a part of the recording in blob storage",
        Duration::from_secs(10),
        || {
            seq += 1;
            let (sbc, backend, recorded, seq) = (&sbc, &backend, &recorded, seq);
            async move {
                sbc.rtp(rtp_to, seq).await;
                let parts = backend.blobs_with(&format!("recordings/{recorded}/")).await;
                if parts.is_empty() {
                    Err("no part yet")
                } else {
                    Ok(())
                }
            }
        },
    )
    .await;
    let (status, body) = delete(app, &acme, &format!("/api/v1/calls/{recorded}")).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(backend.jobs(&recorded).await, 0, "the recording's job is gone");
    assert_eq!(app.get(&acme, &format!("/api/v1/calls/{recorded}")).await.0, 404);
    // The call ends: what its recording stored since goes too, and the call
    // does not come back.
    let bye = sbc.request("BYE", 2, "", "");
    sbc.send(&bye, "BYE").await;
    eventually(
        "nothing left of the recorded call",
        Duration::from_secs(10),
        || async {
            match backend.blobs_with(&recorded).await {
                left if left.is_empty() => Ok(()),
                left => Err(format!("{left:?}")),
            }
        },
    )
    .await;
    assert_eq!(app.get(&acme, &format!("/api/v1/calls/{recorded}")).await.0, 404);
    assert_eq!(backend.jobs(&recorded).await, 0);
    assert_eq!(app.get(&acme, &format!("/api/v1/calls/{kept}")).await.0, 200);
}

/// A deleted table is gone (404), with its versions' originals in blob
/// storage, from this node's memory at once and, on PostgreSQL, from
/// another node's within a second (told by the deletion, not by polling);
/// calls made before keep their results.
#[tokio::test]
async fn a_deleted_table_is_gone_everywhere() {
    let backend = spawn_backend(|_| {}).await;
    let app = &backend.app;
    let acme = spec_tenant(app, "acme").await;
    let (status, body) = app.upload(&acme, "crm", "agent_id,team_name\ncindy,onyx\n").await;
    assert_eq!(status, 201, "{body}");
    app.create_table(&acme, "sites", json!({"key": "site"})).await;
    let (status, body) = app.upload(&acme, "sites", "site,city\npar,Paris\n").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(backend.blobs_with("/tables/crm/").await.len(), 2);
    let second = tempfile::tempdir().unwrap();
    let node_b = backend.second_node(second.path()).await;
    let (_, before) = app
        .post_json(&acme, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
        .await;
    assert_eq!(before["metadata"]["team_name"], "onyx", "{before}");
    if let Some(b) = &node_b {
        eventually("node B enriching from crm", Duration::from_secs(5), || async {
            let (_, call) = b
                .post_json(&acme, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
                .await;
            if call["metadata"]["team_name"] == "onyx" {
                Ok(())
            } else {
                Err(call)
            }
        })
        .await;
    }

    let (status, body) = delete(app, &acme, "/api/v1/tables/crm").await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = delete(app, &acme, "/api/v1/tables/crm").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = delete(app, &acme, "/api/v1/tables/Not%20a%20name").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(app.get(&acme, "/api/v1/tables/crm").await.0, 404);
    let (_, tables) = app.get(&acme, "/api/v1/tables").await;
    assert_eq!(tables["count"], 1, "{tables}");
    assert_eq!(backend.blobs_with("/tables/crm/").await, Vec::<String>::new());
    assert_eq!(backend.blobs_with("/tables/sites/").await.len(), 1);
    let versions = "SELECT COUNT(*) FROM versions WHERE table_name = $1";
    assert_eq!(backend.count(versions, versions, &["crm"]).await, 0);

    // Calls from now on are enriched from the remaining table only.
    let (_, after) = app
        .post_json(
            &acme,
            "/api/v1/calls",
            json!({"metadata": {"agent_id": "cindy", "site": "par"}}),
        )
        .await;
    assert_eq!(after["metadata"]["city"], "Paris", "{after}");
    assert!(after["metadata"].get("team_name").is_none(), "{after}");
    let tables: Vec<&Value> = after["enrichment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["table"])
        .collect();
    assert_eq!(tables, [&json!("sites")]);
    if let Some(b) = &node_b {
        eventually("node B dropping crm", Duration::from_secs(1), || async {
            let (_, call) = b
                .post_json(&acme, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
                .await;
            if call["metadata"].get("team_name").is_none() {
                Ok(())
            } else {
                Err(call)
            }
        })
        .await;
    }
    // A call enriched before keeps what it was given.
    let id = before["unique_id"].as_str().unwrap();
    let (_, kept) = app.get(&acme, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(kept["metadata"]["team_name"], "onyx");

    // The name can be used again, from scratch.
    app.create_table(&acme, "crm", json!({"key": "agent_id"})).await;
    let (_, table) = app.get(&acme, "/api/v1/tables/crm").await;
    assert_eq!(table["versions"].as_array().map(Vec::len), Some(0), "{table}");
    if let Some(b) = node_b {
        b.stop().await;
    }
}

/// The web app's call page erases the call with its "Delete call" form,
/// which carries the session's CSRF token: without it nothing happens.
#[tokio::test]
async fn the_call_page_erases_a_call() {
    let app = TestApp::spawn().await;
    let acme = spec_tenant(&app, "acme").await;
    let (_, call) = app
        .post_json(&acme, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
        .await;
    let id = call["unique_id"].as_str().unwrap().to_string();
    let (cookie, csrf) = crate::webhooks::web_session(&app, &acme).await;
    let (status, page) = crate::webhooks::web_page(&app, &cookie, &format!("/calls/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("action=\"/calls/{id}/delete\"")), "{page}");
    assert!(page.contains("Delete call"), "{page}");

    let path = format!("/calls/{id}/delete");
    let (status, _) = crate::webhooks::web_post(&app, &cookie, &path, &[("csrf", "forged")]).await;
    assert_eq!(status, 403);
    assert_eq!(app.get(&acme, &format!("/api/v1/calls/{id}")).await.0, 200);
    let (status, _) = crate::webhooks::web_post(&app, &cookie, &path, &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(app.get(&acme, &format!("/api/v1/calls/{id}")).await.0, 404);
    let (status, _) = crate::webhooks::web_page(&app, &cookie, &format!("/calls/{id}")).await;
    assert_eq!(status, 404);
}
