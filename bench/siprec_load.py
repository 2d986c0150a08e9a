#!/usr/bin/env python3
"""How many concurrent SIPREC calls the server records with no lost RTP packet.

Starts `callmeta serve` (release build) on a temporary data directory, then
for each concurrency level L runs sipp with `-l L`: calls of DURATION seconds,
each a two-stream SIPREC INVITE with a 440 Hz tone played by rtp_stream on the
first stream (50 packets/s), started at L/DURATION calls per second so that L
calls are up at once. Afterwards every call's WAV is fetched through the API
and its first channel checked: a lost packet is a run of silence (the recorder
fills gaps with zeros) inside the tone. Prints, per level: calls completed,
calls with audio, lost packets, the server's CPU use and its peak RSS.

usage: bench/siprec_load.py [LEVELS] [DURATION]   e.g. 50,100,200,300 10

With BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432 each level runs on a
new PostgreSQL database of that server instead of SQLite; the recorder then
also stores each call's audio in blob storage every 5 s (audio parts, for
another node to finish a call), which this measures too.
"""
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "callmeta")
SCENARIO = os.path.join(ROOT, "bench", "sipp", "siprec-load.xml")


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ulaw(sample):
    bias = 0x84
    sign = 0
    if sample < 0:
        sample = -sample
        sign = 0x80
    sample = min(sample + bias, 32635 + bias)
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def tone(path, seconds):
    n = int(8000 * seconds)
    data = bytes(ulaw(int(math.sin(i / 8000 * 440 * 2 * math.pi) * 8000)) for i in range(n))
    with open(path, "wb") as f:
        f.write(data)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def api(base, token, path):
    req = urllib.request.Request(base + path, headers={"Authorization": f"Token {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def lost_packets(wav):
    """Runs of >= 80 zero samples on the first channel, between the first and
    the last sound: each is at least one packet the recorder never got."""
    if len(wav) < 44 or wav[:4] != b"RIFF":
        return None, 0
    channels = struct.unpack_from("<H", wav, 22)[0]
    frames = (len(wav) - 44) // (2 * channels)
    left = struct.unpack_from(f"<{frames * channels}h", wav, 44)[::channels]
    nonzero = [i for i, s in enumerate(left) if s != 0]
    if not nonzero:
        return frames / 8000, -1
    lost = 0
    run = 0
    for s in left[nonzero[0]:nonzero[-1] + 1]:
        if s == 0:
            run += 1
        else:
            if run >= 80:
                lost += round(run / 160) or 1
            run = 0
    return (nonzero[-1] - nonzero[0] + 1) / 8000, lost


def main():
    levels = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "50,100,200").split(",")]
    duration = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    if not shutil.which("sipp"):
        sys.exit("sipp is needed: apt-get install sip-tester")
    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "callmeta"], cwd=ROOT, check=True)
    print(f"== SIPREC load: {duration:.0f} s calls, tone on stream 1, levels {levels}")
    print(f"{'level':>6} {'calls':>6} {'audio':>6} {'lost pkts':>10} {'short':>6} {'cpu %':>7} {'rss MB':>7}  sipp")
    for level in levels:
        run_level(level, duration)


def run_level(level, duration):
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "data")
        http, sip = free_port(), free_port(socket.SOCK_DGRAM)
        common = ["--data-dir", data]
        pg = os.environ.get("BENCH_POSTGRES", "").rstrip("/")
        if pg:
            db = f"callmeta_siprec_bench_{os.getpid()}_{level}"
            subprocess.run(["psql", f"{pg}/postgres", "-qc", f"CREATE DATABASE {db}"], check=True)
            common += ["--database", f"{pg}/{db}"]
        out = subprocess.run([BIN, "tenant", "create", "acme", "--password", "acme-load-pw"] + common,
                             check=True, capture_output=True, text=True).stdout
        token = json.loads(out)["api_token"]
        # The SBC (sipp, on loopback) is registered for the tenant, as an operator does.
        subprocess.run([BIN, "tenant", "sip-source", "add", "acme", "127.0.0.1"] + common,
                       check=True, capture_output=True)
        server = subprocess.Popen(
            [BIN, "serve", "--http", f"127.0.0.1:{http}", "--ftp", "127.0.0.1:0", "--sftp", "127.0.0.1:0",
             "--sip", f"127.0.0.1:{sip}"] + common,
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"),
            env={**os.environ, "CALLMETA_SIPREC__RTP_PORTS": "20000-29999"})
        base = f"http://127.0.0.1:{http}"
        try:
            for _ in range(100):
                try:
                    api(base, token, "/api/v1/calls?limit=1")
                    break
                except Exception:
                    time.sleep(0.1)
            tone(os.path.join(work, "tone.ulaw"), duration)
            total = level * 2
            rate = level / duration
            cpu0, t0 = cpu_seconds(server.pid), time.time()
            sipp = subprocess.run(
                ["sipp", "-sf", SCENARIO, "-s", "acme", "-l", str(level), "-m", str(total),
                 "-r", f"{rate:.3f}", "-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)),
                 "-mi", "127.0.0.1", "-mp", "40000", "-key", "duration", str(int(duration * 1000) + 300),
                 "-timeout", f"{int(duration * 4 + 60)}s", "-nostdin", "-trace_stat", "-fd", "1",
                 f"127.0.0.1:{sip}"],
                cwd=work, capture_output=True, text=True)
            cpu = (cpu_seconds(server.pid) - cpu0) / (time.time() - t0) * 100
            rss = peak_rss_mb(server.pid)
            stat = [f for f in os.listdir(work) if f.endswith(".csv")]
            sipp_ok = "ok" if sipp.returncode == 0 else f"exit {sipp.returncode}"
            if stat:
                rows = open(os.path.join(work, stat[0])).read().splitlines()
                head, last = rows[0].split(";"), rows[-1].split(";")
                failed = last[head.index("FailedCall(C)")] if "FailedCall(C)" in head else "?"
                sipp_ok += f", {failed} failed"
            calls = []
            while True:
                page = json.loads(api(base, token, f"/api/v1/calls?limit=500&offset={len(calls)}"))
                calls += page["data"]
                if not page["data"] or len(calls) >= page["count"]:
                    break
            deadline = time.time() + 30
            with_audio, lost, short = 0, 0, 0
            for call in calls:
                uid = call["unique_id"]
                while call.get("audio_state") != "available" and time.time() < deadline:
                    time.sleep(0.2)
                    call = json.loads(api(base, token, f"/api/v1/calls/{uid}"))
                if call.get("audio_state") != "available":
                    continue
                with_audio += 1
                seconds, gaps = lost_packets(api(base, token, f"/api/v1/calls/{uid}/audio"))
                if gaps < 0 or seconds is None or seconds < duration - 0.5:
                    short += 1
                lost += max(gaps, 0)
            print(f"{level:>6} {len(calls):>6} {with_audio:>6} {lost:>10} {short:>6} {cpu:>7.0f} {rss:>7.0f}  {sipp_ok}",
                  flush=True)
        finally:
            server.terminate()
            server.wait()
            if pg:
                subprocess.run(["psql", f"{pg}/postgres", "-qc", f"DROP DATABASE IF EXISTS {db}"])


if __name__ == "__main__":
    main()
