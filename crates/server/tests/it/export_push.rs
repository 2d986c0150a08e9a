//! The daily export push: the previous day's calls written to a real SFTP
//! server (OpenSSH's `sshd`, started by the test in a temporary directory on
//! a free port with its own host key, logging the current user in by key)
//! and to a real S3-protocol server (moto's), then read back with a CSV
//! reader (or line by line for NDJSON): that day's calls of that tenant,
//! and only those.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use callmeta::config::Config;
use callmeta_app::blobs::BlobStore;
use callmeta_app::blobs::s3::{S3Blobs, S3Settings};
use callmeta_app::clock::Clock;
use serde_json::{Value, json};

use crate::helpers::{Tenant, TestApp, error_detail, eventually};

const DAY_MS: i64 = 86_400_000;

/// OpenSSH's server on 127.0.0.1, as the current user, key login only.
struct SshServer {
    child: Child,
    port: u16,
    user: String,
    /// The client's private key (OpenSSH form) and the server's host key
    /// fingerprint (`SHA256:...`).
    client_key: String,
    fingerprint: String,
    /// Where files are pushed.
    inbox: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path));
}

/// `sshd`, or `None` when it is not installed and the run does not
/// require it (`.ci/run` sets `CALLMETA_TEST_CLIENTS=required`).
async fn start_sshd() -> Option<SshServer> {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        assert_ne!(
            std::env::var("CALLMETA_TEST_CLIENTS").as_deref(),
            Ok("required"),
            "/usr/sbin/sshd is required (apt-get install openssh-server)"
        );
        eprintln!("sshd is not installed: the SFTP push test is not run (apt-get install openssh-server)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(&d.join("host_key"));
    keygen(&d.join("client_key"));
    std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
    let fingerprint = run(Command::new("ssh-keygen").arg("-lf").arg(d.join("host_key.pub")))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let user = run(Command::new("id").arg("-un")).trim().to_string();
    let inbox = d.join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let is_root = run(Command::new("id").arg("-u")).trim() == "0";
    if is_root {
        // sshd's privilege separation directory, absent where no sshd ran.
        let _ = std::fs::create_dir_all("/run/sshd");
    }
    let port = free_port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {pid}\n\
         AuthorizedKeysFile {keys}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin {root}\n\
         AllowUsers {user}\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
        host_key = d.join("host_key").display(),
        pid = d.join("sshd.pid").display(),
        keys = d.join("authorized_keys").display(),
        root = if is_root { "prohibit-password" } else { "no" },
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd starts");
    let server = SshServer {
        child,
        port,
        user,
        client_key: std::fs::read_to_string(d.join("client_key")).unwrap(),
        fingerprint,
        inbox,
        _dir: dir,
    };
    eventually("sshd listening", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .map(drop)
    })
    .await;
    Some(server)
}

/// The app on either backend, private destinations allowed (the servers
/// are on loopback), retries after at most 5 s.
async fn spawn() -> TestApp {
    TestApp::spawn_configured(|c: &mut Config| {
        c.webhooks.allow_private = true;
        c.webhooks.first_retry_secs = 5;
    })
    .await
}

fn day_of(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap();
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn create_call(app: &TestApp, t: &Tenant, at_ms: i64, metadata: Value) -> String {
    let (status, call) = app
        .post_json(
            t,
            "/api/v1/calls",
            json!({"metadata": metadata, "timestamp": rfc3339(at_ms)}),
        )
        .await;
    assert_eq!(status, 201, "{call}");
    call["unique_id"].as_str().unwrap().to_string()
}

/// The calls of the day starting at `start` (its first and last
/// millisecond among them), of the days around it, and of another tenant
/// on the same day: the ids the day's file must hold.
async fn calls_around(app: &TestApp, t: &Tenant, other: &Tenant, start: i64) -> BTreeSet<String> {
    let mut expected = BTreeSet::new();
    expected.insert(create_call(app, t, start, json!({"agent_id": "first"})).await);
    expected.insert(
        create_call(
            app,
            t,
            start + DAY_MS / 2,
            json!({"agent_id": "noon", "note": "a, \"quoted\"\nnote", "formula": "=1+2"}),
        )
        .await,
    );
    expected.insert(create_call(app, t, start + DAY_MS - 1, json!({"agent_id": "last"})).await);
    create_call(app, t, start - 1, json!({"agent_id": "day before"})).await;
    create_call(app, t, start + DAY_MS, json!({"agent_id": "day after"})).await;
    create_call(
        app,
        other,
        start + DAY_MS / 2,
        json!({"agent_id": "other tenant"}),
    )
    .await;
    expected
}

/// The unique ids and agents of a CSV file, read with a CSV reader.
fn read_csv(bytes: &[u8]) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut reader = csv::Reader::from_reader(bytes);
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader.records().map(Result::unwrap).collect();
    (header, rows)
}

fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

async fn runs(app: &TestApp, t: &Tenant) -> Vec<Value> {
    let (status, list) = app.get(t, "/api/v1/exports/daily/runs").await;
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().unwrap().clone()
}

async fn run_of(app: &TestApp, t: &Tenant, day: &str, status: &str) -> Result<Value, String> {
    let list = runs(app, t).await;
    match list.iter().find(|r| r["day"] == day) {
        Some(r) if r["status"] == status => Ok(r.clone()),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test]
async fn the_previous_days_calls_reach_a_real_sftp_server_retried_until_it_works() {
    let Some(ssh) = start_sshd().await else {
        return;
    };
    let app = spawn().await;
    let acme = app.create_tenant("acme");
    let other = app.create_tenant("other");
    let now = app.clock.now_ms();
    let day_start = (now.div_euclid(DAY_MS) - 1) * DAY_MS;
    let day = day_of(day_start);
    let expected = calls_around(&app, &acme, &other, day_start).await;

    let sftp = |port: u16| {
        json!({"sftp": {
            "host": "127.0.0.1", "port": port, "username": ssh.user,
            "private_key": ssh.client_key, "directory": ssh.inbox.display().to_string(),
            "host_key": ssh.fingerprint,
        }})
    };
    // Unknown host keys are refused unless pinned or accepted.
    let mut unpinned = sftp(ssh.port);
    unpinned["sftp"].as_object_mut().unwrap().remove("host_key");
    let (status, body) = app
        .put_json(&acme, "/api/v1/exports/daily", json!({"destination": unpinned}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "destination.sftp.host_key", "{body}");

    // First a port nothing listens on.
    let (status, settings) = app
        .put_json(
            &acme,
            "/api/v1/exports/daily",
            json!({"destination": sftp(free_port()), "format": "csv"}),
        )
        .await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["destination"]["sftp"]["auth"], "private_key");
    assert!(
        !settings.to_string().contains("PRIVATE KEY"),
        "the key is write-only: {settings}"
    );
    assert!(settings["next_run"].is_string(), "{settings}");
    let (status, shown) = app.get(&acme, "/api/v1/exports/daily").await;
    assert_eq!((status, &shown), (200, &settings));

    let (status, run) = app
        .post_json(&acme, &format!("/api/v1/exports/daily/run?day={day}"), json!({}))
        .await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["file_name"], format!("calls-{day}.csv"));
    let failed = eventually("the first attempt fails", Duration::from_secs(30), || {
        run_of(&app, &acme, &day, "retrying")
    })
    .await;
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("connecting to 127.0.0.1"),
        "{failed}"
    );

    // The right port, but a host key other than the pinned one: refused,
    // and the error shows the key the server has.
    let mut wrong_key = sftp(ssh.port);
    wrong_key["sftp"]["host_key"] = json!(format!("SHA256:{}", "A".repeat(43)));
    let (status, body) = app
        .put_json(&acme, "/api/v1/exports/daily", json!({"destination": wrong_key}))
        .await;
    assert_eq!(status, 200, "{body}");
    app.clock.advance(Duration::from_secs(10));
    let refused = eventually(
        "the second attempt refuses the host key",
        Duration::from_secs(30),
        || async {
            let r = run_of(&app, &acme, &day, "retrying").await?;
            if r["attempts"] == 2 {
                Ok(r)
            } else {
                Err(r.to_string())
            }
        },
    )
    .await;
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("is not the pinned one") && error.contains(&ssh.fingerprint),
        "{refused}"
    );
    assert!(!ssh.inbox.join(format!("calls-{day}.csv")).exists());

    // The destination fixed, its key left out (kept: the same host, port
    // and user), the retry after the backoff delivers.
    let mut fixed = sftp(ssh.port);
    fixed["sftp"].as_object_mut().unwrap().remove("private_key");
    let (status, body) = app
        .put_json(&acme, "/api/v1/exports/daily", json!({"destination": fixed}))
        .await;
    assert_eq!(status, 200, "{body}");
    app.clock.advance(Duration::from_secs(30));
    let delivered = eventually("the retry delivers", Duration::from_secs(30), || {
        run_of(&app, &acme, &day, "delivered")
    })
    .await;
    assert_eq!(delivered["attempts"], 3, "{delivered}");
    assert_eq!(delivered["calls"], 3, "{delivered}");
    assert_eq!(delivered["error"], Value::Null, "{delivered}");

    let path = ssh.inbox.join(format!("calls-{day}.csv"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(delivered["bytes"], bytes.len(), "{delivered}");
    let (header, rows) = read_csv(&bytes);
    let id = column(&header, "unique_id");
    let got: BTreeSet<String> = rows.iter().map(|r| r[id].to_string()).collect();
    assert_eq!(got, expected, "the day's calls of this tenant, and only those");
    let (note, formula) = (column(&header, "note"), column(&header, "formula"));
    let noon = rows
        .iter()
        .find(|r| &r[column(&header, "agent_id")] == "noon")
        .unwrap();
    assert_eq!(&noon[note], "a, \"quoted\"\nnote");
    assert_eq!(
        &noon[formula], "'=1+2",
        "formula cells are neutralised as in the export"
    );
    // Only the file: its temporary name was renamed.
    let names: Vec<String> = std::fs::read_dir(&ssh.inbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![format!("calls-{day}.csv")]);

    // The same day pushed again overwrites the same file with what the day
    // holds now.
    create_call(&app, &acme, day_start + 1000, json!({"agent_id": "late"})).await;
    let (status, run) = app
        .post_json(&acme, &format!("/api/v1/exports/daily/run?day={day}"), json!({}))
        .await;
    assert_eq!(status, 202, "{run}");
    eventually("the day pushed again", Duration::from_secs(30), || async {
        let r = run_of(&app, &acme, &day, "delivered").await?;
        if r["calls"] == 4 {
            Ok(r)
        } else {
            Err(r.to_string())
        }
    })
    .await;
    let (_, rows) = read_csv(&std::fs::read(&path).unwrap());
    assert_eq!(rows.len(), 4);
    assert_eq!(std::fs::read_dir(&ssh.inbox).unwrap().count(), 1);

    // A day that is not over is refused; the other tenant has no push.
    let today = day_of(now);
    let (status, body) = app
        .post_json(
            &acme,
            &format!("/api/v1/exports/daily/run?day={today}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(error_detail(&body).contains("not over"), "{body}");
    let (status, _) = app.get(&other, "/api/v1/exports/daily").await;
    assert_eq!(status, 404);
    assert!(runs(&app, &other).await.is_empty());

    // The settings' changes are in the audit log, without the key.
    let (status, audit) = app.get(&acme, "/api/v1/audit?action=export.settings").await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["data"].as_array().unwrap().len(), 3, "{audit}");
    assert!(!audit.to_string().contains("PRIVATE KEY"));

    let (status, _) = app.put_json(&acme, "/api/v1/exports/daily", json!({})).await;
    assert_eq!(status, 422);
    let r = app
        .http
        .delete(app.url("/api/v1/exports/daily"))
        .header("Authorization", format!("Token {}", acme.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, _) = app.get(&acme, "/api/v1/exports/daily").await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn the_schedule_pushes_the_previous_day_to_s3() {
    let Some(s3) = crate::s3::start_s3().await else {
        return;
    };
    let http = reqwest::Client::new();
    let r = http.put(format!("{}/exports", s3.endpoint)).send().await.unwrap();
    assert!(r.status().is_success(), "creating the bucket: {}", r.status());
    let app = spawn().await;
    let acme = app.create_tenant("acme");
    let other = app.create_tenant("other");

    let destination = |secret: Option<&str>| {
        let mut s3 = json!({
            "bucket": "exports", "prefix": "callmeta/daily", "region": "us-east-1",
            "endpoint": s3.endpoint, "access_key_id": "testing",
        });
        if let Some(secret) = secret {
            s3["secret_access_key"] = json!(secret);
        }
        json!({"s3": s3})
    };
    let (status, body) = app
        .put_json(
            &acme,
            "/api/v1/exports/daily",
            json!({"destination": destination(None)}),
        )
        .await;
    assert_eq!(status, 422, "a first setting needs the secret: {body}");
    let (status, settings) = app
        .put_json(
            &acme,
            "/api/v1/exports/daily",
            json!({"destination": destination(Some("s3cret")), "format": "ndjson", "hour": 2}),
        )
        .await;
    assert_eq!(status, 200, "{settings}");
    assert!(!settings.to_string().contains("s3cret"), "{settings}");
    // Changed without the secret: the stored one is kept.
    let (status, settings) = app
        .put_json(
            &acme,
            "/api/v1/exports/daily",
            json!({"destination": destination(None), "format": "ndjson", "hour": 2, "utc_offset": "Z"}),
        )
        .await;
    assert_eq!(status, 200, "{settings}");

    // The next run is the next 02:00 UTC; it pushes the day before it.
    let next =
        callmeta_app::usecases::calls::parse_timestamp(settings["next_run"].as_str().unwrap()).unwrap();
    assert_eq!(next.rem_euclid(DAY_MS), 2 * 3_600_000, "{settings}");
    assert!(next > app.clock.now_ms());
    let day_start = next - 2 * 3_600_000 - DAY_MS;
    let day = day_of(day_start);
    let expected = calls_around(&app, &acme, &other, day_start).await;
    assert!(
        runs(&app, &acme).await.is_empty(),
        "nothing before the run is due"
    );

    app.clock.advance_to(next + 1);
    let delivered = eventually("the scheduled push", Duration::from_secs(30), || {
        run_of(&app, &acme, &day, "delivered")
    })
    .await;
    assert_eq!(delivered["file_name"], format!("calls-{day}.ndjson"));
    assert_eq!(delivered["calls"], 3, "{delivered}");
    let (status, settings) = app.get(&acme, "/api/v1/exports/daily").await;
    assert_eq!(status, 200);
    let next_again =
        callmeta_app::usecases::calls::parse_timestamp(settings["next_run"].as_str().unwrap()).unwrap();
    assert_eq!(next_again, next + DAY_MS, "the next run is a day later");

    // Read back as the bucket's owner would, signed with the key.
    let bucket = S3Blobs::new(
        "s3://exports",
        &S3Settings {
            endpoint: Some(s3.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("s3cret".into()),
            allow_http: true,
        },
    )
    .unwrap();
    let object = bucket
        .get(&format!("callmeta/daily/calls-{day}.ndjson"))
        .await
        .unwrap();
    assert_eq!(delivered["bytes"], object.len(), "{delivered}");
    let body = String::from_utf8(object.to_vec()).unwrap();
    let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: BTreeSet<String> = lines
        .iter()
        .map(|c| c["unique_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected, "the day's calls of this tenant, and only those");
    assert!(lines.iter().all(|c| c["metadata"]["agent_id"] != "other tenant"));
    app.stop().await;
}

#[tokio::test]
async fn private_destinations_are_refused_unless_allowed() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme");
    for (destination, field) in [
        (
            json!({"sftp": {"host": "127.0.0.1", "username": "u", "password": "p", "accept_any_host_key": true}}),
            "destination.sftp.host",
        ),
        (
            json!({"sftp": {"host": "localhost", "username": "u", "password": "p", "accept_any_host_key": true}}),
            "destination.sftp.host",
        ),
        (
            json!({"s3": {"bucket": "b", "endpoint": "http://10.0.0.1:9000", "access_key_id": "k", "secret_access_key": "s"}}),
            "destination.s3.endpoint",
        ),
    ] {
        let (status, body) = app
            .put_json(&t, "/api/v1/exports/daily", json!({"destination": destination}))
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
        assert!(error_detail(&body).contains("allow_private"), "{body}");
    }
    let (status, body) = app.post_json(&t, "/api/v1/exports/daily/run", json!({})).await;
    assert_eq!(status, 404, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_push_left_by_a_stopped_node_is_finished_by_the_other() {
    const LEASE_MS: u64 = 2_000;
    let Some(db) = crate::helpers::PgDatabase::create().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    let Some(ssh) = start_sshd().await else {
        return;
    };
    // A server that takes the connection and never answers: node A's push
    // hangs in the SSH handshake, its job held.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
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
    let t = a.create_tenant("nodes");
    let other = a.create_tenant("others");
    let now = a.clock.now_ms();
    let day_start = (now.div_euclid(DAY_MS) - 1) * DAY_MS;
    let day = day_of(day_start);
    let expected = calls_around(&a, &t, &other, day_start).await;
    let sftp = |port: u16| {
        json!({"destination": {"sftp": {
            "host": "127.0.0.1", "port": port, "username": ssh.user,
            "private_key": ssh.client_key, "directory": ssh.inbox.display().to_string(),
            "host_key": ssh.fingerprint,
        }}})
    };
    let (status, body) = a.put_json(&t, "/api/v1/exports/daily", sftp(silent_port)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = a
        .post_json(&t, &format!("/api/v1/exports/daily/run?day={day}"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    eventually("node A pushing", Duration::from_secs(10), || {
        run_of(&a, &t, &day, "running")
    })
    .await;

    // The destination fixed, node A stops mid-push, node B starts.
    let (status, body) = a.put_json(&t, "/api/v1/exports/daily", sftp(ssh.port)).await;
    assert_eq!(status, 200, "{body}");
    a.stop().await;
    let b = TestApp::spawn_with(node("b")).await;
    // Once A's lease ran out (on B's clock, which started after A's), B
    // claims the push and makes it.
    b.clock.advance(Duration::from_millis(2 * LEASE_MS));
    let delivered = eventually("node B finishing the push", Duration::from_secs(30), || {
        run_of(&b, &t, &day, "delivered")
    })
    .await;
    assert_eq!(delivered["calls"], 3, "{delivered}");
    let (header, rows) = read_csv(&std::fs::read(ssh.inbox.join(format!("calls-{day}.csv"))).unwrap());
    let id = column(&header, "unique_id");
    let got: BTreeSet<String> = rows.iter().map(|r| r[id].to_string()).collect();
    assert_eq!(got, expected);
    b.stop().await;
}

#[tokio::test]
async fn the_web_page_sets_up_the_push_and_shows_its_runs() {
    use crate::webhooks::{web_page, web_post, web_session};
    let Some(ssh) = start_sshd().await else {
        return;
    };
    let app = spawn().await;
    let t = app.create_tenant("webby");
    let now = app.clock.now_ms();
    let day_start = (now.div_euclid(DAY_MS) - 1) * DAY_MS;
    let day = day_of(day_start);
    create_call(&app, &t, day_start + 1, json!({"agent_id": "web"})).await;
    let (cookie, csrf) = web_session(&app, &t).await;
    let (status, page) = web_page(&app, &cookie, "/exports").await;
    assert_eq!(status, 200);
    assert!(page.contains("Set up the daily export"), "{page}");

    let port = ssh.port.to_string();
    let directory = ssh.inbox.display().to_string();
    let form = |host_key: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("kind", "sftp".to_string()),
            ("host", "127.0.0.1".to_string()),
            ("port", port.clone()),
            ("username", ssh.user.clone()),
            ("private_key", ssh.client_key.clone()),
            ("directory", directory.clone()),
            ("host_key", host_key.to_string()),
            ("format", "csv".to_string()),
            ("utc_offset", "+00:00".to_string()),
            ("hour", "1".to_string()),
        ]
    };
    let post = |form: Vec<(&'static str, String)>| {
        let cookie = cookie.clone();
        let app = &app;
        async move {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            web_post(app, &cookie, "/exports", &pairs).await
        }
    };
    // Without a pinned host key the form says why.
    let (status, page) = post(form("")).await;
    assert_eq!(status, 422);
    assert!(page.contains("host_key"), "{page}");
    let (status, _) = post(form(&ssh.fingerprint)).await;
    assert_eq!(status, 303);
    let (_, page) = web_page(&app, &cookie, "/exports").await;
    assert!(
        page.contains(&format!("sftp://{}@127.0.0.1:{}", ssh.user, ssh.port)),
        "{page}"
    );
    assert!(!page.contains("PRIVATE KEY-----\n"), "the key is never shown");

    let (status, _) = web_post(&app, &cookie, "/exports/run", &[("csrf", &csrf), ("day", &day)]).await;
    assert_eq!(status, 303);
    eventually("the run shown delivered", Duration::from_secs(30), || async {
        let (_, page) = web_page(&app, &cookie, "/exports").await;
        if page.contains(&format!("calls-{day}.csv")) && page.contains("delivered") {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    assert!(ssh.inbox.join(format!("calls-{day}.csv")).exists());

    let (status, _) = web_post(&app, &cookie, "/exports/delete", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let (_, page) = web_page(&app, &cookie, "/exports").await;
    assert!(page.contains("Set up the daily export"), "{page}");
    app.stop().await;
}
