# syntax=docker/dockerfile:1
# baton: the token-exchange sidecar.
#
#   docker build -t baton .
#   docker run --rm -p 8080:8080 -v "$PWD/config/supabase.toml:/etc/baton/baton.toml:ro" \
#     -e BATON_KEY_MAIN -e SUPABASE_JWT_SECRET baton
#
# The image holds no config: mount one at /etc/baton/baton.toml (a Kubernetes ConfigMap, a
# bind mount) and pass its secrets through the environment (*_env). Arguments after the
# image name replace the default command:
#   docker run --rm baton keys generate --alg HS256
#   docker run --rm -v "$PWD/config:/etc/baton:ro" -e BATON_KEY_MAIN baton check --config /etc/baton/auth0.toml

# --- build -------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
# pingora-core builds zlib-ng through flate2, which needs cmake. (Unpinned: Debian drops
# superseded versions from bookworm, so a pin would break the build on the next update.)
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The image keeps symbol names (readable panics) but not the line tables of the release
# profile, which would double the binary's size.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
COPY . .
# The cache mounts keep the crate registry and target/ between builds (BuildKit); target/ is
# not in the image, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin baton \
 && cp target/release/baton /usr/local/bin/baton

# --- run ---------------------------------------------------------------------------------
# distroless/cc rather than debian:bookworm-slim: baton links glibc, libm and libgcc_s
# dynamically (TLS is rustls with aws-lc-rs, built in; no OpenSSL needed), and cc-debian12
# has those Debian 12 libraries (the build stage's glibc 2.36), CA certificates (for JWKS and
# discovery fetches over HTTPS), tzdata and a numeric nonroot user, with no shell or package
# manager to patch or exploit. For a shell while debugging, use the :debug-nonroot tag.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/baton /usr/local/bin/baton
# distroless's `nonroot` (numeric, so Kubernetes' runAsNonRoot can verify it).
USER 65532:65532
# 8080: proxy, POST /tokens, /.well-known/*. 9901: admin (/healthz, /readyz, /metrics); it
# listens on 127.0.0.1 unless [admin] listen says otherwise.
EXPOSE 8080 9901
ENTRYPOINT ["baton"]
CMD ["serve", "--config", "/etc/baton/baton.toml"]
