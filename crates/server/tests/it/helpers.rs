use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use callmeta::config::Config;
use callmeta::startup::App;
use callmeta_app::clock::ManualClock;
use serde_json::Value;
use sqlx::Connection;

pub struct TestApp {
    pub base: String,
    pub ftp: std::net::SocketAddr,
    pub sftp: std::net::SocketAddr,
    pub sip: std::net::SocketAddr,
    /// The metrics' own listener, when `[metrics] listen` asked for one.
    pub metrics: Option<std::net::SocketAddr>,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
    /// The database URL when not the embedded SQLite.
    pub database: Option<String>,
    /// The app's clock: it stands still until the test moves it (what
    /// expires, expires when the test says so). It starts at the wall-clock
    /// time the app was started.
    pub clock: Arc<ManualClock>,
    _dir: Option<tempfile::TempDir>,
    _db: Option<PgDatabase>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

#[allow(dead_code)] // slug and password are used by the FTP and web tests
pub struct Tenant {
    pub slug: String,
    pub token: String,
    pub password: String,
}

pub fn test_config(data_dir: &Path) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        http: "127.0.0.1:0".into(),
        ftp: "127.0.0.1:0".into(),
        sftp: "127.0.0.1:0".into(),
        sip: "127.0.0.1:0".into(),
        refresh_interval_ms: 200,
        ..Config::default()
    }
}

