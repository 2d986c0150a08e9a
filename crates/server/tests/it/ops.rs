//! Operations: the health endpoint and `callmeta migrate`.

use crate::helpers::*;

#[tokio::test]
async fn health_checks_the_database_and_the_blob_storage() {
    let app = TestApp::spawn().await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["blobs"], "ok");

    // Blob storage that cannot be written makes the node unhealthy, and says so.
    let blobs = app.data_dir.join("blobs");
    std::fs::remove_dir_all(&blobs).ok();
    std::fs::write(&blobs, b"not a directory").unwrap();
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "ok");
    assert_ne!(body["blobs"], "ok");
    app.stop().await;
}

#[test]
fn migrate_brings_a_new_database_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callmeta"))
        .args(["migrate", "--data-dir"])
        .arg(dir.path())
        .env_remove("CALLMETA_DATABASE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("callmeta.db").exists());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callmeta"))
        .args(["migrate", "--database", "mysql://nope"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
}
