//! The web app: its rules over plain HTTP (login, CSRF, expiry, tenancy,
//! escaping), then the pages in a real headless Chromium driven through
//! chromedriver (WebDriver), with a screenshot of each main page.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

const XSS: &str = "<img src=x onerror=alert(1)>";

/// A client that keeps no cookies and follows no redirects, so that every
/// answer of the server is seen as it is.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn login(app: &TestApp, slug: &str, password: &str) -> reqwest::Response {
    client()
        .post(app.url("/login"))
        .form(&[("tenant", slug), ("password", password), ("next", "/calls")])
        .send()
        .await
        .unwrap()
}

/// Logs in; returns the `Cookie` header value and the page's CSRF token.
/// Logs in; the session cookie (`name=value`).
async fn login_cookie(app: &TestApp, t: &Tenant) -> String {
    let r = login(app, &t.slug, &t.password).await;
    let set = r.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

async fn session(app: &TestApp, t: &Tenant) -> (String, String) {
    let r = login(app, &t.slug, &t.password).await;
    assert_eq!(r.status(), 303, "a login redirects");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let page = page(app, &cookie, "/tables").await.1;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("forms carry the CSRF token")
        .to_string();
    (cookie, csrf)
}

async fn page(app: &TestApp, cookie: &str, path: &str) -> (u16, String, Option<String>) {
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
    (status, r.text().await.unwrap(), location)
}

/// The seed example of SPEC §1 with a hostile value in one cell.
async fn seed(app: &TestApp, slug: &str) -> (Tenant, String) {
    let t = app.create_tenant(slug);
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let csv = format!("{SPEC_TABLE}| eve | {XSS} | sales | Oslo |\n");
    let (status, body) = app.upload(&t, "crm", csv).await;
    assert_eq!(status, 201, "{body}");
    let (status, call) = app
        .post_json(
            &t,
            "/api/v1/calls",
            json!({"metadata": {"datetime": "2026-01-30T12:34:56Z", "phonenumber": "+33102030405", "agent_id": "cindy"}}),
        )
        .await;
    assert_eq!(status, 201, "{call}");
    let (_, eve) = app
        .post_json(
            &t,
            "/api/v1/calls",
            json!({"metadata": {"datetime": "2026-01-30T12:00:00Z", "agent_id": "eve", "note": XSS}}),
        )
        .await;
    let (_, _) = app
        .post_json(
            &t,
            "/api/v1/calls",
            json!({"metadata": {"datetime": "2026-01-30T11:00:00Z", "agent_id": "zoe"}}),
        )
        .await;
    assert_eq!(eve["metadata"]["team_name"], XSS);
    (t, call["unique_id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn pages_need_a_login_and_a_wrong_password_is_refused() {
    let app = TestApp::spawn().await;
    let (t, id) = seed(&app, "acme").await;
    for path in [
        "/calls",
        "/tables",
        &format!("/calls/{id}"),
        &format!("/calls/{id}/audio"),
    ] {
        let (status, _, location) = page(&app, "", path).await;
        assert_eq!(status, 303, "{path} without a session");
        let location = location.unwrap();
        assert!(location.starts_with("/?next=%2F"), "{path} → {location}");
    }
    let r = login(&app, &t.slug, "not-the-password").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Unknown login or wrong password")
    );
    let r = login(&app, "nobody", "whatever").await;
    assert_eq!(r.status(), 401);
    // A login posted from another site (login CSRF) is refused; from this
    // site's own page it goes through.
    let host = app
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    for (origin, status) in [
        ("http://evil.example".to_string(), 403),
        ("null".to_string(), 403),
        (format!("http://{host}"), 303),
    ] {
        let r = client()
            .post(app.url("/login"))
            .header("origin", &origin)
            .form(&[("tenant", t.slug.as_str()), ("password", t.password.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "Origin: {origin}");
        assert_eq!(
            r.headers().get("set-cookie").is_some(),
            status == 303,
            "Origin: {origin}"
        );
    }
    // A made-up cookie is no session.
    let (status, _, _) = page(&app, "callmeta_session=0123456789abcdef", "/calls").await;
    assert_eq!(status, 303);

    let (cookie, _) = session(&app, &t).await;
    let r = client()
        .get(app.url("/calls"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let (status, html, _) = page(&app, &cookie, "/calls").await;
    assert_eq!(status, 200);
    assert!(html.contains("diamond"), "the enriched call is listed");
}

#[tokio::test]
async fn every_post_needs_the_session_csrf_token_and_logout_ends_the_session() {
    let app = TestApp::spawn().await;
    let (t, _) = seed(&app, "acme").await;
    let (cookie, csrf) = session(&app, &t).await;
    let post = |path: &str, form: Vec<(&'static str, String)>| {
        client()
            .post(app.url(path))
            .header("cookie", cookie.clone())
            .form(&form)
            .send()
    };
    for form in [vec![], vec![("csrf", "forged".to_string())]] {
        let mut f = form.clone();
        f.push(("key", "team_name".into()));
        let r = post("/tables/crm/settings", f).await.unwrap();
        assert_eq!(r.status(), 403, "settings without the right token");
        let mut f = form.clone();
        f.extend([("name", "other".to_string()), ("key", "x".to_string())]);
        assert_eq!(post("/tables", f).await.unwrap().status(), 403);
        assert_eq!(post("/logout", form.clone()).await.unwrap().status(), 403);
    }
    let upload = reqwest::multipart::Form::new().text("csrf", "forged").part(
        "file",
        reqwest::multipart::Part::bytes(b"agent_id,team_name\nx,y\n".to_vec()).file_name("crm.csv"),
    );
    let r = client()
        .post(app.url("/tables/crm/upload"))
        .header("cookie", cookie.clone())
        .multipart(upload)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "an upload without the right token");
    let (_, table) = app.get(&t, "/api/v1/tables/crm").await;
    assert_eq!(
        table["versions"].as_array().unwrap().len(),
        1,
        "nothing changed: {table}"
    );
    assert_eq!(table["key"], "agent_id");

    // With the token: the settings change, then logout ends the session.
    let r = post(
        "/tables",
        vec![
            ("csrf", csrf.clone()),
            ("name", "phones".into()),
            ("key", "phonenumber".into()),
            ("match", "phone".into()),
            ("as_of", "call_time".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let (_, phones) = app.get(&t, "/api/v1/tables/phones").await;
    assert_eq!(phones["match"], "phone", "{phones}");
    assert_eq!(phones["as_of"], "call_time", "{phones}");
    let (_, html, _) = page(&app, &cookie, "/tables").await;
    assert!(
        html.contains(r#"<option value="call_time" selected>at its timestamp</option>"#),
        "the settings form shows the option"
    );
    let r = post("/logout", vec![("csrf", csrf)]).await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let (status, _, _) = page(&app, &cookie, "/calls").await;
    assert_eq!(status, 303, "the old cookie no longer works");
}

#[tokio::test]
async fn a_session_expires() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.web.session_secs = 600;
    config.web.idle_secs = 3_600;
    let app = TestApp::spawn_with(config).await;
    let t = app.create_tenant("acme");
    let cookie = login_cookie(&app, &t).await;
    assert_eq!(page(&app, &cookie, "/calls").await.0, 200);
    app.clock.advance(Duration::from_millis(599_999));
    assert_eq!(
        page(&app, &cookie, "/calls").await.0,
        200,
        "valid until the end of its lifetime"
    );
    app.clock.advance(Duration::from_millis(1));
    assert_eq!(
        page(&app, &cookie, "/calls").await.0,
        303,
        "expired at the end of its lifetime, in use or not"
    );
}

#[tokio::test]
async fn a_session_in_use_lasts_and_an_unused_one_ends_after_its_idle_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.web.idle_secs = 120;
    let app = TestApp::spawn_with(config).await;
    let t = app.create_tenant("acme");
    let cookie = login_cookie(&app, &t).await;
    // Used every 30 s for 3.5 min: longer than the idle time, still valid.
    for _ in 0..7 {
        app.clock.advance(Duration::from_secs(30));
        assert_eq!(page(&app, &cookie, "/calls").await.0, 200, "in use");
    }
    app.clock.advance(Duration::from_secs(150));
    let (status, _, location) = page(&app, &cookie, "/calls").await;
    assert_eq!(status, 303, "ended after resting longer than its idle time");
    assert_eq!(location.as_deref(), Some("/?next=%2Fcalls"));
    // The list refreshing itself (an htmx request) is told to load the
    // login page rather than being handed the login form to swap in.
    let r = client()
        .get(app.url("/calls?metadata.team_name=diamond"))
        .header("cookie", &cookie)
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["hx-redirect"],
        "/?next=%2Fcalls%3Fmetadata.team_name%3Ddiamond"
    );
}

#[tokio::test]
async fn no_page_shows_another_tenants_data_and_values_are_escaped() {
    let app = TestApp::spawn().await;
    let (acme, id) = seed(&app, "acme").await;
    let other = app.create_tenant("other");
    let (cookie, _) = session(&app, &other).await;
    let (status, html, _) = page(&app, &cookie, &format!("/calls/{id}")).await;
    assert_eq!(status, 404, "another tenant's call does not exist for this one");
    assert!(!html.contains("cindy"));
    let (_, html, _) = page(&app, &cookie, "/calls").await;
    assert!(
        !html.contains("Helsinki") && !html.contains(">cindy<") && html.contains("No calls yet"),
        "{html}"
    );
    let (_, html, _) = page(&app, &cookie, "/tables").await;
    assert!(!html.contains("Active version") && html.contains("No reference table yet"));

    let (cookie, _) = session(&app, &acme).await;
    let (_, html, _) = page(&app, &cookie, "/tables").await;
    assert!(!html.contains(XSS));
    let (_, eve) = app.get(&acme, "/api/v1/calls?metadata.agent_id=eve").await;
    let eve_page = format!("/calls/{}", eve["data"][0]["unique_id"].as_str().unwrap());
    for path in ["/calls", "/calls?metadata.agent_id=eve", &eve_page] {
        let (_, html, _) = page(&app, &cookie, path).await;
        assert!(!html.contains(XSS), "{path} shows the raw markup");
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;") || html.contains("&#60;img"),
            "{path}: {html}"
        );
    }
}

#[tokio::test]
async fn the_calls_filter_is_a_shareable_url() {
    let app = TestApp::spawn().await;
    let (t, _) = seed(&app, "acme").await;
    let (cookie, _) = session(&app, &t).await;
    let (status, _, location) = page(&app, &cookie, "/calls?fk=team_name&fv=diamond").await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/calls?metadata.team_name=diamond"));
    let (_, html, _) = page(&app, &cookie, "/calls?metadata.team_name=diamond").await;
    assert!(html.contains("cindy") && !html.contains(">zoe<"), "{html}");
    let (_, html, _) = page(&app, &cookie, "/calls?from=2026-01-30T11:30&to=2026-01-30T12:10").await;
    assert!(
        html.contains(">eve<") && !html.contains("cindy") && !html.contains(">zoe<"),
        "{html}"
    );
    let (_, html, _) = page(&app, &cookie, "/calls?metadata.team_name=onyx").await;
    assert!(html.contains("No call matches these filters"));
}

#[tokio::test]
async fn the_calls_page_builds_every_filter_form_pages_by_cursor_and_exports_the_view() {
    let app = TestApp::spawn().await;
    let (t, _) = seed(&app, "forms").await;
    let (cookie, _) = session(&app, &t).await;
    // Two rows of the form (one left empty) and the status select.
    let (status, _, location) = page(
        &app,
        &cookie,
        "/calls?fk=phonenumber&fop=prefix&fv=%2B331&fk=&fop=eq&fv=&fstatus=crm%3Dmatched",
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        location.as_deref(),
        Some("/calls?metadata.phonenumber.prefix=%2B331&enrichment.crm=matched")
    );
    let (_, html, _) = page(&app, &cookie, location.as_deref().unwrap()).await;
    assert!(html.contains("cindy") && !html.contains(">zoe<"), "{html}");
    assert!(html.contains("phonenumber starts with +331"), "{html}");
    let (_, location) = {
        let (s, _, l) = page(&app, &cookie, "/calls?fk=phonenumber&fop=missing&fv=").await;
        (s, l)
    };
    assert_eq!(
        location.as_deref(),
        Some("/calls?metadata.phonenumber.missing=true")
    );
    let (_, html, _) = page(&app, &cookie, "/calls?metadata.phonenumber.missing=true").await;
    assert!(html.contains(">zoe<") && !html.contains("cindy"), "{html}");
    // Which calls were not enriched, and why.
    let (_, html, _) = page(&app, &cookie, "/calls?enrichment.crm=no_match").await;
    assert!(html.contains(">zoe<") && !html.contains("cindy"), "{html}");
    // Top values, each a link that adds its filter.
    let (_, html, _) = page(&app, &cookie, "/calls?facet=agent_id").await;
    assert!(
        html.contains("href=\"/calls?facet=agent_id&#38;metadata.agent_id=zoe\""),
        "{html}"
    );

    // Pages by cursor: one call a page, each older than the last.
    let mut seen = Vec::new();
    let mut path = "/calls?limit=1".to_string();
    loop {
        let (status, html, _) = page(&app, &cookie, &path).await;
        assert_eq!(status, 200);
        for agent in ["cindy", "eve", "zoe"] {
            if html.contains(&format!(">{agent}<")) {
                seen.push(agent);
            }
        }
        let Some(at) = html.find("rel=\"next\"") else {
            break;
        };
        let start = html[..at].rfind("href=\"").unwrap() + 6;
        let end = start + html[start..].find('"').unwrap();
        path = html[start..end].replace("&#38;", "&");
        assert!(path.contains("cursor="), "{path}");
    }
    assert_eq!(seen, ["cindy", "eve", "zoe"]);

    // The view as a file.
    let (_, html, _) = page(&app, &cookie, "/calls?enrichment.crm=matched").await;
    assert!(
        html.contains("href=\"/calls/export?enrichment.crm=matched\""),
        "{html}"
    );
    let r = client()
        .get(app.url("/calls/export?enrichment.crm=matched"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("calls.csv")
    );
    let body = r.bytes().await.unwrap();
    let mut reader = csv::Reader::from_reader(&body[3..]);
    let agents: Vec<String> = reader
        .deserialize::<std::collections::HashMap<String, String>>()
        .map(|r| r.unwrap()["agent_id"].clone())
        .collect();
    assert_eq!(agents, ["cindy", "eve"]);
    // Logged out: no file.
    let r = client().get(app.url("/calls/export")).send().await.unwrap();
    assert_ne!(r.status(), 200);
}

// ------------------------------------------------------------ the browser

struct Browser {
    _driver: Driver,
    client: fantoccini::Client,
}

/// chromedriver, killed when the test ends (or fails).
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free port with headless Chromium; `None` (the test is
/// skipped) when they are not installed, unless CALLMETA_TEST_CLIENTS=required.
async fn browser() -> Option<Browser> {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let (Some(chromium), true) = (chromium, std::path::Path::new("/usr/bin/chromedriver").exists()) else {
        assert!(
            std::env::var("CALLMETA_TEST_CLIENTS").as_deref() != Ok("required"),
            "chromium and chromedriver are required (CALLMETA_TEST_CLIENTS=required): apt-get install chromium chromium-driver"
        );
        eprintln!("skipping: chromium or chromedriver is not installed");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = std::process::Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    // Both rustls back-ends are in the tree: name one for the client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let driver = Driver(driver);
    let client = eventually("chromedriver answering", Duration::from_secs(10), || async {
        fantoccini::ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(caps.clone())
            .connect(&url)
            .await
    })
    .await;
    Some(Browser {
        _driver: driver,
        client,
    })
}

/// Clicks what submits a form or follows a link, and returns once the next
/// page has loaded (a WebDriver click returns before that).
async fn click_and_load(c: &fantoccini::Client, css: &str) {
    c.execute("window.__leaving = true;", vec![]).await.unwrap();
    c.find(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
    eventually(
        &format!("clicking {css} loading a new page"),
        Duration::from_secs(15),
        || async {
            let loaded = c
                .execute(
                    "return window.__leaving === undefined && document.readyState === 'complete';",
                    vec![],
                )
                .await;
            match loaded.map(|v| v.as_bool()) {
                Ok(Some(true)) => Ok(()),
                seen => Err(format!("{seen:?}")),
            }
        },
    )
    .await;
}

/// Polls `done` until it holds, for up to 10 s; fails showing the page.
async fn wait_for(c: &fantoccini::Client, what: &str, done: impl AsyncFn() -> bool) {
    eventually(what, Duration::from_secs(10), || async {
        if done().await {
            Ok(())
        } else {
            Err(format!("page: {}", c.source().await.unwrap_or_default()))
        }
    })
    .await;
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &fantoccini::Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let path = screenshots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

#[tokio::test]
async fn a_supervisor_works_through_the_pages_in_chromium() {
    use fantoccini::Locator;

    let Some(b) = browser().await else {
        return;
    };
    let c = &b.client;
    let app = TestApp::spawn().await;
    let (t, id) = seed(&app, "acme").await;
    // A call with its recording, dropped over FTP, for the player.
    let wav = {
        let mut w = b"RIFF\x24\x1f\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x1f\x00\x00".to_vec();
        w.extend(std::iter::repeat_n(0u8, 0x1f00));
        w
    };
    let drop_dir = tempfile::tempdir().unwrap();
    std::fs::write(drop_dir.path().join("rec-1.wav"), &wav).unwrap();
    std::fs::write(
        drop_dir.path().join("rec-1.json"),
        r#"{"datetime": "2026-01-30T13:00:00Z", "agent_id": "alice", "phonenumber": "+358401234567"}"#,
    )
    .unwrap();
    for file in ["rec-1.json", "rec-1.wav"] {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "30", "-T"])
            .arg(drop_dir.path().join(file))
            .arg(format!("ftp://{}:{}@{}/calls/", t.slug, t.password, app.ftp))
            .output()
            .await
            .expect("curl runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (_, alice) = app.get(&t, "/api/v1/calls?metadata.agent_id=alice").await;
    let audio_id = alice["data"][0]["unique_id"].as_str().unwrap().to_string();

    // Pages need a login: the browser lands on the login form.
    c.goto(&app.url("/calls")).await.unwrap();
    assert!(c.current_url().await.unwrap().path() == "/");
    screenshot(c, "login").await;
    c.find(Locator::Id("tenant"))
        .await
        .unwrap()
        .send_keys(&t.slug)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("wrong")
        .await
        .unwrap();
    click_and_load(c, "form button[type=submit]").await;
    let alert = c
        .find(Locator::Css(".alert.error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(alert.contains("wrong password"), "{alert}");
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(&t.password)
        .await
        .unwrap();
    click_and_load(c, "form button[type=submit]").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/calls");

    // The seed call, enriched; the hostile cell is text, not an element.
    let body = c.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(
        body.contains("cindy") && body.contains("team_name: diamond"),
        "{body}"
    );
    assert!(body.contains(XSS), "the markup shows as text: {body}");
    assert!(
        c.find_all(Locator::Css("main img")).await.unwrap().is_empty(),
        "no element was injected"
    );
    let badges = c.find_all(Locator::Css(".badge.ok")).await.unwrap();
    assert!(!badges.is_empty(), "a matched badge");
    screenshot(c, "calls").await;

    // Filter by team_name through the form: a shareable URL.
    c.find(Locator::Id("fk"))
        .await
        .unwrap()
        .send_keys("team_name")
        .await
        .unwrap();
    c.find(Locator::Id("fv"))
        .await
        .unwrap()
        .send_keys("diamond")
        .await
        .unwrap();
    click_and_load(c, "form.filters button").await;
    let url = c.current_url().await.unwrap();
    assert_eq!(url.query(), Some("metadata.team_name=diamond"), "{url}");
    let rows = c.find_all(Locator::Css("table.list tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 2, "cindy's and alice's calls are in team diamond");
    let body = c.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(!body.contains("zoe") && !body.contains("eve"), "{body}");

    // A call arriving while the list is open: Refresh fetches the list in
    // place (htmx), with the filter kept and no page load.
    c.execute("window.stillHere = true;", vec![]).await.unwrap();
    let (status, _) = app
        .post_json(
            &t,
            "/api/v1/calls",
            serde_json::json!({"metadata": {"agent_id": "alice", "note": "just in"}}),
        )
        .await;
    assert_eq!(status, 201);
    c.find(Locator::Id("refresh"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(c, "the new call in the list", async || {
        c.find_all(Locator::Css("table.list tbody tr"))
            .await
            .unwrap()
            .len()
            == 3
    })
    .await;
    assert_eq!(
        c.execute("return window.stillHere === true;", vec![])
            .await
            .unwrap(),
        serde_json::json!(true),
        "refreshed in place"
    );
    assert_eq!(
        c.current_url().await.unwrap().query(),
        Some("metadata.team_name=diamond")
    );

    // The call page: own and added metadata, where each came from.
    click_and_load(c, &format!("a[href='/calls/{id}']")).await;
    assert_eq!(c.current_url().await.unwrap().path(), format!("/calls/{id}"));
    let body = c.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    for expected in [
        "Own metadata",
        "Added metadata",
        "matched",
        "team_name",
        "diamond",
        "crm ·",
        "Helsinki",
    ] {
        assert!(body.contains(expected), "{expected} on the call page: {body}");
    }
    screenshot(c, "call").await;
    c.goto(&app.url(&format!("/calls/{audio_id}"))).await.unwrap();
    let player = c.find(Locator::Css("audio")).await.unwrap();
    assert!(player.attr("src").await.unwrap().unwrap().ends_with("/audio"));
    let duration = c
        .execute(
            // The player loads nothing until asked (each load is a download
            // in the audit log): ask, as pressing play does.
            "const a = document.querySelector('audio'); return new Promise(r => { a.onloadedmetadata = () => r(a.duration); a.onerror = () => r(-1); a.load(); });",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        duration.as_f64().unwrap_or(-1.0) > 0.4,
        "the browser plays the recording: {duration}"
    );
    screenshot(c, "call-with-audio").await;
    // The page now says who downloaded the recording.
    c.refresh().await.unwrap();
    let downloads = c
        .find(Locator::Css("#downloads"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(downloads.contains(&t.slug), "{downloads}");

    // Upload a new version through the form.
    c.goto(&app.url("/tables")).await.unwrap();
    let csv = std::env::temp_dir().join(format!("callmeta-web-{}.csv", std::process::id()));
    std::fs::write(&csv, "agent_id,team_name\ncindy,onyx\nbob,ruby\n").unwrap();
    c.find(Locator::Css("form.upload input[type=file]"))
        .await
        .unwrap()
        .send_keys(&csv.to_string_lossy())
        .await
        .unwrap();
    click_and_load(c, "form.upload button").await;
    let notice = c
        .find(Locator::Css(".alert.ok"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(notice.contains("new version is active"), "{notice}");
    let _ = std::fs::remove_file(&csv);
    let (_, table) = app.get(&t, "/api/v1/tables/crm").await;
    assert_eq!(table["active_version"]["rows"], 2, "{table}");
    assert_eq!(table["active_version"]["channel"], "web", "{table}");
    let body = c.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(body.contains("2 rows"), "{body}");
    screenshot(c, "tables").await;

    // Logging out ends the session.
    click_and_load(c, "form.logout button").await;
    c.goto(&app.url("/tables")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/");
    b.client.clone().close().await.unwrap();
}
