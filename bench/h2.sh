#!/usr/bin/env bash
# The proxy's cache-hit path over h2c (HTTP/2 cleartext, prior knowledge), next to nginx
# serving h2c: h2load (Debian's nghttp2-client) opens few connections and multiplexes many
# streams on each, every request carrying `authorization: Bearer <good RS256 token>`.
#
#   bench/h2.sh                         # builds baton (release), RUNS=2 DURATION=8
#   DURATION=5 RUNS=1 bench/h2.sh       # a quick check
#
# Targets, each a single thread/worker pinned to PIN_SERVERS (with the backend), h2load on
# PIN_LOAD, all forwarding HTTP/1.1 to the shared harness's nginx backend:
#   baton      bench/baton-config.sh's config (threads = 1), the same as bench/proxy.sh's
#   nginx-h2c  nginx as an h2c pass-through (1 worker, keepalive upstream)
#   hyper      the bare hyper pass-through (examples/passthrough.rs: hyper-util's auto
#              server speaks h2c too), when target/release/examples/passthrough exists
# The keys, the tokens, the backend and the starting of the targets are
# ../shared/bench/peers.sh's (SKIP_BENCH=1 KEEP_RUNNING=1: it starts them and checks baton's
# JWT matrix over HTTP/1.1); this script then checks h2c itself (the good token 200 over
# HTTP/2 on every target, a bad one 401 on baton), drives h2load, and stops everything with
# `peers.sh stop` (also on failure). A run fails unless every request h2load sent was
# answered 2xx.
#
# Knobs (environment):
#   DURATION=8  WARMUP=2  RUNS=2     seconds measured / warmed up per run; runs round-robin,
#                                    medians shown
#   CONNS=4  STREAMS=32  H2_THREADS=1   h2load -c / -m / -t
#   PIN_LOAD=0  PIN_SERVERS=1        taskset CPU lists for h2load and for every server
#   NICE=""  RT=0                    passed to peers.sh (its priority for the servers) and
#                                    used for h2load the same way
#   PEERS_ROOT                       the harness's directory (default ${TMPDIR:-/tmp}/baton-h2:
#                                    its own, so a concurrent bench/proxy.sh run's peers.sh
#                                    cannot stop these servers, nor this run stop its)
#   PEERS_SH                         the harness (default ../shared/bench/peers.sh)
#   BATON_PORT=18090  NGINX_H2C_PORT=18091  HYPER_PORT=18092  (the backend is peers.sh's
#                                    18080: a concurrent peers.sh run makes this one fail
#                                    at start, not measure garbage)
#   BATON_BIN                        the baton binary (default: the release build)
#   HYPER=1                          0 leaves the hyper pass-through out
#   BUILD=1                          0 skips `cargo build --release --bin baton`
#   PATH_REQ=/
# Results: $PEERS_ROOT/results/h2-<timestamp>/ (summary.txt/.tsv, raw h2load output,
# cpu.txt, jwt_matrix.txt, versions.txt). Needs nginx, python3 with PyJWT (peers.sh
# installs what it needs); installs nghttp2-client if h2load is missing (root).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

# --- started by peers.sh as START_nginx_h2c (PEERS_* exported): written here rather than
# before peers.sh runs, so it is always for the backend peers.sh actually started.
if [[ ${1:-} == _start_nginx_h2c ]]; then
  port=${NGINX_H2C_PORT:-18091}
  run=$PEERS_ROOT/run
  mkdir -p "$PEERS_ROOT/conf" "$run/nginx-h2c-tmp"
  # `listen … http2` is how nginx before 1.25.1 turns HTTP/2 on; 1.25.1 deprecated it for
  # `http2 on;`. Cleartext `http2` is prior knowledge only (no HTTP/1.1 on this port).
  version=$(nginx -v 2>&1 | sed 's|.*nginx/||; s| .*||')
  if [[ $(printf '%s\n' 1.25.1 "$version" | sort -V | head -1) == 1.25.1 ]]; then
    listen="listen 127.0.0.1:$port backlog=4096; http2 on;"
  else
    listen="listen 127.0.0.1:$port http2 backlog=4096;"
  fi
  conf=$PEERS_ROOT/conf/nginx-h2c.conf
  # As peers.sh's nginx pass-through, but h2c in front. keepalive_requests also bounds the
  # requests of an HTTP/2 connection (default 1000: nginx would GOAWAY h2load's connections).
  cat >"$conf" <<EOF
