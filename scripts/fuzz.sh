#!/usr/bin/env bash
# Fuzzes baton's parsers of untrusted input with cargo-fuzz (libFuzzer): `fuzz/`.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Installs cargo-fuzz if it is missing, builds every target, then runs each TARGET (all of
# them by default) for SECONDS_PER_TARGET (default 60) over its committed seeds in
# fuzz/corpus/TARGET. New inputs go to fuzz/runs/TARGET (ignored by git), crashes to
# fuzz/artifacts/TARGET. Exits non-zero when any target crashes, times out (an input over
# 2 s, or $FUZZ_TIMEOUT: libFuzzer times wall-clock, so a loaded machine needs more) or runs
# out of memory (over 2 GiB); the artifact's path is in the log.
#
# Per target it prints executions, exec/s, coverage and the CPU seconds used. Each
# target's libFuzzer log is $FUZZ_LOG_DIR/TARGET.log (default fuzz/runs/logs).
#
# The toolchain is stable; cargo-fuzz needs `-Z` flags, which RUSTC_BOOTSTRAP=1 allows.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
all_targets=(token jsonpath token_request config jwks path head_scan condition)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=("${all_targets[@]}")
fi

export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

# Release build with debug assertions and overflow checks, AddressSanitizer (which also
# reports a stack overflow as such, with its stack).
(cd fuzz && cargo fuzz build --release --debug-assertions)

bin_dir=fuzz/target/x86_64-unknown-linux-gnu/release
log_dir=${FUZZ_LOG_DIR:-fuzz/runs/logs}
mkdir -p "$log_dir"
failed=()
printf '%-14s %12s %9s %8s %8s %9s  %s\n' target executions exec/s cov features cpu_s result
for target in "${targets[@]}"; do
  log="$log_dir/$target.log"
  cpu="$log_dir/$target.cpu"
  mkdir -p "fuzz/runs/$target" "fuzz/artifacts/$target"
  dict=()
  if [ -f "fuzz/dict/$target.dict" ]; then
    dict=("-dict=fuzz/dict/$target.dict")
  fi
  # The first corpus directory receives new inputs; the seeds stay as committed.
  # -detect_leaks=0: the exchanger's caches and lazily built statics keep what they allocate,
  # so LeakSanitizer would scan the heap after most inputs (a tenth of the speed) and find
  # nothing a safe-Rust leak could do besides use memory, which -rss_limit_mb bounds.
  status=0
  /usr/bin/time -f '%U %S' -o "$cpu" \
    "$bin_dir/$target" "fuzz/runs/$target" "fuzz/corpus/$target" "${dict[@]}" \
    -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-2}" -rss_limit_mb=2048 -detect_leaks=0 \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1 || status=$?
  executions=$(grep -oE 'stat::number_of_executed_units: +[0-9]+' "$log" | grep -o '[0-9]*$' || true)
  exec_per_s=$(grep -oE 'stat::average_exec_per_sec: +[0-9]+' "$log" | grep -o '[0-9]*$' || true)
  coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  features=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  cpu_seconds=$(awk 'END { printf "%.0f", $1 + $2 }' "$cpu" 2>/dev/null || echo '?')
  result=ok
  if [ "$status" -ne 0 ]; then
    result="FAILED (exit $status, see $log)"
    failed+=("$target")
  fi
  printf '%-14s %12s %9s %8s %8s %9s  %s\n' "$target" "${executions:-?}" "${exec_per_s:-?}" \
    "${coverage:-?}" "${features:-?}" "$cpu_seconds" "$result"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: ${failed[*]} failed; the crashing inputs are in fuzz/artifacts/<target>/" >&2
  for target in "${failed[@]}"; do
    grep -E 'ERROR: |SUMMARY: |panicked at|Test unit written to' "$log_dir/$target.log" >&2 || true
  done
  exit 1
fi
