#!/usr/bin/env bash
# Forward-auth against baton's own proxy, in one run of the shared peer harness
# (../shared/bench/peers.sh), wrk through each target:
#   nginx      nginx pass-through alone (the baseline of the front proxy's own cost);
#   nginx-fa   nginx with `auth_request` to baton's forward-auth listener (cache hit: the
#              token is exchanged once, then every check is served from the minted-token
#              cache), nginx and baton on the same pinned core; the harness counts the CPU of
#              both (baton runs as a child of the nginx master);
#   baton      baton as the proxy (cache hit), as bench/proxy.sh runs it.
#
#   bench/forward_auth.sh
#
# Prints the harness's table (req/s, p50/p99, CPU µs/req of each target, nginx and baton
# together for nginx-fa), then baton's own CPU per request in each role, read from
# /proc/<pid>/stat and the request counters of its /metrics at the end of the run (startup
# included; it is a few ms against seconds of load), and their ratio (issue 12's goal: the
# forward-auth decision costs baton <= 1.1x its own proxy's cache-hit path).
# Knobs: everything peers.sh reads (DURATION, RUNS, CONNS, …), BATON_PORT=18085,
#   FA_PORT=18088 (nginx in front), FA_BATON_PORT=18089 (baton's forward-auth listener).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/baton-config.sh
REPO=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
FA_PORT=${FA_PORT:-18088}
FA_BATON_PORT=${FA_BATON_PORT:-18089}

# --- started by peers.sh as START_nginx_fa: baton's forward-auth listener in the
# background, then nginx in the foreground (exec: baton stays a child of the nginx master,
# so the harness's CPU figure covers both).
if [[ ${1:-} == _start_fa ]]; then
  conf_dir=$PEERS_ROOT/conf
  run=$PEERS_ROOT/run
  mkdir -p "$conf_dir" "$run/nginx-fa-tmp"
  BATON_FORWARD_AUTH=127.0.0.1:$FA_BATON_PORT bench_config "$conf_dir/baton-fa.toml" "" "" 1 \
    "$PEERS_ISS" "$PEERS_AUD" "$PEERS_PUBKEY_PEM" sub email role
  RUST_LOG=${RUST_LOG:-warn} "${BATON_BIN:-$TARGET_DIR/release/baton}" serve \
    --config "$conf_dir/baton-fa.toml" &
  echo $! >"$run/baton-fa.pid"
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$FA_BATON_PORT") 2>/dev/null && break
    sleep 0.05
  done
  tmp=$run/nginx-fa-tmp
  cat >"$conf_dir/nginx-fa.conf" <<NGINX
user root;
daemon off;
master_process on;
worker_processes ${PROXY_THREADS:-1};
pid $run/nginx-fa.nginxpid;
error_log $run/nginx-fa.err warn;
events { worker_connections 4096; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $tmp/body; proxy_temp_path $tmp/proxy;
  fastcgi_temp_path $tmp/fcgi; uwsgi_temp_path $tmp/uwsgi; scgi_temp_path $tmp/scgi;
  keepalive_requests 10000000;
  upstream be { server $PEERS_BACKEND; keepalive 64; keepalive_requests 10000000; }
  upstream baton { server 127.0.0.1:$FA_BATON_PORT; keepalive 64; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:$FA_PORT backlog=4096;
    location / {
      auth_request /_baton;
      auth_request_set \$baton_authorization \$upstream_http_authorization;
      proxy_set_header Authorization \$baton_authorization;
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
    location = /_baton {
      internal;
      proxy_pass http://baton;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header X-Original-Method \$request_method;
    }
  }
}
NGINX
  exec nginx -e "$run/nginx-fa.err" -c "$conf_dir/nginx-fa.conf"
fi

PEERS_SH=${PEERS_SH:-$REPO/../shared/bench/peers.sh}
[[ -f $PEERS_SH ]] || { echo "no peer harness at $PEERS_SH" >&2; exit 1; }
BATON_PORT=${BATON_PORT:-18085}
export BATON_PORT BATON_THREADS=1 FA_PORT FA_BATON_PORT
export PEERS_ROOT=${PEERS_ROOT:-${TMPDIR:-/tmp}/baton-peers}

cargo build --release --quiet --bin baton

export TARGETS=${TARGETS-"nginx"}
export EXTRA_TARGETS="baton=$BATON_PORT:jwt nginx-fa=$FA_PORT:jwt"
export START_baton="exec bash '$REPO/bench/proxy.sh' _start_baton"
export START_nginx_fa="exec bash '$REPO/bench/forward_auth.sh' _start_fa"
export PIN_WRK=${PIN_WRK-0} PIN_SERVERS=${PIN_SERVERS-1}
export CARGO_TARGET_DIR=$TARGET_DIR
# The servers stay up after the run, for baton's own counters; stopped below.
export KEEP_RUNNING=1

status=0
bash "$PEERS_SH" run || status=$?

# baton's CPU (utime + stime, in clock ticks) and the requests it answered in its role.
baton_share() {  # pid metric
  local pid=$1 metric=$2 ticks admin
  ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  admin=$(ss -Hltnp 2>/dev/null | awk -v pid="pid=$pid," '$0 ~ pid { print $4 }' \
    | grep -v ":$BATON_PORT\$" | grep -v ":$FA_BATON_PORT\$" | head -1)
  local requests
  requests=$(curl -s "http://$admin/metrics" | awk -v m="$metric" '$1 ~ "^"m"_total" { s += $2 } END { print s + 0 }')
  echo "$ticks $requests"
}
proxy_pid=$(cat "$PEERS_ROOT/run/pids/baton.pid")
fa_pid=$(cat "$PEERS_ROOT/run/baton-fa.pid")
read -r proxy_ticks proxy_requests < <(baton_share "$proxy_pid" baton_proxied_requests)
read -r fa_ticks fa_requests < <(baton_share "$fa_pid" baton_forward_auth_requests)
bash "$PEERS_SH" stop >/dev/null 2>&1 || true

[[ ${SKIP_BENCH:-0} == 1 ]] && exit $status
results=$PEERS_ROOT/results/latest
echo
echo "# baton's own CPU per request in each role ($results)"
python3 - "$(getconf CLK_TCK)" "$proxy_ticks" "$proxy_requests" "$fa_ticks" "$fa_requests" \
  "$results/summary.tsv" <<'PY'
import csv, sys
hz, pt, pr, ft, fr = (float(x) for x in sys.argv[1:6])
rows = {r["target"]: r for r in csv.DictReader(open(sys.argv[6]), delimiter="\t")}
def cpu(name):
    try: return float(rows[name]["target_cpu_us_per_req"])
    except (KeyError, ValueError): return None
proxy = pt / hz * 1e6 / pr if pr else float("nan")
fa = ft / hz * 1e6 / fr if fr else float("nan")
print(f"baton as the proxy:        {proxy:6.1f} us/req ({int(pr)} requests)")
print(f"baton as forward-auth:     {fa:6.1f} us/req ({int(fr)} checks)")
ratio = fa / proxy
print(f"forward-auth / proxy:      {ratio:.2f}x  (goal <= 1.1: {'met' if ratio <= 1.1 else 'NOT met'})")
n, nfa, b = cpu("nginx"), cpu("nginx-fa"), cpu("baton")
if None not in (n, nfa, b):
    print(f"nginx + auth_request + baton: {nfa:.1f} us/req = {nfa / n:.2f}x nginx alone ({n:.1f}), "
          f"{nfa / b:.2f}x baton as the proxy ({b:.1f})")
PY
exit $status
