//! The SPEC §9 figures for the enrichment core, printed (this is not a test):
//! ingest time and throughput, index size against the file, ns per lookup,
//! ns per call enrichment with 20 added columns, and, when DuckDB is
//! installed for python3, its single-threaded `read_csv` of the same file.
//!
//! cargo bench -p callmeta-core --bench core -- /tmp/crm.csv
//! (make the file with `python3 bench/gen_crm.py 1000000 /tmp/crm.csv`)

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use callmeta_core::csv::{self, Limits, TableOptions};
use callmeta_core::domain::ColumnName;
use callmeta_core::enrich::{self, Metadata, TableView};
use callmeta_core::index::{Lookup, TableIndex};

fn main() {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "/tmp/crm.csv".to_string());
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!("reading {path}: {e}\nmake it with: python3 bench/gen_crm.py 1000000 {path}");
        std::process::exit(2)
    });
    let mb = bytes.len() as f64 / 1e6;
    println!("file: {path}, {mb:.1} MB");

    // `CALLMETA_BENCH=ingest` only ingests, repeatedly: for profiling.
    let only_ingest = std::env::var("CALLMETA_BENCH").is_ok_and(|v| v == "ingest");
    let floor = best_of(if only_ingest { 0 } else { 3 }, || {
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&bytes[..]);
        let mut record = ::csv::ByteRecord::new();
        let mut n = 0u64;
        while reader.read_byte_record(&mut record).unwrap() {
            n += 1;
        }
        black_box(n);
    });
    println!("csv crate alone (ByteRecord count): {:.3} s", floor.as_secs_f64());

    let options = TableOptions {
        key: ColumnName::parse("agent_id").unwrap(),
        match_mode: Default::default(),
        region: None,
        duplicates: Default::default(),
        bad_rows: Default::default(),
    };
    let limits = Limits::default();
    let rss_before = rss_bytes();
    let mut index = None;
    let ingest = best_of(3, || {
        index = None;
        let ingested = csv::ingest(&bytes, &options, &limits).expect("benchmark file ingests");
        index = Some(ingested.index);
    });
    let index = index.unwrap();
    if only_ingest {
        for _ in 0..5 {
            black_box(csv::ingest(&bytes, &options, &limits).unwrap());
        }
        return;
    }
    let rss_after = rss_bytes();
    println!(
        "ingest: {:.3} s, {:.0} MB/s ({} keys, best of 3)",
        ingest.as_secs_f64(),
        mb / ingest.as_secs_f64(),
        index.len()
    );
    let sha = best_of(3, || {
        black_box(csv::sha256_hex(&bytes));
    });
    println!("  of which sha256: {:.3} s", sha.as_secs_f64());
    let heap = index.heap_bytes();
    println!(
        "index heap_bytes: {:.1} MB, {:.2}x the file (RSS grew {:.1} MB)",
        heap as f64 / 1e6,
        heap as f64 / bytes.len() as f64,
        rss_after.saturating_sub(rss_before) as f64 / 1e6
    );

    if let Some(duckdb) = duckdb_seconds(&path) {
        println!(
            "duckdb read_csv, 1 thread: {duckdb:.3} s -> callmeta ingest is {:.2}x DuckDB's time",
            ingest.as_secs_f64() / duckdb
        );
    } else {
        println!("duckdb: not measured (pip install duckdb)");
    }

    let rows = index.len();
    let mut rng = Rng(7);
    let hits: Vec<String> = (0..1_000_000)
        .map(|_| format!("agent{:08}", rng.below(rows)))
        .collect();
    let misses: Vec<String> = (0..1_000_000)
        .map(|_| format!("ghost{:08}", rng.below(rows)))
        .collect();
    for (name, keys) in [("hits", &hits), ("misses", &misses)] {
        let mut found = 0usize;
        let t = best_of(3, || {
            found = keys
                .iter()
                .filter(|k| matches!(index.lookup(k), Lookup::Found(_)))
                .count();
        });
        println!(
            "lookup ({name}, random keys): {:.0} ns ({found} found)",
            t.as_nanos() as f64 / keys.len() as f64
        );
    }
    drop(index);

    let wide = wide_table(100_000);
    let views = [TableView {
        table: "crm",
        key_column: "agent_id",
        version: Some("v1"),
        index: Some(&wide),
    }];
    let calls: Vec<Metadata> = (0..200_000)
        .map(|i| {
            Metadata::from([
                ("datetime".to_string(), "2026-01-30T12:34:56Z".to_string()),
                ("phonenumber".to_string(), format!("+3310{:08}", i)),
                (
                    "agent_id".to_string(),
                    format!("agent{:08}", rng.below(wide.len())),
                ),
            ])
        })
        .collect();
    let mut added = 0usize;
    let t = best_of(3, || {
        added = calls
            .iter()
            .map(|own| enrich::enrich(own, &views, 1_769_776_496_000)[0].added.len())
            .sum();
    });
    println!(
        "enrichment (20 added columns, {} rows): {:.0} ns per call ({:.1} keys added per call)",
        wide.len(),
        t.as_nanos() as f64 / calls.len() as f64,
        added as f64 / calls.len() as f64
    );
}

/// A 21-column table: the key and 20 descriptive columns.
fn wide_table(rows: usize) -> TableIndex {
    let mut text = String::from("agent_id");
    for c in 0..20 {
        text.push_str(&format!(",attribute_{c:02}"));
    }
    text.push('\n');
    for r in 0..rows {
        text.push_str(&format!("agent{r:08}"));
        for c in 0..20 {
            text.push_str(&format!(",value {c} of {r}"));
        }
        text.push('\n');
    }
    let options = TableOptions {
        key: ColumnName::parse("agent_id").unwrap(),
        match_mode: Default::default(),
        region: None,
        duplicates: Default::default(),
        bad_rows: Default::default(),
    };
    csv::ingest(text.as_bytes(), &options, &Limits::default())
        .unwrap()
        .index
}

fn best_of(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// DuckDB's time, from the script beside this file, if DuckDB is installed.
fn duckdb_seconds(path: &str) -> Option<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_read.py");
    let out = Command::new("python3").arg(script).arg(path).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}
