#!/usr/bin/env bash
# Load test of POST /tokens: cold (distinct subject tokens, RS256 → HS256) and warm (one
# token, cache hit); then opaque subject tokens through RFC 7662 introspection against a local
# endpoint (examples/introspection_endpoint.rs): i-cold (distinct tokens, one introspection
# call per request) and i-warm (one token, cache hit); and delegation, d-cold and d-warm (each
# subject token with one actor token, for a provider with delegation = true). Reports req/s
# and baton's CPU µs per request (the endpoint's own CPU is not counted; it runs on wrk's CPU).
#
#   bench/tokens.sh            # DURATION=5 CONNS=32 COUNT=120000 PIN_WRK=0 PIN_BATON=1
#
# Needs wrk (apt-get install wrk). baton runs with one worker thread, pinned apart from wrk,
# so CPU per request is comparable across runs on this shared 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/baton-config.sh
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
COUNT=${COUNT:-120000}
PIN_WRK=${PIN_WRK:-0}
PIN_BATON=${PIN_BATON:-1}
PORT=${PORT:-18180}
WORK=${WORK:-${TMPDIR:-/tmp}/baton-bench-tokens}

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
IPORT=${IPORT:-18181}
cargo build --release --quiet --bin baton --example subject_tokens --example introspection_endpoint
mkdir -p "$WORK"
if [ ! -s "$WORK/tokens.txt" ] || [ "$(wc -l <"$WORK/tokens.txt")" -lt "$COUNT" ] || [ -n "$(find "$WORK/tokens.txt" -mmin +90)" ]; then
  ./target/release/examples/subject_tokens "$WORK" "$COUNT"
fi
head -n1 "$WORK/tokens.txt" >"$WORK/one.txt"
seq -f "opaque-bench-token-%.0f" 1 "$COUNT" >"$WORK/opaque.txt"
head -n1 "$WORK/opaque.txt" >"$WORK/opaque-one.txt"

bench_config "$WORK/baton.toml" "127.0.0.1:$PORT" "" 1 https://idp.bench app idp.jwk sub email roles
cat >>"$WORK/baton.toml" <<TOML

[[idps]]
issuer = "https://opaque.bench"
introspection = { url = "http://127.0.0.1:$IPORT/introspect" }
mapping = { "sub.\$" = "\$.sub", "email.\$" = "\$.email", "roles.\$" = "\$.roles" }

[[token_providers]]
service = "app-delegated"
key = "sbk_bench"
profile = "access_token"
delegation = true
mapping = { "sub.\$" = "\$.sub", "email.\$" = "\$.email", "roles.\$" = "\$.roles" }
TOML

taskset -c "$PIN_WRK" ./target/release/examples/introspection_endpoint "127.0.0.1:$IPORT" >"$WORK/introspection.log" &
INTROSPECTION=$!

RUST_LOG=warn taskset -c "$PIN_BATON" ./target/release/baton serve --config "$WORK/baton.toml" 2>"$WORK/baton.log" &
BATON=$!
trap 'kill $BATON $INTROSPECTION 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/.well-known/jwks.json" && break; sleep 0.1; done

ticks() { awk '{print $14 + $15}' "/proc/$BATON/stat"; }
run() { # run NAME TOKENS_FILE [AUDIENCE ACTOR_TOKEN]
  local before after requests
  before=$(ticks)
  AUDIENCE=${3:-app} ACTOR_TOKEN=${4:-} TOKENS_FILE=$2 taskset -c "$PIN_WRK" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s bench/tokens.lua \
    "http://127.0.0.1:$PORT" >"$WORK/$1.txt"
  after=$(ticks)
  requests=$(awk '/requests in/ {print $1}' "$WORK/$1.txt")
  awk -v name="$1" -v req="$requests" -v ticks="$((after - before))" -v hz="$(getconf CLK_TCK)" \
    '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$4}
     END {printf "%-7s %10.0f req/s  p50 %-8s p99 %-8s  baton CPU %6.1f us/req  non-2xx %d\n", name, rps, p50, p99, ticks * 1e6 / hz / req, bad}' \
    "$WORK/$1.txt"
}
echo "# $(date -Is) POST /tokens, wrk -t1 -c$CONNS -d${DURATION}s, baton 1 thread on CPU $PIN_BATON, wrk on CPU $PIN_WRK"
# Every warm case runs before any cold one: a cold run fills the cache with tens of thousands
# of entries, and a warm run after it would pay the cache's housekeeping of that flood.
# Delegation: each subject token with one actor token (another token of the same IdP), for
# a provider with delegation = true: d-cold verifies two tokens per request, d-warm is a hit.
actor=$(tail -n1 "$WORK/tokens.txt")
run warmup "$WORK/one.txt" >/dev/null
run warm "$WORK/one.txt"
run d-warm "$WORK/one.txt" app-delegated "$actor"
run i-warm "$WORK/opaque-one.txt"
run cold "$WORK/tokens.txt"
grep -h "tokens used" "$WORK/cold.txt"
run d-cold "$WORK/tokens.txt" app-delegated "$actor"
run i-cold "$WORK/opaque.txt"
grep -h "tokens used" "$WORK/i-cold.txt"
