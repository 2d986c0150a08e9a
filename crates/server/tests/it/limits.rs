//! The upload policy, the same on every channel: one size limit refused while
//! the bytes arrive and before anything is stored (API, web form, FTP, SFTP,
//! CLI); no sparse writes (FTP `REST` past the end of a file, an SFTP write
//! past it); the ingest memory budget (503 with Retry-After beyond it); the
//! per-tenant quota of rejected originals.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::filedrop::{have, run, sftp_command};
use crate::helpers::*;

const LIMIT: u64 = 1 << 20;

async fn app_with(configure: impl FnOnce(&mut callmeta::config::Config)) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    configure(&mut config);
    (TestApp::spawn_with(config).await, dir)
}

/// A valid CSV of at least `bytes` bytes, its rows tagged with `tag`.
fn csv_of(bytes: u64, tag: &str) -> String {
    let mut csv = String::from("agent_id,team_name,notes\n");
    let mut i = 0;
    while (csv.len() as u64) < bytes {
        csv.push_str(&format!("agent{i},{tag},some notes about agent {i}\n"));
        i += 1;
    }
    csv
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
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

/// Table originals in blob storage and uploads being received.
fn stored_uploads(app: &TestApp) -> Vec<PathBuf> {
    let mut files = files_under(&app.data_dir.join("blobs").join("tenants"));
    files.extend(files_under(&app.data_dir.join("spool")));
    files
}

async fn versions(app: &TestApp, t: &Tenant) -> Vec<Value> {
    let (status, table) = app.get(t, "/api/v1/tables/crm").await;
    assert_eq!(status, 200, "{table}");
    table["versions"].as_array().cloned().unwrap_or_default()
}

/// A web session: its cookie and the CSRF token of its forms.
async fn web_session(app: &TestApp, t: &Tenant) -> (String, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(app.url("/login"))
        .form(&[("tenant", t.slug.as_str()), ("password", t.password.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = client
        .get(app.url("/tables"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("forms carry the CSRF token")
        .to_string();
    (cookie, csrf)
}

#[tokio::test]
async fn an_oversize_upload_is_refused_on_every_channel_before_anything_is_stored() {
    let (app, _dir) = app_with(|c| c.limits.max_file_bytes = LIMIT).await;
    let t = app.create_tenant("sized");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let big = csv_of(LIMIT + LIMIT / 2, "big");
    let files = tempfile::tempdir().unwrap();
    let big_path = files.path().join("big.csv");
    std::fs::write(&big_path, &big).unwrap();

    // API, with a Content-Length: 413 before the body is read.
    let (status, body) = app.upload(&t, "crm", big.clone()).await;
    assert_eq!(status, 413, "{body}");
    assert!(error_detail(&body).contains(&LIMIT.to_string()), "{body}");
    // API, streamed without a length: 413 once the limit is crossed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.as_bytes().chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let (status, body) = app
        .upload(
            &t,
            "crm",
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert_eq!(status, 413, "{body}");

    // The web form: 413, the tables page saying why.
    let (cookie, csrf) = web_session(&app, &t).await;
    let form = reqwest::multipart::Form::new().text("csrf", csrf).part(
        "file",
        reqwest::multipart::Part::bytes(big.clone().into_bytes()).file_name("big.csv"),
    );
    let r = reqwest::Client::new()
        .post(app.url("/tables/crm/upload"))
        .header("cookie", &cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("over the limit"));

    // The CLI (on the same configuration): an error naming the limit.
    let out = app
        .cli(&["table", "import", &t.slug, "crm"])
        .arg(&big_path)
        .env("CALLMETA_LIMITS__MAX_FILE_BYTES", LIMIT.to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("over the limit"), "{err}");

    // FTP: 552, and the partial file is gone.
    if have("curl") {
        let url = format!("ftp://{}:{}@{}/big.csv", t.slug, t.password, app.ftp);
        let (ok, _, err) = run(Command::new("curl")
            .args(["-sS", "--max-time", "30", "-T"])
            .arg(&big_path)
            .arg(&url))
        .await;
        assert!(!ok);
        // curl reports the 552 reply as "(70) Exceeded storage allocation".
        assert!(
            err.contains("(70)") && err.contains("Exceeded storage allocation"),
            "{err}"
        );
    }

    // SFTP: a failure status.
    if have("sftp") && have("sshpass") {
        let batch = files.path().join("batch");
        std::fs::write(&batch, format!("put {} /big-sftp.csv\n", big_path.display())).unwrap();
        let inner = sftp_command(&app, &t.slug, batch.to_str().unwrap(), None);
        let mut cmd = Command::new("sshpass");
        cmd.args(["-p", &t.password])
            .arg(inner.as_std().get_program())
            .args(inner.as_std().get_args());
        let (ok, out, err) = run(&mut cmd).await;
        assert!(!ok, "{out} {err}");
    }

    // Nothing was stored: no version, no original, no spool file, no
    // upload left in the drop tree.
    assert_eq!(versions(&app, &t).await, Vec::<Value>::new());
    assert_eq!(stored_uploads(&app), Vec::<PathBuf>::new());
    let drop = files_under(&app.data_dir.join("drop").join(&t.slug));
    assert!(
        !drop.iter().any(|f| f.to_string_lossy().contains("big")),
        "{drop:?}"
    );

    // Within the limit, every channel still works.
    let (status, body) = app.upload(&t, "crm", csv_of(LIMIT / 2, "small")).await;
    assert_eq!(status, 201, "{body}");
    app.stop().await;
}

/// Reads one FTP reply (its last line, for multi-line replies).
pub(crate) async fn reply(control: &mut BufReader<TcpStream>) -> String {
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(30), control.read_line(&mut line))
            .await
            .expect("an FTP reply in time")
            .unwrap();
        assert!(n > 0, "the FTP server closed the connection");
        if line.len() >= 4 && line.as_bytes()[3] == b' ' {
            return line;
        }
    }
}

/// Sends one FTP command and reads its reply.
pub(crate) async fn command(control: &mut BufReader<TcpStream>, line: &str) -> String {
    control
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    reply(control).await
}

#[tokio::test]
async fn ftp_rest_past_the_end_of_a_file_is_refused() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("sparse");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let mut control = BufReader::new(TcpStream::connect(app.ftp).await.unwrap());
    assert!(reply(&mut control).await.starts_with("220"));
    assert!(
        command(&mut control, &format!("USER {}", t.slug))
            .await
            .starts_with("331")
    );
    let logged_in = command(&mut control, &format!("PASS {}", t.password)).await;
    assert!(logged_in.starts_with("230"), "{logged_in}");
    assert!(command(&mut control, "TYPE I").await.starts_with("200"));

    let rest = command(&mut control, "REST 1073741800").await;
    assert!(rest.starts_with("350"), "{rest}");
    let pasv = command(&mut control, "PASV").await;
    assert!(pasv.starts_with("227"), "{pasv}");
    let numbers: Vec<u16> = pasv
        .split(['(', ')'])
        .nth(1)
        .expect("a PASV address")
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    let port = numbers[4] * 256 + numbers[5];
    let mut data = TcpStream::connect((app.ftp.ip(), port)).await.unwrap();
    control.get_mut().write_all(b"STOR sparse.csv\r\n").await.unwrap();
    let _ = data.write_all(b"agent_id,x\n").await;
    drop(data);
    let mut last = reply(&mut control).await;
    if last.starts_with("150") || last.starts_with("125") {
        last = reply(&mut control).await;
    }
    assert!(last.starts_with("550"), "{last}");
    let _ = command(&mut control, "QUIT").await;

    // No 1 GiB file of zeros, no version.
    let file = app.data_dir.join("drop").join(&t.slug).join("sparse.csv");
    assert!(!file.exists(), "{}", file.display());
    assert_eq!(versions(&app, &t).await, Vec::<Value>::new());
    assert_eq!(stored_uploads(&app), Vec::<PathBuf>::new());
    app.stop().await;
}

/// An SSH client's handler that trusts the server's key (it is the test's
/// own server).
pub(crate) struct AnyHostKey;

impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

#[tokio::test]
async fn an_sftp_write_past_the_end_of_a_file_is_refused() {
    use russh_sftp::protocol::{FileAttributes, OpenFlags};
    let app = TestApp::spawn().await;
    let t = app.create_tenant("holes");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let mut ssh = russh::client::connect(Arc::new(russh::client::Config::default()), app.sftp, AnyHostKey)
        .await
        .unwrap();
    let auth = ssh.authenticate_password(&t.slug, &t.password).await.unwrap();
    assert!(auth.success());
    let channel = ssh.channel_open_session().await.unwrap();
    channel.request_subsystem(true, "sftp").await.unwrap();
    let sftp = russh_sftp::client::RawSftpSession::new(channel.into_stream());
    sftp.init().await.unwrap();
    let handle = sftp
        .open(
            "/holes.csv",
            OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
            FileAttributes::empty(),
        )
        .await
        .unwrap()
        .handle;
    sftp.write(&handle, 0, b"agent_id,team_name\n".to_vec())
        .await
        .unwrap();
    // In order, even rewriting what is there, is fine.
    sftp.write(&handle, 9, b"team_name\nalice,x\n".to_vec())
        .await
        .unwrap();
    // Far further on (within the size limit): refused, and the upload is
    // discarded at close.
    let refused = sftp.write(&handle, (1 << 30) - 64, b"bob,y\n".to_vec()).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(sftp.close(&handle).await.is_err());

    let file = app.data_dir.join("drop").join(&t.slug).join("holes.csv");
    assert!(!file.exists(), "{}", file.display());
    assert_eq!(versions(&app, &t).await, Vec::<Value>::new());
    assert_eq!(stored_uploads(&app), Vec::<PathBuf>::new());
    app.stop().await;
}

#[tokio::test]
async fn rejected_originals_are_kept_within_the_tenant_quota_and_their_reports_stay() {
    let (app, _dir) = app_with(|c| c.uploads.rejected_quota_bytes = 2_500).await;
    rejected_originals_story(app).await;
    // The same on PostgreSQL, when a server is given.
    if let Some(db) = PgDatabase::create().await {
        let (app, _dir) = app_with(|c| {
            c.uploads.rejected_quota_bytes = 2_500;
            c.database = Some(db.url.clone());
        })
        .await;
        rejected_originals_story(app).await;
    }
}

async fn rejected_originals_story(app: TestApp) {
    let t = app.create_tenant("quota");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    for n in 0..3 {
        // No agent_id column: rejected.
        let csv = csv_of(1_000, &format!("v{n}")).replace("agent_id,", "agent,");
        let (status, body) = app.upload(&t, "crm", csv).await;
        assert_eq!(status, 422, "{body}");
    }
    let versions = versions(&app, &t).await;
    assert_eq!(versions.len(), 3);
    let originals = stored_uploads(&app);
    // Newest first: the two newest originals fit in 2,500 bytes, the oldest does not.
    for (version, kept) in versions.iter().zip([true, true, false]) {
        assert_eq!(version["state"], "rejected");
        assert!(version["report"]["error"].as_str().unwrap().contains("agent_id"));
        let id = version["id"].as_str().unwrap();
        let present = originals.iter().any(|f| f.to_string_lossy().contains(id));
        assert_eq!(present, kept, "{id}: {originals:?}");
    }
    app.stop().await;
}

/// Uploads `n` different CSVs of `bytes` each at once; their statuses and
/// `Retry-After` headers.
async fn parallel_uploads(
    app: &TestApp,
    t: &Tenant,
    n: usize,
    bytes: u64,
    round: usize,
) -> Vec<(u16, Option<String>, Value)> {
    let uploads = (0..n).map(|i| {
        let request = app
            .http
            .put(app.url("/api/v1/tables/crm/data"))
            .header("Authorization", format!("Token {}", t.token))
            .body(csv_of(bytes, &format!("r{round}u{i}")));
        async move {
            let r = request.send().await.unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let status = r.status().as_u16();
            (status, retry, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    });
    futures_util::future::join_all(uploads).await
}

#[tokio::test]
async fn uploads_beyond_the_ingest_budget_get_503_with_retry_after_or_wait_their_turn() {
    // A budget of 1 MiB holds one upload at a time; without a wait, the
    // others are refused as busy, and nothing of theirs is stored.
    let (app, _dir) = app_with(|c| {
        c.uploads.memory_budget_bytes = 1 << 20;
        c.uploads.budget_wait_ms = 0;
    })
    .await;
    let t = app.create_tenant("budget");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let mut accepted = 0;
    let mut busy = 0;
    for round in 0..5 {
        for (status, retry, body) in parallel_uploads(&app, &t, 4, 4 << 20, round).await {
            match status {
                201 => accepted += 1,
                503 => {
                    busy += 1;
                    assert_eq!(retry.as_deref(), Some("10"), "{body}");
                    assert_eq!(body["errors"][0]["id"], "busy", "{body}");
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        if busy > 0 {
            break;
        }
    }
    assert!(busy > 0, "four parallel uploads never overlapped in five rounds");
    assert!(accepted > 0);
    assert_eq!(versions(&app, &t).await.len(), accepted);
    app.stop().await;

    // With a wait, they take turns and all go through.
    let (app, _dir) = app_with(|c| {
        c.uploads.memory_budget_bytes = 1 << 20;
        c.uploads.budget_wait_ms = 60_000;
    })
    .await;
    let t = app.create_tenant("budget");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let results = parallel_uploads(&app, &t, 3, 2 << 20, 0).await;
    assert!(results.iter().all(|(s, _, _)| *s == 201), "{results:?}");
    app.stop().await;
}
