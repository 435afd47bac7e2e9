#!/usr/bin/env bash
# The proxy's cache-hit path against its peers, in one run of the shared peer harness
# (../shared/bench/peers.sh): baton (a valid RS256 token, exchanged once, then served from
# the minted-token cache), a bare hyper pass-through built as baton's listener is
# (examples/passthrough.rs: current-thread runtime, hyper-util pooled client, mimalloc — the
# baseline), nginx, HAProxy and HAProxy with RS256 jwt_verify.
#
#   bench/proxy.sh                      # builds baton + the pass-through (release), runs peers.sh
#
# baton must pass peers.sh's JWT matrix (good → 200, every bad kind → 401); the run fails
# otherwise. Prints peers.sh's summary table, then baton's CPU µs/req over the others'.
# Knobs: everything peers.sh reads (DURATION, RUNS, CONNS, PEERS_ROOT, …), plus
#   TARGETS      peers.sh built-ins (default "nginx haproxy haproxy-jwt"; add caddy if wanted)
#   PEERS_SH     the harness (default ../shared/bench/peers.sh from the repo root)
#   BATON_PORT=18085  HYPER_PORT=18086  BATON_THREADS=1
#   MORE_TARGETS  more peers.sh 'name=port[:jwt]' targets, e.g. a second baton build to compare:
#     MORE_TARGETS="baton-new=18087:jwt" \
#     START_baton_new="exec env BATON_PORT=18087 BATON_BIN=/path/to/baton bash $PWD/bench/proxy.sh _start_baton"
#   POLICY=1     adds the target baton-policy (port POLICY_PORT=18087): the same cache-hit
#                path with one route condition and two claim headers (BATON_POLICY in
#                bench/baton-config.sh), reported against baton (issue 10's goal: <= 1.1x)
#   TRACES=1     adds baton-traced (port TRACES_PORT=18090): the same cache-hit path with
#                traces exported over OTLP/HTTP to the harness's nginx backend (which answers
#                200 to every export), reported against baton (issue 14's goal: <= 1.15x)
#   TRACES_RATIO=R  with TRACES=1, adds baton-sampled (port 18094): traced as baton-traced,
#                but starting new traces at `sample_ratio = R`
#   UNTRACED_BIN=PATH  adds baton-untraced (port 18091): a baton binary built before traces
#                existed, to show that traces off cost nothing (issue 14's goal: baton <= 1.02x it)
# Needs wrk, nginx, haproxy (peers.sh installs what is missing), python3 with PyJWT.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/baton-config.sh
REPO=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

# --- started by peers.sh as START_baton (PEERS_* exported): config from the harness's keys.
if [[ ${1:-} == _start_baton ]]; then
  conf=$PEERS_ROOT/conf/baton-${BATON_PORT:-18085}.toml
  mkdir -p "$(dirname "$conf")"
  bench_config "$conf" "127.0.0.1:${BATON_PORT:-18085}" "$PEERS_BACKEND" "${BATON_THREADS:-1}" \
    "$PEERS_ISS" "$PEERS_AUD" "$PEERS_PUBKEY_PEM" sub email role
  RUST_LOG=${RUST_LOG:-warn} exec "${BATON_BIN:-$TARGET_DIR/release/baton}" serve --config "$conf"
fi

PEERS_SH=${PEERS_SH:-$REPO/../shared/bench/peers.sh}
[[ -x $PEERS_SH || -f $PEERS_SH ]] || { echo "no peer harness at $PEERS_SH" >&2; exit 1; }
BATON_PORT=${BATON_PORT:-18085}
HYPER_PORT=${HYPER_PORT:-18086}
export BATON_PORT BATON_THREADS=${BATON_THREADS:-1}

cargo build --release --quiet --bin baton --example passthrough

if [[ ${POLICY:-0} == 1 ]]; then
  POLICY_PORT=${POLICY_PORT:-18087}
  MORE_TARGETS="baton-policy=$POLICY_PORT:jwt${MORE_TARGETS:+ $MORE_TARGETS}"
  export START_baton_policy="exec env BATON_PORT=$POLICY_PORT BATON_POLICY=1 bash '$REPO/bench/proxy.sh' _start_baton"
fi

if [[ ${TRACES:-0} == 1 ]]; then
  TRACES_PORT=${TRACES_PORT:-18090}
  MORE_TARGETS="baton-traced=$TRACES_PORT:jwt${MORE_TARGETS:+ $MORE_TARGETS}"
  export START_baton_traced="exec env BATON_PORT=$TRACES_PORT BATON_TRACES=\$PEERS_BACKEND_URL bash '$REPO/bench/proxy.sh' _start_baton"
  if [[ -n ${TRACES_RATIO:-} ]]; then
    # A second traced baton, sampling new traces at TRACES_RATIO (port 18094).
    MORE_TARGETS="$MORE_TARGETS baton-sampled=18094:jwt"
    export START_baton_sampled="exec env BATON_PORT=18094 BATON_TRACES=\$PEERS_BACKEND_URL BATON_TRACES_RATIO=$TRACES_RATIO bash '$REPO/bench/proxy.sh' _start_baton"
  fi
