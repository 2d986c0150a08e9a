//! Documented bounds on queries and calls, the same through the API and the
//! web app (one rule, in the use cases), and data edge cases: a CSV with an
//! unclosed quote, metadata numbers beyond a float's precision.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{SPEC_TABLE, TestApp, error_detail};

fn filters(n: usize) -> String {
    (0..n)
        .map(|i| format!("metadata.k{i}=v{i}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn call_queries_are_bounded_in_filters_page_size_and_depth() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme");
    let (status, _) = app
        .post_json(&acme, "/api/v1/calls", json!({"metadata": {"k0": "v0"}}))
        .await;
    assert_eq!(status, 201);

    let (status, json) = app.get(&acme, &format!("/api/v1/calls?{}", filters(20))).await;
    assert_eq!(status, 200, "{json}");
    let started = Instant::now();
    let (status, json) = app.get(&acme, &format!("/api/v1/calls?{}", filters(500))).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused before any work"
    );
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["errors"][0]["field"], "metadata");
    assert!(
        error_detail(&json).contains("500 filter values, over the limit of 20"),
        "{json}"
    );

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("offset=100001", "offset"),
        ("offset=18446744073709551615", "offset"),
    ] {
        let (status, json) = app.get(&acme, &format!("/api/v1/calls?{query}")).await;
        assert_eq!(status, 400, "{query}: {json}");
        assert_eq!(json["errors"][0]["field"], field, "{query}: {json}");
    }
    let (status, _) = app.get(&acme, "/api/v1/calls?limit=1000&offset=100000").await;
    assert_eq!(status, 200);
    let long_value = "x".repeat(1025);
    let (status, json) = app
        .get(&acme, &format!("/api/v1/calls?metadata.k0={long_value}"))
        .await;
    assert_eq!(status, 400, "{json}");

    // A back-fill's filters are bounded alike.
    let many: serde_json::Map<String, serde_json::Value> =
        (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (status, json) = app
        .post_json(&acme, "/api/v1/backfill", json!({"metadata": many}))
        .await;
    assert_eq!(status, 400, "{json}");

    // The web app's list, through the same rule.
    let web = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = web
        .post(app.url("/login"))
        .form(&[("tenant", "acme"), ("password", acme.password.as_str())])
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
    let page = |path: String| {
        let web = web.clone();
        let cookie = cookie.clone();
        let url = app.url(&path);
        async move {
            let r = web.get(url).header("cookie", cookie).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, _) = page(format!("/calls?{}", filters(20))).await;
    assert_eq!(status, 200);
    let (status, body) = page(format!("/calls?{}", filters(21))).await;
    assert_eq!(status, 400);
    assert!(body.contains("21 filter values, over the limit of 20"), "{body}");
    let (status, _) = page("/calls?page=18446744073709551615".to_string()).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_call_s_external_id_and_metadata_are_bounded() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme");
    let post = |body| app.post_json(&acme, "/api/v1/calls", body);
    let (status, _) = post(json!({"metadata": {}, "external_id": "x".repeat(256)})).await;
    assert_eq!(status, 201);
    let (status, json) = post(json!({"metadata": {}, "external_id": "x".repeat(257)})).await;
    assert_eq!(status, 422, "{json}");
    assert_eq!(json["errors"][0]["field"], "external_id");
    let (status, _) = post(json!({"metadata": {}, "external_id": " "})).await;
    assert_eq!(status, 422);
    let (status, _) = post(json!({"metadata": {"k".repeat(257): "v"}})).await;
    assert_eq!(status, 422);
    let (status, _) = post(json!({"metadata": {"k": "v".repeat(64 * 1024 + 1)}})).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn metadata_numbers_are_kept_exactly_as_sent() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme");
    // 2^53 + 1 has no float of its own: read into an f64 it becomes 2^53.
    let body = r#"{"metadata": {"big": 9007199254740993, "price": 1.50, "neg": -0,
        "huge": 123456789012345678901234567890, "tiny": 1e-400, "vip": true}}"#;
    let r = app
        .http
        .post(app.url("/api/v1/calls"))
        .header("Authorization", format!("Token {}", acme.token))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, call) = crate::helpers::status_json(r).await;
    assert_eq!(status, 201, "{call}");
    let id = call["unique_id"].as_str().unwrap();
    let (_, call) = app.get(&acme, &format!("/api/v1/calls/{id}")).await;
    let m = &call["metadata"];
    assert_eq!(m["big"], "9007199254740993");
    assert_eq!(m["price"], "1.50");
    assert_eq!(m["neg"], "-0");
    assert_eq!(m["huge"], "123456789012345678901234567890");
    assert_eq!(m["tiny"], "1e-400");
    assert_eq!(m["vip"], "true");
    // And it is found by its exact value.
    let (_, list) = app
        .get(&acme, "/api/v1/calls?metadata.big=9007199254740993")
        .await;
    assert_eq!(list["count"], 1, "{list}");
}

#[tokio::test]
async fn a_csv_with_an_unclosed_quote_is_rejected_at_the_line_where_the_field_began() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme");
    app.create_table(&acme, "crm", json!({"key": "agent_id"})).await;
    let (status, _) = app.upload(&acme, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201);
    let csv = "agent_id,team_name\nalice,diamond\nbob,\"ruby\ncindy,diamond\ndylan,saphire\n";
    let (status, json) = app.upload(&acme, "crm", csv).await;
    assert_eq!(status, 422, "{json}");
    let text = json.to_string();
    assert!(
        text.contains("line 3: a quoted field starts here and its closing quote is missing"),
        "{json}"
    );
    // The previous version stays active: cindy is still found.
    let (_, call) = app
        .post_json(&acme, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
        .await;
    assert_eq!(call["metadata"]["team_name"], "diamond", "{call}");
    assert_eq!(call["metadata"]["city"], "Helsinki", "{call}");
}
