//! CSV uploads through the API: real-world exports, rejections, limits,
//! versions and restarts.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

async fn app_with_crm() -> (TestApp, Tenant) {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("up");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    (app, t)
}

async fn team_of(app: &TestApp, t: &Tenant, agent: &str) -> Value {
    let (status, call) = app
        .post_json(t, "/api/v1/calls", json!({"metadata": {"agent_id": agent}}))
        .await;
    assert_eq!(status, 201, "{call}");
    call["metadata"]["team_name"].clone()
}

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut out = if big_endian {
        vec![0xFE, 0xFF]
    } else {
        vec![0xFF, 0xFE]
    };
    for unit in text.encode_utf16() {
        let b = if big_endian {
            unit.to_be_bytes()
        } else {
            unit.to_le_bytes()
        };
        out.extend_from_slice(&b);
    }
    out
}

#[tokio::test]
async fn real_world_exports_are_accepted_and_reported() {
    let (app, t) = app_with_crm().await;
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "utf-8 bom, semicolons",
            b"\xEF\xBB\xBFagent_id;team_name\r\nalice;diamond\r\n".to_vec(),
            "semicolon",
            "UTF-8",
        ),
        (
            "utf-16le, tabs",
            utf16("agent_id\tteam_name\r\nalice\truby\r\n", false),
            "tab",
            "UTF-16LE",
        ),
        (
            "utf-16be, commas",
            utf16("agent_id,team_name\nalice,onyx\n", true),
            "comma",
            "UTF-16BE",
        ),
        (
            "windows-1252",
            b"agent_id|team_name\nalice|caf\xE9\n".to_vec(),
            "pipe",
            "windows-1252",
        ),
        (
            "quoted",
            b"\"agent_id\",\"team_name\"\r\n\"alice\",\"a, \"\"quoted\"\"\nteam\"\r\n".to_vec(),
            "comma",
            "UTF-8",
        ),
    ];
    for (name, bytes, delimiter, encoding) in cases {
        let (status, body) = app.upload(&t, "crm", bytes).await;
        assert_eq!(status, 201, "{name}: {body}");
        let report = &body["version"]["report"];
        assert_eq!(report["delimiter"], delimiter, "{name}");
        assert!(
            report["encoding"].as_str().unwrap().starts_with(encoding),
            "{name}: {report}"
        );
        assert_eq!(report["columns"], json!(["agent_id", "team_name"]), "{name}");
    }
    assert_eq!(team_of(&app, &t, "alice").await, "a, \"quoted\"\nteam");
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_upload_leaves_the_previous_version_active() {
    let (app, t) = app_with_crm().await;
    let (status, first) = app.upload(&t, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201);
    let first_id = first["version"]["id"].clone();

    // Missing key column.
    let (status, body) = app.upload(&t, "crm", "id,team_name\nalice,ruby\n").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["id"], "rejected");
    assert!(error_detail(&body).contains("agent_id"), "{body}");
    assert_eq!(body["version"]["state"], "rejected");

    // A short row, with its line number.
    let (status, body) = app
        .upload(&t, "crm", "agent_id,team_name\nalice,ruby\nbob\n")
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(error_detail(&body).contains("line 3"), "{body}");

    // Duplicates under the reject policy.
    app.create_table(&t, "dups", json!({"key": "agent_id", "duplicates": "reject"}))
        .await;
    let (status, body) = app
        .upload(&t, "dups", "agent_id,team_name\nalice,ruby\nalice,onyx\n")
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["version"]["report"]["duplicate_keys"], 1);

    assert_eq!(team_of(&app, &t, "cindy").await, "diamond");
    let (_, table) = app.get(&t, "/api/v1/tables/crm").await;
    assert_eq!(table["active_version"]["id"], first_id);
    let states: Vec<&str> = table["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["rejected", "rejected", "active"]);

    // Skipping bad rows is a table option.
    app.create_table(&t, "lenient", json!({"key": "agent_id", "bad_rows": "skip"}))
        .await;
    let (status, body) = app
        .upload(&t, "lenient", "agent_id,team_name\nalice,ruby\nbob\n,nokey\n")
        .await;
    assert_eq!(status, 201, "{body}");
    let report = &body["version"]["report"];
    assert_eq!(report["rows_accepted"], 1);
    assert_eq!(report["rows_rejected"], 2);
    assert_eq!(report["problems"][0]["line"], 3);
    app.stop().await;
}

