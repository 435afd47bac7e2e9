#!/usr/bin/env bash
# A fleet on one PostgreSQL (issue 13): BATONS=50 release batons share a throwaway
# PostgreSQL; WRITES=100 admin writes go through one of them while wrk loops through LOADED=5
# others; for each write, the time until all of them serve it (p50, p99, max); then
# FILE_CHANGES=20 ConfigMap-style swaps of every baton's config file and the time until each
# serves its new file; wrk's failed requests over the run; one baton's RSS.
#
#   bench/fleet.sh
#
# Goals: p99 convergence under 1 s for the store, under 200 ms for the file; 0 failed
# requests. Needs PostgreSQL's server (Debian's postgresql), nginx and wrk; run as root it
# runs PostgreSQL as the postgres user. Everything lives under FLEET_ROOT (/tmp/baton-fleet).
# Convergence is polled every POLL_MS=5 ms per baton, so figures carry that granularity.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet --bin baton
BATON_BIN=${BATON_BIN:-$TARGET_DIR/release/baton} exec python3 bench/fleet.py
