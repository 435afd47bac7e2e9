//! `[proxy]`: the listener, the upstream, per-path routes and the timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::spec::ProxySpec;
use super::{Loader, Place};
use crate::claim_headers::HeaderTable;
use crate::mint::TokenProvider;
use crate::policy::{Condition, Scope};
use crate::request_path;
use crate::tls::{CertificatePair, TlsFiles};

/// The proxy listener unless `[proxy] listen` is set.
pub const DEFAULT_PROXY_LISTEN: &str = "0.0.0.0:8080";
/// Upstream connect timeout unless `[proxy] connect_timeout` is set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upstream read timeout unless `[proxy] read_timeout` is set.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long SIGTERM waits for in-flight requests unless `[proxy] grace_period` is set.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// How long a client connection may stay open with no request in flight unless
/// `[proxy] idle_timeout` is set (Envoy's `idle_timeout` is 1 h; nginx's `keepalive_timeout` 75 s;
/// 90 s outlives the 60 s most clients and load balancers keep an idle connection for).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long an HTTP/1 request head may take from its first byte unless
/// `[proxy] header_timeout` is set (slowloris).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the proxy does with a request that has no bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    /// 401 with `WWW-Authenticate: Bearer realm="baton"` (the default).
    Reject,
    /// Pass it to the upstream untouched.
    Forward,
}

/// How baton speaks to `[proxy] upstream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default).
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (RFC 9113 §3.3), e.g. for a gRPC app.
    H2c,
}

/// A `[[proxy.routes]]` entry: requests under `prefix` use `service`, or pass untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// A path prefix, matched on segment boundaries (`/api` matches `/api` and `/api/x`).
    pub prefix: String,
    /// `Some(service)` to exchange with that provider, `None` to skip exchange.
    pub service: Option<String>,
    /// Who may reach the app through this route (`Scope::Route`: `claims`, `request`).
    pub condition: Option<Condition>,
    /// Claim headers for this route's requests, instead of `[proxy] headers`.
    pub headers: Option<Arc<HeaderTable>>,
}

/// `[proxy]`.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The listener; `None` when `[forward_auth]` is set and `[proxy]` sets neither `listen`
    /// nor `upstream` (baton then only decides for a front proxy; the routing keys still apply).
    pub listen: Option<SocketAddr>,
    /// `host:port` of the application.
    pub upstream: Option<String>,
    /// The service whose provider mints tokens for proxied requests (and `/tokens`' default).
    pub service: Option<String>,
    /// Requests without a bearer token.
    pub on_missing: OnMissing,
    /// Per-path services, first match wins.
    pub routes: Vec<Route>,
    /// Claim headers sent with each exchanged request (or one with baton's own token) whose
    /// route has none of its own.
    pub headers: Option<Arc<HeaderTable>>,
    /// Whether the upstream gets the token as `Authorization: Bearer …` (default true);
    /// `false` sends only the claim headers.
    pub forward_token: bool,
    /// Every name of every `headers` table (the default's and each route's), removed from
    /// every client request before anything else looks at it.
    pub claim_header_names: Vec<String>,
    /// Browser origins allowed to call the app through the proxy: baton answers their CORS
    /// preflights itself (a browser sends them without credentials, so they could never pass
    /// the exchange) and lets them read every answer.
    pub cors_origins: Vec<String>,
    /// Upstream TCP connect timeout.
    pub connect_timeout: Duration,
    /// Upstream read timeout (between reads, not total).
    pub read_timeout: Duration,
    /// HTTP/1.1 or h2c to the upstream.
    pub upstream_protocol: UpstreamProtocol,
    /// Worker threads (default: the CPUs this process may run on, `available_parallelism`).
    pub threads: Option<usize>,
    /// Whether a client's `X-Forwarded-*` headers come from a trusted proxy.
    pub trust_forwarded_headers: bool,
    /// How long SIGTERM waits for in-flight requests.
    pub grace_period: Duration,
    /// A client connection with no request in flight for this long is closed; `None` (set
    /// to 0) keeps it open.
    pub idle_timeout: Option<Duration>,
    /// An HTTP/1 request head not complete this long after its first byte gets 408 and the
    /// connection is closed; `None` (set to 0) waits for ever.
    pub header_timeout: Option<Duration>,
    /// TLS on the listener (`[proxy] tls`), or `None` for cleartext HTTP/1.1 and h2c.
    pub tls: Option<TlsFiles>,
}

