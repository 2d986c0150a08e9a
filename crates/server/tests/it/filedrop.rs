//! CSV exports and call drops over FTP, FTPS and SFTP, pushed with the
//! clients customers use: curl (FTP and `--ssl-reqd` FTPS), lftp (with its
//! temporary-name-then-rename upload) and OpenSSH's sftp (password and key).

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::helpers::{SPEC_TABLE, Tenant, TestApp, eventually, test_config};

pub(crate) fn have(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("CALLMETA_TEST_CLIENTS").as_deref() != Ok("required"),
            "{tool} is required (CALLMETA_TEST_CLIENTS=required); install it with apt-get"
        );
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

pub(crate) async fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("client finished in time")
        .expect("client runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ftp_url(app: &TestApp, t: &Tenant, path: &str) -> String {
    format!("ftp://{}:{}@{}{}", t.slug, t.password, app.ftp, path)
}

async fn curl(args: &[&str]) -> (bool, String, String) {
    run(Command::new("curl").args(["-sS", "--max-time", "30"]).args(args)).await
}

pub(crate) fn temp_file(dir: &Path, name: &str, content: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(content))
        .expect("write temp file");
    path.to_string_lossy().into_owned()
}

async fn active_version(app: &TestApp, t: &Tenant, table: &str) -> Value {
    let (status, json) = app.get(t, &format!("/api/v1/tables/{table}")).await;
    assert_eq!(status, 200, "{json}");
    json
}

async fn spec_tenant(app: &TestApp, slug: &str) -> Tenant {
    let t = app.create_tenant(slug);
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    t
}

async fn enriched_team(app: &TestApp, t: &Tenant, agent: &str) -> Value {
    let (status, call) = app
        .post_json(t, "/api/v1/calls", json!({"metadata": {"agent_id": agent}}))
        .await;
    assert_eq!(status, 201, "{call}");
    call["metadata"]["team_name"].clone()
}

#[tokio::test]
async fn curl_ftp_upload_becomes_the_active_version_with_a_report() {
    if !have("curl") {
        return;
    }
    let app = TestApp::spawn().await;
    let acme = spec_tenant(&app, "acme").await;
    let other = spec_tenant(&app, "other").await;
    let dir = tempfile::tempdir().unwrap();
    let csv = temp_file(dir.path(), "agents.csv", SPEC_TABLE.as_bytes());

    let (ok, _, err) = curl(&["-T", &csv, &ftp_url(&app, &acme, "/")]).await;
    assert!(ok, "curl upload: {err}");
    // The reply to STOR comes after processing: the version is already active.
    let table = active_version(&app, &acme, "crm").await;
    let active = table["active_version"].clone();
    assert_eq!(active["channel"], "ftp", "{table}");
    assert_eq!(active["rows"], 4, "{table}");
    assert_eq!(enriched_team(&app, &acme, "cindy").await, "diamond");

    // The report is next to the upload, readable by the uploader.
    let (ok, report, err) = curl(&[&ftp_url(&app, &acme, "/agents.csv.report.txt")]).await;
    assert!(ok, "{err}");
    assert!(report.starts_with("ACCEPTED: 4 rows"), "{report}");
    assert!(report.contains("state:      active"), "{report}");

    // Another tenant sees nothing of it, and cannot reach it.
    let (ok, listing, _) = curl(&["-l", &ftp_url(&app, &other, "/")]).await;
    assert!(ok);
    assert!(!listing.contains("agents.csv"), "{listing}");
    let (ok, _, _) = curl(&[&ftp_url(&app, &other, "/../acme/agents.csv")]).await;
    assert!(!ok, "a path out of the tenant's tree is refused");
    let (ok, _, _) = curl(&[&ftp_url(&app, &other, "/%2e%2e/acme/agents.csv")]).await;
    assert!(!ok);
    assert_eq!(
        active_version(&app, &other, "crm").await["active_version"],
        Value::Null
    );

    // The same content again is recognised; a rejected upload keeps the version.
    let (ok, _, _) = curl(&["-T", &csv, &ftp_url(&app, &acme, "/again.csv")]).await;
    assert!(ok);
    let (_, report, _) = curl(&[&ftp_url(&app, &acme, "/again.csv.report.txt")]).await;
    assert!(report.starts_with("UNCHANGED"), "{report}");
    let bad = temp_file(dir.path(), "bad.csv", b"name,city\nalice,Paris\n");
    let (ok, _, _) = curl(&["-T", &bad, &ftp_url(&app, &acme, "/")]).await;
    assert!(ok);
    let (_, report, _) = curl(&[&ftp_url(&app, &acme, "/bad.csv.report.txt")]).await;
    assert!(report.starts_with("REJECTED"), "{report}");
    assert!(
        report.contains("agent_id"),
        "the report names the missing key column: {report}"
    );
    assert_eq!(
        active_version(&app, &acme, "crm").await["active_version"]["id"],
        active["id"],
        "the previous version stays active"
    );

    // A folder per table; an unknown table is explained in the report.
    app.create_table(&acme, "agents", json!({"key": "agent_id"}))
        .await;
    let (ok, _, err) = curl(&["-T", &csv, &ftp_url(&app, &acme, "/agents/")]).await;
    assert!(ok, "{err}");
    assert_eq!(
        active_version(&app, &acme, "agents").await["active_version"]["rows"],
        4
    );
    let (ok, _, _) = curl(&["--ftp-create-dirs", "-T", &csv, &ftp_url(&app, &acme, "/nosuch/")]).await;
    assert!(ok);
    let (_, report, _) = curl(&[&ftp_url(&app, &acme, "/nosuch/agents.csv.report.txt")]).await;
    assert!(report.contains("there is no table \"nosuch\""), "{report}");

    // Deleting a report or the upload loses no version.
    let (ok, _, err) = curl(&[
        &ftp_url(&app, &acme, "/"),
        "-Q",
        "DELE agents.csv.report.txt",
        "-Q",
        "DELE agents.csv",
    ])
    .await;
    assert!(ok, "{err}");
    let (_, json) = app.get(&acme, "/api/v1/tables/crm").await;
    assert_eq!(json["versions"].as_array().map(Vec::len), Some(2), "{json}");
}

