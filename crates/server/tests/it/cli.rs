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

/// `callmeta serve` runs with a fixed mmap threshold (the memory bound of
/// an upload and its swap depends on it), as the same process, and keeps an
/// operator's own glibc tunables.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn serve_runs_with_a_fixed_mmap_threshold() {
    let tunables_of = |env: &[(&str, &str)]| {
        let dir = tempfile::tempdir().unwrap();
        let (mut server, url, _) = crate::helpers::spawn_serve(dir.path(), &[], env);
        let environ = std::fs::read(format!("/proc/{}/environ", server.id())).unwrap();
        let _ = server.kill();
        let _ = server.wait();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        String::from_utf8_lossy(&environ)
            .split('\0')
            .find_map(|v| v.strip_prefix("GLIBC_TUNABLES=").map(str::to_string))
            .unwrap_or_else(|| panic!("no GLIBC_TUNABLES in the server's environment"))
    };
    assert_eq!(
        tunables_of(&[("GLIBC_TUNABLES", "")]),
        "glibc.malloc.mmap_threshold=262144"
    );
    // glibc cuts the variable's text where it has parsed it, so only the
    // operator's part is seen from outside: the server ran, and kept it.
    let own = "glibc.malloc.arena_max=4";
    assert!(tunables_of(&[("GLIBC_TUNABLES", own)]).starts_with(own));
}