impl Loader<'_> {
    pub(super) fn proxy(
        &mut self,
        spec: ProxySpec,
        providers: &[Arc<TokenProvider>],
        forward_auth: bool,
    ) -> ProxyConfig {
        // Without `[forward_auth]` the listener always runs (it may serve `/tokens` alone).
        let listener = !forward_auth || spec.listen.is_some() || spec.upstream.is_some();
        let check_service = |loader: &mut Self, service: &str, path: &str| {
            if !providers.iter().any(|p| p.service == service) {
                loader.error(
                    None,
                    path,
                    &format!("no [[token_providers]] entry has service {service:?}"),
                );
            }
        };
        if let Some(service) = &spec.service {
            check_service(self, service, "proxy.service");
        }
        let on_missing = match spec.on_missing.as_deref() {
            None | Some("reject") => OnMissing::Reject,
            Some("forward") => OnMissing::Forward,
            Some(other) => {
                self.error(
                    None,
                    "proxy.on_missing",
                    &format!("unknown value {other:?}; expected \"reject\" or \"forward\""),
                );
                OnMissing::Reject
            }
        };
        let mut routes = Vec::new();
        for (i, route) in spec.routes.into_iter().enumerate() {
            let path = format!("proxy.routes[{i}]");
            if !route.prefix.starts_with('/') {
                self.error(
                    None,
                    &format!("{path}.prefix"),
                    "a path prefix starting with `/`",
                );
            } else if request_path::normalize(&route.prefix)
                .map_or(true, |normal| normal != route.prefix.as_str())
            {
                // Routes match the normalized request path: a prefix that is not normal itself
                // (`/a/../b`, `/a//b`, `/%61`) could never match, or not what it says.
                self.error(
                    None,
                    &format!("{path}.prefix"),
                    "a normalized path (no `.` or `..` segments, no `//`, no escaped unreserved characters)",
                );
            }
            match (&route.service, route.skip) {
                (Some(service), false) => check_service(self, service, &format!("{path}.service")),
                (None, true) => {}
                _ => self.error(None, &path, "set either service = \"...\" or skip = true"),
            }
            if route.skip {
                // A `skip` route passes requests untouched, with no token to judge or to
                // take claims from: a condition or headers there would never apply.
                for (set, key) in [
                    (route.condition.is_some(), "condition"),
                    (route.headers.is_some(), "headers"),
                ] {
                    if set {
                        self.error(
                            None,
                            &format!("{path}.{key}"),
                            "a `skip` route passes requests untouched; set a service to use this",
                        );
                    }
                }
            }
            let condition = route.condition.as_deref().and_then(|source| {
                Condition::compile(source, Scope::Route)
                    .map_err(|e| self.error(None, &format!("{path}.condition"), &e.to_string()))
                    .ok()
            });
            let headers = route
                .headers
                .as_ref()
                .and_then(|table| self.header_table(table, &format!("{path}.headers")));
            routes.push(Route {
                prefix: route.prefix.trim_end_matches('/').to_owned(),
                service: route.service.filter(|_| !route.skip),
                condition,
                headers,
            });
        }
        let headers = spec
            .headers
            .as_ref()
            .and_then(|table| self.header_table(table, "proxy.headers"));
        let mut claim_header_names: Vec<String> = headers
            .iter()
            .chain(routes.iter().filter_map(|route| route.headers.as_ref()))
            .flat_map(|table| table.names().map(str::to_owned))
            .collect();
        claim_header_names.sort();
        claim_header_names.dedup();
        let place = Place {
            path: "proxy".to_owned(),
            span: Some(0..0),
        };
        let connect_timeout = self.duration(
            spec.connect_timeout.as_ref(),
            DEFAULT_CONNECT_TIMEOUT,
            &place,
            "connect_timeout",
        );
        let read_timeout = self.duration(
            spec.read_timeout.as_ref(),
            DEFAULT_READ_TIMEOUT,
            &place,
            "read_timeout",
        );
        let grace_period = self.duration(
            spec.grace_period.as_ref(),
            DEFAULT_GRACE_PERIOD,
            &place,
            "grace_period",
        );
        // 0 turns either off, as in Envoy.
        let idle_timeout = Some(self.duration(
            spec.idle_timeout.as_ref(),
            DEFAULT_IDLE_TIMEOUT,
            &place,
            "idle_timeout",
        ))
        .filter(|timeout| !timeout.is_zero());
        let header_timeout = Some(self.duration(
            spec.header_timeout.as_ref(),
            DEFAULT_HEADER_TIMEOUT,
            &place,
            "header_timeout",
        ))
        .filter(|timeout| !timeout.is_zero());
        if spec.threads == Some(0) {
            self.error(None, "proxy.threads", "at least one thread");
        }
        let upstream_protocol = match spec.upstream_protocol.as_deref() {
            None | Some("http1") => UpstreamProtocol::Http1,
            Some("h2c") => UpstreamProtocol::H2c,
            Some(other) => {
                self.error(
                    None,
                    "proxy.upstream_protocol",
                    &format!("unknown value {other:?}; expected \"http1\" or \"h2c\""),
                );
                UpstreamProtocol::Http1
            }
        };
        let cors_origins = self.cors_origins(spec.cors_origins, "proxy.cors_origins");
        let tls = spec.tls.map(|tls| TlsFiles {
            cert_file: self.resolve(&tls.cert_file),
            key_file: self.resolve(&tls.key_file),
        });
        if let Some(files) = &tls {
            // Loaded here so that `baton check`, the start and a reload all refuse a pair that
            // could not be served, with its place; the listener loads it again when it starts.
            if let Err(e) = CertificatePair::load(files) {
                self.error(
                    None,
                    &format!("proxy.tls.{}", e.file().config_field()),
                    &e.to_string(),
                );
            }
        }
        ProxyConfig {
            listen: listener.then(|| {
                self.socket_addr(spec.listen.as_deref(), DEFAULT_PROXY_LISTEN, "proxy.listen")
            }),
            upstream: spec.upstream,
            service: spec.service,
            on_missing,
            routes,
            headers,
            forward_token: spec.forward_token.unwrap_or(true),
            claim_header_names,
            cors_origins,
            connect_timeout,
            read_timeout,
            upstream_protocol,
            threads: spec.threads,
            trust_forwarded_headers: spec.trust_forwarded_headers,
            grace_period,
            idle_timeout,
            header_timeout,
            tls,
        }
    }

    /// Compiles a `headers` table, its errors placed under `path` (`proxy.headers."x-a.$"`).
    fn header_table(&mut self, table: &Map<String, Value>, path: &str) -> Option<Arc<HeaderTable>> {
        match HeaderTable::compile(table) {
            Ok(table) => Some(Arc::new(table)),
            Err(errors) => {
                for error in errors {
                    let place = match &error.key {
                        Some(key) => format!("{path}.{key}"),
                        None => path.to_owned(),
                    };
                    self.error(None, &place, &error.reason);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
