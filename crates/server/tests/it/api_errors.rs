//! Bad requests get a specific error in the `{"errors": [...]}` shape, and the
//! server keeps serving.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("auth");
    for header in [None, Some("Token nope"), Some("Bearer "), Some("Basic abc")] {
        let mut req = app.http.get(app.url("/api/v1/calls"));
        if let Some(h) = header {
            req = req.header("Authorization", h);
        }
        let (status, body) = status_json(req.send().await.unwrap()).await;
        assert_eq!(status, 401, "{header:?}: {body}");
        assert_eq!(body["errors"][0]["id"], "unauthorized");
    }
    let (status, _) = app.get(&t, "/api/v1/calls").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn malformed_bodies_name_what_is_wrong() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("bad");
    let post_raw = |body: &'static str| {
        app.http
            .post(app.url("/api/v1/calls"))
            .header("Authorization", format!("Token {}", t.token))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let (status, body) = status_json(post_raw("{\"metadata\": {").await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["id"], "invalid_json");
    assert!(error_detail(&body).contains("line 1"), "{body}");

    // serde would read a struct from an array of its fields; a body is an object.
    for (path, body) in [
        ("/api/v1/backfill", json!([])),
        ("/api/v1/calls", json!([{"a": "b"}])),
    ] {
        let (status, body) = app.post_json(&t, path, body).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert!(error_detail(&body).contains("JSON object"), "{body}");
    }

    let (status, body) = app
        .post_json(&t, "/api/v1/calls", json!({"metadata": {}, "agent": "x"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(error_detail(&body).contains("unknown field `agent`"), "{body}");

    let (status, body) = app
        .post_json(
            &t,
            "/api/v1/calls",
            json!({"metadata": {"agent_id": {"nested": 1}}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "metadata.agent_id");

    let (status, body) = app
        .post_json(
            &t,
            "/api/v1/calls",
            json!({"metadata": {}, "timestamp": "yesterday"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "timestamp");

    let (status, body) = app
        .put_json(&t, "/api/v1/tables/crm", json!({"match": "exact"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(error_detail(&body).contains("key"), "{body}");

    let (status, body) = app
        .put_json(
            &t,
            "/api/v1/tables/crm",
            json!({"key": "agent_id", "match": "fuzzy"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "match");

    let (status, body) = app
        .put_json(
            &t,
            "/api/v1/tables/crm",
            json!({"key": "agent_id", "match": "phone", "region": "XX"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let (status, body) = app
        .put_json(&t, "/api/v1/tables/Bad%20Name", json!({"key": "agent_id"}))
        .await;
    assert_eq!(status, 422, "{body}");

    let (status, body) = app.upload(&t, "missing", "agent_id\nx\n").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        error_detail(&body).contains("PUT /api/v1/tables/missing"),
        "{body}"
    );

    let (status, body) = app.get(&t, "/api/v1/calls?limit=0").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.get(&t, "/api/v1/calls?colour=red").await;
    assert_eq!(status, 400, "{body}");
    assert!(error_detail(&body).contains("colour"), "{body}");
    let (status, body) = app.get(&t, "/api/v1/calls?timestamp_from=monday").await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = app.get(&t, "/api/v1/calls?offset=9223372036854775808").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "offset");
    // Path parameters that do not decode get the same error shape.
    let (status, body) = app.get(&t, "/api/v1/calls/%FF").await;
    assert_eq!(status, 400, "{body}");
    assert!(error_detail(&body).contains("invalid path"), "{body}");

    let (status, body) = app.get(&t, "/api/v1/calls/does-not-exist").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = app.get(&t, "/api/v1/nothing-here").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errors"][0]["id"], "not_found");

    // A method a path does not take: 405, the error shape, and Allow.
    let r = app
        .http
        .patch(app.url("/api/v1/calls"))
        .header("Authorization", format!("Token {}", t.token))
        .send()
        .await
        .unwrap();
    let allow = r.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
    let (status, body) = status_json(r).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["errors"][0]["id"], "method_not_allowed");
    assert_eq!(allow.as_deref(), Some("GET,HEAD,POST"));

    // A 3 MB JSON body is over the JSON limit.
    let big = json!({"metadata": {"notes": "x".repeat(3 * 1024 * 1024)}});
    let (status, body) = app.post_json(&t, "/api/v1/calls", big).await;
    assert_eq!(status, 413, "{body}");

    let (status, _) = app.get(&t, "/api/v1/calls").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_api() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    let (status, doc) = status_json(r).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/calls",
        "/api/v1/calls/{unique_id}",
        "/api/v1/tables/{name}",
        "/api/v1/tables/{name}/data",
    ] {
        assert!(doc["paths"].get(path).is_some(), "missing {path}");
    }
    assert!(doc["components"]["schemas"].get("CallView").is_some());
    app.stop().await;
}
