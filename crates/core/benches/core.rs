//! The SPEC §9 figures for the enrichment core, printed (this is not a test):
//! ingest time and throughput, index size against the file, ns per lookup,
//! ns per call enrichment with 20 added columns, and, when DuckDB is
//! installed for python3, its single-threaded `read_csv` of the same file.
//!
//! cargo bench -p callmeta-core --bench core -- /tmp/crm.csv
//! (make the file with `python3 bench/gen_crm.py 1000000 /tmp/crm.csv`)
//!
//! CALLMETA_BENCH=refdata cargo bench -p callmeta-core --bench core: lookups
//! with 10 validity intervals per key and with 100k longest-prefix ranges,
//! after the machine's memory floor (what one random read costs).

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use callmeta_core::csv::{self, Limits, Parallelism, TableOptions};
use callmeta_core::domain::ColumnName;
use callmeta_core::enrich::{self, Metadata, TableView};
use callmeta_core::index::{Lookup, TableIndex};

fn main() {
    // `CALLMETA_BENCH=refdata` needs no file: interval and prefix lookups,
    // and the exact lookups and enrichment of a generated table to compare.
    if std::env::var("CALLMETA_BENCH").as_deref() == Ok("refdata") {
        memory_floor();
        bench_refdata(5);
        bench_enrichment(5);
        return;
    }
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

    // `CALLMETA_BENCH=ingest` (or `enrich`) runs only that part, repeatedly,
    // for profiling.
    let only = std::env::var("CALLMETA_BENCH").unwrap_or_default();
    let only_ingest = only == "ingest";
    if only == "enrich" {
        bench_enrichment(10);
        return;
    }
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
        max_row_drop_pct: None,
        on_header_change: Default::default(),
        as_of: Default::default(),
        valid_from: None,
        valid_to: None,
        keys: None,
        match_mode: Default::default(),
        region: None,
        duplicates: Default::default(),
        bad_rows: Default::default(),
    };
    let limits = Limits::default();
    let all = Parallelism::default();
    let ingest_on = |threads: usize| {
        let parallelism = Parallelism { threads, ..all };
        let slice: &[u8] = &bytes;
        csv::ingest_from(&slice, &options, &limits, parallelism, &mut |_| {})
            .expect("bytes in memory are readable")
            .expect("benchmark file ingests")
    };
    let one_thread = if only_ingest {
        Duration::ZERO
    } else {
        best_of(3, || {
            black_box(ingest_on(1));
        })
    };
    let rss_before = rss_bytes();
    let mut index = None;
    let ingest = best_of(3, || {
        index = None;
        index = Some(ingest_on(all.threads).index);
    });
    let index = index.unwrap();
    if only == "lookup" {
        let keys = random_keys(&mut Rng(3), "agent", index.len(), 1_000_000);
        for _ in 0..10 {
            black_box(
                key_iter(&keys)
                    .filter(|k| matches!(index.lookup(k), Lookup::Found(_)))
                    .count(),
            );
        }
        return;
    }
    if only_ingest {
        for _ in 0..5 {
            black_box(ingest_on(all.threads));
        }
        return;
    }
    let rss_after = rss_bytes();
    println!(
        "ingest, 1 thread: {:.3} s, {:.0} MB/s (best of 3)",
        one_thread.as_secs_f64(),
        mb / one_thread.as_secs_f64(),
    );
    println!(
        "ingest, {} threads: {:.3} s, {:.0} MB/s ({} keys, best of 3)",
        all.threads,
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
            "duckdb read_csv, 1 thread: {duckdb:.3} s -> callmeta ingest ({} threads) is {:.2}x DuckDB's time",
            all.threads,
            ingest.as_secs_f64() / duckdb
        );
    } else {
        println!("duckdb: not measured (pip install duckdb)");
    }

    // Keys are kept in one buffer (13 bytes each) so that reading them
    // costs little next to the lookups.
    let rows = index.len();
    let mut rng = Rng(7);
    for (name, prefix) in [("hits", "agent"), ("misses", "ghost")] {
        let keys = random_keys(&mut rng, prefix, rows, 1_000_000);
        let mut found = 0usize;
        let t = best_of(3, || {
            found = key_iter(&keys)
                .filter(|k| matches!(index.lookup(k), Lookup::Found(_)))
                .count();
        });
        println!(
            "lookup ({name}, random keys): {:.0} ns ({found} found)",
            t.as_nanos() as f64 / 1e6
        );
    }
    drop(index);

    bench_enrichment(3);
}