#[tokio::test]
async fn ftps_with_curl_and_required_tls() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.transfer.tls_required = true;
    let app = TestApp::spawn_with(config).await;
    let acme = spec_tenant(&app, "acme").await;
    let files = tempfile::tempdir().unwrap();
    let csv = temp_file(files.path(), "export.csv", SPEC_TABLE.as_bytes());

    // Plain FTP is refused when TLS is required.
    let (ok, _, _) = curl(&["-T", &csv, &ftp_url(&app, &acme, "/")]).await;
    assert!(!ok, "a plain-text login is refused");
    assert_eq!(
        active_version(&app, &acme, "crm").await["active_version"],
        Value::Null
    );

    // Explicit TLS with the certificate generated into the data dir.
    let cert = dir.path().join("keys/ftps-cert.pem");
    assert!(cert.exists());
    let (ok, _, err) = curl(&[
        "--ssl-reqd",
        "--cacert",
        &cert.to_string_lossy(),
        "-T",
        &csv,
        &ftp_url(&app, &acme, "/"),
    ])
    .await;
    assert!(ok, "FTPS upload: {err}");
    assert_eq!(
        active_version(&app, &acme, "crm").await["active_version"]["channel"],
        "ftp"
    );
    app.stop().await;
}

#[tokio::test]
async fn lftp_uploads_to_a_temporary_name_then_renames() {
    if !have("lftp") {
        return;
    }
    let app = TestApp::spawn().await;
    let acme = spec_tenant(&app, "acme").await;
    let files = tempfile::tempdir().unwrap();
    let csv = temp_file(files.path(), "export.csv", SPEC_TABLE.as_bytes());
    let script = format!(
        "set ftp:ssl-allow no; set xfer:use-temp-file yes; set net:max-retries 1; \
         put {csv} -o crm-export.csv; cls -1; bye"
    );
    let (ok, out, err) = run(Command::new("lftp")
        .args(["-u", &format!("{},{}", acme.slug, acme.password)])
        .args(["-p", &app.ftp.port().to_string()])
        .args(["-e", &script, &app.ftp.ip().to_string()]))
    .await;
    assert!(ok, "lftp: {out} {err}");
    let table = active_version(&app, &acme, "crm").await;
    assert_eq!(table["active_version"]["channel"], "ftp", "{table}");
    assert_eq!(table["active_version"]["filename"], "crm-export.csv", "{table}");
    // One version: the temporary name was not ingested on its own.
    assert_eq!(table["versions"].as_array().map(Vec::len), Some(1), "{table}");
    let home = app.data_dir.join("drop/acme");
    assert!(home.join("crm-export.csv.report.txt").exists());
    assert_eq!(enriched_team(&app, &acme, "dylan").await, "saphire");
}

