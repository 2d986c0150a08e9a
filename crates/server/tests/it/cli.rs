//! The command line: configuration and tenant creation errors.

use std::process::Command;

fn callmeta(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_callmeta"))
        .args(args)
        .current_dir(dir)
        .env_remove("CALLMETA_DATABASE")
        .output()
        .unwrap()
}

#[test]
fn print_config_layers_file_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("callmeta.toml"),
        "http = \"127.0.0.1:9000\"\nftp = \"127.0.0.1:2100\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callmeta"))
        .args(["print-config", "--data-dir", "/srv/callmeta"])
        .current_dir(dir.path())
        .env("CALLMETA_FTP", "0.0.0.0:21")
        .env("CALLMETA_DATABASE", "postgres://app:hunter2@db/callmeta")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("http = \"127.0.0.1:9000\""), "{text}");
    assert!(text.contains("ftp = \"0.0.0.0:21\""), "{text}");
    assert!(text.contains("data_dir = \"/srv/callmeta\""), "{text}");
    assert!(!text.contains("hunter2"), "secrets are never printed: {text}");
    assert!(text.contains("# "), "the example is commented");
}

#[test]
fn print_config_shows_the_limits_and_reads_back_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let print = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_callmeta"))
            .arg("print-config")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let text = print(&[]);
    for key in [
        "[http_server]",
        "header_timeout_secs = 10",
        "min_body_bytes_per_sec = 1024",
        "max_connections_per_address = 256",
        "[logins]",
        "max_failures = 5",
        "max_block_secs = 900",
        "idle_secs = 300",
        "max_connections_per_address = 32",
    ] {
        assert!(text.contains(key), "{key} in {text}");
    }
    let file = dir.path().join("printed.toml");
    std::fs::write(&file, &text).unwrap();
    // (A secret read from a file is shown redacted, even an empty one.)
    let without_secrets = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("secret_access_key"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_secrets(&print(&["--config", file.to_str().unwrap()])),
        without_secrets(&text)
    );
}

#[test]
fn tenant_create_refuses_bad_input_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = callmeta(
        &[
            "tenant",
            "create",
            "Bad Slug",
            "--password",
            "long-enough",
            "--data-dir",
            d,
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("slug"));
    let out = callmeta(
        &[
            "tenant",
            "create",
            "shorty",
            "--password",
            "short",
            "--data-dir",
            d,
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("8 characters"));
    let out = callmeta(
        &[
            "tenant",
            "create",
            "dup",
            "--password",
            "long-enough",
            "--data-dir",
            d,
        ],
        dir.path(),
    );
    assert!(out.status.success());
    let out = callmeta(
        &[
            "tenant",
            "create",
            "dup",
            "--password",
            "long-enough",
            "--data-dir",
            d,
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}