fn bench_enrichment(runs: usize) {
    let mut rng = Rng(11);
    let wide = wide_table(100_000);
    let views = [TableView {
        table: "crm",
        key_column: "agent_id",
        version: Some("v1"),
        index: Some(&wide),
    }];
    // A few thousand calls' metadata, reused with a new random agent each
    // time: the metadata of a call being enriched has just been parsed and is
    // in cache, the table's rows are not.
    let mut calls: Vec<Metadata> = (0..4096)
        .map(|i| {
            Metadata::from([
                ("datetime".to_string(), "2026-01-30T12:34:56Z".to_string()),
                ("phonenumber".to_string(), format!("+3310{i:08}")),
                ("agent_id".to_string(), "agent00000000".to_string()),
            ])
        })
        .collect();
    let n = 400_000;
    let agents = random_keys(&mut rng, "agent", wide.len(), n);
    let set_agent = |calls: &mut [Metadata], i: usize, agent: &str| {
        let call = &mut calls[i % 4096];
        if let Some(value) = call.get_mut("agent_id") {
            value.clear();
            value.push_str(agent);
        }
    };
    let overhead = best_of(runs, || {
        for (i, agent) in key_iter(&agents).enumerate() {
            set_agent(&mut calls, i, agent);
            black_box(&calls[i % 4096]);
        }
    });
    let mut found = 0usize;
    let lookups = best_of(runs, || {
        found = key_iter(&agents)
            .filter(|k| matches!(wide.lookup(k), Lookup::Found(_)))
            .count();
    });
    println!(
        "lookup (hits, random keys, {}-row table): {:.0} ns ({found} found)",
        wide.len(),
        lookups.as_nanos() as f64 / n as f64
    );
    let mut added = 0usize;
    let t = best_of(runs, || {
        added = 0;
        for (i, agent) in key_iter(&agents).enumerate() {
            set_agent(&mut calls, i, agent);
            let results = enrich::enrich(&calls[i % 4096], &views, 1_769_776_496_000);
            added += results[0].added.len();
        }
    });
    let per_call = t.saturating_sub(overhead).as_nanos() as f64 / n as f64;
    println!(
        "enrichment (20 added columns, {} rows): {per_call:.0} ns per call, result dropped \
         included ({:.1} keys added per call; {:.0} ns of benchmark overhead per call excluded)",
        wide.len(),
        added as f64 / n as f64,
        overhead.as_nanos() as f64 / n as f64
    );
}