fi
if [[ -n ${UNTRACED_BIN:-} ]]; then
  MORE_TARGETS="baton-untraced=18091:jwt${MORE_TARGETS:+ $MORE_TARGETS}"
  export START_baton_untraced="exec env BATON_PORT=18091 BATON_BIN='$UNTRACED_BIN' bash '$REPO/bench/proxy.sh' _start_baton"
fi

export TARGETS=${TARGETS-"nginx haproxy haproxy-jwt"}
export EXTRA_TARGETS="baton=$BATON_PORT:jwt hyper=$HYPER_PORT${MORE_TARGETS:+ $MORE_TARGETS}"
export START_baton="exec bash '$REPO/bench/proxy.sh' _start_baton"
export START_hyper="exec '$TARGET_DIR/release/examples/passthrough' 127.0.0.1:$HYPER_PORT \"\$PEERS_BACKEND\""
export PIN_WRK=${PIN_WRK-0} PIN_SERVERS=${PIN_SERVERS-1}
export CARGO_TARGET_DIR=$TARGET_DIR

status=0
bash "$PEERS_SH" run || status=$?

[[ ${SKIP_BENCH:-0} == 1 ]] && exit $status
results=${PEERS_ROOT:-${TMPDIR:-/tmp}/baton-peers}/results/latest
[[ -s $results/summary.tsv ]] || { echo "no summary in $results (peers.sh exit $status)" >&2; exit 1; }
echo
echo "# baton's target CPU per request relative to each peer ($results/summary.tsv)"
python3 - "$results/summary.tsv" <<'PY'
import csv, sys
rows = {r["target"]: r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t")}
def cpu(name):
    try: return float(rows[name]["target_cpu_us_per_req"])
    except (KeyError, ValueError): return None
# issue 9's targets: baton <= 1.15x the bare hyper pass-through, <= 1.25x nginx's
# pass-through, < 0.5x HAProxy's jwt_verify.
goals = {"hyper": ("<=", 1.15), "nginx": ("<=", 1.25), "haproxy-jwt": ("<", 0.5), "haproxy": (None, None)}
batons = [n for n in rows if n == "baton" or n.startswith("baton-")]
if cpu("baton") is None:
    print("baton: no CPU figure"); sys.exit(1)
for name in batons:
    b = cpu(name)
    if b is None:
        print(f"{name}: no CPU figure"); continue
    print(f"{name}: {b:.1f} us/req")
    for peer, (op, goal) in goals.items():
        p = cpu(peer)
        if p is None:
            print(f"  / {peer:<12} -"); continue
        ratio = b / p
        verdict = ""
        if goal is not None:
            ok = ratio <= goal if op == "<=" else ratio < goal
            verdict = f"  (goal {op} {goal}: {'met' if ok else 'NOT met'})"
        print(f"  / {peer:<12} {p:6.1f} us/req = {ratio:.2f}x{verdict}")
# issue 10's target: one route condition and two claim headers cost <= 1.1x the same
# cache-hit path without them, in the same run.
# issue 14's targets: traces exported cost <= 1.15x, traces off <= 1.02x a build without them.
t, b = cpu("baton-traced"), cpu("baton")
if t is not None:
    ratio = t / b
    print(f"baton-traced / baton: {t:.1f} / {b:.1f} us/req = {ratio:.2f}x  (goal <= 1.15: {'met' if ratio <= 1.15 else 'NOT met'})")
s = cpu("baton-sampled")
if s is not None:
    print(f"baton-sampled / baton: {s:.1f} / {b:.1f} us/req = {s / b:.2f}x  (sample_ratio below 1: no goal)")
u = cpu("baton-untraced")
if u is not None:
    ratio = b / u
    print(f"baton / baton-untraced: {b:.1f} / {u:.1f} us/req = {ratio:.2f}x  (goal <= 1.02: {'met' if ratio <= 1.02 else 'NOT met'})")
p, b = cpu("baton-policy"), cpu("baton")
if p is not None:
    ratio = p / b
    print(f"baton-policy / baton: {p:.1f} / {b:.1f} us/req = {ratio:.2f}x  (goal <= 1.1: {'met' if ratio <= 1.1 else 'NOT met'})")
PY
exit $status
