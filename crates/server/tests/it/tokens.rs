//! API tokens: created with a name, a role and an expiry, the secret shown
//! once; listed without secrets; deleted, and then refused within a second
//! on every node; what each role may do.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// A token created through the API, as a `Tenant` that `TestApp` sends requests as.
async fn new_token(app: &TestApp, admin: &Tenant, name: &str, role: &str, days: Value) -> (Tenant, Value) {
    let (status, body) = app
        .post_json(
            admin,
            "/api/v1/tokens",
            json!({"name": name, "role": role, "expires_in_days": days}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let secret = body["token"].as_str().expect("the secret").to_string();
    (
        Tenant {
            slug: admin.slug.clone(),
            token: secret,
            password: admin.password.clone(),
        },
        body,
    )
}

async fn delete(app: &TestApp, t: &Tenant, path: &str) -> (u16, Value) {
    let r = app
        .http
        .delete(app.url(path))
        .header("Authorization", format!("Token {}", t.token))
        .send()
        .await
        .expect("request");
    status_json(r).await
}

#[tokio::test]
async fn tokens_are_created_listed_and_deleted() {
    let app = TestApp::spawn().await;
    let admin = app.create_tenant("tokens");

    // The token `tenant create` printed is the tenant's first admin token.
    let (status, list) = app.get(&admin, "/api/v1/tokens").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["data"][0]["role"], "admin");
    assert_eq!(list["data"][0]["name"], "initial");

    let (analyst, created) = new_token(&app, &admin, "dashboards", "analyst", json!(30)).await;
    assert_eq!(created["name"], "dashboards");
    assert_eq!(created["role"], "analyst");
    assert!(created["expires"].is_string(), "{created}");
    assert!(created["last_used"].is_null(), "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let (status, calls) = app.get(&analyst, "/api/v1/calls").await;
    assert_eq!(status, 200, "{calls}");

    // Listed with its use, never with a secret.
    let (status, list) = app.get(&admin, "/api/v1/tokens").await;
    assert_eq!(status, 200, "{list}");
    let tokens = list["data"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{list}");
    let listed = tokens
        .iter()
        .find(|t| t["id"] == id.as_str())
        .expect("the new token");
    assert!(listed["last_used"].is_string(), "{listed}");
    let text = list.to_string();
    for secret in [&admin.token, &analyst.token] {
        assert!(!text.contains(secret.as_str()), "a secret is listed: {text}");
        let hex = secret.trim_start_matches("cm_");
        assert!(!text.contains(hex), "a secret is listed: {text}");
    }
    for t in tokens {
        let mut keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["created", "expires", "id", "last_used", "name", "role"],
            "{t}"
        );
    }

    // Deleted: 204, then 404; the token is refused from then on.
    let (status, body) = delete(&app, &admin, &format!("/api/v1/tokens/{id}")).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = delete(&app, &admin, &format!("/api/v1/tokens/{id}")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errors"][0]["id"], "not_found", "{body}");
    eventually("the deleted token refused", Duration::from_secs(1), || async {
        match app.get(&analyst, "/api/v1/calls").await {
            (401, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    // The admin token still works.
    let (status, _) = app.get(&admin, "/api/v1/tokens").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn bad_token_requests_say_what_is_wrong() {
    let app = TestApp::spawn().await;
    let admin = app.create_tenant("badtokens");
    let long = "x".repeat(101);
    let cases = [
        (json!({"role": "admin"}), 422, "name"),
        (json!({"name": "ci", "role": "boss"}), 422, "role"),
        (json!({"name": "  ", "role": "admin"}), 422, "name"),
        (json!({"name": long, "role": "admin"}), 422, "name"),
        (json!({"name": "a\u{7}b", "role": "admin"}), 422, "name"),
        (
            json!({"name": "ci", "role": "admin", "expires_in_days": 0}),
            422,
            "expires_in_days",
        ),
        (
            json!({"name": "ci", "role": "admin", "expires_in_days": 3651}),
            422,
            "expires_in_days",
        ),
        (
            json!({"name": "ci", "role": "admin", "expires_in_days": "soon"}),
            422,
            "expires_in_days",
        ),
        (
            json!({"name": "ci", "role": "admin", "owner": "me"}),
            422,
            "owner",
        ),
    ];
    // Each reply names the field, as `field` or in its detail (a missing or
    // unknown field).
    for (body, status, field) in cases {
        let (got, reply) = app.post_json(&admin, "/api/v1/tokens", body.clone()).await;
        assert_eq!(got, status, "{body} → {reply}");
        let named = reply["errors"][0]["field"] == field || error_detail(&reply).contains(field);
        assert!(named, "{body} → {reply}");
    }
    let r = app
        .http
        .post(app.url("/api/v1/tokens"))
        .header("Authorization", format!("Token {}", admin.token))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, reply) = status_json(r).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["errors"][0]["id"], "invalid_json");
    // Nothing was created.
    let (_, list) = app.get(&admin, "/api/v1/tokens").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    app.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.create_tenant("expiry");
    // 1.0 is a whole number of days too (JSON Schema's integer).
    let (short, _) = new_token(&app, &admin, "one day", "analyst", json!(1.0)).await;
    let (status, _) = app.get(&short, "/api/v1/calls").await;
    assert_eq!(status, 200);
    // Just before the end it still works (from the cache), at the end not.
    app.clock.advance(Duration::from_millis(86_400_000 - 10));
    let (status, _) = app.get(&short, "/api/v1/calls").await;
    assert_eq!(status, 200);
    app.clock.advance(Duration::from_millis(10));
    let (status, body) = app.get(&short, "/api/v1/calls").await;
    assert_eq!(status, 401, "{body}");
    // Later still, read from the store again: refused.
    app.clock.advance(Duration::from_secs(5));
    let (status, _) = app.get(&short, "/api/v1/calls").await;
    assert_eq!(status, 401);
    let (status, _) = app.get(&admin, "/api/v1/calls").await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// Role × operation → status, over the API routes that exist.
#[tokio::test]
async fn each_role_may_do_what_its_table_says() {
    let app = TestApp::spawn().await;
    let owner = app.create_tenant("roles");
    app.create_table(&owner, "crm", json!({"key": "agent_id"})).await;
    let (status, body) = app.upload(&owner, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201, "{body}");
    let (status, call) = app
        .post_json(
            &owner,
            "/api/v1/calls",
            json!({"metadata": {"agent_id": "cindy"}}),
        )
        .await;
    assert_eq!(status, 201, "{call}");
    let call_id = call["unique_id"].as_str().unwrap().to_string();

    let mut tokens = Vec::new();
    for role in ["admin", "analyst", "uploader"] {
        tokens.push((role, new_token(&app, &owner, role, role, Value::Null).await.0));
    }

    // (operation, expected status for admin, analyst, uploader)
    let table: [(&str, [u16; 3]); 19] = [
        ("list calls", [200, 200, 403]),
        ("count a key's values", [200, 200, 403]),
        ("export calls", [200, 200, 403]),
        ("read a call", [200, 200, 403]),
        ("create a call", [201, 403, 201]),
        ("list tables", [200, 200, 200]),
        ("upload a table", [201, 403, 201]),
        ("change table settings", [200, 403, 403]),
        ("read siprec settings", [200, 200, 403]),
        ("change siprec settings", [200, 403, 403]),
        ("list tokens", [200, 403, 403]),
        ("create a token", [201, 403, 403]),
        ("delete a token", [404, 403, 403]),
        ("read the audit log", [200, 403, 403]),
        ("list users", [200, 403, 403]),
        ("create a user", [201, 403, 403]),
        ("list webhooks", [200, 403, 403]),
        ("preview a back-fill", [200, 200, 403]),
        ("run a back-fill", [200, 403, 403]),
    ];
    for (operation, expected) in table {
        for (i, (role, t)) in tokens.iter().enumerate() {
            let (status, body) = match operation {
                "list calls" => app.get(t, "/api/v1/calls").await,
                "count a key's values" => app.get(t, "/api/v1/calls/facets?key=team_name").await,
                "export calls" => {
                    let r = app
                        .http
                        .get(app.url("/api/v1/calls/export?format=ndjson"))
                        .header("Authorization", format!("Token {}", t.token))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let body = if status == 200 {
                        Value::Null
                    } else {
                        r.json().await.unwrap_or(Value::Null)
                    };
                    (status, body)
                }
                "read a call" => app.get(t, &format!("/api/v1/calls/{call_id}")).await,
                "create a call" => {
                    app.post_json(t, "/api/v1/calls", json!({"metadata": {"agent_id": "bob"}}))
                        .await
                }
                "list tables" => app.get(t, "/api/v1/tables").await,
                "upload a table" => {
                    app.upload(t, "crm", format!("agent_id,team_name\ncindy,{role}\n"))
                        .await
                }
                "change table settings" => {
                    app.put_json(
                        t,
                        "/api/v1/tables/crm",
                        json!({"key": "agent_id", "bad_rows": "skip"}),
                    )
                    .await
                }
                "read siprec settings" => app.get(t, "/api/v1/siprec").await,
                "change siprec settings" => {
                    app.put_json(
                        t,
                        "/api/v1/siprec",
                        json!({"mapping": {"participant_1_aor_user": "agent_id"}}),
                    )
                    .await
                }
                "list tokens" => app.get(t, "/api/v1/tokens").await,
                "create a token" => {
                    app.post_json(t, "/api/v1/tokens", json!({"name": "more", "role": "analyst"}))
                        .await
                }
                "delete a token" => delete(&app, t, "/api/v1/tokens/no-such-token").await,
                "read the audit log" => app.get(t, "/api/v1/audit").await,
                "list users" => app.get(t, "/api/v1/users").await,
                "create a user" => {
                    let body =
                        json!({"name": format!("u-{role}"), "role": "analyst", "password": "long-enough"});
                    app.post_json(t, "/api/v1/users", body).await
                }
                "list webhooks" => app.get(t, "/api/v1/webhooks").await,
                "preview a back-fill" => {
                    app.post_json(t, "/api/v1/backfill", json!({"dry_run": true}))
                        .await
                }
                "run a back-fill" => {
                    app.post_json(t, "/api/v1/backfill", json!({"dry_run": false}))
                        .await
                }
                other => unreachable!("{other}"),
            };
            assert_eq!(status, expected[i], "{role} may {operation}? {body}");
            if status == 403 {
                assert_eq!(body["errors"][0]["id"], "forbidden", "{body}");
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_token_deleted_on_one_node_is_refused_by_the_other_within_a_second() {
    let Some(db) = PgDatabase::create().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    let shared = tempfile::tempdir().unwrap();
    let blobs = format!("file://{}", shared.path().join("blobs").display());
    let node = |name: &str| {
        let mut config = test_config(&shared.path().join(name));
        config.database = Some(db.url.clone());
        config.blobs = Some(blobs.clone());
        config
    };
    let a = TestApp::spawn_with(node("a")).await;
    let b = TestApp::spawn_with(node("b")).await;
    let admin = a.create_tenant("twonodes");
    let (analyst, created) = new_token(&a, &admin, "reports", "analyst", Value::Null).await;
    let id = created["id"].as_str().unwrap();

    // B knows the token (and caches it: its clock stands still, so only
    // the announcement of the deletion can make it forget).
    let (status, body) = b.get(&analyst, "/api/v1/calls").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = delete(&a, &admin, &format!("/api/v1/tokens/{id}")).await;
    assert_eq!(status, 204, "{body}");
    let deleted = std::time::Instant::now();
    eventually(
        "the other node refusing the deleted token",
        Duration::from_secs(1),
        || async {
            match b.get(&analyst, "/api/v1/calls").await {
                (401, _) => Ok(()),
                (status, body) => Err(format!("{status} {body}")),
            }
        },
    )
    .await;
    eprintln!("the deletion reached the other node in {:?}", deleted.elapsed());
    let (status, _) = b.get(&admin, "/api/v1/calls").await;
    assert_eq!(status, 200);
    a.stop().await;
    b.stop().await;
}

/// A tenant's token from before tokens had names and roles becomes its
/// admin token when migration 0018 runs (on PostgreSQL: the database is
/// taken back to the old shape of `api_tokens`, then migrated again).
#[tokio::test]
async fn an_existing_tenant_token_becomes_its_admin_token() {
    use sqlx::Connection;

    let Some(db) = PgDatabase::create().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_callmeta"))
            .args(args)
            .args(["--database", &db.url, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let created: Value = serde_json::from_slice(&cli(&[
        "tenant",
        "create",
        "legacy",
        "--password",
        "legacy-secret-pw",
    ]))
    .unwrap();
    let token = created["api_token"].as_str().unwrap().to_string();
    let tenant_id = created["tenant_id"].as_str().unwrap().to_string();

    let mut conn = sqlx::postgres::PgConnection::connect(&db.url).await.unwrap();
    for sql in [
        "DROP INDEX api_tokens_by_id",
        "DROP INDEX api_tokens_by_tenant",
        "ALTER TABLE api_tokens DROP COLUMN id, DROP COLUMN name, DROP COLUMN role, \
         DROP COLUMN expires_ms, DROP COLUMN last_used_ms",
        "DELETE FROM _sqlx_migrations WHERE version = 18",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    cli(&["migrate"]);

    let mut config = test_config(&dir.path().join("node"));
    config.database = Some(db.url.clone());
    let app = TestApp::spawn_with(config).await;
    let t = Tenant {
        slug: "legacy".into(),
        token,
        password: "legacy-secret-pw".into(),
    };
    let (status, list) = app.get(&t, "/api/v1/tokens").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["data"][0]["id"], tenant_id.as_str(), "{list}");
    assert_eq!(list["data"][0]["role"], "admin", "{list}");
    // A new tenant's first token still gets a listed admin token of its own.
    let other = app.create_tenant("newer");
    let (status, list) = app.get(&other, "/api/v1/tokens").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    app.stop().await;
}
