//! A file parsed in chunks, on one thread or several, gives the same version
//! and the same report as the file parsed in one piece: whatever the chunk
//! size, so chunk boundaries fall inside quoted fields (line breaks
//! included), between a CR and its LF, inside a character, inside the
//! header and on the markdown separator of a pipe table.

use callmeta_core::csv::{self, Limits, Parallelism};
use expect_test::expect;

use crate::{options, render};

/// The rendered report and rows of `input` ingested in chunks.
fn chunked(input: &[u8], json: &str, limits: &Limits, threads: usize, chunk_bytes: usize) -> String {
    let parallelism = Parallelism { threads, chunk_bytes };
    let result = csv::ingest_from(&input, &options(json), limits, parallelism, &mut |_| {})
        .expect("bytes in memory are always readable");
    render(&result)
}

/// Every chunk size from 1 byte to the whole file, on 1, 2 and 3 threads,
/// against the file in one piece; returns the one-piece rendering.
fn same_in_any_chunks(input: &[u8], json: &str, limits: &Limits) -> String {
    let whole = chunked(input, json, limits, 1, 1 << 30);
    for chunk_bytes in 1..=input.len() + 1 {
        for threads in [1, 2, 3] {
            let got = chunked(input, json, limits, threads, chunk_bytes);
            assert_eq!(
                got,
                whole,
                "chunks of {chunk_bytes} bytes on {threads} threads differ from one piece\n{json}\n{}",
                String::from_utf8_lossy(input)
            );
        }
    }
    whole
}

fn check(input: impl AsRef<[u8]>, json: &str, expect: expect_test::Expect) {
    expect.assert_eq(&same_in_any_chunks(input.as_ref(), json, &Limits::default()));
}

const AGENT: &str = r#"{"key": "agent_id"}"#;

