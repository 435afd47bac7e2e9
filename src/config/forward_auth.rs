//! `[forward_auth]`: the listener a front proxy (nginx, Caddy, Traefik, Envoy) asks whether a
//! request may pass, and where it finds the request it asks about.

use std::net::SocketAddr;

use super::Loader;
use super::spec::ForwardAuthSpec;
use crate::request_path;
use crate::tls::{CertificatePair, TlsFiles};

/// The forward-auth listener unless `[forward_auth] listen` is set: loopback, as the front
/// proxy runs beside baton (a sidecar) and nothing else should ask it.
pub const DEFAULT_FORWARD_AUTH_LISTEN: &str = "127.0.0.1:8090";

/// Where a check request carries the request it asks about: each front proxy has its own
/// convention, and baton reads only the one configured. Guessing would let a client choose:
/// nginx passes a client's own `X-Forwarded-Uri` on, Traefik a client's `X-Original-URI`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginalRequest {
    /// `X-Forwarded-Method` and `X-Forwarded-Uri` (Traefik `forwardAuth`, Caddy
    /// `forward_auth`), `X-Forwarded-Host` when present.
    ForwardedHeaders,
    /// `X-Original-Method` and `X-Original-URI` (nginx `auth_request`, set by its config).
    OriginalHeaders,
    /// The check request's own method and target (Envoy's HTTP `ext_authz`), with
    /// `path_prefix` removed.
    RequestLine,
}

/// `[forward_auth]`.
#[derive(Debug, Clone)]
pub struct ForwardAuthConfig {
    /// The listener.
    pub listen: SocketAddr,
    /// Where the original request is read from.
    pub original_request: OriginalRequest,
    /// A prefix the front proxy puts before the original path (`request-line` only; Envoy's
    /// `path_prefix`): removed before routes match, and a check request without it refused.
    pub path_prefix: Option<String>,
    /// TLS on the listener, or `None` for cleartext HTTP/1.1 and h2c.
    pub tls: Option<TlsFiles>,
}

impl OriginalRequest {
    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ForwardedHeaders => "x-forwarded",
            Self::OriginalHeaders => "x-original",
            Self::RequestLine => "request-line",
        }
    }
}

impl Loader<'_> {
    pub(super) fn forward_auth(&mut self, spec: ForwardAuthSpec) -> ForwardAuthConfig {
        let original_request = match spec.original_request.as_deref() {
            Some("x-forwarded") => OriginalRequest::ForwardedHeaders,
            Some("x-original") => OriginalRequest::OriginalHeaders,
            Some("request-line") => OriginalRequest::RequestLine,
            other => {
                let found = match other {
                    Some(value) => format!("unknown value {value:?}"),
                    None => "required".to_owned(),
                };
                self.error(
                    None,
                    "forward_auth.original_request",
                    &format!(
                        "{found}; expected \"x-forwarded\" (Traefik, Caddy), \"x-original\" \
                         (nginx auth_request) or \"request-line\" (Envoy ext_authz over HTTP)"
                    ),
                );
                OriginalRequest::RequestLine
            }
        };
        let path_prefix = spec.path_prefix.filter(|prefix| !prefix.is_empty());
        if let Some(prefix) = &path_prefix {
            if original_request != OriginalRequest::RequestLine {
                self.error(
                    None,
                    "forward_auth.path_prefix",
                    "only with original_request = \"request-line\" (the headers carry the \
                     original path whole)",
                );
            }
            let normal = request_path::normalize(prefix)
                .is_ok_and(|normal| normal == prefix.as_str() && !prefix.ends_with('/'));
            if !prefix.starts_with('/') || !normal {
                self.error(
                    None,
                    "forward_auth.path_prefix",
                    "a normalized path starting with `/`, without a trailing `/` (e.g. \"/authz\")",
                );
            }
        }
        let tls = spec.tls.map(|tls| TlsFiles {
            cert_file: self.resolve(&tls.cert_file),
            key_file: self.resolve(&tls.key_file),
        });
        if let Some(files) = &tls
            && let Err(e) = CertificatePair::load(files)
        {
            self.error(
                None,
                &format!("forward_auth.tls.{}", e.file().config_field()),
                &e.to_string(),
            );
        }
        ForwardAuthConfig {
            listen: self.socket_addr(
                spec.listen.as_deref(),
                DEFAULT_FORWARD_AUTH_LISTEN,
                "forward_auth.listen",
            ),
            original_request,
            path_prefix,
            tls,
        }
    }
}

#[cfg(test)]
mod tests;
