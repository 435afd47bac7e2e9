#!/usr/bin/env bash
# Resident memory of baton holding COUNT (default 100 000, the cache's bound) minted tokens.
#
#   bench/rss.sh            # COUNT=100000 CONNS=32 PIN_WRK=0 PIN_BATON=1 THREADS=1
#
# Generates COUNT distinct RS256 subject tokens (examples/subject_tokens), starts a small
# nginx upstream and baton (THREADS worker threads, default 1), sends each token once through the proxy
# (wrk + bench/rss.lua, which stops after COUNT responses), then reads VmRSS and VmHWM from
# /proc/<pid>/status. A second pass over the same tokens (VERIFY=1, the default) checks they
# are all cache hits (no new exchange: CPU per request at the cache-hit level) and reads VmRSS
# again. Target: VmRSS under 96 MiB. Needs wrk and nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/baton-config.sh
REPO=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
COUNT=${COUNT:-100000}
CONNS=${CONNS:-32}
PIN_WRK=${PIN_WRK:-0}
PIN_BATON=${PIN_BATON:-1}
PORT=${PORT:-18190}
UPSTREAM_PORT=${UPSTREAM_PORT:-18191}
VERIFY=${VERIFY:-1}
WORK=${WORK:-${TMPDIR:-/tmp}/baton-bench-rss}
ISSUER=https://idp.bench
AUDIENCE=app

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
command -v nginx >/dev/null || { echo "nginx is not installed (apt-get install nginx)" >&2; exit 1; }
cargo build --release --quiet --bin baton --example subject_tokens
mkdir -p "$WORK/nginx"
# Tokens are valid for two hours: regenerate when older than 90 minutes or too few.
if [ ! -s "$WORK/tokens.txt" ] || [ "$(wc -l <"$WORK/tokens.txt")" -ne "$COUNT" ] \
  || [ -n "$(find "$WORK/tokens.txt" -mmin +90)" ]; then
  "$TARGET_DIR/release/examples/subject_tokens" "$WORK" "$COUNT" "$ISSUER" "$AUDIENCE"
fi

cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fcgi; uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$UPSTREAM_PORT;
    location / { return 200 "ok\n"; }
  }
}
EOF

bench_config "$WORK/baton.toml" "127.0.0.1:$PORT" "127.0.0.1:$UPSTREAM_PORT" "${THREADS:-1}" \
  "$ISSUER" "$AUDIENCE" idp.jwk sub email roles

PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
taskset -c "$PIN_BATON" nginx -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)
RUST_LOG=warn taskset -c "$PIN_BATON" "$TARGET_DIR/release/baton" serve --config "$WORK/baton.toml" 2>"$WORK/baton.log" &
BATON=$!
PIDS+=($BATON)
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/.well-known/jwks.json" && curl -s -o /dev/null "http://127.0.0.1:$UPSTREAM_PORT/" && break
  sleep 0.1
done

status() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$BATON/status"; }   # kB
ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$BATON/stat"; }
pass() { # pass NAME: every token once; prints a summary line
  local before after requests
  rm -f "$WORK/$1.done"
  before=$(ticks)
  TOKENS_FILE=$WORK/tokens.txt COUNT=$COUNT DONE_FILE=$WORK/$1.done taskset -c "$PIN_WRK" \
    wrk -t1 -c"$CONNS" -d600s -s bench/rss.lua "http://127.0.0.1:$PORT/" >"$WORK/$1.txt" &
  local wrk=$!
  while [ ! -e "$WORK/$1.done" ] && kill -0 "$wrk" 2>/dev/null; do sleep 0.2; done
  kill -INT "$wrk" 2>/dev/null || true
  wait "$wrk" || true
  after=$(ticks)
  requests=$(awk '/requests in/ {print $1}' "$WORK/$1.txt")
  awk -v name="$1" -v req="$requests" -v ticks="$((after - before))" -v hz="$(getconf CLK_TCK)" \
    '/Requests\/sec/ {rps = $2} /^responses:/ {resp = $0}
     END {printf "%-7s %7d requests %8.0f req/s  baton CPU %6.1f us/req  %s\n", name, req, rps, ticks * 1e6 / hz / req, resp}' \
    "$WORK/$1.txt"
}
mib() { awk -v kb="$1" 'BEGIN {printf "%.1f MiB", kb / 1024}'; }

echo "# $(date -Is) baton RSS with $COUNT cached tokens (${THREADS:-1} worker thread(s), wrk -t1 -c$CONNS)"
echo "idle:        VmRSS $(mib "$(status VmRSS)")"
pass fill
echo "after fill:  VmRSS $(mib "$(status VmRSS)")  VmHWM $(mib "$(status VmHWM)")"
if [ "$VERIFY" = 1 ]; then
  pass verify
  echo "after verify: VmRSS $(mib "$(status VmRSS)")  VmHWM $(mib "$(status VmHWM)")  (verify at cache-hit CPU = every token still cached)"
fi
rss=$(status VmRSS)
if [ "$rss" -lt $((96 * 1024)) ]; then echo "VmRSS $(mib "$rss") < 96 MiB: met"; else echo "VmRSS $(mib "$rss") >= 96 MiB: NOT met"; fi