#[test]
fn line_breaks_inside_quoted_fields() {
    check(
        "agent_id,notes,team\n\
         a1,\"first line\nsecond line\",red\n\
         a2,\"\",blue\n\
         a3,\"a \"\"quoted\"\" word,\r\nand a CRLF\",green\n\
         \n\
         a4,plain,\"\n\n\n\"\n",
        AGENT,
        expect![[r#"
            ACCEPTED: 4 rows, 4 keys

            size:       121 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    agent_id (key), notes, team
            key:        agent_id (match: exact)
            rows:       4 read, 4 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     

            rows (agent_id | notes | team):
              a1 | first line\nsecond line | red
              a2 |  | blue
              a3 | a "quoted" word,\r\nand a CRLF | green
              a4 | plain | 
        "#]],
    );
}

#[test]
fn line_numbers_count_the_line_breaks_inside_quotes() {
    // Every row is bad (no key, or a wrong field count): the report lists
    // each by the physical line where it starts, across every boundary.
    check(
        "agent_id,notes\r\n\
         ,\"one\r\ntwo\"\r\n\
         \r\n\
         a2\r\n\
         ,\"x\ny\rz\"\n\
         \r\
         a4,ok\r\
         ,last",
        r#"{"key": "agent_id", "bad_rows": "skip"}"#,
        expect![[r#"
            ACCEPTED: 1 row, 1 key

            size:       56 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    agent_id (key), notes
            key:        agent_id (match: exact)
            rows:       5 read, 1 accepted, 4 rejected
            problems:   4
              line 2: the key column "agent_id" is empty
              line 5: 1 fields, expected 2 (the header has 2 columns)
              line 6: the key column "agent_id" is empty
              line 11: the key column "agent_id" is empty
            duplicates: none
            sha256:     

            rows (agent_id | notes):
              a4 | ok
        "#]],
    );
}

#[test]
fn duplicates_keep_their_order_across_chunks() {
    let input = "agent_id,team\nk,1\nj,2\nk,\"3\n\"\nk,4\nj,5\ni,6\n";
    for json in [
        r#"{"key": "agent_id", "duplicates": "first"}"#,
        r#"{"key": "agent_id", "duplicates": "last"}"#,
        r#"{"key": "agent_id", "duplicates": "ambiguous"}"#,
    ] {
        same_in_any_chunks(input.as_bytes(), json, &Limits::default());
    }
    check(
        input,
        r#"{"key": "agent_id", "duplicates": "reject"}"#,
        expect![[r#"
            REJECTED: line 4: the key "k" is already on an earlier line, and the table's duplicates policy is reject (2 keys are duplicated)

            size:       41 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    agent_id (key), team
            key:        agent_id (match: exact)
            rows:       6 read, 6 accepted, 0 rejected
            problems:   none
            duplicates: 2 keys on 3 extra rows (policy reject: duplicates are refused)
              e.g. k, j
            sha256:     
        "#]],
    );
}

#[test]
fn an_unclosed_quote_is_found_whatever_the_chunks() {
    check(
        "agent_id,notes\na1,fine\na2,\"never closed\na3,x\n",
        AGENT,
        expect![[r#"
            REJECTED: line 3: a quoted field starts here and its closing quote is missing, so the rest of the file would be read as one cell (close the quote, or double a quote inside it: "")

            size:       45 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    agent_id (key), notes
            key:        agent_id (match: exact)
            rows:       1 read, 1 accepted, 0 rejected
            problems:   none
            duplicates: none
            sha256:     
        "#]],
    );
}

#[test]
fn the_header_and_a_pipe_separator_may_span_chunks() {
    same_in_any_chunks(
        b"\n\n| agent_id | \"team\nname\" |\n|---|:---:|\n| a1 | red |\n|a2|blue|\n",
        AGENT,
        &Limits::default(),
    );
    same_in_any_chunks(b"agent_id|team\na1|red\n", AGENT, &Limits::default());
    same_in_any_chunks(b"\r\n\r\n", AGENT, &Limits::default());
    same_in_any_chunks(b"agent_id", AGENT, &Limits::default());
}

#[test]
fn every_encoding_in_any_chunks() {
    let text = "agent_id;ville;note\r\nété;Montréal;\"a\r\nb\"\r\nb2;Köln;€\r\n";
    let mut utf16le = vec![0xFF, 0xFE];
    let mut utf16be = vec![0xFE, 0xFF];
    let mut bomless = Vec::new();
    for unit in text.encode_utf16() {
        utf16le.extend_from_slice(&unit.to_le_bytes());
        utf16be.extend_from_slice(&unit.to_be_bytes());
        bomless.extend_from_slice(&unit.to_le_bytes());
    }
    let (latin, _, _) = encoding_rs::WINDOWS_1252.encode(text);
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(text.as_bytes());
    // A UTF-8 byte-order mark, then bytes that are not UTF-8 far from it.
    let mut bom_lossy = bom.clone();
    bom_lossy.extend_from_slice(b"x\xff;y;z\r\n");
    // UTF-8 up to a Windows-1252 byte near the end: parsed again.
    let mut late_latin = text.as_bytes().to_vec();
    late_latin.extend_from_slice(b"caf\xe9;x;y\r\n");
    let expected = [
        "UTF-16LE (BOM)",
        "UTF-16BE (BOM)",
        "UTF-16LE (no BOM)",
        "windows-1252",
        "UTF-8 (BOM)",
        "UTF-8 (BOM)",
        "windows-1252",
        "UTF-8",
    ];
    let inputs = [
        utf16le,
        utf16be,
        bomless,
        latin.into_owned(),
        bom,
        bom_lossy,
        late_latin,
        text.as_bytes().to_vec(),
    ];
    for (input, encoding) in inputs.iter().zip(expected) {
        let whole = same_in_any_chunks(input, AGENT, &Limits::default());
        assert!(whole.contains(&format!("encoding:   {encoding}\n")), "{whole}");
        assert!(whole.contains("ACCEPTED"), "{whole}");
    }
}

#[test]
fn limits_and_bad_rows_in_any_chunks() {
    let limits = Limits {
        max_file_bytes: 1 << 20,
        max_columns: 3,
        max_field_bytes: 8,
    };
    let input = b"agent_id,a,b\nk1,12345678,x\nk2,\"123\n456789\",x\nk3,1,2,3\nk4,,\n";
    for json in [
        r#"{"key": "agent_id"}"#,
        r#"{"key": "agent_id", "bad_rows": "skip"}"#,
        r#"{"key": "agent_id", "match": "case_insensitive", "bad_rows": "skip", "duplicates": "last"}"#,
    ] {
        same_in_any_chunks(input, json, &limits);
    }
    same_in_any_chunks(b"agent_id,a,b,c\nk,1,2,3\n", AGENT, &limits);
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// Larger exports with many quoted line breaks, mixed line endings,
/// duplicates and bad rows, in chunks of assorted sizes: chunk cuts land
/// inside quoted fields again and again.
#[test]
fn generated_exports_in_assorted_chunks() {
    let mut rng = Rng(0x2545_f491);
    let breaks = ["\n", "\r\n", "\r"];
    for round in 0..12 {
        let mut input = String::from("agent_id,notes,team\n");
        for i in 0..400 {
            let key = if rng.below(10) == 0 {
                String::new()
            } else {
                format!("a{}", rng.below(300))
            };
            let notes = match rng.below(4) {
                0 => format!("\"multi{}line{}\"", breaks[rng.below(3)], breaks[rng.below(3)]),
                1 => format!("\"with \"\" quote, comma {i}\""),
                2 => String::new(),
                _ => format!("plain {i}"),
            };
            let extra = if rng.below(25) == 0 { ",extra" } else { "" };
            input.push_str(&format!(
                "{key},{notes},t{}{extra}{}",
                i % 7,
                breaks[rng.below(3)]
            ));
            if rng.below(30) == 0 {
                input.push_str(breaks[rng.below(3)]);
            }
        }
        let json = [
            r#"{"key": "agent_id", "bad_rows": "skip"}"#,
            r#"{"key": "agent_id", "bad_rows": "skip", "duplicates": "last"}"#,
            r#"{"key": "agent_id", "bad_rows": "skip", "duplicates": "ambiguous"}"#,
            r#"{"key": "agent_id", "match": "case_insensitive", "bad_rows": "skip", "duplicates": "reject"}"#,
        ][round % 4];
        let limits = Limits::default();
        let whole = chunked(input.as_bytes(), json, &limits, 1, 1 << 30);
        for _ in 0..40 {
            let chunk_bytes = 1 + rng.below(600);
            let threads = 1 + rng.below(3);
            let got = chunked(input.as_bytes(), json, &limits, threads, chunk_bytes);
            assert_eq!(
                got, whole,
                "round {round}: chunks of {chunk_bytes} on {threads} threads\n{json}"
            );
        }
    }
}

/// Columns with few distinct values are stored once per value, and the
/// prefix and suffix a column's values share once (chosen from the first
/// chunk's rows); a value first seen later, one too long for a dictionary or
/// one without the shared prefix and suffix, is stored whole in its row. Every way of reading a row gives the
/// same cells as the file in one piece, and the table takes less memory.
#[test]
fn repeated_values_are_stored_once() {
    let long = "x".repeat(100);
    let mut input = String::from("agent_id,team,city,email,grade\n");
    for i in 0..3000 {
        let team = if i > 2500 {
            "late-team".to_string()
        } else {
            format!("team {}", i % 5)
        };
        let city = if i % 7 == 0 {
            long.as_str()
        } else {
            ["Paris", "Köln", "São Paulo"][i % 3]
        };
        // The mail domain is shared (and stored once) until a few rows at the end.
        let domain = if i > 2900 { "other.org" } else { "example.com" };
        input.push_str(&format!(
            "agent{i:05},{team},\"{city}\",agent{i}@{domain},{}\n",
            i % 3
        ));
    }
    let limits = Limits::default();
    for json in [
        AGENT,
        r#"{"key": "agent_id", "match": "case_insensitive", "duplicates": "last"}"#,
    ] {
        let whole = chunked(input.as_bytes(), json, &limits, 1, 1 << 30);
        for (threads, chunk_bytes) in [(1, 8192), (2, 4096), (3, 20_000)] {
            assert_eq!(
                chunked(input.as_bytes(), json, &limits, threads, chunk_bytes),
                whole
            );
            let parallelism = Parallelism { threads, chunk_bytes };
            let slice = input.as_bytes();
            let index = csv::ingest_from(&slice, &options(json), &limits, parallelism, &mut |_| {})
                .unwrap()
                .unwrap()
                .index;
            let one_piece = csv::ingest_from(
                &slice,
                &options(json),
                &limits,
                Parallelism {
                    threads: 1,
                    chunk_bytes: 1 << 30,
                },
                &mut |_| {},
            )
            .unwrap()
            .unwrap()
            .index;
            assert!(
                index.heap_bytes() * 20 < one_piece.heap_bytes() * 19,
                "{} vs {}",
                index.heap_bytes(),
                one_piece.heap_bytes()
            );
            for row in index.rows() {
                let values: Vec<String> = row.values().map(|v| v.into_owned()).collect();
                for (c, value) in values.iter().enumerate() {
                    assert_eq!(row.get(c), value.as_str());
                }
                let by_name: Vec<String> = row.cells_by_name().map(|(_, v)| v.into_owned()).collect();
                assert_eq!(by_name, [&*values[2], &*values[3], &*values[4], &*values[1]]);
            }
        }
    }
}
