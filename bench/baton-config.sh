# Sourced by the bench scripts: the one baton config they all run.
#
#   bench_config FILE LISTEN UPSTREAM THREADS ISSUER AUDIENCE KEY_FILE CLAIM...
#
# Writes FILE: baton on LISTEN (UPSTREAM empty: no upstream, /tokens only) with THREADS
# worker threads; its admin listener on any free port (several batons may run side by side);
# an inline HS256 signing key (a bench config only); one RS256 IdP (ISSUER, AUDIENCE, its
# public key in KEY_FILE); the provider `app`. Both mappings copy each CLAIM.
# With BATON_POLICY=1: one route condition over every path (the method and `act.sub`) and
# two claim headers (`act.sub`, `act.role`): the issue 10 policy on the cache-hit path.
# With BATON_TRACES=URL: traces to the OTLP/HTTP collector at URL, batched every second
# (BATON_TRACES_RATIO sets `sample_ratio`, default 1: every request).
# With BATON_FORWARD_AUTH=ADDR: a forward-auth listener on ADDR reading nginx's
# `X-Original-*` headers; LISTEN and UPSTREAM empty then leave the proxy listener off.
bench_config() {
  local file=$1 listen=$2 upstream=$3 threads=$4 issuer=$5 audience=$6 key_file=$7
  shift 7
  local mapping="" claim
  for claim in "$@"; do
    mapping+="${mapping:+, }\"$claim.\$\" = \"\$.$claim\""
  done
  local policy=""
  if [[ ${BATON_POLICY:-0} == 1 ]]; then
    policy=$(cat <<'POLICY'
headers = { "x-user-id.$" = "$.act.sub", "x-role.$" = "$.act.role" }

[[proxy.routes]]
prefix = "/"
service = "app"
condition = 'request.method == "GET" && claims.act.sub == "user-1234"'
POLICY
)
  fi
  local forward_auth=""
  if [[ -n ${BATON_FORWARD_AUTH:-} ]]; then
    forward_auth=$(printf '[forward_auth]\nlisten = "%s"\noriginal_request = "x-original"\n' "$BATON_FORWARD_AUTH")
  fi
  local telemetry=""
  if [[ -n ${BATON_TRACES:-} ]]; then
    telemetry=$(printf '[telemetry]\notlp_endpoint = "%s"\nexport_interval = "1s"\nsample_ratio = %s\n' \
      "$BATON_TRACES" "${BATON_TRACES_RATIO:-1.0}")
  fi
  cat >"$file" <<TOML
$forward_auth
$telemetry

[proxy]
${listen:+listen = \"$listen\"}
${upstream:+upstream = \"$upstream\"}
service = "app"
threads = $threads
$policy

[admin]
listen = "127.0.0.1:0"

[[keys]]
id = "sbk_bench"
algorithm = "HS256"
secret = "sbsec_bench_secret_0123456789abcdef"   # inline: a bench config only

[[idps]]
issuer = "$issuer"
audience = "$audience"
algorithms = ["RS256"]
key_file = "$key_file"
mapping = { $mapping }

[[token_providers]]
service = "app"
key = "sbk_bench"
ttl = "1h"
mapping = { $mapping }
TOML
}
