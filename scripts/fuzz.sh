#!/usr/bin/env bash
# Runs every cargo-fuzz target (crates/core/fuzz, crates/siprec/fuzz) for a
# bounded time from its committed seed corpus; fails if any target crashes.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 45, or CALLMETA_FUZZ_SECS)
#   scripts/fuzz.sh 30 csv call_metadata      (only these targets)
#
# What a run discovers goes to a temporary corpus, so the committed seeds stay
# small. A crash leaves its input in <crate>/fuzz/artifacts/<target>/ and
# prints the command that reproduces it.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-${CALLMETA_FUZZ_SECS:-45}}"
shift || true
only=("$@")

# cargo-fuzz passes unstable compiler flags (the sanitizer, coverage
# instrumentation); the stable compiler accepts them with this set.
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=()
for crate in crates/core crates/siprec; do
  targets=()
  for target in $(cd "$crate" && cargo fuzz list); do
    if ((${#only[@]} == 0)) || [[ " ${only[*]} " == *" $target "* ]]; then
      targets+=("$target")
    fi
  done
  ((${#targets[@]})) || continue
  # Debug assertions on: an arithmetic overflow is a crash too.
  (cd "$crate" && cargo fuzz build --debug-assertions)
  for target in "${targets[@]}"; do
    mkdir -p "$work/$target"
    echo "fuzzing $crate $target for ${secs}s"
    log="$work/$target.log"
    if (cd "$crate" && cargo fuzz run --debug-assertions "$target" \
        "$work/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1) >"$log" 2>&1; then
      grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || tail -n 3 "$log"
    else
      tail -n 150 "$log" >&2
      failed+=("$crate:$target")
    fi
  done
done

if ((${#failed[@]})); then
  echo "fuzz targets that crashed: ${failed[*]}" >&2
  exit 1
fi
echo "every fuzz target ran ${secs}s without a crash"
