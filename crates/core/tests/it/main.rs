//! Feature tests of the enrichment core, one module per feature. Inputs are
//! written inline; expectations are `expect-test` snapshots
//! (`UPDATE_EXPECT=1 cargo test -p callmeta-core` rewrites them).

mod as_of;
mod call_metadata;
mod chunks;
mod enrichment;
mod ingest;
mod intervals;
mod keys;
mod prefix;
mod robustness;
mod spectrum;

use callmeta_core::csv::{self, Limits, TableOptions};
use callmeta_core::index::TableIndex;

/// Table options from their JSON form, as the API receives them.
pub fn options(json: &str) -> TableOptions {
    serde_json::from_str(json).expect("test options")
}

/// The report a person reads, then the rows that can be looked up, sorted.
pub fn render(result: &Result<csv::Ingested, Box<csv::Report>>) -> String {
    match result {
        Ok(ingested) => format!("{}\n{}", ingested.report.to_text(), render_rows(&ingested.index)),
        Err(report) => report.to_text(),
    }
}

pub fn render_rows(index: &TableIndex) -> String {
    let mut rows: Vec<(String, String)> = index
        .rows()
        .map(|row| {
            (
                row.match_key().to_string(),
                row.values().map(|v| escape(&v)).collect::<Vec<_>>().join(" | "),
            )
        })
        .collect();
    rows.sort();
    let mut out = format!("rows ({}):\n", index.columns().join(" | "));
    for (_, row) in rows {
        out.push_str("  ");
        out.push_str(&row);
        out.push('\n');
    }
    out
}

/// Line breaks inside cells, made visible.
fn escape(cell: &str) -> String {
    cell.replace('\r', "\\r").replace('\n', "\\n")
}

/// Ingests `input` with `options` (JSON) and the default limits.
/// The rendered report (and rows) of an ingest with default limits.
pub fn ingest_report(input: &[u8], options_json: &str) -> String {
    render(&csv::ingest(input, &options(options_json), &Limits::default()))
}

pub fn check(input: impl AsRef<[u8]>, options_json: &str, expect: expect_test::Expect) {
    check_with(input, options_json, &Limits::default(), expect)
}

pub fn check_with(input: impl AsRef<[u8]>, options_json: &str, limits: &Limits, expect: expect_test::Expect) {
    let result = csv::ingest(input.as_ref(), &options(options_json), limits);
    if let Err(report) = &result {
        assert!(!report.accepted);
        assert!(report.error.is_some());
    }
    expect.assert_eq(&render(&result));
}
