# Sourced by the bench scripts: the one baton config they all run.
#
#   bench_config FILE LISTEN UPSTREAM THREADS ISSUER AUDIENCE KEY_FILE CLAIM...
#
# Writes FILE: baton on LISTEN (UPSTREAM empty: no upstream, /tokens only) with THREADS
# worker threads; its admin listener on any free port (several batons may run side by side);
# an inline HS256 signing key (a bench config only); one RS256 IdP (ISSUER, AUDIENCE, its
# public key in KEY_FILE); the provider `app`. Both mappings copy each CLAIM.
bench_config() {
  local file=$1 listen=$2 upstream=$3 threads=$4 issuer=$5 audience=$6 key_file=$7
  shift 7
  local mapping="" claim
  for claim in "$@"; do
    mapping+="${mapping:+, }\"$claim.\$\" = \"\$.$claim\""
  done
  cat >"$file" <<TOML
[proxy]
listen = "$listen"
${upstream:+upstream = \"$upstream\"}
service = "app"
threads = $threads

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
