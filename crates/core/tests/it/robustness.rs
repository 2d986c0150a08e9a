//! No input makes the core panic: random bytes, and random mutations of a
//! valid export, under every option.

use callmeta_core::csv::{self, Limits};

use crate::options;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const OPTIONS: [&str; 4] = [
    r#"{"key": "agent_id"}"#,
    r#"{"key": "agent_id", "bad_rows": "skip", "duplicates": "ambiguous"}"#,
    r#"{"key": "agent_id", "match": "case_insensitive", "bad_rows": "skip", "duplicates": "last"}"#,
    r#"{"key": "agent_id", "match": "phone", "region": "FR", "bad_rows": "skip"}"#,
];

fn ingest_everything(input: &[u8]) {
    let limits = Limits {
        max_file_bytes: 1 << 20,
        max_columns: 16,
        max_field_bytes: 64,
    };
    for json in OPTIONS {
        match csv::ingest(input, &options(json), &limits) {
            Ok(ingested) => {
                let index = &ingested.index;
                for row in index.rows() {
                    assert_eq!(row.iter().count(), index.columns().len());
                    let _ = index.lookup(&row.get(index.key_column_index()));
                }
                let _ = ingested.report.to_text();
            }
            Err(report) => {
                assert!(!report.accepted);
                assert!(report.error.is_some());
                let _ = report.to_text();
            }
        }
        let _ = csv::parse_records(input, &limits);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let alphabet = b"agent_id,;|\t\"\r\n :-\xef\xbb\xbf\xff\xfe\x00\xc3\xa9x0+";
    for round in 0..3000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = if round % 2 == 0 {
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect()
        };
        ingest_everything(&bytes);
    }
}

#[test]
fn mutated_exports_never_panic() {
    let base = b"| agent_id | team | city |\n|---|:-:|---|\n| alice | \"a|b\" | Paris |\n| 01 02 03 04 05 | x | y |\n";
    let mut rng = Rng(42);
    for _ in 0..3000 {
        let mut bytes = base.to_vec();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(bytes.len() + 1);
            match rng.below(3) {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 if at < bytes.len() => bytes[at] = rng.next() as u8,
                _ => bytes.insert(at, b"\"|,\r\n\x00"[rng.below(6)]),
            }
        }
        ingest_everything(&bytes);
    }
}
