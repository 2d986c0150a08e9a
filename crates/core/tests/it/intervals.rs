//! Rows valid over an interval (`valid_from` / `valid_to`): a key may have
//! several rows, and a call gets the one valid at its timestamp.

use callmeta_core::csv::{self, Limits};
use callmeta_core::enrich::{self, Metadata, TableView};
use callmeta_core::index::TableIndex;
use callmeta_core::validity::parse_bound;
use expect_test::{Expect, expect};

use crate::{check, options};

const OPTS: &str = r#"{"key": "agent_id", "valid_from": "from", "valid_to": "to"}"#;

const HISTORY: &str = "agent_id,team,from,to
alice,diamond,,2026-01-01
alice,ruby,2026-01-01,2026-02-01T12:00:00Z
alice,onyx,2026-02-01T12:00:00Z,
bob,saphire,2026-01-15,
";

fn table(csv_text: &str, options_json: &str) -> TableIndex {
    csv::ingest(csv_text.as_bytes(), &options(options_json), &Limits::default())
        .expect("table ingests")
        .index
}

fn at(index: &TableIndex, own: &[(&str, &str)], when: &[&str], expect: Expect) {
    let own: Metadata = own.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let view = TableView {
        table: "crm",
        key_column: index.key_column(),
        version: Some("v1"),
        index: Some(index),
    };
    let mut out = String::new();
    for t in when {
        let call_ms = parse_bound(t).unwrap().unwrap();
        let r = &enrich::enrich_at(&own, &[view], 0, call_ms)[0];
        out.push_str(&format!(
            "{t}: {:?} {:?} {:?}\n",
            r.status,
            r.added.get("team"),
            r.interval.as_ref().map(|i| (&i.valid_from, &i.valid_to))
        ));
    }
    expect.assert_eq(&out);
}

