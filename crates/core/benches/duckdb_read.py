#!/usr/bin/env python3
"""Times DuckDB's single-threaded read_csv of a file, the SPEC section 9 reference
for ingest speed; prints the best of 3 runs in seconds.

usage: python3 crates/core/benches/duckdb_read.py FILE.csv   (pip install duckdb)
The core benchmark (cargo bench -p callmeta-core --bench core -- FILE.csv) runs
this script itself, so both figures come from the same run.
"""
import sys
import time

import duckdb


def main():
    path = sys.argv[1]
    best = None
    for _ in range(3):
        con = duckdb.connect()
        con.execute("SET threads=1")
        start = time.perf_counter()
        con.execute("CREATE TABLE t AS SELECT * FROM read_csv(?)", [path])
        elapsed = time.perf_counter() - start
        rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
        con.close()
        best = elapsed if best is None else min(best, elapsed)
    print(f"{best:.3f} seconds ({rows} rows, duckdb {duckdb.__version__}, 1 thread, best of 3)")


if __name__ == "__main__":
    main()
