//! Finding calls among many: every filter form, pages by cursor, the
//! bounded count (SPEC §12).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::*;

/// The agents of a list answer, in order.
fn agents(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["agent_id"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[tokio::test]
async fn every_filter_form_finds_what_it_says() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("forms");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    app.upload(&t, "crm", SPEC_TABLE).await;
    // Oldest first: alice (diamond), bob (ruby), cindy (diamond), dylan
    // (saphire), zed (no row), and a call with no agent at all.
    let calls = [
        json!({"agent_id": "alice", "site": "paris-1"}),
        json!({"agent_id": "bob", "site": "paris-2"}),
        json!({"agent_id": "cindy", "site": "lyon-1"}),
        json!({"agent_id": "dylan", "site": "pa"}),
        json!({"agent_id": "zed", "site": "Paris-3"}),
        json!({"site": "nice", "note": "a value, with \"quotes\""}),
    ];
    for (i, metadata) in calls.iter().enumerate() {
        let (status, body) = app
            .post_json(
                &t,
                "/api/v1/calls",
                json!({"metadata": metadata, "timestamp": format!("2026-01-30T12:00:0{i}Z")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let cases: &[(&str, &[&str])] = &[
        ("metadata.team_name=diamond", &["cindy", "alice"]),
        (
            "metadata.team_name=diamond&metadata.team_name=ruby",
            &["cindy", "bob", "alice"],
        ),
        (
            "metadata.team_name=ruby&metadata.team_name=diamond&metadata.agent_id=bob",
            &["bob"],
        ),
        ("metadata.site.prefix=paris", &["bob", "alice"]),
        ("metadata.site.prefix=pa", &["dylan", "bob", "alice"]),
        ("metadata.site.prefix=Paris", &["zed"]),
        ("metadata.team_name.missing=true", &["-", "zed"]),
        (
            "metadata.team_name.missing=false&metadata.site.prefix=pa",
            &["dylan", "bob", "alice"],
        ),
        ("metadata.agent_id.missing=true", &["-"]),
        ("enrichment.crm=matched", &["dylan", "cindy", "bob", "alice"]),
        ("enrichment.crm=no_match", &["zed"]),
        ("enrichment.crm=key_missing", &["-"]),
        (
            "enrichment.crm=no_match&enrichment.crm=key_missing",
            &["-", "zed"],
        ),
        ("enrichment.crm=matched&metadata.city=Cape%20Town", &["dylan"]),
        (
            "enrichment.crm=matched&metadata.team_name=ruby&metadata.site.prefix=lyon",
            &[],
        ),
        ("metadata.note=a%20value%2C%20with%20%22quotes%22", &["-"]),
        ("enrichment.other=matched", &[]),
        (
            "enrichment.crm=matched&timestamp_from=2026-01-30T12:00:01Z&timestamp_to=2026-01-30T12:00:02Z",
            &["cindy", "bob"],
        ),
    ];
    for (query, expected) in cases {
        let (status, list) = app.get(&t, &format!("/api/v1/calls?{query}")).await;
        assert_eq!(status, 200, "{query}: {list}");
        assert_eq!(agents(&list), *expected, "{query}");
        assert_eq!(list["count"], expected.len(), "{query}");
        assert_eq!(list["count_exact"], true, "{query}");
    }
    for (query, field) in [
        ("enrichment.crm=found", "enrichment.crm"),
        ("metadata.site.missing=maybe", "metadata.site.missing"),
        ("cursor=abc", "cursor"),
    ] {
        let (status, body) = app.get(&t, &format!("/api/v1/calls?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{query}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_cursor_walks_every_call_once_while_calls_arrive() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("walk");
    // Several calls share each millisecond: the cursor still tells them apart.
    for i in 0..23 {
        let (status, _) = app
            .post_json(
                &t,
                "/api/v1/calls",
                json!({"metadata": {"agent_id": format!("a{i}"), "team": if i % 2 == 0 { "even" } else { "odd" }},
                       "timestamp": format!("2026-01-30T12:00:{:02}Z", i / 3)}),
            )
            .await;
        assert_eq!(status, 201);
    }
    for filter in ["", "&metadata.team=even"] {
        let (_, all) = app.get(&t, &format!("/api/v1/calls?limit=1000{filter}")).await;
        let expected = agents(&all);
        let mut walked = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/calls?limit=4{filter}&cursor={c}"),
                None => format!("/api/v1/calls?limit=4{filter}"),
            };
            let (status, page) = app.get(&t, &path).await;
            assert_eq!(status, 200, "{page}");
            walked.extend(agents(&page));
            pages += 1;
            // A call arriving mid-walk is newer than every page: not seen.
            let (status, _) = app
                .post_json(
                    &t,
                    "/api/v1/calls",
                    json!({"metadata": {"agent_id": format!("late{pages}{filter}"), "team": "even"},
                           "timestamp": "2026-01-30T13:00:00Z"}),
                )
                .await;
            assert_eq!(status, 201);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(walked, expected, "{filter}");
        assert_eq!(walked.iter().collect::<BTreeSet<_>>().len(), walked.len());
        assert_eq!(pages, expected.len().div_ceil(4), "{filter}");
    }
    app.stop().await;
}
