//! CSV exports as customers upload them: encodings, delimiters, the pipe
//! table, quoting, line endings, duplicates, bad rows and limits.

use callmeta_core::csv::Limits;
use expect_test::expect;

use crate::{check, check_with, ingest_report};

const AGENT: &str = r#"{"key": "agent_id"}"#;

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut bytes = if big_endian {
        vec![0xFE, 0xFF]
    } else {
        vec![0xFF, 0xFE]
    };
    for unit in text.encode_utf16() {
        let pair = if big_endian {
            unit.to_be_bytes()
        } else {
            unit.to_le_bytes()
        };
        bytes.extend_from_slice(&pair);
    }
    bytes
}

#[test]
fn the_spec_table_pasted_as_a_pipe_table() {
    check(
        "| agent_id | team_name | expertise | city |
|---|---|---|---|
| alice | diamond | sales | Helsinki |
| bob | ruby | support | Helsinki |
| cindy | diamond | sales | Helsinki |
| dylan | saphire | sales | Cape Town |
",
        AGENT,
        expect![[r#"
            ACCEPTED: 4 rows, 4 keys

            size:       216 bytes
            encoding:   UTF-8
            delimiter:  pipe (pipe table)
            columns:    agent_id (key), team_name, expertise, city
            key:        agent_id (match: exact)
            rows:       4 read, 4 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     e4b236a9f39d5cb0547a71cb5fdf0233008ac4a15f599b52e0b621e4d20e8fd4

            rows (agent_id | team_name | expertise | city):
              alice | diamond | sales | Helsinki
              bob | ruby | support | Helsinki
              cindy | diamond | sales | Helsinki
              dylan | saphire | sales | Cape Town
        "#]],
    );
}

#[test]
fn pipe_table_with_alignment_and_no_outer_pipes() {
    check(
        "agent_id | team | city\n:--- | :---: | ---:\nalice | diamond | Helsinki\nbob |  | Lyon\n",
        AGENT,
        expect![[r#"
            ACCEPTED: 2 rows, 2 keys

            size:       84 bytes
            encoding:   UTF-8
            delimiter:  pipe (pipe table)
            columns:    agent_id (key), team, city
            key:        agent_id (match: exact)
            rows:       2 read, 2 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     a70de120ebbbfdfaf03f130e1769a0f024337fdb51a65ff9da7144a0800cacbf

            rows (agent_id | team | city):
              alice | diamond | Helsinki
              bob |  | Lyon
        "#]],
    );
    check(
        "|agent_id|team|\n|alice|red|\n|bob|blue|\n",
        AGENT,
        expect![[r#"
        ACCEPTED: 2 rows, 2 keys

        size:       39 bytes
        encoding:   UTF-8
        delimiter:  pipe (pipe table)
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       2 read, 2 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     8c6f1ddbed47bcad7c5dbb94ad6c8c8b87666a1fb82de2c3f405448f7c8a2d75

        rows (agent_id | team):
          alice | red
          bob | blue
    "#]],
    );
}

#[test]
fn delimiters_are_sniffed_from_the_header() {
    check(
        "agent_id;team;city\nalice;red;\"Paris; France\"\n",
        AGENT,
        expect![[r#"
        ACCEPTED: 1 row, 1 key

        size:       45 bytes
        encoding:   UTF-8
        delimiter:  semicolon
        columns:    agent_id (key), team, city
        key:        agent_id (match: exact)
        rows:       1 read, 1 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     df95ed438c5020fa760da1767c39af3466a0f1b742420da70fd45cd70eb5005e

        rows (agent_id | team | city):
          alice | red | Paris; France
    "#]],
    );
    check(
        "agent_id\tteam\ncindy\tdiamond\n",
        AGENT,
        expect![[r#"
        ACCEPTED: 1 row, 1 key

        size:       28 bytes
        encoding:   UTF-8
        delimiter:  tab
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       1 read, 1 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     e0d5badc7edb4a86e06b8fda6462b0463e9733786c671181a0f73a5f1d1ce8ba

        rows (agent_id | team):
          cindy | diamond
    "#]],
    );
    check(
        "agent_id|team\ncindy|diamond\n",
        AGENT,
        expect![[r#"
        ACCEPTED: 1 row, 1 key

        size:       28 bytes
        encoding:   UTF-8
        delimiter:  pipe
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       1 read, 1 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     48f6cdb0f3423f0d7861fffccbc2f7cb0ae844cfaaca4d8424e14c01d91be390

        rows (agent_id | team):
          cindy | diamond
    "#]],
    );
    // Quoted delimiters do not count; a tie goes to comma.
    check(
        "\"agent;id\",agent_id;x\n1,a;b\n",
        r#"{"key": "agent;id"}"#,
        expect![[r#"
        ACCEPTED: 1 row, 1 key

        size:       28 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent;id (key), agent_id;x
        key:        agent;id (match: exact)
        rows:       1 read, 1 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     c45a351f76f8229932b8dd52aa6ac4a5b1d5656899b96509d7be55624872c56c

        rows (agent;id | agent_id;x):
          1 | a;b
    "#]],
    );
    check(
        "agent_id\nalice\n",
        AGENT,
        expect![[r#"
        ACCEPTED: 1 row, 1 key

        size:       15 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key)
        key:        agent_id (match: exact)
        rows:       1 read, 1 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     dcac6c574e1b4e046919d46af0cb718ffd9c3e3705a52ad01d47d232ddb8edbc

        rows (agent_id):
          alice
    "#]],
    );
}

#[test]
fn encodings() {
    let text = "agent_id,city\r\nalice,Köln\r\nbob,São Paulo\r\n";
    check(
        format!("\u{feff}{text}"),
        AGENT,
        expect![[r#"
        ACCEPTED: 2 rows, 2 keys

        size:       47 bytes
        encoding:   UTF-8 (BOM)
        delimiter:  comma
        columns:    agent_id (key), city
        key:        agent_id (match: exact)
        rows:       2 read, 2 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     34880a85cd10bec2ca7e76ff24700ecf9cfc188aa6dbf4840103be549b478563

        rows (agent_id | city):
          alice | Köln
          bob | São Paulo
    "#]],
    );
    check(
        utf16(text, false),
        AGENT,
        expect![[r#"
        ACCEPTED: 2 rows, 2 keys

        size:       86 bytes
        encoding:   UTF-16LE (BOM)
        delimiter:  comma
        columns:    agent_id (key), city
        key:        agent_id (match: exact)
        rows:       2 read, 2 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     e9b402e1dd3a9eccf7d9531f55fb9444c2f9107e054e551bb4e37d06a77c0a69

        rows (agent_id | city):
          alice | Köln
          bob | São Paulo
    "#]],
    );
    check(
        utf16(text, true),
        AGENT,
        expect![[r#"
        ACCEPTED: 2 rows, 2 keys

        size:       86 bytes
        encoding:   UTF-16BE (BOM)
        delimiter:  comma
        columns:    agent_id (key), city
        key:        agent_id (match: exact)
        rows:       2 read, 2 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     0b8a56b7b3f68adc101be1db701f4f069e883996e0bfc444f20a471c25f3c541

        rows (agent_id | city):
          alice | Köln
          bob | São Paulo
    "#]],
    );
    check(
        b"agent_id,city\nal,K\xf6ln\nbo,\x80 \x93quoted\x94\n",
        AGENT,
        expect![[r#"
        ACCEPTED: 2 rows, 2 keys

        size:       36 bytes
        encoding:   windows-1252
        delimiter:  comma
        columns:    agent_id (key), city
        key:        agent_id (match: exact)
        rows:       2 read, 2 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     c11bfb93e027bdaef790104284fe78d1f03f1bfada150b5cea50957b25868a3f

        rows (agent_id | city):
          al | Köln
          bo | € “quoted”
    "#]],
    );
}

#[test]
fn a_character_split_by_a_delimiter_is_not_utf8() {
    check(
        b"agent_id,x\na\xc3,\xa9b\n",
        AGENT,
        expect![[r#"
        ACCEPTED: 1 row, 1 key

        size:       17 bytes
        encoding:   windows-1252
        delimiter:  comma
        columns:    agent_id (key), x
        key:        agent_id (match: exact)
        rows:       1 read, 1 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     4dcba6961e0716b17070b50492ffad3fbddd537ce222b1e49cad9d01192e7be7

        rows (agent_id | x):
          aÃ | ©b
    "#]],
    );
}

#[test]
fn quoting_and_line_endings_keep_physical_line_numbers() {
    // The row on line 6 follows a record spanning lines 3 to 5.
    let input = "agent_id,notes,team\n\
                 alice,\"a, b\",red\n\
                 bob,\"first\nsecond \"\"quoted\"\"\n third\",blue\n\
                 cindy,only two\n";
    check(
        input,
        r#"{"key": "agent_id", "bad_rows": "skip"}"#,
        expect![[r#"
        ACCEPTED: 2 rows, 2 keys

        size:       94 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), notes, team
        key:        agent_id (match: exact)
        rows:       3 read, 2 accepted, 1 rejected
        problems:   1
          line 6: 2 fields, expected 3 (the header has 3 columns)
        duplicates: none
        sha256:     d0e988542be085b8117f8c1c1a6a055982949a123cb02ad2163ec8d598aa8c15

        rows (agent_id | notes | team):
          alice | a, b | red
          bob | first\nsecond "quoted"\n third | blue
    "#]],
    );
    check(
        input.replace('\n', "\r\n"),
        r#"{"key": "agent_id", "bad_rows": "skip"}"#,
        expect![[r#"
        ACCEPTED: 2 rows, 2 keys

        size:       100 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), notes, team
        key:        agent_id (match: exact)
        rows:       3 read, 2 accepted, 1 rejected
        problems:   1
          line 6: 2 fields, expected 3 (the header has 3 columns)
        duplicates: none
        sha256:     6c57feddd11da153f0ceb992a03045add94489b0f9f267b24bb22c5b04dd4d78

        rows (agent_id | notes | team):
          alice | a, b | red
          bob | first\r\nsecond "quoted"\r\n third | blue
    "#]],
    );
    check(
        input.replace('\n', "\r"),
        r#"{"key": "agent_id", "bad_rows": "skip"}"#,
        expect![[r#"
        ACCEPTED: 2 rows, 2 keys

        size:       94 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), notes, team
        key:        agent_id (match: exact)
        rows:       3 read, 2 accepted, 1 rejected
        problems:   1
          line 6: 2 fields, expected 3 (the header has 3 columns)
        duplicates: none
        sha256:     cdf0f2490fc20f273c2dd374d26dc2c323285cf69e9ba43c0885033208f953ba

        rows (agent_id | notes | team):
          alice | a, b | red
          bob | first\rsecond "quoted"\r third | blue
    "#]],
    );
}

#[test]
fn blank_lines_and_whitespace_are_ignored() {
    check(
        "\n\n  agent_id , team \n\nalice ,  red\n   \n,\n\n  bob,blue  \n\n",
        r#"{"key": "agent_id", "bad_rows": "skip"}"#,
        expect![[r#"
            ACCEPTED: 2 rows, 2 keys

            size:       56 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    agent_id (key), team
            key:        agent_id (match: exact)
            rows:       2 read, 2 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     9210ebd04c5c1649626b51ff3b30c5a779bd5795f829d75e7b5d599e1132329c

            rows (agent_id | team):
              alice | red
              bob | blue
        "#]],
    );
}

const DUPLICATES: &str = "agent_id,team\nalice,red\nbob,blue\nalice,green\ncindy,x\nalice,pink\nbob,teal\n";

#[test]
fn duplicates_first() {
    check(
        DUPLICATES,
        AGENT,
        expect![[r#"
        ACCEPTED: 6 rows, 3 keys

        size:       73 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       6 read, 6 accepted, 0 rejected
        problems:   none
        duplicates: 2 keys on 3 extra rows (policy first: the first row of each key is used)
          e.g. alice, bob
        sha256:     dd61e941dbbb75743fc52e8f81c123173c4f97973605c9186c804989af690dda

        rows (agent_id | team):
          alice | red
          bob | blue
          cindy | x
    "#]],
    );
}

#[test]
fn duplicates_last() {
    check(
        DUPLICATES,
        r#"{"key": "agent_id", "duplicates": "last"}"#,
        expect![[r#"
        ACCEPTED: 6 rows, 3 keys

        size:       73 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       6 read, 6 accepted, 0 rejected
        problems:   none
        duplicates: 2 keys on 3 extra rows (policy last: the last row of each key is used)
          e.g. alice, bob
        sha256:     dd61e941dbbb75743fc52e8f81c123173c4f97973605c9186c804989af690dda

        rows (agent_id | team):
          alice | pink
          bob | teal
          cindy | x
    "#]],
    );
}

#[test]
fn duplicates_reject() {
    check(
        DUPLICATES,
        r#"{"key": "agent_id", "duplicates": "reject"}"#,
        expect![[r#"
        REJECTED: line 4: the key "alice" is already on an earlier line, and the table's duplicates policy is reject (2 keys are duplicated)

        size:       73 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       6 read, 6 accepted, 0 rejected
        problems:   none
        duplicates: 2 keys on 3 extra rows (policy reject: duplicates are refused)
          e.g. alice, bob
        sha256:     dd61e941dbbb75743fc52e8f81c123173c4f97973605c9186c804989af690dda
    "#]],
    );
}

#[test]
fn duplicates_ambiguous() {
    check(
        DUPLICATES,
        r#"{"key": "agent_id", "duplicates": "ambiguous"}"#,
        expect![[r#"
        ACCEPTED: 6 rows, 3 keys

        size:       73 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       6 read, 6 accepted, 0 rejected
        problems:   none
        duplicates: 2 keys on 3 extra rows (policy ambiguous: lookups of these keys answer ambiguous)
          e.g. alice, bob
        sha256:     dd61e941dbbb75743fc52e8f81c123173c4f97973605c9186c804989af690dda

        rows (agent_id | team):
          alice | red
          bob | blue
          cindy | x
    "#]],
    );
}

#[test]
fn duplicates_are_found_on_the_normalised_key() {
    check(
        "phone,name\n01 02 03 04 05,alice\n+33102030405,bob\n+33 1 02 03 04 05,cindy\n",
        r#"{"key": "phone", "match": "phone", "region": "FR"}"#,
        expect![[r#"
            ACCEPTED: 3 rows, 1 key

            size:       73 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    phone (key), name
            key:        phone (match: phone)
            rows:       3 read, 3 accepted, 0 rejected
            problems:   none
            duplicates: 1 key on 2 extra rows (policy first: the first row of each key is used)
              e.g. +33102030405
            sha256:     2f4ce84f9fe98c16472c6188e4a45534fae0ed894c65d315c5fcaebfdfa94eed

            rows (phone | name):
              01 02 03 04 05 | alice
        "#]],
    );
}

const BAD_ROWS: &str =
    "agent_id,team,city\nalice,red,Paris\nbob,blue\n,green,Lyon\ncindy,x,y,z\ndylan,ok,Oslo\n";

#[test]
fn bad_rows_reject_the_file_by_default() {
    check(
        BAD_ROWS,
        AGENT,
        expect![[r#"
        REJECTED: line 3: 2 fields, expected 3 (the header has 3 columns)

        size:       82 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), team, city
        key:        agent_id (match: exact)
        rows:       2 read, 1 accepted, 1 rejected
        problems:   1
          line 3: 2 fields, expected 3 (the header has 3 columns)
        duplicates: none
        sha256:     3061cc6596749608e576b8d3c0a6e76a0625a6aa78b3cd885bfe9c05eee0eaf2
    "#]],
    );
}

#[test]
fn bad_rows_skipped_are_counted_and_listed() {
    check(
        BAD_ROWS,
        r#"{"key": "agent_id", "bad_rows": "skip"}"#,
        expect![[r#"
        ACCEPTED: 2 rows, 2 keys

        size:       82 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), team, city
        key:        agent_id (match: exact)
        rows:       5 read, 2 accepted, 3 rejected
        problems:   3
          line 3: 2 fields, expected 3 (the header has 3 columns)
          line 4: the key column "agent_id" is empty
          line 5: 4 fields, expected 3 (the header has 3 columns)
        duplicates: none
        sha256:     3061cc6596749608e576b8d3c0a6e76a0625a6aa78b3cd885bfe9c05eee0eaf2

        rows (agent_id | team | city):
          alice | red | Paris
          dylan | ok | Oslo
    "#]],
    );
}

#[test]
fn phone_keys_that_are_not_numbers_are_bad_rows() {
    let input = "phone,name\n01 02 03 04 05,alice\nnot a number,bob\n";
    let skip = r#"{"key": "phone", "match": "phone", "region": "FR", "bad_rows": "skip"}"#;
    check(
        input,
        skip,
        expect![[r#"
        ACCEPTED: 1 row, 1 key

        size:       49 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    phone (key), name
        key:        phone (match: phone)
        rows:       2 read, 1 accepted, 1 rejected
        problems:   1
          line 3: the key "not a number" is not a phone number (default region FR)
        duplicates: none
        sha256:     89f7869161f1981c7863f4cdf90c13dde4664f1297fad78b4714b022e6eae917

        rows (phone | name):
          01 02 03 04 05 | alice
    "#]],
    );
    check(
        input,
        r#"{"key": "phone", "match": "phone", "region": "FR"}"#,
        expect![[r#"
        REJECTED: line 3: the key "not a number" is not a phone number (default region FR)

        size:       49 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    phone (key), name
        key:        phone (match: phone)
        rows:       2 read, 1 accepted, 1 rejected
        problems:   1
          line 3: the key "not a number" is not a phone number (default region FR)
        duplicates: none
        sha256:     89f7869161f1981c7863f4cdf90c13dde4664f1297fad78b4714b022e6eae917
    "#]],
    );
    check(
        input,
        r#"{"key": "phone", "match": "phone", "region": "XX"}"#,
        expect![[r#"
        REJECTED: invalid table options: unknown region "XX": expected a two-letter ISO 3166 country code such as "FR"

        size:       49 bytes
        key:        phone (match: phone)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     89f7869161f1981c7863f4cdf90c13dde4664f1297fad78b4714b022e6eae917
    "#]],
    );
}

#[test]
fn the_key_column_must_be_in_the_header() {
    check(
        "a,b,c\n1,2,3\n",
        AGENT,
        expect![[r#"
        REJECTED: the key column "agent_id" is not in the header (columns: a, b, c)

        size:       12 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    a, b, c
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     9284ed4fd7fe1346904656f329db6cc49c0e7ae5b8279bff37f96bc6eb59baad
    "#]],
    );
    check(
        "Agent_ID,b\n1,2\n",
        AGENT,
        expect![[r#"
        REJECTED: the key column "agent_id" is not in the header (columns: Agent_ID, b); "Agent_ID" differs only in case, and names must match exactly

        size:       15 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    Agent_ID, b
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     098372abb4d0d8a45192d302a455df116a171740510f66460d44039f9c335601
    "#]],
    );
}

#[test]
fn header_names_must_be_present_and_distinct() {
    check(
        "agent_id,team,team\n1,2,3\n",
        AGENT,
        expect![[r#"
        REJECTED: the header names the column "team" twice (columns 2 and 3)

        size:       25 bytes
        encoding:   UTF-8
        delimiter:  comma
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     be137e0897f77b65dcf7923805a259da4b4395bc667a1e212c687305f46ab9b9
    "#]],
    );
    check(
        "agent_id,,team\n1,2,3\n",
        AGENT,
        expect![[r#"
        REJECTED: line 1: column 2 of the header has no name

        size:       21 bytes
        encoding:   UTF-8
        delimiter:  comma
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     fda4f2abbac653d4bf27ea13cb673a0b2fb964b3e666e7cf5c5820c84696cbf1
    "#]],
    );
}

#[test]
fn limits() {
    let small = Limits {
        max_file_bytes: 64,
        max_columns: 3,
        max_field_bytes: 8,
    };
    check_with(
        "agent_id,b,c,d\n1,2,3,4\n",
        AGENT,
        &small,
        expect![[r#"
        REJECTED: the header has 4 columns, over the limit of 3

        size:       23 bytes
        encoding:   UTF-8
        delimiter:  comma
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     a908a61e1f3649f0bff38703683ac4aa0e93043c0745cc2d6d7179147c59ee50
    "#]],
    );
    check_with(
        "a,b\n".repeat(20),
        AGENT,
        &small,
        expect![[r#"
        REJECTED: file is 80 bytes, over the 64-byte limit

        size:       80 bytes
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     9b97c93828b083d3662f5e73d319f731961029af3bd6c6059960977eb61f0521
    "#]],
    );
    check_with(
        "agent_id,b\nalice,123456789\n",
        AGENT,
        &small,
        expect![[r#"
        REJECTED: line 2: the "b" field is 9 bytes, over the 8-byte limit

        size:       27 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), b
        key:        agent_id (match: exact)
        rows:       1 read, 0 accepted, 1 rejected
        problems:   1
          line 2: the "b" field is 9 bytes, over the 8-byte limit
        duplicates: none
        sha256:     d14eb0206ccd0955effe067ae87eaaaacc41fb71271522031d00c24d1e552f82
    "#]],
    );
    check_with(
        "agent_id,a_long_name\n",
        AGENT,
        &small,
        expect![[r#"
        REJECTED: line 1: column 2 of the header is 11 bytes, over the 8-byte limit

        size:       21 bytes
        encoding:   UTF-8
        delimiter:  comma
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     38cbc4485203c71af56935e5b21da3f6a02cc0d2e3a2f2c9eb3e4b5c9c1c47bc
    "#]],
    );

    let big_cell = format!("agent_id,notes\nalice,{}\nbob,short\n", "x".repeat(10 << 20));
    check(
        &big_cell,
        r#"{"key": "agent_id", "bad_rows": "skip"}"#,
        expect![[r#"
        ACCEPTED: 1 row, 1 key

        size:       10485792 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), notes
        key:        agent_id (match: exact)
        rows:       2 read, 1 accepted, 1 rejected
        problems:   1
          line 2: the "notes" field is 10485760 bytes, over the 1048576-byte limit
        duplicates: none
        sha256:     3cf4e5b80f45ac9b2e17b23d0ca4263996ba92a5ed30eac33c4ac60967cd9e3e

        rows (agent_id | notes):
          bob | short
    "#]],
    );
}

#[test]
fn empty_and_header_only_files() {
    check(
        "",
        AGENT,
        expect![[r#"
        REJECTED: the file is empty

        size:       0 bytes
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
    "#]],
    );
    check(
        "\r\n\n  \n",
        AGENT,
        expect![[r#"
        REJECTED: the file holds only blank lines: there is no header line

        size:       6 bytes
        encoding:   UTF-8
        delimiter:  comma
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     4bc86646760b82e55b4f80208f708733846d3f0e6fa7cc64284ad7b1884c4897
    "#]],
    );
    check(
        "agent_id,team\n",
        AGENT,
        expect![[r#"
        ACCEPTED: 0 rows, 0 keys

        size:       14 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     11cd8bda4cc00f723c9f57964291f9288ee494dc63bf94e454587d23d76f51b3

        rows (agent_id | team):
    "#]],
    );
}

#[test]
fn utf16_without_a_byte_order_mark_is_recognised() {
    let text = "agent_id,city\r\nalice,Köln\r\nbob,São Paulo\r\n";
    for big_endian in [false, true] {
        let bytes = utf16(text, big_endian)[2..].to_vec();
        let report = ingest_report(&bytes, AGENT);
        let expected = if big_endian {
            "UTF-16BE (no BOM)"
        } else {
            "UTF-16LE (no BOM)"
        };
        assert!(report.contains(&format!("encoding:   {expected}")), "{report}");
        assert!(
            report.contains("alice | Köln") && report.contains("bob | São Paulo"),
            "{report}"
        );
    }
    // Mostly non-ASCII text has no zero bytes to go by: it is not guessed.
    let greek = utf16("κλειδί,πόλη\r\nα,β\r\n", false)[2..].to_vec();
    assert!(ingest_report(&greek, AGENT).starts_with("REJECTED"));
    // A lone surrogate: not UTF-16 after all, refused as binary.
    let mut broken = utf16("agent_id,city\r\nalice,x\r\n", false)[2..].to_vec();
    broken.extend_from_slice(&[0x00, 0xD8, b'a', 0x00]);
    let report = ingest_report(&broken, AGENT);
    assert!(report.contains("NUL byte"), "{report}");
}

#[test]
fn binary_files_are_refused() {
    check(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        AGENT,
        expect![[r#"
            REJECTED: line 3: the file contains a NUL byte; it looks like a binary file, or UTF-16 text without a byte-order mark (save it as UTF-8 or as Excel "Unicode text")

            size:       16 bytes
            key:        agent_id (match: exact)
            rows:       0 read, 0 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     02a3e298f1533f62558c58e4c70edcab9af5a50d62d925fd5390942020fb0fb8
        "#]],
    );
    check(
        b"agent_id\x00,team\n",
        AGENT,
        expect![[r#"
            REJECTED: line 1: the file contains a NUL byte; it looks like a binary file, or UTF-16 text without a byte-order mark (save it as UTF-8 or as Excel "Unicode text")

            size:       15 bytes
            key:        agent_id (match: exact)
            rows:       0 read, 0 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     51962623bbf9757069aa567059a348d4a643ddafb6602d9ce50132f4931ee07f
        "#]],
    );
    check(
        b"\xff\xd8\xff\xe0garbage\xc3(\xa0\xa1",
        AGENT,
        expect![[r#"
        REJECTED: the key column "agent_id" is not in the header (columns: ÿØÿàgarbageÃ( ¡)

        size:       15 bytes
        encoding:   windows-1252
        delimiter:  comma
        columns:    ÿØÿàgarbageÃ( ¡
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     9c22787ab94edd6080a8e564530dd4c9422eee60ee1036b3948d9bb89ac0bcb6
    "#]],
    );
}

#[test]
fn progress_is_reported_in_input_bytes() {
    let mut input = String::from("agent_id,team\n");
    for i in 0..200_000 {
        input.push_str(&format!("agent{i:08},team{}\n", i % 7));
    }
    let utf8 = input.into_bytes();
    // Not UTF-8 near the end: parsed again as Windows-1252.
    let mut latin = utf8.clone();
    latin.extend_from_slice(b"\xe9t\xe9,summer\n");
    for (bytes, keys, encoding) in [(utf8, 200_000, "UTF-8"), (latin, 200_001, "windows-1252")] {
        let mut seen = Vec::new();
        let ingested = callmeta_core::csv::ingest_with_progress(
            &bytes,
            &crate::options(AGENT),
            &Limits::default(),
            &mut |n| seen.push(n),
        )
        .unwrap();
        assert_eq!(ingested.index.len(), keys);
        assert_eq!(ingested.report.encoding.as_deref(), Some(encoding));
        assert!(seen.len() >= 3, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&(bytes.len() as u64)));
    }
}

#[test]
fn sha256_identifies_the_bytes() {
    assert_eq!(
        callmeta_core::csv::sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn an_unclosed_quote_rejects_the_file_at_the_line_where_the_field_began() {
    // Without the check, everything from the quote on became one cell of
    // one row, and the file was accepted.
    let input = "agent_id,notes,team\n\
                 alice,fine,red\n\
                 bob,\"never closed,blue\n\
                 cindy,more,green\n\
                 dylan,last,red\n";
    check(
        input,
        r#"{"key": "agent_id"}"#,
        expect![[r#"
            REJECTED: line 3: a quoted field starts here and its closing quote is missing, so the rest of the file would be read as one cell (close the quote, or double a quote inside it: "")

            size:       90 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    agent_id (key), notes, team
            key:        agent_id (match: exact)
            rows:       1 read, 1 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     ecaa98ddcb6cbaa7592f53d90885518114e19369362ca4a2788156dd2cef169e
        "#]],
    );
    // Skipping bad rows cannot skip it: where the row ends is unknown.
    check(
        input,
        r#"{"key": "agent_id", "bad_rows": "skip"}"#,
        expect![[r#"
            REJECTED: line 3: a quoted field starts here and its closing quote is missing, so the rest of the file would be read as one cell (close the quote, or double a quote inside it: "")

            size:       90 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    agent_id (key), notes, team
            key:        agent_id (match: exact)
            rows:       1 read, 1 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     ecaa98ddcb6cbaa7592f53d90885518114e19369362ca4a2788156dd2cef169e
        "#]],
    );
    // A quoted field that spans lines and is closed is fine; the opening
    // line of an unclosed one is reported, after CRLF line breaks too.
    check(
        "agent_id,notes\r\nalice,\"two\r\nlines\"\r\nbob,\"\"\"quoted\"\" then\r\nnothing\r\n",
        r#"{"key": "agent_id"}"#,
        expect![[r#"
            REJECTED: line 4: a quoted field starts here and its closing quote is missing, so the rest of the file would be read as one cell (close the quote, or double a quote inside it: "")

            size:       67 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    agent_id (key), notes
            key:        agent_id (match: exact)
            rows:       1 read, 1 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     975a3d9c92c2446770780b73d5331ea74dc203634ec087f1c0c0db6b1e3e76af
        "#]],
    );
    // In the header.
    check(
        "agent_id,\"notes\nalice,x\n",
        r#"{"key": "agent_id"}"#,
        expect![[r#"
        REJECTED: line 1: a quoted field starts here and its closing quote is missing, so the rest of the file would be read as one cell (close the quote, or double a quote inside it: "")

        size:       24 bytes
        encoding:   UTF-8
        delimiter:  comma
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     55bd38a2b12117b02c51bea1e6a50934a23cd8e2b7182220681b1c245122da12
    "#]],
    );
    // A quote inside an unquoted cell is an ordinary character, and a field
    // closed on the last byte of the file is closed.
    check(
        "agent_id;notes\nalice;5\" screen\nbob;\"ok; closed\"",
        r#"{"key": "agent_id"}"#,
        expect![[r#"
            ACCEPTED: 2 rows, 2 keys

            size:       47 bytes
            encoding:   UTF-8
            delimiter:  semicolon
            columns:    agent_id (key), notes
            key:        agent_id (match: exact)
            rows:       2 read, 2 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     db576c58bbc52b1fee02b5992fef5a79cabd092d280c78942cee0f94b4b4edc3

            rows (agent_id | notes):
              alice | 5" screen
              bob | ok; closed
        "#]],
    );
    // Pipe tables follow the same rule.
    check(
        "| agent_id | notes |\n|---|---|\n| alice |\"open |\n| bob | x |\n",
        r#"{"key": "agent_id"}"#,
        expect![[r#"
            REJECTED: line 3: a quoted field starts here and its closing quote is missing, so the rest of the file would be read as one cell (close the quote, or double a quote inside it: "")

            size:       60 bytes
            encoding:   UTF-8
            delimiter:  pipe (pipe table)
            columns:    agent_id (key), notes
            key:        agent_id (match: exact)
            rows:       0 read, 0 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     94d1ad84a62197195e3f7e982ace962198e0240d4918542de33f263b01086dea
        "#]],
    );
}

#[test]
fn pipe_rows_with_or_without_outer_pipes_independently_of_the_header() {
    // The header without a leading pipe but with a trailing one, rows in
    // every form: all one table of 3 columns.
    check(
        "agent_id | team | city |\n|---|---|---|\n| alice | diamond | Helsinki |\nbob | ruby | Lyon\n| cindy | diamond | Paris\ndylan | saphire | Cape Town |\n",
        AGENT,
        expect![[r#"
            ACCEPTED: 4 rows, 4 keys

            size:       144 bytes
            encoding:   UTF-8
            delimiter:  pipe (pipe table)
            columns:    agent_id (key), team, city
            key:        agent_id (match: exact)
            rows:       4 read, 4 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     575a1f1d1870ee2c096e39f630a3cbe87c5500f521dd119765bd6d231f3084a5

            rows (agent_id | team | city):
              alice | diamond | Helsinki
              bob | ruby | Lyon
              cindy | diamond | Paris
              dylan | saphire | Cape Town
        "#]],
    );
    // A leading pipe on the header only, no separator line.
    check(
        "| agent_id | team\nalice | diamond |\n| bob | ruby\n",
        AGENT,
        expect![[r#"
            ACCEPTED: 2 rows, 2 keys

            size:       49 bytes
            encoding:   UTF-8
            delimiter:  pipe (pipe table)
            columns:    agent_id (key), team
            key:        agent_id (match: exact)
            rows:       2 read, 2 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     25fc697b593f3bc674219583d5b2219d97e9e0b7db46724a1196648c6848e936

            rows (agent_id | team):
              alice | diamond
              bob | ruby
        "#]],
    );
    // A trailing pipe on the header only.
    check(
        "agent_id|team|\nalice|diamond\nbob|ruby|\n",
        AGENT,
        expect![[r#"
        ACCEPTED: 2 rows, 2 keys

        size:       39 bytes
        encoding:   UTF-8
        delimiter:  pipe (pipe table)
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       2 read, 2 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     022a2bbbac71063dc476fa686e6555c19a744e621cce2c3de3690f2489f244f6

        rows (agent_id | team):
          alice | diamond
          bob | ruby
    "#]],
    );
}

#[test]
fn an_export_whose_lines_end_with_a_delimiter_drops_that_column() {
    check(
        "agent_id,team,\nalice,diamond,\nbob,ruby\n",
        AGENT,
        expect![[r#"
        ACCEPTED: 2 rows, 2 keys

        size:       39 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       2 read, 2 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     1a190c80a4c49e808bf7a5ed0c988bc788d79233cdc9ef34bf3a434d57c18148

        rows (agent_id | team):
          alice | diamond
          bob | ruby
    "#]],
    );
    check(
        "agent_id;team;\r\nalice;diamond;\r\n",
        AGENT,
        expect![[r#"
        ACCEPTED: 1 row, 1 key

        size:       32 bytes
        encoding:   UTF-8
        delimiter:  semicolon
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       1 read, 1 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     645031dfc5ee49c3489fadf652b4042246502a83ab6db573df88d4e7ffd95a02

        rows (agent_id | team):
          alice | diamond
    "#]],
    );
    check(
        "agent_id\tteam\t\nalice\tdiamond\t\n",
        AGENT,
        expect![[r#"
        ACCEPTED: 1 row, 1 key

        size:       30 bytes
        encoding:   UTF-8
        delimiter:  tab
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       1 read, 1 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     19a1e85d63c2f5c58903a8b5f35bcdad4e94fd7ff370196a71d1709b48a0bae3

        rows (agent_id | team):
          alice | diamond
    "#]],
    );
    // The unnamed column must be empty: a value there is a row with too
    // many fields.
    check(
        "agent_id,team,\nalice,diamond,oops\n",
        AGENT,
        expect![[r#"
        REJECTED: line 2: 3 fields, expected 2 (the header has 2 columns)

        size:       34 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    agent_id (key), team
        key:        agent_id (match: exact)
        rows:       1 read, 0 accepted, 1 rejected
        problems:   1
          line 2: 3 fields, expected 2 (the header has 2 columns)
        duplicates: none
        sha256:     ac7aeffbac74371c22227242191f643dd55ca67d4612c5ce6c7d4cc1f12c663b
    "#]],
    );
    // Only one trailing delimiter is dropped: a second unnamed column is an
    // error. A line of delimiters alone is blank (the next is the header).
    check(
        "agent_id,team,,\nalice,diamond,,\n",
        AGENT,
        expect![[r#"
        REJECTED: line 1: column 3 of the header has no name

        size:       32 bytes
        encoding:   UTF-8
        delimiter:  comma
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     a044574ecd5e458ee3fb0bc2d489d38522bcb2b4f849411f31110378b06ba006
    "#]],
    );
    check(
        ",\nalice,\n",
        AGENT,
        expect![[r#"
        REJECTED: the key column "agent_id" is not in the header (columns: alice)

        size:       9 bytes
        encoding:   UTF-8
        delimiter:  comma
        columns:    alice
        key:        agent_id (match: exact)
        rows:       0 read, 0 accepted, 0 rejected
        problems:   none
        duplicates: none
        sha256:     07c444471e21ea4cc27fb1d6486c2e04844e9818f20fcaab2e7ac88e3726bb77
    "#]],
    );
}
