#!/usr/bin/env python3
"""Peak memory of a real `callmeta serve` process during CSV uploads (SPEC §8, §9).

usage: python3 bench/upload_memory.py [MB] [BIN]
  MB   size of each upload (default 300); the file is made by bench/gen_crm.py
  BIN  the callmeta binary to measure (default target/release/callmeta)

Two runs, each on a fresh server and data dir, uploads over HTTP with curl
(streamed from the file, as a client does):
  1. one upload: the server's peak RSS (VmHWM) above its RSS before, as a
     multiple of the file (target: at most 1.5x);
  2. three different uploads at once, with [uploads] memory_budget_bytes set
     to BUDGET_MB (default 1024): the peak above the RSS before, next to the
     budget (what the budget admits runs, the rest waits its turn).
Figures only: this is a benchmark, not a test.
"""
import json, os, subprocess, sys, tempfile, threading, time, urllib.request

MB = int(sys.argv[1]) if len(sys.argv) > 1 else 300
BIN = sys.argv[2] if len(sys.argv) > 2 else "target/release/callmeta"
BUDGET_MB = int(os.environ.get("BUDGET_MB", "1024"))
WORK = os.environ.get("BENCH_DIR", "/tmp/callmeta-bench")


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def make_files(n):
    os.makedirs(WORK, exist_ok=True)
    rows = MB * 1_000_000 // 137
    base = os.path.join(WORK, f"crm-{MB}mb.csv")
    if not os.path.exists(base):
        subprocess.run([sys.executable, "bench/gen_crm.py", str(rows), base], check=True)
    files = [base]
    for i in range(1, n):
        copy = os.path.join(WORK, f"crm-{MB}mb-{i}.csv")
        if not os.path.exists(copy):
            with open(base, "rb") as src, open(copy, "wb") as dst:
                while chunk := src.read(1 << 24):
                    dst.write(chunk)
                dst.write(f"extra{i},x,x,x,x,x,x,x,x,x,x,x\n".encode())
        files.append(copy)
    return files


def serve(data_dir, env):
    server = subprocess.Popen(
        [BIN, "serve", "--data-dir", data_dir, "--http", "127.0.0.1:0", "--ftp", "127.0.0.1:0",
         "--sftp", "127.0.0.1:0", "--sip", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, **env}, text=True)
    line = server.stdout.readline()
    url = next(w for w in line.split() if w.startswith("http://"))
    return server, url


def setup(data_dir, url):
    out = subprocess.run([BIN, "tenant", "create", "bench", "--password", "bench-password",
                          "--data-dir", data_dir], check=True, capture_output=True, text=True)
    token = json.loads(out.stdout)["api_token"]
    req = urllib.request.Request(f"{url}/api/v1/tables/crm", method="PUT",
                                 data=b'{"key": "agent_id"}',
                                 headers={"Authorization": f"Token {token}"})
    urllib.request.urlopen(req).read()
    return token


def upload(url, token, path, results):
    t = time.time()
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", path,
                          "-H", f"Authorization: Token {token}", f"{url}/api/v1/tables/crm/data"],
                         capture_output=True, text=True)
    results.append((out.stdout, time.time() - t))


def run(files, env, label):
    with tempfile.TemporaryDirectory() as data_dir:
        server, url = serve(data_dir, env)
        try:
            token = setup(data_dir, url)
            before = status_kib(server.pid, "VmRSS:")
            results = []
            threads = [threading.Thread(target=upload, args=(url, token, f, results)) for f in files]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            peak = status_kib(server.pid, "VmHWM:")
            after = status_kib(server.pid, "VmRSS:")
        finally:
            server.terminate()
            server.wait()
    size = os.path.getsize(files[0])
    delta = (peak - before) * 1024
    print(f"{label}: {len(files)} x {size / 1e6:.0f} MB, statuses {[r[0] for r in results]}, "
          f"times {', '.join(f'{r[1]:.1f} s' for r in results)}")
    print(f"  RSS before {before / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB, after {after / 1024:.0f} MiB; "
          f"peak above before: {delta / 2**20:.0f} MiB = {delta / size:.2f}x one file")
    return delta, size


def main():
    files = make_files(3)
    print(f"== {BIN}")
    run(files[:1], {}, "one upload")
    delta, size = run(files, {"CALLMETA_UPLOADS__MEMORY_BUDGET_BYTES": str(BUDGET_MB << 20)},
                      f"three at once, budget {BUDGET_MB} MiB")
    print(f"  peak above before vs the budget: {delta / 2**20:.0f} MiB / {BUDGET_MB} MiB "
          f"(the budget counts 1.5x a file per upload being parsed: {1.5 * size / 2**20:.0f} MiB each)")


if __name__ == "__main__":
    main()
