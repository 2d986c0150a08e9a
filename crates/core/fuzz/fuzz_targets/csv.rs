//! A CSV export through the ingest, under options chosen by the input's first
//! byte, with small limits so they are reached. An accepted version must find
//! every row it holds by the row's own key cell, as a call carrying that value
//! would.
#![no_main]

use callmeta_core::csv::{self, BadRowPolicy, DuplicatePolicy, Limits, TableOptions};
use callmeta_core::domain::ColumnName;
use callmeta_core::index::Lookup;
use callmeta_core::matching::MatchMode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, bytes)) = data.split_first() else { return };
    let limits = Limits {
        max_file_bytes: 1 << 20,
        max_columns: 16,
        max_field_bytes: 64,
    };
    let match_mode = [MatchMode::Exact, MatchMode::CaseInsensitive, MatchMode::Phone][choice as usize % 3];
    let duplicates = [
        DuplicatePolicy::First,
        DuplicatePolicy::Last,
        DuplicatePolicy::Reject,
        DuplicatePolicy::Ambiguous,
    ][(choice as usize / 3) % 4];
    let bad_rows = [BadRowPolicy::Reject, BadRowPolicy::Skip][(choice as usize / 12) % 2];
    let region = [None, Some("FR"), Some("US"), Some("ZZ")][(choice as usize / 24) % 4].map(str::to_string);

    // The key is the header's first column when it is a valid name, so most
    // inputs get past the header; the parser alone sees the rest.
    let parsed = csv::parse_records(bytes, &limits);
    let key = parsed
        .as_ref()
        .ok()
        .and_then(|(header, _)| header.first())
        .and_then(|name| ColumnName::parse(name).ok())
        .unwrap_or_else(|| ColumnName::parse("agent_id").expect("a valid column name"));
    let options = TableOptions { key, keys: None, match_mode, region, duplicates, bad_rows, valid_from: None, valid_to: None, max_row_drop_pct: None, on_header_change: Default::default(), as_of: Default::default() };

    match csv::ingest(bytes, &options, &limits) {
        Ok(ingested) => {
            let index = &ingested.index;
            assert!(ingested.report.accepted);
            assert!(ingested.report.error.is_none());
            for row in index.rows() {
                assert_eq!(row.iter().count(), index.columns().len());
                let cell = row.get(index.key_column_index());
                match index.lookup(&cell) {
                    Lookup::Found(found) => assert_eq!(found.match_key(), row.match_key()),
                    Lookup::Ambiguous { rows } => assert!(rows > 1),
                    other => panic!("the key cell {cell:?} of an indexed row looks up as {other:?}"),
                }
            }
            let _ = ingested.report.to_text();
        }
        Err(report) => {
            assert!(!report.accepted);
            assert!(report.error.is_some());
            let _ = report.to_text();
        }
    }
});
