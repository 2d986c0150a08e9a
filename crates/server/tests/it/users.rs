//! Users and roles: each user of a tenant logs in as `NAME@TENANT` to the
//! web app (HTTP, as a browser posts the form), FTP (lftp) and SFTP
//! (OpenSSH's sftp, password and key), and each page and file action checks
//! its role; a disabled user is refused everywhere and its sessions end;
//! the tenant's own login stays its first admin; the audit log names the
//! user.

use serde_json::{Value, json};
use tokio::process::Command;

use crate::filedrop::{have, run, sftp_command, temp_file};
use crate::helpers::{SPEC_TABLE, Tenant, TestApp, error_detail};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A user of a tenant: its login and password.
struct User {
    login: String,
    password: String,
}

async fn patch_json(app: &TestApp, t: &Tenant, path: &str, body: Value) -> (u16, Value) {
    let r = app
        .http
        .patch(app.url(path))
        .header("Authorization", format!("Token {}", t.token))
        .json(&body)
        .send()
        .await
        .unwrap();
    crate::helpers::status_json(r).await
}

async fn api_user(app: &TestApp, admin: &Tenant, name: &str, role: &str) -> User {
    let password = format!("{name}-pass-word");
    let (status, body) = app
        .post_json(
            admin,
            "/api/v1/users",
            json!({"name": name, "role": role, "password": password}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["login"], format!("{name}@{}", admin.slug), "{body}");
    assert_eq!(body["role"], role);
    assert!(body.get("password").is_none(), "{body}");
    User {
        login: format!("{name}@{}", admin.slug),
        password,
    }
}

/// Logs in to the web app; the session cookie and a CSRF token, or the
/// status of the refusal.
async fn web_login(app: &TestApp, login: &str, password: &str) -> Result<(String, String), u16> {
    let r = client()
        .post(app.url("/login"))
        .form(&[("tenant", login), ("password", password), ("next", "/tables")])
        .send()
        .await
        .unwrap();
    if r.status() != 303 {
        return Err(r.status().as_u16());
    }
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, page) = web_get(app, &cookie, "/tables").await;
    assert_eq!(status, 200, "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("forms carry the CSRF token")
        .to_string();
    Ok((cookie, csrf))
}

async fn web_get(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let r = client()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    let body = r.text().await.unwrap();
    (status, location.unwrap_or(body))
}

async fn web_post(app: &TestApp, cookie: &str, path: &str, form: &[(&str, &str)]) -> u16 {
    client()
        .post(app.url(path))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn web_upload(app: &TestApp, cookie: &str, csrf: &str, csv: &str) -> u16 {
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_string())
        .part(
            "file",
            reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("crm.csv"),
        );
    client()
        .post(app.url("/tables/crm/upload"))
        .header("cookie", cookie)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Uploads `content` as `name` over FTP with lftp; whether it was accepted.
async fn lftp_put(
    app: &TestApp,
    login: &str,
    password: &str,
    dir: &std::path::Path,
    name: &str,
    content: &str,
) -> (bool, String) {
    let file = temp_file(dir, name, content.as_bytes());
    let script = format!("set ftp:ssl-allow no; set net:max-retries 1; put {file} -o {name}; bye");
    let (ok, out, err) = run(Command::new("lftp")
        .args(["-u", &format!("{login},{password}")])
        .args(["-p", &app.ftp.port().to_string()])
        .args(["-e", &script, &app.ftp.ip().to_string()]))
    .await;
    (ok, format!("{out} {err}"))
}

/// Runs an sftp batch as `login` with its password; whether it succeeded.
async fn sftp_password(app: &TestApp, login: &str, password: &str, batch: &str) -> (bool, String) {
    let mut cmd = Command::new("sshpass");
    cmd.args(["-p", password]);
    let inner = sftp_command(app, login, batch, None);
    cmd.arg(inner.as_std().get_program())
        .args(inner.as_std().get_args());
    let (ok, out, err) = run(&mut cmd).await;
    (ok, format!("{out} {err}"))
}

async fn versions(app: &TestApp, t: &Tenant) -> usize {
    let (status, table) = app.get(t, "/api/v1/tables/crm").await;
    assert_eq!(status, 200, "{table}");
    table["versions"].as_array().map_or(0, Vec::len)
}

async fn audit_actors(app: &TestApp, t: &Tenant, action: &str) -> Vec<(String, String)> {
    let (status, page) = app
        .get(t, &format!("/api/v1/audit?action={action}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["channel"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn users_are_created_listed_and_changed_through_the_api_and_the_cli() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme");
    let alice = api_user(&app, &acme, "alice", "analyst").await;
    assert_eq!(alice.login, "alice@acme");

    // The operator's command line adds one too.
    let out = app
        .cli(&["user", "create", "acme", "bob", "--role", "uploader"])
        .env("CALLMETA_USER_PASSWORD", "bob-pass-word")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["login"], "bob@acme", "{created}");

    let (status, list) = app.get(&acme, "/api/v1/users").await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let out = app.cli(&["user", "list", "acme"]).output().unwrap();
    assert!(out.status.success());
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["users"].as_array().map(Vec::len), Some(2), "{listed}");

    // What is wrong is said, field by field.
    let cases = [
        (
            json!({"name": "Alice", "role": "analyst", "password": "long-enough"}),
            422,
            "name",
        ),
        (
            json!({"name": "al ice", "role": "analyst", "password": "long-enough"}),
            422,
            "name",
        ),
        (
            json!({"name": "carol", "role": "boss", "password": "long-enough"}),
            422,
            "role",
        ),
        (
            json!({"name": "carol", "role": "analyst", "password": "short"}),
            422,
            "password",
        ),
        (json!({"name": "carol", "role": "analyst"}), 422, "password"),
        (
            json!({"name": "alice", "role": "admin", "password": "long-enough"}),
            409,
            "alice",
        ),
    ];
    for (body, status, field) in cases {
        let (got, reply) = app.post_json(&acme, "/api/v1/users", body.clone()).await;
        assert_eq!(got, status, "{body} → {reply}");
        let named = reply["errors"][0]["field"] == field || error_detail(&reply).contains(field);
        assert!(named, "{body} → {reply}");
    }
    let (status, reply) = patch_json(&app, &acme, "/api/v1/users/nobody", json!({"disabled": true})).await;
    assert_eq!(status, 404, "{reply}");
    let (status, reply) = patch_json(&app, &acme, "/api/v1/users/alice", json!({"role": "admin"})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["role"], "admin");

    // Another tenant neither sees nor changes them.
    let other = app.create_tenant("other");
    let (_, list) = app.get(&other, "/api/v1/users").await;
    assert_eq!(list["data"], json!([]));
    let (status, _) = patch_json(&app, &other, "/api/v1/users/alice", json!({"disabled": true})).await;
    assert_eq!(status, 404);

    // Each change is in the audit log, with who made it.
    let created = audit_actors(&app, &acme, "user.create").await;
    assert!(
        created.contains(&(acme_token_name(&app, &acme).await, "api".into())),
        "{created:?}"
    );
    assert!(created.contains(&("cli".into(), "cli".into())), "{created:?}");
    assert_eq!(audit_actors(&app, &acme, "user.change").await.len(), 1);
    app.stop().await;
}

/// The name of the tenant's first token (the admin token it was created with).
async fn acme_token_name(app: &TestApp, t: &Tenant) -> String {
    let (_, tokens) = app.get(t, "/api/v1/tokens").await;
    tokens["data"][0]["name"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn each_role_may_use_the_pages_its_table_says() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme");
    app.create_table(&acme, "crm", json!({"key": "agent_id"})).await;
    let (status, body) = app.upload(&acme, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201, "{body}");
    let (status, call) = app
        .post_json(&acme, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
        .await;
    assert_eq!(status, 201, "{call}");
    let call_page = format!("/calls/{}", call["unique_id"].as_str().unwrap());

    let mut sessions = Vec::new();
    for role in ["admin", "analyst", "uploader"] {
        let user = api_user(&app, &acme, role, role).await;
        let (cookie, csrf) = web_login(&app, &user.login, &user.password)
            .await
            .expect("logs in");
        sessions.push((role, cookie, csrf));
    }
    // The tenant's own login is an admin, as before users existed.
    let (own_cookie, _) = web_login(&app, "acme", &acme.password).await.expect("logs in");
    assert_eq!(web_get(&app, &own_cookie, "/users").await.0, 200);

    // (page, expected status for admin, analyst, uploader); 303 to /tables:
    // an uploader's calls page sends it to its tables.
    let table: [(&str, [u16; 3]); 7] = [
        ("/calls", [200, 200, 303]),
        (&call_page, [200, 200, 403]),
        ("/calls/export?format=csv", [200, 200, 403]),
        ("/tables", [200, 200, 200]),
        ("/audit", [200, 403, 403]),
        ("/webhooks", [200, 403, 403]),
        ("/users", [200, 403, 403]),
    ];
    for (path, expected) in table {
        for (i, (role, cookie, _)) in sessions.iter().enumerate() {
            let (status, body) = web_get(&app, cookie, path).await;
            assert_eq!(status, expected[i], "{role} GET {path}: {body}");
            if status == 303 {
                assert_eq!(body, "/tables");
            }
        }
    }
    // The navigation offers what the role may use.
    let (_, page) = web_get(&app, &sessions[1].1, "/tables").await;
    assert!(
        page.contains("href=\"/calls\"") && !page.contains("href=\"/users\""),
        "analyst nav"
    );
    assert!(page.contains("analyst@acme"), "the page names the login");

    // Forms: an upload and a table's settings.
    for (i, (role, cookie, csrf)) in sessions.iter().enumerate() {
        let csv = format!("agent_id,team_name\ncindy,{role}\n");
        let status = web_upload(&app, cookie, csrf, &csv).await;
        assert_eq!(status, [303, 403, 303][i], "{role} uploads");
        let status = web_post(
            &app,
            cookie,
            "/tables/crm/settings",
            &[("csrf", csrf), ("key", "agent_id"), ("match", "exact")],
        )
        .await;
        assert!(
            if i == 0 { status != 403 } else { status == 403 },
            "{role} changes settings: {status}"
        );
        let status = web_post(
            &app,
            cookie,
            "/users",
            &[
                ("csrf", csrf),
                ("name", "x"),
                ("role", "admin"),
                ("password", "long-enough"),
            ],
        )
        .await;
        assert_eq!(status, [303, 403, 403][i], "{role} adds a user");
    }
    // The uploads are the users', in the audit log.
    let uploads = audit_actors(&app, &acme, "table.upload").await;
    for login in ["admin@acme", "uploader@acme"] {
        assert!(uploads.contains(&(login.into(), "web".into())), "{uploads:?}");
    }
    assert!(!uploads.iter().any(|(a, _)| a == "analyst@acme"), "{uploads:?}");
    let logins = audit_actors(&app, &acme, "login.succeeded").await;
    assert!(
        logins.contains(&("analyst@acme".into(), "web".into())),
        "{logins:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn users_log_in_over_ftp_and_sftp_with_their_role() {
    if !have("lftp") || !have("sftp") || !have("sshpass") || !have("ssh-keygen") {
        return;
    }
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme");
    app.create_table(&acme, "crm", json!({"key": "agent_id"})).await;
    let uploader = api_user(&app, &acme, "upl", "uploader").await;
    let analyst = api_user(&app, &acme, "ana", "analyst").await;
    let files = tempfile::tempdir().unwrap();

    // FTP: the uploader's file becomes a version; the analyst's is refused.
    let (ok, out) = lftp_put(
        &app,
        &uploader.login,
        &uploader.password,
        files.path(),
        "crm.csv",
        SPEC_TABLE,
    )
    .await;
    assert!(ok, "uploader over FTP: {out}");
    assert_eq!(versions(&app, &acme).await, 1);
    let (ok, out) = lftp_put(
        &app,
        &analyst.login,
        &analyst.password,
        files.path(),
        "crm2.csv",
        SPEC_TABLE,
    )
    .await;
    assert!(!ok, "an analyst's FTP upload is refused: {out}");
    assert!(
        out.contains("550") || out.to_lowercase().contains("denied") || out.contains("may not"),
        "{out}"
    );
    let (ok, _) = lftp_put(
        &app,
        &uploader.login,
        "wrong-password",
        files.path(),
        "crm3.csv",
        SPEC_TABLE,
    )
    .await;
    assert!(!ok, "a wrong password is refused");
    assert_eq!(versions(&app, &acme).await, 1);

    // SFTP: the same, with a password.
    // (Each upload differs: content identical to the active version's is
    // recorded as unchanged, not as a new version.)
    let csv = temp_file(files.path(), "export.csv", b"agent_id,team_name\ncindy,sftp\n");
    let batch = temp_file(
        files.path(),
        "batch",
        format!("put {csv} /crm-sftp.csv\n").as_bytes(),
    );
    let (ok, out) = sftp_password(&app, &uploader.login, &uploader.password, &batch).await;
    assert!(ok, "uploader over SFTP: {out}");
    assert_eq!(versions(&app, &acme).await, 2);
    let (ok, out) = sftp_password(&app, &analyst.login, &analyst.password, &batch).await;
    assert!(!ok, "an analyst's SFTP upload is refused: {out}");
    let list = temp_file(files.path(), "list", b"ls -1 /\n");
    let (ok, out) = sftp_password(&app, &analyst.login, &analyst.password, &list).await;
    assert!(ok, "an analyst may list: {out}");
    assert!(out.contains("crm-sftp.csv.report.txt"), "{out}");
    assert_eq!(versions(&app, &acme).await, 2);

    // SFTP with the user's own key, added by the operator.
    let key = files.path().join("id_ed25519");
    let (ok, _, err) = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "upl@laptop", "-f"])
        .arg(&key))
    .await;
    assert!(ok, "{err}");
    let out = app
        .cli(&[
            "user",
            "add-key",
            "acme",
            "upl",
            &format!("{}.pub", key.display()),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    temp_file(files.path(), "export.csv", b"agent_id,team_name\ncindy,key\n");
    let (ok, out, err) = run(&mut sftp_command(&app, &uploader.login, &batch, Some(&key))).await;
    assert!(ok, "key login: {out} {err}");
    assert_eq!(versions(&app, &acme).await, 3);
    // The key is upl's: not the tenant's own login's, not ana's.
    for other in ["acme", "ana@acme"] {
        let (ok, _, _) = run(&mut sftp_command(&app, other, &list, Some(&key))).await;
        assert!(!ok, "{other} does not log in with upl's key");
    }

    // The audit log names the user and the channel of each upload.
    let uploads = audit_actors(&app, &acme, "table.upload").await;
    assert!(
        uploads.contains(&("upl@acme".into(), "ftp".into())),
        "{uploads:?}"
    );
    assert!(
        uploads.contains(&("upl@acme".into(), "sftp".into())),
        "{uploads:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_disabled_user_is_refused_everywhere_and_its_sessions_end() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme");
    let ana = api_user(&app, &acme, "ana", "analyst").await;
    let (cookie, _) = web_login(&app, &ana.login, &ana.password).await.expect("logs in");
    assert_eq!(web_get(&app, &cookie, "/calls").await.0, 200);
    // Case at login does not matter; the password does.
    assert!(web_login(&app, "ANA@acme", &ana.password).await.is_ok());
    assert_eq!(web_login(&app, &ana.login, "acme-secret-pw").await, Err(401));

    // A new role applies to the open session at once.
    let (status, _) = patch_json(&app, &acme, "/api/v1/users/ana", json!({"role": "uploader"})).await;
    assert_eq!(status, 200);
    assert_eq!(web_get(&app, &cookie, "/audit").await.0, 403);
    assert_eq!(
        web_get(&app, &cookie, "/calls").await,
        (303, "/tables".to_string())
    );

    // Disabled by the operator: the session has ended, the login is refused.
    let out = app.cli(&["user", "disable", "acme", "ana"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, location) = web_get(&app, &cookie, "/tables").await;
    assert_eq!(status, 303);
    assert!(location.starts_with("/?next="), "{location}");
    assert_eq!(web_login(&app, &ana.login, &ana.password).await, Err(401));
    if have("curl") {
        let url = format!("ftp://{}/", app.ftp);
        let (ok, _, _) = run(Command::new("curl").args([
            "-sS",
            "--max-time",
            "20",
            "-l",
            "-u",
            &format!("{}:{}", ana.login, ana.password),
            &url,
        ]))
        .await;
        assert!(!ok, "FTP refuses a disabled user");
    }
    let failed = audit_actors(&app, &acme, "login.failed").await;
    assert!(failed.contains(&("ana@acme".into(), "web".into())), "{failed:?}");

    // Enabled again, with a new password.
    let (status, reply) = patch_json(
        &app,
        &acme,
        "/api/v1/users/ana",
        json!({"disabled": false, "password": "a-new-password"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["disabled"], false);
    assert!(web_login(&app, &ana.login, "a-new-password").await.is_ok());
    // The tenant's own login works throughout.
    assert!(web_login(&app, "acme", &acme.password).await.is_ok());
    app.stop().await;
}

/// An FTP or SFTP session holds no stored session: each write asks for the
/// login's role as it is now, so a user disabled while connected can write
/// nothing more through the session it already had open.
#[tokio::test]
async fn an_open_ftp_or_sftp_session_writes_nothing_once_its_user_is_disabled() {
    use std::sync::Arc;

    use russh_sftp::protocol::{FileAttributes, OpenFlags};
    use tokio::io::BufReader;
    use tokio::net::TcpStream;

    use crate::limits::{AnyHostKey, command, reply};

    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme");
    let ada = api_user(&app, &acme, "ada", "admin").await;

    // Both sessions open, and allowed to write, before the user is disabled.
    let mut control = BufReader::new(TcpStream::connect(app.ftp).await.unwrap());
    assert!(reply(&mut control).await.starts_with("220"));
    let user = command(&mut control, &format!("USER {}", ada.login)).await;
    assert!(user.starts_with("331"), "{user}");
    let pass = command(&mut control, &format!("PASS {}", ada.password)).await;
    assert!(pass.starts_with("230"), "{pass}");
    let made = command(&mut control, "MKD before").await;
    assert!(made.starts_with("257"), "{made}");

    let mut ssh = russh::client::connect(Arc::new(russh::client::Config::default()), app.sftp, AnyHostKey)
        .await
        .unwrap();
    let auth = ssh
        .authenticate_password(&ada.login, &ada.password)
        .await
        .unwrap();
    assert!(auth.success());
    let channel = ssh.channel_open_session().await.unwrap();
    channel.request_subsystem(true, "sftp").await.unwrap();
    let sftp = russh_sftp::client::RawSftpSession::new(channel.into_stream());
    sftp.init().await.unwrap();
    sftp.mkdir("/also_before", FileAttributes::empty()).await.unwrap();

    let (status, _) = patch_json(&app, &acme, "/api/v1/users/ada", json!({"disabled": true})).await;
    assert_eq!(status, 200);

    let refused = command(&mut control, "MKD after").await;
    assert!(refused.starts_with("550"), "{refused}");
    let opened = sftp
        .open(
            "/before/x.csv",
            OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
            FileAttributes::empty(),
        )
        .await;
    assert!(opened.is_err(), "{opened:?}");
    assert!(sftp.mkdir("/after", FileAttributes::empty()).await.is_err());
    let _ = command(&mut control, "QUIT").await;

    let drop = app.data_dir.join("drop").join(&acme.slug);
    assert!(drop.join("before").is_dir() && drop.join("also_before").is_dir());
    assert!(!drop.join("after").exists());
    assert!(!drop.join("before").join("x.csv").exists());
    app.stop().await;
}