/// Lookups in tables with rows valid over intervals (10 per key) and with
/// longest-prefix ranges (100k), on one core.
fn bench_refdata(runs: usize) {
    let mut rng = Rng(29);
    // 100k keys, 10 consecutive monthly intervals each (1M rows).
    let keys = 100_000;
    let mut text = String::from("agent_id,team,from,to\n");
    let month = |m: usize| format!("{}-{:02}-01", 2025 + m / 12, m % 12 + 1);
    for k in 0..keys {
        for m in 0..10 {
            let from = if m == 0 { String::new() } else { month(m) };
            let to = if m == 9 { String::new() } else { month(m + 1) };
            text.push_str(&format!("agent{k:08},t{m},{from},{to}\n"));
        }
    }
    let options: TableOptions =
        serde_json::from_str(r#"{"key": "agent_id", "valid_from": "from", "valid_to": "to"}"#).unwrap();
    let started = Instant::now();
    let index = csv::ingest(text.as_bytes(), &options, &Limits::default())
        .unwrap()
        .index;
    println!(
        "intervals: {} rows ({keys} keys x 10 intervals) ingested in {:.2} s, index {:.1} MB",
        text.lines().count() - 1,
        started.elapsed().as_secs_f64(),
        index.heap_bytes() as f64 / 1e6
    );
    let n = 1_000_000;
    let lookups_keys = random_keys(&mut rng, "agent", keys, n);
    // Call times spread over the 10 intervals (2025-01 .. 2025-10, ms).
    let times: Vec<i64> = (0..n)
        .map(|_| 1_735_689_600_000 + rng.below(300) as i64 * 86_400_000)
        .collect();
    let mut found = 0;
    let t = best_of(runs, || {
        found = key_iter(&lookups_keys)
            .zip(&times)
            .filter(|(k, t)| matches!(index.lookup_entry(0, k, **t), Lookup::Found(_)))
            .count();
    });
    println!(
        "lookup (10 intervals per key, random keys and times): {:.0} ns ({found} of {n} found)",
        t.as_nanos() as f64 / n as f64
    );

    // 100k dialled-number ranges of 3 to 9 digits under +33, and numbers.
    let mut ranges = std::collections::BTreeSet::new();
    while ranges.len() < 100_000 {
        let len = 3 + rng.below(7);
        let digits: String = (0..len).map(|_| char::from(b'0' + rng.below(10) as u8)).collect();
        ranges.insert(format!("+33{digits}"));
    }
    let mut text = String::from("range,area\n");
    for (i, r) in ranges.iter().enumerate() {
        text.push_str(&format!("{r},area{i}\n"));
    }
    let options: TableOptions = serde_json::from_str(r#"{"key": "range", "match": "prefix"}"#).unwrap();
    let index = csv::ingest(text.as_bytes(), &options, &Limits::default())
        .unwrap()
        .index;
    println!(
        "prefixes: {} ranges, index {:.1} MB",
        index.len(),
        index.heap_bytes() as f64 / 1e6
    );
    // Back to back, 12 bytes each, like the keys of the other lookups.
    let mut numbers = String::with_capacity(n * 12);
    for _ in 0..n {
        numbers.push_str("+33");
        numbers.extend((0..9).map(|_| char::from(b'0' + rng.below(10) as u8)));
    }
    let t = best_of(runs, || {
        found = (0..n)
            .map(|i| &numbers[i * 12..i * 12 + 12])
            .filter(|v| matches!(index.lookup(v), Lookup::Found(_)))
            .count();
    });
    println!(
        "lookup (longest prefix, 100k ranges, random numbers): {:.0} ns ({found} of {n} found)",
        t.as_nanos() as f64 / n as f64
    );
}

/// `n` keys `{prefix}{i:08}` for random `i` below `below`, 13 bytes each.
fn random_keys(rng: &mut Rng, prefix: &str, below: usize, n: usize) -> String {
    let mut keys = String::with_capacity(n * 13);
    for _ in 0..n {
        keys.push_str(&format!("{prefix}{:08}", rng.below(below)));
    }
    keys
}

fn key_iter(keys: &str) -> impl Iterator<Item = &str> {
    (0..keys.len() / 13).map(move |i| &keys[i * 13..i * 13 + 13])
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
        max_row_drop_pct: None,
        on_header_change: Default::default(),
        as_of: Default::default(),
        valid_from: None,
        valid_to: None,
        keys: None,
        match_mode: Default::default(),
        region: None,
        duplicates: Default::default(),
        bad_rows: Default::default(),
    };
    csv::ingest(text.as_bytes(), &options, &Limits::default())
        .unwrap()
        .index
}

/// What one random read costs on this machine, the floor of any lookup in
/// a table larger than the caches: a chase through a random cycle of
/// indices (each read gives the next address, so reads cannot overlap), in
/// a block that fits a core's L2 cache and in one of 256 MB. Lookup figures
/// are comparable across machines only next to it.
fn memory_floor() {
    let mut rng = Rng(5);
    for (name, bytes) in [("256 KB", 256usize << 10), ("256 MB", 256 << 20)] {
        let n = bytes / 8;
        // Sattolo's shuffle: one cycle through every slot.
        let mut next: Vec<u64> = (0..n as u64).collect();
        for i in (1..n).rev() {
            next.swap(i, rng.below(i));
        }
        let steps = 5_000_000;
        let mut at = 0u64;
        let t = best_of(3, || {
            for _ in 0..steps {
                at = next[at as usize];
            }
            black_box(at);
        });
        println!(
            "memory floor: one dependent random read in {name}: {:.1} ns",
            t.as_nanos() as f64 / steps as f64
        );
    }
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
