//! Compound and fallback keys (`"keys"`): what ingests, and which key a
//! call matches by.

use std::fmt::Write as _;

use callmeta_core::csv::{self, Limits, TableOptions};
use callmeta_core::enrich::{self, Metadata, TableView};
use callmeta_core::index::TableIndex;
use expect_test::{Expect, expect};

use crate::{check, options};

const KEYS: &str = r#"{"keys": [["site", "extension"], ["agent_email"]]}"#;

const DIRECTORY: &str = "site,extension,agent_email,team
paris,101,alice@example.com,diamond
paris,102,bob@example.com,ruby
lyon,101,cindy@example.com,saphire
,,dylan@example.com,emerald
nice,200,,gold
";

fn table(csv_text: &str, options_json: &str) -> TableIndex {
    csv::ingest(csv_text.as_bytes(), &options(options_json), &Limits::default())
        .expect("table ingests")
        .index
}

fn enrich_one(index: &TableIndex, own: &[(&str, &str)], expect: Expect) {
    let own: Metadata = own.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let view = TableView {
        table: "crm",
        key_column: index.key_column(),
        version: Some("v1"),
        index: Some(index),
    };
    let results = enrich::enrich(&own, &[view], 0);
    let r = &results[0];
    let mut out = format!(
        "{:?} matched_by={:?} key={} value={:?} normalized={:?}\n",
        r.status, r.matched_by, r.key, r.key_value, r.normalized_key
    );
    for attempt in &r.keys_tried {
        let _ = writeln!(
            out,
            "  tried {:?}: {:?} {:?}",
            attempt.key, attempt.status, attempt.value
        );
    }
    for (k, v) in &r.added {
        let _ = writeln!(out, "  + {k}={v}");
    }
    for c in &r.collisions {
        let _ = writeln!(
            out,
            "  ! {}: kept {:?} dropped {:?}",
            c.key, c.kept_value, c.dropped_value
        );
    }
    expect.assert_eq(&out);
}

