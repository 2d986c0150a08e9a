//! Logins: the web app, FTP and SFTP share one throttle keyed by (user,
//! source address), so failed logins slow an attacker down without locking
//! the owner out from elsewhere; an unknown tenant answers as slowly as a
//! known one; after a login, only a path of this site is a place to go.
//! Other source addresses are other loopback addresses (127.0.0.2).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::helpers::{TestApp, test_config};

fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(address.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn web_login(client: &reqwest::Client, app: &TestApp, slug: &str, password: &str) -> reqwest::Response {
    client
        .post(app.url("/login"))
        .form(&[("tenant", slug), ("password", password), ("next", "/tables")])
        .send()
        .await
        .unwrap()
}

fn have_curl() -> bool {
    std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Lists the FTP root with curl from `interface`; whether the login worked.
async fn ftp_login(app: &TestApp, slug: &str, password: &str, interface: &str) -> bool {
    let url = format!("ftp://{slug}:{password}@{}/", app.ftp);
    tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-l", "--interface", interface, &url])
        .output()
        .await
        .unwrap()
        .status
        .success()
}

#[tokio::test]
async fn failed_web_logins_block_one_user_from_one_address_only_and_ftp_shares_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.logins.max_failures = 3;
    config.logins.block_secs = 60;
    let app = TestApp::spawn_with(config).await;
    let acme = app.create_tenant("acme");
    let globex = app.create_tenant("globex");
    let attacker = client_from("127.0.0.1");
    let owner = client_from("127.0.0.2");

    for _ in 0..3 {
        let r = web_login(&attacker, &app, "acme", "wrong-password").await;
        assert_eq!(r.status(), 401);
    }
    // The pair (acme, 127.0.0.1) must wait now, even with the right password.
    let r = web_login(&attacker, &app, "acme", &acme.password).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let page = r.text().await.unwrap();
    assert!(page.contains("Too many failed logins"), "{page}");

    // The owner, from another address, logs in; so does another tenant
    // from the attacker's address.
    let r = web_login(&owner, &app, "acme", &acme.password).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/tables");
    let r = web_login(&attacker, &app, "globex", &globex.password).await;
    assert_eq!(r.status(), 303);

    // FTP logins count against the same pair.
    if have_curl() {
        assert!(!ftp_login(&app, "acme", &acme.password, "127.0.0.1").await);
        assert!(ftp_login(&app, "acme", &acme.password, "127.0.0.2").await);
    }

    // The wait ends when it says: a second before, still refused; then the
    // right password works from the attacker's address too.
    let r = web_login(&attacker, &app, "acme", &acme.password).await;
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    app.clock.advance(Duration::from_secs(wait - 1));
    let r = web_login(&attacker, &app, "acme", &acme.password).await;
    assert_eq!(r.status(), 429, "refused until the wait is over");
    app.clock.advance(Duration::from_secs(1));
    let r = web_login(&attacker, &app, "acme", &acme.password).await;
    assert_eq!(r.status(), 303, "the wait is over");
}

#[tokio::test]
async fn an_unknown_tenant_takes_as_long_to_refuse_as_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.logins.max_failures = 100; // timed here, not throttled
    let app = TestApp::spawn_with(config).await;
    let _acme = app.create_tenant("acme");
    let client = client_from("127.0.0.1");
    let time = async |slug: &str| {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let r = web_login(&client, &app, slug, "wrong-password").await;
            assert_eq!(r.status(), 401);
            best = best.min(started.elapsed());
        }
        best
    };
    // Warm both paths once (the first unknown login prepares its hash).
    let _ = time("nobody").await;
    let known = time("acme").await;
    let unknown = time("nobody").await;
    eprintln!("login refused in {known:?} (known tenant) and {unknown:?} (unknown)");
    assert!(
        unknown * 3 >= known,
        "an unknown tenant is refused much faster ({unknown:?}) than a wrong password ({known:?})"
    );
}

#[tokio::test]
async fn after_a_login_only_a_path_of_this_site_is_followed() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme");
    let client = client_from("127.0.0.1");
    let r = web_login(&client, &app, "acme", &acme.password).await;
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // Browsers drop a tab or a line break in a URL and read `\` as `/`:
    // each of these would lead to another host.
    for next in [
        "/%09/evil.example",
        "/%0a/evil.example",
        "/%0D/evil.example",
        "/%5Cevil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "%2F%2Fevil.example",
    ] {
        let r = client
            .get(app.url(&format!("/?next={next}")))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{next}");
        assert_eq!(r.headers()["location"], "/calls", "next={next}");
    }
    // A path of this site is followed, query included.
    let r = client
        .get(app.url("/?next=%2Ftables%3Fx%3D1"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/tables?x=1");
    // The login form's `next` follows the same rule.
    let r = client
        .post(app.url("/login"))
        .form(&[
            ("tenant", "acme"),
            ("password", &acme.password),
            ("next", "/\t/evil.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/calls");
}