pub(crate) fn sftp_command(app: &TestApp, user: &str, batch: &str, key: Option<&Path>) -> Command {
    let mut cmd = Command::new("sftp");
    // `-b` implies BatchMode; the first value of an option wins, so a
    // password login (through sshpass) states it first.
    match key {
        None => cmd.args(["-o", "BatchMode=no"]),
        Some(key) => cmd
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
            .arg(key),
    };
    cmd.args(["-b", batch, "-P", &app.sftp.port().to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "LogLevel=ERROR"])
        .arg(format!("{user}@{}", app.sftp.ip()));
    cmd
}

#[tokio::test]
async fn sftp_with_a_password_and_with_a_key() {
    if !have("sftp") || !have("sshpass") || !have("ssh-keygen") {
        return;
    }
    let app = TestApp::spawn().await;
    let acme = spec_tenant(&app, "acme").await;
    let other = spec_tenant(&app, "other").await;
    let files = tempfile::tempdir().unwrap();
    let csv = temp_file(files.path(), "export.csv", SPEC_TABLE.as_bytes());
    let batch = temp_file(
        files.path(),
        "batch",
        format!(
            "put {csv} /crm-export.csv\nls -1 /\nget /crm-export.csv.report.txt {}/report.txt\n",
            files.path().display()
        )
        .as_bytes(),
    );
    let mut cmd = Command::new("sshpass");
    cmd.args(["-p", &acme.password]);
    let inner = sftp_command(&app, &acme.slug, &batch, None);
    cmd.arg(inner.as_std().get_program())
        .args(inner.as_std().get_args());
    let (ok, out, err) = run(&mut cmd).await;
    assert!(ok, "sftp: {out} {err}");
    assert!(out.contains("crm-export.csv"), "{out}");
    let table = active_version(&app, &acme, "crm").await;
    assert_eq!(table["active_version"]["channel"], "sftp", "{table}");
    let report = std::fs::read_to_string(files.path().join("report.txt")).unwrap();
    assert!(report.starts_with("ACCEPTED: 4 rows"), "{report}");

    // A wrong password is refused.
    let mut cmd = Command::new("sshpass");
    cmd.args(["-p", "not-the-password"]);
    let inner = sftp_command(&app, &acme.slug, &batch, None);
    cmd.arg(inner.as_std().get_program())
        .args(inner.as_std().get_args());
    let (ok, _, _) = run(&mut cmd).await;
    assert!(!ok);

    // Key login, after `callmeta tenant add-key`.
    let key = files.path().join("id_ed25519");
    let (ok, _, err) = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ops@acme", "-f"])
        .arg(&key))
    .await;
    assert!(ok, "{err}");
    let out = app
        .cli(&["tenant", "add-key", "acme", &format!("{}.pub", key.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let escape = temp_file(files.path(), "escape", b"ls /../other\nget /../other/x.csv\n");
    let list = temp_file(files.path(), "list", b"ls -1 /\n");
    let keyed = |batch: &str, user: &str| sftp_command(&app, user, batch, Some(&key));
    let (ok, out, err) = run(&mut keyed(&list, "acme")).await;
    assert!(ok, "key login: {out} {err}");
    assert!(out.contains("crm-export.csv"), "{out}");
    // The key is acme's, not other's.
    let (ok, _, _) = run(&mut keyed(&list, &other.slug)).await;
    assert!(!ok, "another tenant's key is refused");
    // Nothing outside the tree.
    let (ok, _, _) = run(&mut keyed(&escape, "acme")).await;
    assert!(!ok, "`..` is refused");
}

/// An FTP client that starts a STOR and is cut off mid-transfer (the data
/// connection reset): the partial file never becomes a version.
#[tokio::test]
async fn an_aborted_ftp_upload_leaves_the_previous_version_active() {
    let app = TestApp::spawn().await;
    let acme = spec_tenant(&app, "acme").await;
    let (status, first) = app.upload(&acme, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201, "{first}");

    let control = TcpStream::connect(app.ftp).await.unwrap();
    let (read, mut write) = control.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut expect = async |code: &str| {
        let line = lines.next_line().await.unwrap().unwrap_or_default();
        assert!(line.starts_with(code), "expected {code}, got {line}");
        line
    };
    expect("220").await;
    write
        .write_all(format!("USER {}\r\n", acme.slug).as_bytes())
        .await
        .unwrap();
    expect("331").await;
    write
        .write_all(format!("PASS {}\r\n", acme.password).as_bytes())
        .await
        .unwrap();
    expect("230").await;
    write.write_all(b"TYPE I\r\n").await.unwrap();
    expect("200").await;
    write.write_all(b"EPSV\r\n").await.unwrap();
    let epsv = expect("229").await;
    let port: u16 = epsv
        .split("|||")
        .nth(1)
        .and_then(|s| s.split('|').next())
        .and_then(|p| p.parse().ok())
        .expect("EPSV port");
    let data = TcpStream::connect((app.ftp.ip(), port)).await.unwrap();
    write.write_all(b"STOR partial.csv\r\n").await.unwrap();
    expect("150").await;
    let mut data = data;
    let sent = b"agent_id,team_name\nzed,onyx\nyan,";
    data.write_all(sent).await.unwrap();
    data.flush().await.unwrap();
    // Cut off once the server has written what was sent.
    let partial = app.data_dir.join("drop/acme/partial.csv");
    eventually("the partial file written", Duration::from_secs(10), || async {
        match std::fs::metadata(&partial).map(|m| m.len()) {
            Ok(len) if len == sent.len() as u64 => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    // Reset rather than close: the transfer is cut, not finished.
    let std = data.into_std().unwrap();
    socket2::SockRef::from(&std)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(std);
    drop(write);
    // The server discards the cut-off file: that is the end of its handling.
    eventually("the partial file discarded", Duration::from_secs(10), || async {
        if partial.exists() {
            Err("still there")
        } else {
            Ok(())
        }
    })
    .await;

    let table = active_version(&app, &acme, "crm").await;
    assert_eq!(table["active_version"]["id"], first["version"]["id"], "{table}");
    assert_eq!(table["versions"].as_array().map(Vec::len), Some(1), "{table}");
    assert!(
        !app.data_dir.join("drop/acme/partial.csv.report.txt").exists(),
        "no report: nothing was processed"
    );
}

/// An SFTP client killed in the middle of a `put`: the session ends with
/// the file still open for writing, so the partial file is discarded and
/// never becomes a version.
#[tokio::test]
async fn an_sftp_client_killed_mid_upload_leaves_the_previous_version_active() {
    if !have("sftp") || !have("sshpass") {
        return;
    }
    let app = TestApp::spawn().await;
    let acme = spec_tenant(&app, "acme").await;
    let (status, first) = app.upload(&acme, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201, "{first}");

    // A complete, valid export of 1 MB, sent at 256 kbit/s: 30 s if let run.
    let files = tempfile::tempdir().unwrap();
    let mut export = String::from("agent_id,team_name\n");
    for i in 0.. {
        if export.len() > 1_000_000 {
            break;
        }
        export.push_str(&format!("agent{i},team{}\n", i % 7));
    }
    let csv = temp_file(files.path(), "big.csv", export.as_bytes());
    let batch = temp_file(files.path(), "batch", format!("put {csv} /big.csv\n").as_bytes());
    let inner = sftp_command(&app, &acme.slug, &batch, None);
    let mut client = Command::new("sshpass")
        .args(["-p", &acme.password])
        .arg(inner.as_std().get_program())
        .args(["-l", "256"])
        .args(inner.as_std().get_args())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let partial = app.data_dir.join("drop/acme/big.csv");
    eventually("the upload under way", Duration::from_secs(20), || async {
        match std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) {
            len if len >= 16_384 => Ok(()),
            len => Err(format!("{len} bytes received")),
        }
    })
    .await;
    // sshpass and sftp both go: the SSH connection drops mid-transfer.
    let pid = client.id().unwrap();
    let sent = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    let _ = std::process::Command::new("pkill")
        .args(["-KILL", "-P", &pid.to_string()])
        .status();
    client.kill().await.unwrap();
    assert!(
        (sent as usize) < export.len(),
        "killed after {sent} of {} bytes",
        export.len()
    );
    eventually("the partial file discarded", Duration::from_secs(10), || async {
        if partial.exists() {
            Err("still there")
        } else {
            Ok(())
        }
    })
    .await;
    let table = active_version(&app, &acme, "crm").await;
    assert_eq!(table["active_version"]["id"], first["version"]["id"], "{table}");
    assert_eq!(table["versions"].as_array().map(Vec::len), Some(1), "{table}");
    assert!(
        !app.data_dir.join("drop/acme/big.csv.report.txt").exists(),
        "no report: nothing was processed"
    );
}

#[tokio::test]
async fn call_drops_with_sidecars_and_manifests_in_any_order() {
    if !have("curl") {
        return;
    }
    let app = TestApp::spawn().await;
    let acme = spec_tenant(&app, "acme").await;
    let (status, _) = app.upload(&acme, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201);
    let files = tempfile::tempdir().unwrap();
    let wav = tiny_wav();
    let a_wav = temp_file(files.path(), "a.wav", &wav);
    let a_json = temp_file(
        files.path(),
        "a.json",
        br#"{"agent_id": "cindy", "datetime": "2026-01-30T12:34:56Z", "phonenumber": "+33102030405"}"#,
    );
    let b_json = temp_file(files.path(), "b.json", br#"{"metadata": {"agent_id": "bob"}}"#);
    let b_wav = temp_file(files.path(), "b.wav", &wav);
    let c_wav = temp_file(files.path(), "c.wav", &wav);
    let manifest = temp_file(
        files.path(),
        "manifest.csv",
        b"file,agent_id,queue\nc.wav,dylan,vip\n",
    );

    // Audio first, then its sidecar; sidecar first, then its audio; a manifest.
    for file in [&a_wav, &a_json, &b_json, &b_wav, &c_wav, &manifest] {
        let (ok, _, err) = curl(&["-T", file, &ftp_url(&app, &acme, "/calls/")]).await;
        assert!(ok, "{err}");
    }
    let (_, list) = app.get(&acme, "/api/v1/calls?limit=10").await;
    assert_eq!(list["count"], 3, "{list}");
    let by_agent = |agent: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["metadata"]["agent_id"] == agent)
            .cloned()
            .unwrap_or_else(|| panic!("a call for {agent}: {list}"))
    };
    let cindy = by_agent("cindy");
    assert_eq!(cindy["source"], "ftp");
    assert_eq!(cindy["metadata"]["team_name"], "diamond");
    assert_eq!(cindy["timestamp"], "2026-01-30T12:34:56Z");
    assert_eq!(cindy["audio_state"], "available");
    assert_eq!(by_agent("bob")["metadata"]["team_name"], "ruby");
    let dylan = by_agent("dylan");
    assert_eq!(dylan["metadata"]["queue"], "vip");
    assert_eq!(dylan["metadata"]["city"], "Cape Town");

    let audio = app
        .http
        .get(app.url(&format!(
            "/api/v1/calls/{}/audio",
            cindy["unique_id"].as_str().unwrap()
        )))
        .header("Authorization", format!("Token {}", acme.token))
        .send()
        .await
        .unwrap();
    assert_eq!(audio.status(), 200);
    assert_eq!(audio.bytes().await.unwrap().as_ref(), wav.as_slice());

    let (_, report, _) = curl(&[&ftp_url(&app, &acme, "/calls/a.wav.report.txt")]).await;
    assert!(report.starts_with("CALL CREATED: "), "{report}");
    assert!(report.contains("table crm: matched"), "{report}");

    // Uploading the sidecar again finds the same call: no duplicate.
    let (ok, _, _) = curl(&["-T", &a_json, &ftp_url(&app, &acme, "/calls/")]).await;
    assert!(ok);
    let (_, list) = app.get(&acme, "/api/v1/calls?limit=10").await;
    assert_eq!(list["count"], 3, "{list}");

    // Bad metadata gets a report naming the problem; no call.
    let bad = temp_file(files.path(), "d.json", b"{\"agent_id\": ");
    let d_wav = temp_file(files.path(), "d.wav", &wav);
    for file in [&d_wav, &bad] {
        let (ok, _, _) = curl(&["-T", file, &ftp_url(&app, &acme, "/calls/")]).await;
        assert!(ok);
    }
    let (_, report, _) = curl(&[&ftp_url(&app, &acme, "/calls/d.json.report.txt")]).await;
    assert!(report.starts_with("REJECTED"), "{report}");
    assert!(report.contains("invalid JSON"), "{report}");
}

#[tokio::test]
async fn failed_logins_are_throttled() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.logins.max_failures = 3;
    let app = TestApp::spawn_with(config).await;
    let acme = spec_tenant(&app, "acme").await;
    let wrong = Tenant {
        slug: acme.slug.clone(),
        token: String::new(),
        password: "wrong-password".into(),
    };
    for _ in 0..3 {
        let (ok, _, _) = curl(&["-l", &ftp_url(&app, &wrong, "/")]).await;
        assert!(!ok);
    }
    let (ok, _, _) = curl(&["-l", &ftp_url(&app, &acme, "/")]).await;
    assert!(!ok, "even the right password is refused while blocked");
    // Only from that address: the owner elsewhere is not locked out.
    let (ok, _, err) = curl(&["-l", "--interface", "127.0.0.2", &ftp_url(&app, &acme, "/")]).await;
    assert!(ok, "{err}");
}

/// A valid 8 kHz mono WAV of 0.1 s of silence.
pub(crate) fn tiny_wav() -> Vec<u8> {
    let samples = 800u32;
    let data_len = samples * 2;
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