#[test]
fn options_read_key_or_keys() {
    let render = |json: &str| match serde_json::from_str::<TableOptions>(json) {
        Ok(o) => format!("key={} keys={:?} label={}", o.key, o.keys, o.keys_label()),
        Err(e) => format!("error: {e}"),
    };
    let all = [
        r#"{"key": "agent_id"}"#,
        KEYS,
        r#"{"keys": [["agent_id"]]}"#,
        r#"{"key": "site", "keys": [["site", "extension"], ["agent_email"]]}"#,
        r#"{"key": "agent_email", "keys": [["site", "extension"], ["agent_email"]]}"#,
        r#"{"keys": []}"#,
        r#"{"keys": [[]]}"#,
        r#"{"keys": [["a", "a"]]}"#,
        r#"{"keys": [["a", "b"], ["b", "a"]]}"#,
        r#"{"match": "exact"}"#,
    ];
    let out: Vec<String> = all
        .iter()
        .map(|json| format!("{json}\n  {}", render(json)))
        .collect();
    expect![[r#"
        {"key": "agent_id"}
          key=agent_id keys=None label=agent_id
        {"keys": [["site", "extension"], ["agent_email"]]}
          key=site keys=Some([[ColumnName("site"), ColumnName("extension")], [ColumnName("agent_email")]]) label=site+extension, agent_email
        {"keys": [["agent_id"]]}
          key=agent_id keys=None label=agent_id
        {"key": "site", "keys": [["site", "extension"], ["agent_email"]]}
          key=site keys=Some([[ColumnName("site"), ColumnName("extension")], [ColumnName("agent_email")]]) label=site+extension, agent_email
        {"key": "agent_email", "keys": [["site", "extension"], ["agent_email"]]}
          error: "key" ("agent_email") must be the first column of the first entry of "keys" ("site"), or be left out
        {"keys": []}
          error: "keys" must hold 1 to 8 keys, each a list of 1 to 8 column names
        {"keys": [[]]}
          error: "keys" must hold 1 to 8 keys, each a list of 1 to 8 column names
        {"keys": [["a", "a"]]}
          error: key 1 of "keys" names the column "a" twice
        {"keys": [["a", "b"], ["b", "a"]]}
          error: keys 1 and 2 of "keys" are the same
        {"match": "exact"}
          error: give the key column as "key" or the keys as "keys""#]].assert_eq(&out.join("\n"));
    // Stored and read back as the same options.
    let o: TableOptions = serde_json::from_str(KEYS).unwrap();
    let back: TableOptions = serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap();
    assert_eq!(o, back);
}

#[test]
fn a_row_needs_one_complete_key() {
    check(
        DIRECTORY,
        KEYS,
        expect![[r#"
        ACCEPTED: 5 rows, 8 keys

        size:       177 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    site (key), extension (key), agent_email (key), team
        keys:       site+extension, agent_email (match: exact)
        rows:       5 read, 5 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     4072ce862fdfd45bbc292b498b79247bc7074aa7e584655091edb8d24526cdd3

        rows (site | extension | agent_email | team):
          paris | 101 | alice@example.com | diamond
          paris | 102 | bob@example.com | ruby
          lyon | 101 | cindy@example.com | saphire
           |  | dylan@example.com | emerald
          nice | 200 |  | gold
    "#]],
    );
    check(
        "site,extension,agent_email,team\nparis,,,red\n",
        KEYS,
        expect![[r#"
        REJECTED: line 2: no key is complete (keys: site+extension, agent_email): each has an empty column

        size:       44 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    site (key), extension (key), agent_email (key), team
        keys:       site+extension, agent_email (match: exact)
        rows:       1 read, 0 accepted, 1 rejected
        problems:   1
          line 2: no key is complete (keys: site+extension, agent_email): each has an empty column
        duplicates: none
        sha256:     6db634635b862d7ca05938c0e47eb6f61b1dea853b06fcf73b2a34a72e7ef73e
    "#]],
    );
    check(
        "site,extension,agent_email,team\nparis,,,red\nlyon,1,,blue\n",
        r#"{"keys": [["site", "extension"], ["agent_email"]], "bad_rows": "skip"}"#,
        expect![[r#"
            ACCEPTED: 1 row, 1 key

            size:       57 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    site (key), extension (key), agent_email (key), team
            keys:       site+extension, agent_email (match: exact)
            rows:       2 read, 1 accepted, 1 rejected
            problems:   1
              line 2: no key is complete (keys: site+extension, agent_email): each has an empty column
            duplicates: none
            sha256:     fe264245fdb0714345e87f4fdf2d9dc51d4c973d2cc7da699ac285dd7a9640d8

            rows (site | extension | agent_email | team):
              lyon | 1 |  | blue
        "#]],
    );
    check(
        "site,agent_email\nparis,a@b\n",
        KEYS,
        expect![[r#"
        REJECTED: the key column "extension" is not in the header (columns: site, agent_email)

        size:       27 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    site (key), agent_email (key)
        keys:       site+extension, agent_email (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     36b8cf50bc04681574689990fd61cd52633d7c2dda99e42017095d35fc073e81
    "#]],
    );
}

#[test]
fn duplicates_apply_to_each_key_tuple() {
    let csv_text =
        "site,extension,agent_email,team\nparis,101,a@x,red\nparis,101,b@x,blue\nlyon,101,a@x,green\n";
    check(
        csv_text,
        KEYS,
        expect![[r#"
        ACCEPTED: 3 rows, 4 keys

        size:       88 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    site (key), extension (key), agent_email (key), team
        keys:       site+extension, agent_email (match: exact)
        rows:       3 read, 3 accepted, 0 rejected
        problems:   none
        duplicates: 2 keys on 2 extra rows (policy first: the first row of each key is used)
          e.g. site+extension=paris+101, agent_email=a@x
        sha256:     403919952bb141fd1cbab92cf9f7d62605a5b699a825685dfcd20027a1d804fa

        rows (site | extension | agent_email | team):
          paris | 101 | a@x | red
          paris | 101 | b@x | blue
          lyon | 101 | a@x | green
    "#]],
    );
    check(
        csv_text,
        r#"{"keys": [["site", "extension"], ["agent_email"]], "duplicates": "reject"}"#,
        expect![[r#"
            REJECTED: line 3: the key "site+extension=paris+101" is already on an earlier line, and the table's duplicates policy is reject (2 keys are duplicated)

            size:       88 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    site (key), extension (key), agent_email (key), team
            keys:       site+extension, agent_email (match: exact)
            rows:       3 read, 3 accepted, 0 rejected
            problems:   none
            duplicates: 2 keys on 2 extra rows (policy reject: duplicates are refused)
              e.g. site+extension=paris+101, agent_email=a@x
            sha256:     403919952bb141fd1cbab92cf9f7d62605a5b699a825685dfcd20027a1d804fa
        "#]],
    );
    let last = table(
        csv_text,
        r#"{"keys": [["site", "extension"], ["agent_email"]], "duplicates": "last"}"#,
    );
    enrich_one(
        &last,
        &[("site", "paris"), ("extension", "101")],
        expect![[r#"
        Matched matched_by=Some(["site", "extension"]) key=site+extension value=Some("paris+101") normalized=Some("paris+101")
          tried ["site", "extension"]: Matched Some(["paris", "101"])
          + agent_email=b@x
          + team=blue
    "#]],
    );
    enrich_one(
        &last,
        &[("agent_email", "a@x")],
        expect![[r#"
        Matched matched_by=Some(["agent_email"]) key=agent_email value=Some("a@x") normalized=Some("a@x")
          tried ["site", "extension"]: KeyMissing None
          tried ["agent_email"]: Matched Some(["a@x"])
          + extension=101
          + site=lyon
          + team=green
    "#]],
    );
    let ambiguous = table(
        csv_text,
        r#"{"keys": [["site", "extension"], ["agent_email"]], "duplicates": "ambiguous"}"#,
    );
    enrich_one(
        &ambiguous,
        &[("site", "paris"), ("extension", "101")],
        expect![[r#"
        Ambiguous matched_by=Some(["site", "extension"]) key=site+extension value=Some("paris+101") normalized=Some("paris+101")
          tried ["site", "extension"]: Ambiguous Some(["paris", "101"])
    "#]],
    );
    enrich_one(
        &ambiguous,
        &[("site", "lyon"), ("extension", "101"), ("agent_email", "a@x")],
        expect![[r#"
            Matched matched_by=Some(["site", "extension"]) key=site+extension value=Some("lyon+101") normalized=Some("lyon+101")
              tried ["site", "extension"]: Matched Some(["lyon", "101"])
              + team=green
              ! agent_email: kept "a@x" dropped "a@x"
        "#]],
    );
}

#[test]
fn keys_are_tried_in_order_and_the_first_match_wins() {
    let index = table(DIRECTORY, KEYS);
    // Both keys present: the compound one wins, and its columns are not added.
    enrich_one(
        &index,
        &[
            ("site", "paris"),
            ("extension", "102"),
            ("agent_email", "alice@example.com"),
        ],
        expect![[r#"
            Matched matched_by=Some(["site", "extension"]) key=site+extension value=Some("paris+102") normalized=Some("paris+102")
              tried ["site", "extension"]: Matched Some(["paris", "102"])
              + team=ruby
              ! agent_email: kept "alice@example.com" dropped "bob@example.com"
        "#]],
    );
    // The compound key does not match: the fallback does.
    enrich_one(
        &index,
        &[
            ("site", "paris"),
            ("extension", "999"),
            ("agent_email", "alice@example.com"),
        ],
        expect![[r#"
            Matched matched_by=Some(["agent_email"]) key=agent_email value=Some("alice@example.com") normalized=Some("alice@example.com")
              tried ["site", "extension"]: NoMatch Some(["paris", "999"])
              tried ["agent_email"]: Matched Some(["alice@example.com"])
              + team=diamond
              ! extension: kept "999" dropped "101"
              ! site: kept "paris" dropped "paris"
        "#]],
    );
    // Only the fallback is on the call.
    enrich_one(
        &index,
        &[("agent_email", " dylan@example.com ")],
        expect![[r#"
        Matched matched_by=Some(["agent_email"]) key=agent_email value=Some(" dylan@example.com ") normalized=Some("dylan@example.com")
          tried ["site", "extension"]: KeyMissing None
          tried ["agent_email"]: Matched Some([" dylan@example.com "])
          + team=emerald
    "#]],
    );
    // Half a compound key is a missing key.
    enrich_one(
        &index,
        &[("site", "nice")],
        expect![[r#"
        KeyMissing matched_by=None key=site+extension value=None normalized=None
          tried ["site", "extension"]: KeyMissing None
          tried ["agent_email"]: KeyMissing None
    "#]],
    );
    // Every key present, none matches.
    enrich_one(
        &index,
        &[
            ("site", "nice"),
            ("extension", "201"),
            ("agent_email", "zoe@example.com"),
        ],
        expect![[r#"
            NoMatch matched_by=None key=site+extension value=Some("nice+201") normalized=Some("nice+201")
              tried ["site", "extension"]: NoMatch Some(["nice", "201"])
              tried ["agent_email"]: NoMatch Some(["zoe@example.com"])
        "#]],
    );
    enrich_one(
        &index,
        &[("site", "nice"), ("extension", "200")],
        expect![[r#"
        Matched matched_by=Some(["site", "extension"]) key=site+extension value=Some("nice+200") normalized=Some("nice+200")
          tried ["site", "extension"]: Matched Some(["nice", "200"])
          + team=gold
    "#]],
    );
}

#[test]
fn compound_keys_follow_the_match_mode() {
    let index = table(
        "Site,Ext,team\nParis,101,red\n",
        r#"{"keys": [["Site", "Ext"]], "match": "case_insensitive"}"#,
    );
    enrich_one(
        &index,
        &[("Site", "PARIS"), ("Ext", "101")],
        expect![[r#"
        Matched matched_by=Some(["Site", "Ext"]) key=Site+Ext value=Some("PARIS+101") normalized=Some("paris+101")
          tried ["Site", "Ext"]: Matched Some(["PARIS", "101"])
          + team=red
    "#]],
    );
}

#[test]
fn a_part_cannot_spill_into_the_next() {
    let index = table("Site,Ext,team\n\"Paris\u{1f}1\",01,red\n", KEYS_SITE_EXT);
    enrich_one(
        &index,
        &[("Site", "Paris"), ("Ext", "1\u{1f}01")],
        expect![[r#"
        NoMatch matched_by=None key=Site+Ext value=Some("Paris+1\u{1f}01") normalized=Some("Paris+1\u{1f}01")
          tried ["Site", "Ext"]: NoMatch Some(["Paris", "1\u{1f}01"])
    "#]],
    );
    enrich_one(
        &index,
        &[("Site", "Paris\u{1f}1"), ("Ext", "01")],
        expect![[r#"
        Matched matched_by=Some(["Site", "Ext"]) key=Site+Ext value=Some("Paris\u{1f}1+01") normalized=Some("Paris\u{1f}1+01")
          tried ["Site", "Ext"]: Matched Some(["Paris\u{1f}1", "01"])
          + team=red
    "#]],
    );
}

const KEYS_SITE_EXT: &str = r#"{"keys": [["Site", "Ext"]]}"#;