#[test]
fn a_call_gets_the_row_valid_at_its_timestamp() {
    let index = table(HISTORY, OPTS);
    at(
        &index,
        &[("agent_id", "alice")],
        &[
            "2025-06-01",
            "2025-12-31T23:59:59.999Z",
            "2026-01-01",
            "2026-02-01T11:59:59Z",
            "2026-02-01T12:00:00Z",
            "2030-01-01",
        ],
        expect![[r#"
            2025-06-01: Matched Some("diamond") Some(("", "2026-01-01"))
            2025-12-31T23:59:59.999Z: Matched Some("diamond") Some(("", "2026-01-01"))
            2026-01-01: Matched Some("ruby") Some(("2026-01-01", "2026-02-01T12:00:00Z"))
            2026-02-01T11:59:59Z: Matched Some("ruby") Some(("2026-01-01", "2026-02-01T12:00:00Z"))
            2026-02-01T12:00:00Z: Matched Some("onyx") Some(("2026-02-01T12:00:00Z", ""))
            2030-01-01: Matched Some("onyx") Some(("2026-02-01T12:00:00Z", ""))
        "#]],
    );
    at(
        &index,
        &[("agent_id", "bob")],
        &[
            "2026-01-14",
            "2026-01-15T00:00:00+00:00",
            "2026-01-15T00:30:00+01:00",
        ],
        expect![[r#"
        2026-01-14: NoMatch None None
        2026-01-15T00:00:00+00:00: Matched Some("saphire") Some(("2026-01-15", ""))
        2026-01-15T00:30:00+01:00: NoMatch None None
    "#]],
    );
    check(
        HISTORY,
        OPTS,
        expect![[r#"
        ACCEPTED: 4 rows, 2 keys

        size:       148 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), team, from, to
        key:        agent_id (match: exact)
        rows:       4 read, 4 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     faf01f546450f914f1121bcfc61117d62141a2fb3cf047a067a1dbfcd92dee6f

        rows (agent_id | team | from | to):
          alice | diamond |  | 2026-01-01
          alice | ruby | 2026-01-01 | 2026-02-01T12:00:00Z
          alice | onyx | 2026-02-01T12:00:00Z | 
          bob | saphire | 2026-01-15 | 
    "#]],
    );
}

#[test]
fn bad_bounds_and_empty_intervals_are_row_problems() {
    check(
        "agent_id,from,to\nalice,30/01/2026,\n",
        OPTS,
        expect![[r#"
        REJECTED: line 2: the "from" field: "30/01/2026" is not an ISO 8601 date (2026-01-30) or date-time (2026-01-30T12:34:56Z)

        size:       35 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), from, to
        key:        agent_id (match: exact)
        rows:       1 read, 0 accepted, 1 rejected
        problems:   1
          line 2: the "from" field: "30/01/2026" is not an ISO 8601 date (2026-01-30) or date-time (2026-01-30T12:34:56Z)
        duplicates: none
        sha256:     18d9b1b046287e9f29142a581b28f9fb01b11f82a4bcc885476fa759923cfab1
    "#]],
    );
    check(
        "agent_id,from,to\nalice,2026-02-01,2026-01-01\n",
        OPTS,
        expect![[r#"
        REJECTED: line 2: the interval is empty: "2026-02-01" is not before "2026-01-01"

        size:       45 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), from, to
        key:        agent_id (match: exact)
        rows:       1 read, 0 accepted, 1 rejected
        problems:   1
          line 2: the interval is empty: "2026-02-01" is not before "2026-01-01"
        duplicates: none
        sha256:     74ac0c6c4d7c47186bd4b2f14c2206bd3bec4248686612a912617b8fe8aa7ae3
    "#]],
    );
    check(
        "agent_id,start\nalice,2026-02-01\n",
        OPTS,
        expect![[r#"
        REJECTED: the valid_from column "from" is not in the header (columns: agent_id, start)

        size:       32 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), start
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     1612651efb05dfadb1d3742e867791305a3ade9bb3bea3a7537f35cd191fa9f8
    "#]],
    );
    let same =
        serde_json::from_str::<csv::TableOptions>(r#"{"key": "a", "valid_from": "f", "valid_to": "f"}"#);
    assert_eq!(
        same.unwrap_err().to_string(),
        r#""valid_from" and "valid_to" must name two different columns, not "f" twice"#
    );
    let prefix =
        serde_json::from_str::<csv::TableOptions>(r#"{"key": "a", "match": "prefix", "valid_to": "f"}"#);
    assert!(prefix.unwrap_err().to_string().contains("prefix"));
}

#[test]
fn overlaps_follow_the_duplicates_policy() {
    let csv_text =
        "agent_id,team,from,to\nalice,diamond,2026-01-01,2026-03-01\nbob,x,,\nalice,ruby,2026-02-01,\n";
    check(
        csv_text,
        r#"{"key": "agent_id", "valid_from": "from", "valid_to": "to", "duplicates": "reject"}"#,
        expect![[r#"
            REJECTED: line 4: the key "agent_id=alice" has a row valid over an interval that overlaps the one of line 2, and the table's duplicates policy is reject

            size:       89 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    agent_id (key), team, from, to
            key:        agent_id (match: exact)
            rows:       3 read, 3 accepted, 0 rejected
            problems:   none
            duplicates: 1 key on 1 extra row (policy reject: duplicates are refused)
              e.g. agent_id=alice
            sha256:     01f585105a26ecad015cf0a44bf6b5ea9e510d0caf9dfdfb32835fdba732eda1
        "#]],
    );
    let first = table(csv_text, OPTS);
    at(
        &first,
        &[("agent_id", "alice")],
        &["2026-02-15", "2026-03-15"],
        expect![[r#"
        2026-02-15: Matched Some("diamond") Some(("2026-01-01", "2026-03-01"))
        2026-03-15: NoMatch None None
    "#]],
    );
    let last = table(
        csv_text,
        r#"{"key": "agent_id", "valid_from": "from", "valid_to": "to", "duplicates": "last"}"#,
    );
    at(
        &last,
        &[("agent_id", "alice")],
        &["2026-01-15", "2026-02-15"],
        expect![[r#"
        2026-01-15: NoMatch None None
        2026-02-15: Matched Some("ruby") Some(("2026-02-01", ""))
    "#]],
    );
    let ambiguous = table(
        csv_text,
        r#"{"key": "agent_id", "valid_from": "from", "valid_to": "to", "duplicates": "ambiguous"}"#,
    );
    at(
        &ambiguous,
        &[("agent_id", "alice")],
        &["2026-02-15"],
        expect![[r#"
        2026-02-15: Ambiguous None None
    "#]],
    );
}

#[test]
fn intervals_with_compound_keys_and_only_one_bound() {
    let index = table(
        "site,ext,team,since\nparis,1,red,\nparis,1,blue,2026-01-01\n",
        r#"{"keys": [["site", "ext"]], "valid_from": "since"}"#,
    );
    // Two rows of one key with an open start overlap: the first wins.
    at(
        &index,
        &[("site", "paris"), ("ext", "1")],
        &["2025-01-01", "2026-06-01"],
        expect![[r#"
        2025-01-01: Matched Some("red") Some(("", ""))
        2026-06-01: Matched Some("red") Some(("", ""))
    "#]],
    );
    let index = table(
        "agent_id,team,until\nalice,red,2026-01-01\n",
        r#"{"key": "agent_id", "valid_to": "until"}"#,
    );
    at(
        &index,
        &[("agent_id", "alice")],
        &["2025-01-01", "2026-06-01"],
        expect![[r#"
        2025-01-01: Matched Some("red") Some(("", "2026-01-01"))
        2026-06-01: NoMatch None None
    "#]],
    );
}
