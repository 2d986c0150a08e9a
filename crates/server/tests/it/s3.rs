//! Blobs in a real S3-protocol server (moto's, from PyPI: `pip install
//! 'moto[server]'`), started by the test on a free port.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use callmeta_app::blobs::s3::S3Settings;
use serde_json::json;

use crate::helpers::*;

pub(crate) struct S3Server {
    child: Child,
    pub(crate) endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto's server, or `None` when it is not installed and the run does not
/// require it (`.ci/run` sets `CALLMETA_TEST_S3=required`).
pub(crate) async fn start_s3() -> Option<S3Server> {
    let installed = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !installed.is_ok_and(|s| s.success()) {
        assert_ne!(
            std::env::var("CALLMETA_TEST_S3").as_deref(),
            Ok("required"),
            "moto_server is required: pip install 'moto[server]'"
        );
        eprintln!("moto_server is not installed: the S3 test is not run (pip install 'moto[server]')");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server is installed (pip install 'moto[server]'; .ci/run does it)");
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = S3Server { child, endpoint };
    let http = reqwest::Client::new();
    eventually("moto_server answering", Duration::from_secs(10), || async {
        http.get(&server.endpoint).send().await.map(drop)
    })
    .await;
    Some(server)
}

#[tokio::test]
async fn versions_live_in_s3_and_reload_from_it() {
    let Some(s3) = start_s3().await else {
        return;
    };
    let r = reqwest::Client::new()
        .put(format!("{}/callmeta", s3.endpoint))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "creating the bucket: {}", r.status());

    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = test_config(dir.path());
        config.blobs = Some("s3://callmeta".into());
        config.s3 = S3Settings {
            endpoint: Some(s3.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            allow_http: true,
        };
        config
    };
    let app = TestApp::spawn_with(config()).await;
    let t = app.create_tenant("s3");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let (status, body) = app.upload(&t, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201, "{body}");
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    app.stop().await;

    // Nothing of the version is on the local disk: the restart reads it from S3.
    assert!(!dir.path().join("blobs").exists());
    let listing = reqwest::Client::new()
        .get(format!("{}/callmeta", s3.endpoint))
        .send()
        .await
        .unwrap();
    let listing = listing.text().await.unwrap();
    assert!(listing.contains("tables/crm/"), "{listing}");
    let app = TestApp::spawn_with(config()).await;
    let (status, call) = app
        .post_json(&t, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(call["metadata"]["team_name"], "diamond");
    app.stop().await;
}

/// Removing a recording's parts: every key under a prefix goes, the keys
/// beside it stay, in a real S3 server.
#[tokio::test]
async fn a_prefix_is_removed_from_s3() {
    use callmeta_app::blobs::BlobStore;
    use callmeta_app::blobs::s3::S3Blobs;
    let Some(s3) = start_s3().await else {
        return;
    };
    let r = reqwest::Client::new()
        .put(format!("{}/parts", s3.endpoint))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "creating the bucket: {}", r.status());
    let blobs = S3Blobs::new(
        "s3://parts",
        &S3Settings {
            endpoint: Some(s3.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            allow_http: true,
        },
    )
    .unwrap();
    for key in ["a/p/1", "a/p/2", "a/pq", "a/q/1"] {
        blobs.put(key, bytes::Bytes::from_static(b"x")).await.unwrap();
    }
    blobs.delete_prefix("a/p").await.unwrap();
    blobs.delete_prefix("a/none").await.unwrap();
    for (key, kept) in [
        ("a/p/1", false),
        ("a/p/2", false),
        ("a/pq", true),
        ("a/q/1", true),
    ] {
        assert_eq!(blobs.get(key).await.is_ok(), kept, "{key}");
    }
}