impl TestApp {
    /// The real app on port 0 with a temporary data dir, on SQLite, or on a
    /// fresh PostgreSQL database when `CALLMETA_TEST_BACKEND=postgres`.
    pub async fn spawn() -> TestApp {
        if std::env::var("CALLMETA_TEST_BACKEND").as_deref() == Ok("postgres") {
            return Self::spawn_postgres()
                .await
                .expect("CALLMETA_TEST_BACKEND=postgres needs CALLMETA_TEST_DATABASE_URL");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let config = test_config(dir.path());
        let mut app = Self::spawn_with(config).await;
        app._dir = Some(dir);
        app
    }

    /// [`TestApp::spawn`] with the configuration changed by `configure`
    /// first (on either backend).
    pub async fn spawn_configured(configure: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        let db = if std::env::var("CALLMETA_TEST_BACKEND").as_deref() == Ok("postgres") {
            let db = PgDatabase::create()
                .await
                .expect("CALLMETA_TEST_BACKEND=postgres needs CALLMETA_TEST_DATABASE_URL");
            config.database = Some(db.url.clone());
            Some(db)
        } else {
            None
        };
        configure(&mut config);
        let mut app = Self::spawn_with(config).await;
        app._dir = Some(dir);
        app._db = db;
        app
    }

    /// Starts the app on a fresh PostgreSQL database, when
    /// `CALLMETA_TEST_DATABASE_URL` names a server.
    pub async fn spawn_postgres() -> Option<TestApp> {
        let db = PgDatabase::create().await?;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        config.database = Some(db.url.clone());
        let mut app = Self::spawn_with(config).await;
        app._dir = Some(dir);
        app._db = Some(db);
        Some(app)
    }

    /// Starts the app on an existing configuration (the caller owns the data dir).
    pub async fn spawn_with(config: Config) -> TestApp {
        // CALLMETA_TEST_LOG=debug (an EnvFilter) shows the servers' logs.
        if let Ok(filter) = std::env::var("CALLMETA_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let data_dir = config.data_dir.clone();
        let database = config.database.clone();
        let clock = Arc::new(ManualClock::default());
        let app = App::build(config, clock.clone()).await.expect("app builds");
        let base = format!("http://{}", app.http_addr());
        let (ftp, sftp, sip) = (app.ftp_addr(), app.sftp_addr(), app.sip_addr());
        let metrics = app.metrics_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        TestApp {
            base,
            ftp,
            sftp,
            sip,
            metrics,
            data_dir,
            http: reqwest::Client::new(),
            database,
            clock,
            _dir: None,
            _db: None,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server ran");
        }
    }

    /// The real `callmeta` binary, on this app's data dir and database.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_callmeta"));
        cmd.args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("CALLMETA_DATABASE");
        if let Some(url) = &self.database {
            cmd.args(["--database", url]);
        }
        cmd
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates a tenant through the real CLI, as an operator does, while the server runs.
    pub fn create_tenant(&self, slug: &str) -> Tenant {
        let password = format!("{slug}-secret-pw");
        let out = self
            .cli(&["tenant", "create", slug, "--password", &password])
            .output()
            .expect("run callmeta tenant create");
        assert!(
            out.status.success(),
            "tenant create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_slice(&out.stdout).expect("tenant create prints JSON");
        assert_eq!(json["tenant"], slug);
        assert_eq!(json["ftp_user"], slug);
        Tenant {
            slug: slug.into(),
            token: json["api_token"].as_str().expect("api_token").into(),
            password,
        }
    }

    /// Registers a network as one of the tenant's SBCs, with the real CLI
    /// (as an operator does).
    pub fn register_sbc(&self, t: &Tenant, network: &str) -> Value {
        let out = self
            .cli(&["tenant", "sip-source", "add", &t.slug, network])
            .output()
            .expect("run callmeta tenant sip-source add");
        assert!(
            out.status.success(),
            "sip-source add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("sip-source add prints JSON")
    }

    pub async fn put_json(&self, t: &Tenant, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .put(self.url(path))
            .header("Authorization", format!("Token {}", t.token))
            .json(&body)
            .send()
            .await
            .expect("request");
        status_json(r).await
    }

    pub async fn post_json(&self, t: &Tenant, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("Authorization", format!("Token {}", t.token))
            .json(&body)
            .send()
            .await
            .expect("request");
        status_json(r).await
    }

    pub async fn get(&self, t: &Tenant, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .header("Authorization", format!("Bearer {}", t.token))
            .send()
            .await
            .expect("request");
        status_json(r).await
    }

    pub async fn upload(&self, t: &Tenant, table: &str, bytes: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .http
            .put(self.url(&format!("/api/v1/tables/{table}/data")))
            .header("Authorization", format!("Token {}", t.token))
            .header("Content-Type", "text/csv")
            .body(bytes)
            .send()
            .await
            .expect("request");
        status_json(r).await
    }

    pub async fn create_table(&self, t: &Tenant, table: &str, body: Value) {
        let (status, json) = self.put_json(t, &format!("/api/v1/tables/{table}"), body).await;
        assert_eq!(status, 200, "{json}");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn status_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

/// The SPEC §1 table, saved as-is (pipes and separator line).
pub const SPEC_TABLE: &str = "| agent_id | team_name | expertise | city |
|---|---|---|---|
| alice | diamond | sales | Helsinki |
| bob | ruby | support | Helsinki |
| cindy | diamond | sales | Helsinki |
| dylan | saphire | sales | Cape Town |
";

pub fn error_detail(json: &Value) -> String {
    json["errors"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A fresh PostgreSQL database on the server of `CALLMETA_TEST_DATABASE_URL`,
/// dropped when the test ends.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    /// `None` when `CALLMETA_TEST_DATABASE_URL` is not set: the test is
    /// skipped, with a line saying so, unless `CALLMETA_TEST_CLIENTS=required`
    /// (CI), where it fails.
    pub async fn create() -> Option<PgDatabase> {
        let admin_url = postgres_url()?;
        let name = format!("callmeta_test_{}", uuid_like());
        let mut admin = sqlx::postgres::PgConnection::connect(&admin_url)
            .await
            .expect("connect to the test server");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Some(PgDatabase { admin_url, name, url })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop from a fresh runtime: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = sqlx::postgres::PgConnection::connect(&admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}

/// The PostgreSQL server of the tests, `CALLMETA_TEST_DATABASE_URL`; without
/// it, `None` and a line saying the calling test is skipped, or, when
/// `CALLMETA_TEST_CLIENTS=required` (as `.ci/run` sets), a failure: in CI no
/// PostgreSQL test passes by not running.
pub fn postgres_url() -> Option<String> {
    match std::env::var("CALLMETA_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let test = std::thread::current().name().unwrap_or("this test").to_string();
            assert!(
                std::env::var("CALLMETA_TEST_CLIENTS").as_deref() != Ok("required"),
                "{test} needs PostgreSQL: set CALLMETA_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test); CALLMETA_TEST_CLIENTS=required does not let it be skipped"
            );
            eprintln!(
                "skipping {test}: CALLMETA_TEST_DATABASE_URL is not set, so there is no PostgreSQL to run it on"
            );
            None
        }
    }
}

/// Polls `check` until it returns `Ok`, for at most `within`, and returns
/// its value; past the deadline the test fails with `what` and the last
/// `Err` (what was seen instead). Tests wait with this for what happens on
/// its own (a background task, another process), never with a fixed sleep.
/// The polls start 5 ms apart and back off to 100 ms, so that a check that
/// sends something (an INVITE) is not repeated hundreds of times.
pub async fn eventually<T, E, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if started.elapsed() >= within => {
                panic!("{what}: not within {within:?}; last seen: {seen}")
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}_{}", nanos, std::process::id())
}

/// The real `callmeta serve` binary as a process on `data_dir`, every
/// listener on a free port, with `args` and `env` added: the process, its
/// HTTP URL and its SIP address (read from the line it prints at start).
pub fn spawn_serve(
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, String, std::net::SocketAddr) {
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_callmeta"))
        .args(["serve", "--http", "127.0.0.1:0", "--ftp", "127.0.0.1:0"])
        .args(["--sftp", "127.0.0.1:0", "--sip", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_default()
        .to_string();
    assert!(url.starts_with("http://"), "{line}");
    let sip = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sip:"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no SIP address in {line:?}"));
    (server, url, sip)
}
