#!/usr/bin/env bash
# Durable call creations per second through the real HTTP API (SPEC §9),
# measured by wrk in its own process, with a version swap every few seconds.
#
# usage: bench/api_load.sh [BIN] [DATABASE_URL]
#   BIN           the callmeta binary (default target/release/callmeta)
#   DATABASE_URL  empty for the embedded SQLite default, or postgres://...
#                 (a fresh database is made for the run)
# Env: DURATION (default 20s), CONNECTIONS (64), THREADS (1); NO_CALL_INDEX=1
#      drops the triggers that write the index of calls by key, to measure
#      what writing it costs.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/callmeta}"
database="${2:-}"
duration="${DURATION:-20s}"
connections="${CONNECTIONS:-64}"
threads="${THREADS:-1}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }

work="$(mktemp -d)"
trap 'kill $server $swapper 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
db_args=()
label="SQLite"
if [ -n "$database" ]; then
  name="callmeta_bench_$$"
  psql "$database" -qc "CREATE DATABASE $name" >/dev/null
  database="${database%/*}/$name"
  db_args=(--database "$database")
  label="PostgreSQL"
fi
port=$((20000 + RANDOM % 20000))
"$bin" serve --data-dir "$work/data" --http "127.0.0.1:$port" --ftp 127.0.0.1:0 --sftp 127.0.0.1:0 \
  --sip 127.0.0.1:0 "${db_args[@]}" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
token=$("$bin" tenant create load --password load-password-1 --data-dir "$work/data" "${db_args[@]}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["api_token"])')
auth="Authorization: Token $token"
if [ "${NO_CALL_INDEX:-}" = 1 ]; then
  if [ -n "$database" ]; then
    drop="DROP TRIGGER call_keys_insert; DROP TRIGGER call_keys_update; DROP TRIGGER call_keys_delete;"
    psql "$database" -qc "${drop//;/ ON calls;}" >/dev/null
  else
    drop="DROP TRIGGER call_terms_insert; DROP TRIGGER call_terms_update; DROP TRIGGER call_terms_delete;"
    python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.close()" \
      "$work/data/callmeta.db" "$drop"
  fi
  label="$label, without the index of calls by key"
fi
curl -sf -X PUT "http://127.0.0.1:$port/api/v1/tables/crm" -H "$auth" -d '{"key": "agent_id"}' >/dev/null
# 10,000 agents, 20 columns, each version with its own marker.
version() {
  python3 - "$1" <<'PY'
import sys
n = sys.argv[1]
print("agent_id," + ",".join(f"col{c}" for c in range(20)))
for i in range(10000):
    print(f"agent{i}," + ",".join(f"v{n}" for _ in range(20)))
PY
}
version 0 | curl -sf -X PUT "http://127.0.0.1:$port/api/v1/tables/crm/data" -H "$auth" --data-binary @- >/dev/null
( n=1; while true; do sleep 3; version $n | curl -s -X PUT "http://127.0.0.1:$port/api/v1/tables/crm/data" \
    -H "$auth" --data-binary @- >/dev/null; n=$((n+1)); done ) &
swapper=$!

cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Token $token"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"metadata":{"datetime":"2026-01-30T12:34:56Z","phonenumber":"+33102030405","agent_id":"agent%d"}}', n % 11000)
  return wrk.format(nil, "/api/v1/calls", nil, body)
end
LUA
echo "== API on $label: wrk -t$threads -c$connections -d$duration, a version swap every 3 s"
wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$work/post.lua" "http://127.0.0.1:$port" |
  grep -E "Requests/sec|Latency|50%|99%|requests in|Non-2xx|Socket"
total=$(curl -sf "http://127.0.0.1:$port/api/v1/calls?limit=1" -H "$auth" |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["count"], "" if r["count_exact"] else "(at least)")')
echo "calls stored: $total"
if [ -n "$database" ]; then
  kill $server; wait $server 2>/dev/null || true
  psql "${database%/*}/postgres" -qc "DROP DATABASE $name" >/dev/null 2>&1 || true
fi