#[tokio::test]
async fn same_content_is_recognised_and_new_versions_replace_old_ones() {
    let (app, t) = app_with_crm().await;
    let (status, first) = app.upload(&t, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201);
    let (status, again) = app.upload(&t, "crm", SPEC_TABLE).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["unchanged"], true);
    assert_eq!(again["version"]["id"], first["version"]["id"]);

    let (status, _) = app.upload(&t, "crm", "agent_id,team_name\ncindy,onyx\n").await;
    assert_eq!(status, 201);
    assert_eq!(team_of(&app, &t, "cindy").await, "onyx");
    assert_eq!(team_of(&app, &t, "alice").await, Value::Null);
    let (_, table) = app.get(&t, "/api/v1/tables/crm").await;
    assert_eq!(table["versions"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn settings_changes_rebuild_from_the_active_data_or_change_nothing() {
    let (app, t) = app_with_crm().await;
    app.upload(&t, "crm", SPEC_TABLE).await;
    let (status, table) = app
        .put_json(
            &t,
            "/api/v1/tables/crm",
            json!({"key": "agent_id", "match": "case_insensitive"}),
        )
        .await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(table["match"], "case_insensitive");
    assert_eq!(table["active_version"]["channel"], "settings");
    assert_eq!(team_of(&app, &t, "CINDY").await, "diamond");

    let (status, body) = app
        .put_json(&t, "/api/v1/tables/crm", json!({"key": "nope"}))
        .await;
    assert_eq!(status, 422, "{body}");
    let (_, table) = app.get(&t, "/api/v1/tables/crm").await;
    assert_eq!(table["key"], "agent_id");
    assert_eq!(team_of(&app, &t, "CINDY").await, "diamond");
    app.stop().await;
}

#[tokio::test]
async fn a_restart_reloads_the_active_versions() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(test_config(dir.path())).await;
    let t = app.create_tenant("restart");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    app.upload(&t, "crm", SPEC_TABLE).await;
    app.stop().await;

    let app = TestApp::spawn_with(test_config(dir.path())).await;
    assert_eq!(team_of(&app, &t, "dylan").await, "saphire");
    app.stop().await;
}

#[tokio::test]
async fn a_cli_import_reaches_a_running_server() {
    let (app, t) = app_with_crm().await;
    let file = app.data_dir.join("export.csv");
    std::fs::write(&file, "agent_id,team_name\nerin,topaz\n").unwrap();
    let out = app
        .cli(&["table", "import", "up", "crm", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("now active"), "{stdout}");
    // The server picks the version up on its next refresh (200 ms in tests).
    let team = eventually(
        "the server enriching from the CLI's version",
        Duration::from_secs(5),
        || async {
            match team_of(&app, &t, "erin").await {
                Value::Null => Err(Value::Null),
                team => Ok(team),
            }
        },
    )
    .await;
    assert_eq!(team, "topaz");
    let (_, table) = app.get(&t, "/api/v1/tables/crm").await;
    assert_eq!(table["active_version"]["channel"], "cli");
    assert_eq!(table["active_version"]["filename"], "export.csv");
    app.stop().await;
}

#[tokio::test]
async fn oversized_and_hostile_uploads_get_specific_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits.max_file_bytes = 64 * 1024 * 1024;
    let app = TestApp::spawn_with(config).await;
    let t = app.create_tenant("big");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;

    // A 2 GB upload is refused from its Content-Length, before it is read.
    let (status, body) = raw_upload(&app, &t, Some(2 * 1024 * 1024 * 1024)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("limit"), "{body}");
    // Without a Content-Length, it is refused once the limit is crossed.
    let (status, body) = raw_upload(&app, &t, None).await;
    assert_eq!(status, 413, "{body}");

    // 100,000 columns.
    let header: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
    let csv = format!("agent_id,{}\n", header.join(","));
    let (status, body) = app.upload(&t, "crm", csv).await;
    assert_eq!(status, 422, "{body}");
    assert!(error_detail(&body).contains("column"), "{body}");

    // A 10 MB cell.
    let csv = format!("agent_id,notes\nalice,{}\n", "x".repeat(10 * 1024 * 1024));
    let (status, body) = app.upload(&t, "crm", csv).await;
    assert_eq!(status, 422, "{body}");
    assert!(error_detail(&body).contains("line 2"), "{body}");

    // Binary garbage.
    let garbage: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let (status, body) = app.upload(&t, "crm", garbage).await;
    assert_eq!(status, 422, "{body}");

    // Empty body.
    let (status, body) = app.upload(&t, "crm", "").await;
    assert_eq!(status, 422, "{body}");

    // The server keeps serving.
    let (status, _) = app.get(&t, "/api/v1/tables/crm").await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// Streams an endless upload over a raw connection (declared length or chunked)
/// and returns the reply the server sends while the client is still sending.
async fn raw_upload(app: &TestApp, t: &Tenant, declared: Option<u64>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let length = match declared {
        Some(n) => format!("Content-Length: {n}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".to_string(),
    };
    let head = format!(
        "PUT /api/v1/tables/crm/data HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Token {}\r\n{length}\r\n",
        t.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'a'; 1024 * 1024];
        for _ in 0..2048 {
            let ok = if declared.is_some() {
                write.write_all(&chunk).await
            } else {
                let framed = [
                    format!("{:x}\r\n", chunk.len()).into_bytes(),
                    chunk.clone(),
                    b"\r\n".to_vec(),
                ]
                .concat();
                write.write_all(&framed).await
            };
            if ok.is_err() {
                break;
            }
        }
    });
    let mut reply = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&reply);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end].lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            });
            if let Some(length) = length
                && reply.len() >= end + 4 + length
            {
                break;
            }
        }
    }
    writer.abort();
    let text = String::from_utf8_lossy(&reply).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// While versions are uploaded one after another, every read of the table
/// shows its newest version as the active one: the table and its versions
/// come from one snapshot.
#[tokio::test]
async fn a_table_read_during_uploads_never_lists_a_version_before_it_is_active() {
    let (app, t) = app_with_crm().await;
    let uploads = tokio::spawn({
        let (client, url, token) = (
            app.http.clone(),
            app.url("/api/v1/tables/crm/data"),
            t.token.clone(),
        );
        async move {
            for i in 0..30 {
                let r = client
                    .put(&url)
                    .header("Authorization", format!("Token {token}"))
                    .body(format!("agent_id,team_name\ncindy,team{i}\n"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        }
    });
    let mut reads = 0;
    while !uploads.is_finished() {
        for path in ["/api/v1/tables/crm", "/api/v1/tables"] {
            let (_, body) = app.get(&t, path).await;
            let table = if path.ends_with("crm") {
                &body
            } else {
                &body["data"][0]
            };
            if let Some(newest) = table["versions"].as_array().and_then(|v| v.first()) {
                assert_eq!(
                    newest["id"], table["active_version"]["id"],
                    "read {reads}: the newest version is not the active one: {table}"
                );
                reads += 1;
            }
        }
    }
    uploads.await.unwrap();
    assert!(reads > 10, "{reads} reads with versions");
    app.stop().await;
}