user root;
daemon off;
master_process on;
worker_processes 1;
pid $run/nginx-h2c.nginxpid;
error_log $run/logs/nginx-h2c.err warn;
events { worker_connections 4096; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $run/nginx-h2c-tmp/body; proxy_temp_path $run/nginx-h2c-tmp/proxy;
  fastcgi_temp_path $run/nginx-h2c-tmp/fcgi; uwsgi_temp_path $run/nginx-h2c-tmp/uwsgi; scgi_temp_path $run/nginx-h2c-tmp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
  http2_max_concurrent_streams 256;
  upstream be {
    server $PEERS_BACKEND;
    keepalive 64;
    keepalive_requests 10000000;
  }
  server {
    $listen
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  exec nginx -e "$run/logs/nginx-h2c.err" -c "$conf"
fi

DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
RUNS=${RUNS:-2}
CONNS=${CONNS:-4}
STREAMS=${STREAMS:-32}
H2_THREADS=${H2_THREADS:-1}
PIN_LOAD=${PIN_LOAD-0}
PIN_SERVERS=${PIN_SERVERS-1}
NICE=${NICE:-}
RT=${RT:-0}
RT_PRIO=${RT_PRIO:-1}
BATON_PORT=${BATON_PORT:-18090}
NGINX_H2C_PORT=${NGINX_H2C_PORT:-18091}
HYPER_PORT=${HYPER_PORT:-18092}
HYPER=${HYPER:-1}
BUILD=${BUILD:-1}
PATH_REQ=${PATH_REQ:-/}
ROOT=${PEERS_ROOT:-${TMPDIR:-/tmp}/baton-h2}
PEERS_SH=${PEERS_SH:-$REPO/../shared/bench/peers.sh}
HOST=127.0.0.1
PASSTHROUGH=$TARGET_DIR/release/examples/passthrough

log() { printf '[h2 %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -f $PEERS_SH ]] || die "no peer harness at $PEERS_SH"
if ! command -v h2load >/dev/null; then
  log "installing nghttp2-client (h2load)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null
fi
command -v h2load >/dev/null || die "h2load missing (apt-get install nghttp2-client)"
if [[ $BUILD == 1 ]]; then
  CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet --bin baton
fi
if [[ $HYPER == 1 && ! -x $PASSTHROUGH ]]; then
  # Not built here: the example is someone else's baseline in the shared target dir.
  log "no $PASSTHROUGH (cargo build --release --example passthrough): hyper left out"
  HYPER=0
fi

mkdir -p "$ROOT"
# One h2.sh per PEERS_ROOT: a second one's peers.sh would stop this one's servers (its
# start stops whatever the pidfiles name). fd 8 is closed for peers.sh (8>&- below), so
# the servers it starts do not hold this lock after we are gone.
exec 8>"$ROOT/.h2.lock"
flock -n 8 || die "another bench/h2.sh is running with PEERS_ROOT=$ROOT"

export PEERS_ROOT=$ROOT DURATION WARMUP RUNS NICE RT RT_PRIO PATH_REQ
export BATON_PORT NGINX_H2C_PORT BATON_THREADS=1 PIN_SERVERS
[[ -n ${BATON_BIN:-} ]] && export BATON_BIN
peers() { CARGO_TARGET_DIR=$TARGET_DIR bash "$PEERS_SH" "$@" 8>&-; }
cleanup() {
  local status=$?
  log "stopping the servers (peers.sh stop)"
  peers stop || log "WARNING: peers.sh stop failed; pidfiles in $ROOT/run/pids"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NAMES=(baton nginx-h2c); PORTS=("$BATON_PORT" "$NGINX_H2C_PORT")
extra="baton=$BATON_PORT:jwt nginx-h2c=$NGINX_H2C_PORT"
export START_baton="exec bash '$REPO/bench/proxy.sh' _start_baton"
export START_nginx_h2c="exec bash '$REPO/bench/h2.sh' _start_nginx_h2c"
if [[ $HYPER == 1 ]]; then
  NAMES+=(hyper); PORTS+=("$HYPER_PORT"); extra+=" hyper=$HYPER_PORT"
  export START_hyper="exec '$PASSTHROUGH' $HOST:$HYPER_PORT \"\$PEERS_BACKEND\""
fi

# peers.sh starts the backend and the targets (pinned), writes keys and tokens, and checks
# baton's JWT matrix over HTTP/1.1 (nginx-h2c speaks no HTTP/1.1: not in the matrix).
log "starting backend + ${NAMES[*]} with peers.sh (keys, tokens, JWT matrix)"
TARGETS="" EXTRA_TARGETS=$extra SKIP_BENCH=1 KEEP_RUNNING=1 peers run \
  || die "peers.sh failed (baton's JWT matrix, or a server did not start); see above"

KEYS=$ROOT/keys
PIDS=$ROOT/run/pids
TOKEN=$(cat "$KEYS/token.jwt")
OUTDIR=$ROOT/results/h2-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUTDIR"
cp "$ROOT/results/latest/jwt_matrix.txt" "$OUTDIR/" 2>/dev/null || true

# --- h2c checks: every target answers the good token 200 over HTTP/2; baton refuses a bad
# one (and none) with 401 over HTTP/2, as over HTTP/1.1.
h2_code() {  # h2_code PORT [TOKEN_FILE|-]: "<status> <http version>"
  local args=(-s -o /dev/null -m 5 --http2-prior-knowledge -w '%{http_code} %{http_version}')
  [[ ${2:--} != - ]] && args+=(-H "authorization: Bearer $(cat "$2")")
  curl "${args[@]}" "http://$HOST:$1$PATH_REQ" || echo "ERR -"
}
check() {  # check WHAT GOT WANT
  if [[ $2 == "$3" ]]; then echo "$1: $2 ok"; else echo "$1: got '$2', want '$3' BAD"; fi
}
if [[ $HYPER == 1 ]] && [[ $(h2_code "$HYPER_PORT" "$KEYS/token.jwt") != "200 2" ]]; then
  # A pass-through built before it forwarded h2c requests as HTTP/1.1 answers them 502
  # (hyper-util's client will not send an HTTP/2 request on an HTTP/1 connection): the
  # baseline is left out rather than failing the run.
  log "WARNING: the hyper pass-through does not answer h2c 200 (rebuild it: cargo build --release --example passthrough); hyper left out"
  NAMES=("${NAMES[@]:0:2}"); PORTS=("${PORTS[@]:0:2}")
fi
{
  for ((i = 0; i < ${#NAMES[@]}; i++)); do
    check "${NAMES[$i]} h2c good token" "$(h2_code "${PORTS[$i]}" "$KEYS/token.jwt")" "200 2"
  done
  check "baton h2c bad signature" "$(h2_code "$BATON_PORT" "$KEYS/tokens/bad_signature.jwt")" "401 2"
  check "baton h2c no token" "$(h2_code "$BATON_PORT" -)" "401 2"
} | tee "$OUTDIR/h2c_checks.txt"
! grep -q ' BAD$' "$OUTDIR/h2c_checks.txt" || die "h2c checks failed ($OUTDIR/h2c_checks.txt)"

{
  echo "h2load:  $(h2load --version | head -1) (deb $(dpkg-query -W -f='${Version}' nghttp2-client 2>/dev/null || echo '?'))"
  echo "nginx:   $(nginx -v 2>&1 | sed 's/.*: //') (deb $(dpkg-query -W -f='${Version}' nginx 2>/dev/null || echo '?'))"
  echo "baton:   ${BATON_BIN:-$TARGET_DIR/release/baton} ($(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ', dirty'))"
  echo "kernel:  $(uname -r), cpus: $(nproc)"
} >"$OUTDIR/versions.txt"

# --- CPU accounting, as peers.sh does it: utime+stime of a target's pid and its direct
# children (nginx's workers), h2load's from this shell's `times`, the rest of the machine
# from /proc/stat (to tell a disturbed run).
tree_ticks() {
  local p sum=0 t
  for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
    t=$(awk '{sub(/^.*\) /,""); print $12+$13}' "/proc/$p/stat" 2>/dev/null || echo 0)
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
}
sys_busy_ticks() { awk '/^cpu /{print $2+$3+$4; exit}' /proc/stat; }
child_ticks() {  # sets CHILD_TICKS; in the main shell, not $(...), so it sees h2load
  local f=$OUTDIR/times.$$
  times >"$f"
  CHILD_TICKS=$(awk -v clk="$(getconf CLK_TCK)" 'NR==2{
      split($1,a,/[ms]/); split($2,b,/[ms]/);
      printf "%d\n", ((a[1]*60+a[2]) + (b[1]*60+b[2])) * clk + 0.5 }' "$f")
  rm -f "$f"
}
prio=()
[[ $RT == 1 ]] && prio+=(chrt -f "$RT_PRIO")
[[ -n $NICE ]] && prio+=(nice -n "$NICE")
[[ -n $PIN_LOAD ]] && prio+=(taskset -c "$PIN_LOAD")
h2load_run() {  # h2load_run SECONDS PORT
  timeout -k 5 $(($1 + 20)) "${prio[@]}" h2load -c "$CONNS" -m "$STREAMS" -t "$H2_THREADS" -D "$1" \
    -H "authorization: Bearer $TOKEN" "http://$HOST:$2$PATH_REQ"
}

bp=$(cat "$PIDS/backend.pid")
busy0=$(sys_busy_ticks); sleep 1; busy1=$(sys_busy_ticks)
preflight=$(( (busy1 - busy0) * 100 / ($(getconf CLK_TCK) * $(nproc)) ))
((preflight > 10)) && log "WARNING: machine ${preflight}% busy before the benchmark: figures will be noisy"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# round-robin: every target once per round, so a slow drift of the machine hits all alike
for ((r = 1; r <= RUNS; r++)); do
  for ((i = 0; i < ${#NAMES[@]}; i++)); do
    name=${NAMES[$i]}; port=${PORTS[$i]}; tp=$(cat "$PIDS/$name.pid")
    log "round $r/$RUNS: $name :$port (warm-up ${WARMUP}s, measure ${DURATION}s)"
    h2load_run "$WARMUP" "$port" >"$OUTDIR/$name.warmup$r.txt" 2>&1 || true
    t0=$(tree_ticks "$tp"); b0=$(tree_ticks "$bp"); s0=$(sys_busy_ticks); child_ticks; w0=$CHILD_TICKS
    h2load_run "$DURATION" "$port" >"$OUTDIR/$name.run$r.txt" 2>&1 || log "h2load failed for $name (see $OUTDIR/$name.run$r.txt)"
    child_ticks; w1=$CHILD_TICKS; s1=$(sys_busy_ticks); t1=$(tree_ticks "$tp"); b1=$(tree_ticks "$bp")
    # name round target_ticks backend_ticks system_busy_ticks h2load_ticks
    echo "$name $r $((t1 - t0)) $((b1 - b0)) $((s1 - s0)) $((w1 - w0))" >>"$OUTDIR/cpu.txt"
  done
done

{
  echo "# $(date -Is)  h2c prior knowledge: h2load -c$CONNS -m$STREAMS -t$H2_THREADS -D${DURATION}s (warm-up ${WARMUP}s), $RUNS run(s) round-robin, median shown"
  echo "# cpus=$(nproc) pin_load=${PIN_LOAD:-none} pin_servers=${PIN_SERVERS:-none} (backend too) nice=${NICE:-0} rt=$RT preflight_busy=${preflight}% loadavg start: $LOAD_START end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUTDIR/header.txt"
status=0
python3 - "$OUTDIR" "$(getconf CLK_TCK)" "$(nproc)" "$DURATION" "${NAMES[@]}" <<'PY' || status=$?
import os, re, statistics, sys
out, clk, ncpu, dur, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}
def parse(path):
    t = open(path).read()
    d = {}
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", t); d["rps"] = float(m.group(1)) if m else None
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", t)
    d["total"], d["started"], d["done"], d["ok"], d["failed"], d["errored"], d["timeout"] = map(int, m.groups()) if m else (0,) * 7
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", t)
    d["2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", t, re.M)  # min max mean
    d["mean"] = float(m.group(1)) * UNIT[m.group(2)] if m else float("nan")
    return d
cpu = {}
for line in open(os.path.join(out, "cpu.txt")):
    n, r, tt, bt, st, wt = line.split()
    tt, bt, st, wt = map(int, (tt, bt, st, wt))
    cpu[(n, int(r))] = (tt, bt, (st - tt - bt - wt) * 100.0 / (clk * ncpu * dur))
rows, bad = {}, []
for n in names:
    runs, r = [], 1
    while os.path.exists(os.path.join(out, f"{n}.run{r}.txt")):
        d = parse(os.path.join(out, f"{n}.run{r}.txt")); d["r"] = r; runs.append(d); r += 1
    for d in runs:
        # every request h2load finished must be a 2xx, none failed or errored
        if not d["rps"] or d["done"] == 0 or d["2xx"] != d["done"] or d["failed"] or d["errored"] or d["timeout"]:
            bad.append(f"{n} run {d['r']}: {d['done']} done, {d['2xx']} 2xx, {d['failed']} failed, {d['errored']} errored, {d['timeout']} timeout")
    runs = [d for d in runs if d["rps"] and d["done"]]
    if not runs:
        rows[n] = None; continue
    med = lambda k: statistics.median(d[k] for d in runs)
    rpss = [d["rps"] for d in runs]
    us = lambda idx: statistics.median(cpu[(n, d["r"])][idx] * 1e6 / clk / d["done"] for d in runs)
    rows[n] = dict(rps=med("rps"), runs="/".join(f"{x/1000:.1f}k" for x in rpss),
                   spread=(max(rpss) - min(rpss)) / statistics.median(rpss) * 100, mean=med("mean"),
                   tcpu=us(0), bcpu=us(1), ok=f"{sum(d['2xx'] for d in runs)}/{sum(d['done'] for d in runs)}",
                   other="/".join(f"{max(cpu[(n, d['r'])][2], 0):.0f}" for d in runs))
hdr = f"{'target':<10} {'req/s(med)':>10} {'per-run':>15} {'spread':>7} {'mean ms':>8} {'tgtCPU us/req':>13} {'beCPU us/req':>12} {'2xx/done':>17} {'other%':>7}"
lines = [open(os.path.join(out, "header.txt")).read().rstrip("\n"), hdr, "-" * len(hdr)]
for n in names:
    d = rows[n]
    if d is None:
        lines.append(f"{n:<10} {'no data':>10}"); continue
    lines.append(f"{n:<10} {d['rps']:>10.0f} {d['runs']:>15} {d['spread']:>6.1f}% {d['mean']:>8.3f} {d['tcpu']:>13.1f} {d['bcpu']:>12.1f} {d['ok']:>17} {d['other']:>7}")
lines.append("other% = CPU used by processes other than h2load/target/backend during each run, % of all cores (>5: run was disturbed)")
b = rows.get("baton")
for peer in ("nginx-h2c", "hyper"):
    p = rows.get(peer)
    if b and p:
        lines.append(f"baton / {peer:<9}: CPU/req {b['tcpu'] / p['tcpu']:.2f}x, req/s {b['rps'] / p['rps']:.2f}x")
lines += [f"NOT ALL 2xx: {x}" for x in bad]
open(os.path.join(out, "summary.txt"), "w").write("\n".join(lines) + "\n")
with open(os.path.join(out, "summary.tsv"), "w") as fh:
    fh.write("target\trps_median\trps_runs\tspread_pct\tmean_ms\ttarget_cpu_us_per_req\tbackend_cpu_us_per_req\tok_2xx_of_done\tother_cpu_pct_runs\n")
    for n in names:
        d = rows[n]
        if d: fh.write("\t".join(str(x) for x in (n, round(d["rps"]), d["runs"], round(d["spread"], 2), d["mean"],
                                               f"{d['tcpu']:.2f}", f"{d['bcpu']:.2f}", d["ok"], d["other"])) + "\n")
print("\n".join(lines))
sys.exit(1 if bad or any(rows[n] is None for n in names) else 0)
PY
log "results in $OUTDIR"
((status == 0)) || die "not every request was answered 2xx (or a target gave no data): see $OUTDIR"
