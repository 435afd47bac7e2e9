//! The proxy listener's request path: baton as the application's front door.
//!
//! [`Gateway::handle`] answers one request. `/tokens` and the well-known documents are
//! answered here; every other request goes through a few small steps, each a plain function
//! with one job:
//!
//! 1. [`auth`]: the target must be a path, normalized before anything matches on it; the route
//!    decides whether the bearer token is exchanged, passed (one baton minted) or refused,
//!    and [`policy`] whether its condition admits the request and which claim headers the
//!    app gets (every claim header name a client sent is removed first, in every mode);
//! 2. [`forward`]: the upstream request's headers (hop-by-hop removed, `X-Forwarded-*`, `Host`)
//!    and, after the answer, the response's, and the tunnel of an HTTP/1.1 upgrade;
//! 3. [`upstream`]: the pooled connections to `[proxy] upstream`, with their timeouts.
//!
//! Every answer baton writes instead of the upstream's is a [`Refusal`], answered in one
//! place ([`Refusal::answer`]): as JSON to an HTTP caller, as a trailers-only gRPC status
//! ([`grpc`]) to a gRPC one.
//!
//! Bodies are never buffered: the client's `Incoming` body goes to the upstream as it
//! arrives and the upstream's comes back the same way, with hyper's backpressure both ways.
//! The exchange itself (`Exchanger`) knows no HTTP types; this module and `server` are the
//! only ones that know hyper's proxy side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Either, Full, Limited};
use hyper::body::Incoming;
use serde_json::json;

use crate::config::Config;
use crate::errors::{Rejection, RequestRefused, UpstreamFailure, upstream_rejection};
use crate::exchange::{Exchanger, LastExchange};
use crate::metrics::Metrics;
use crate::published;
use crate::sts::{self, MAX_BODY_BYTES, Reply, TokenRequest};
use crate::telemetry::Surface;
use crate::traces::RequestSpan;

mod auth;
mod cors;
mod decision;
mod ext_authz;
mod forward;
mod forward_auth;
mod grpc;
mod policy;
mod upstream;

pub use upstream::{ResponseBody, UpstreamError};

use upstream::Upstream;

/// A response of the proxy and forward-auth listeners: the upstream's body, streamed, or one
/// baton wrote. The upstream's is the outer `Left`, so a proxied body is polled through one
/// `Either` as before the forward-auth listener had gRPC answers (nothing boxed on that path).
pub type ProxyBody = Either<ResponseBody, OwnBody>;

/// A body baton wrote: whole (JSON, a token, nothing), or an Envoy `ext_authz` answer as tonic
/// encodes it — its message, then the gRPC trailers a whole body cannot carry.
pub type OwnBody = Either<Full<Bytes>, tonic::body::Body>;

/// The proxy.
#[derive(Debug)]
pub struct Gateway {
    exchanger: Arc<Exchanger>,
    upstream: ArcSwap<Upstream>,
    /// Upgraded connections (WebSocket…) still tunnelling, for draining on shutdown.
    tunnels: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

/// The client's side of a request's connection: who called, and over what. The listener
/// knows it; the request path reads it for `X-Forwarded-For` and `X-Forwarded-Proto`.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client's IP address as `X-Forwarded-For` names it, written once per connection
    /// rather than formatted for every request.
    client_ip: HeaderValue,
    /// Whether the connection is TLS.
    scheme: Scheme,
    /// What the connection keeps from one request to the next.
    kept: Arc<Kept>,
}

/// What a client connection keeps from one request to the next: a keep-alive client sends
/// the same token to the same upstream, request after request.
#[derive(Debug, Default)]
struct Kept {
    /// The credentials its last request sent, and the token they were served.
    last_exchange: LastExchange,
    /// The upstream connection its last request used.
    upstream: upstream::Held,
}

/// How a client's connection reached baton: the `X-Forwarded-Proto` the upstream gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Cleartext HTTP/1.1 or h2c.
    Http,
    /// TLS terminated by baton (`[proxy] tls`).
    Https,
}

/// A config's upstream, resolved ahead of [`Gateway::install`].
#[derive(Debug)]
pub struct PreparedUpstream(Upstream);

// === impl Downstream ===

impl Downstream {
    /// The client at `address`, connected over `scheme`.
    pub fn new(address: SocketAddr, scheme: Scheme) -> Self {
        let client_ip = HeaderValue::try_from(address.ip().to_string())
            .expect("an IP address is a valid header value");
        Self {
            client_ip,
            scheme,
            kept: Arc::default(),
        }
    }
}

// === impl Scheme ===

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// An answer baton writes instead of the upstream's (a refused token, a path it will not
/// forward, an upstream it could not reach): the answer an HTTP caller gets, and the fixed,
/// token-free description (errors.rs) a gRPC caller gets as `grpc-message`.
#[derive(Debug)]
struct Refusal {
    /// The JSON answer, with its status and any `WWW-Authenticate` challenge.
    http: Reply,
    /// The same words as the JSON's `error_description`.
    description: &'static str,
}

/// Who is asking, which decides the form of a [`Refusal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// Any HTTP client: refusals are JSON with their HTTP status.
    Http,
    /// A gRPC client (`content-type: application/grpc…`): refusals are gRPC statuses.
    Grpc,
}

/// The HTTP status a refusal stands for, on a response whose own status says otherwise
/// (a gRPC refusal is an HTTP 200): what the metrics count, so a refused gRPC call is
/// counted as the 401 or 503 it is, not as a success.
#[derive(Clone, Copy, Debug)]
struct RefusedWith(u16);

// === impl Gateway ===

impl Gateway {
    /// A gateway over `exchanger`, sending requests to its config's upstream.
    pub fn new(exchanger: Arc<Exchanger>) -> Result<Self, UpstreamError> {
        let upstream = Upstream::resolve(&exchanger.config())?;
        let metrics = Arc::new(Metrics::new(Arc::clone(&exchanger)));
        Ok(Self {
            exchanger,
            upstream: ArcSwap::from_pointee(upstream),
            tunnels: Arc::new(AtomicUsize::new(0)),
            metrics,
        })
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The part of a reload that can fail: resolving `config`'s upstream (which may block on
    /// DNS). [`Gateway::install`] then cannot fail.
    pub fn prepare(config: &Config) -> Result<PreparedUpstream, UpstreamError> {
        Upstream::resolve(config).map(PreparedUpstream)
    }

    /// Swaps in `config` with its prepared upstream, atomically for each.
    pub fn install(&self, config: Config, upstream: PreparedUpstream) {
        self.exchanger.reload(config);
        self.upstream.store(Arc::new(upstream.0));
    }

    /// Upgraded connections still open (draining waits for them, within the grace period).
    pub fn open_tunnels(&self) -> usize {
        self.tunnels.load(Ordering::Acquire)
    }

    /// The exchanger.
    pub fn exchanger(&self) -> &Arc<Exchanger> {
        &self.exchanger
    }

    /// Answers one request that came over `downstream` (and counts the answer in the
    /// metrics).
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        downstream: Downstream,
    ) -> Response<ProxyBody> {
        let span = RequestSpan::start(
            "proxy",
            request.method().as_str(),
            request.uri().path(),
            request.headers(),
        );
        let response = match &span {
            None => self.answer(request, downstream).await,
            // Boxed (see `scope`): the traced path's future does not make every request's
            // larger.
            Some(span) => span.scope(|| self.answer(request, downstream)).await,
        };
        let status = answered_status(&response);
        self.metrics.proxied(status);
        if let Some(span) = span {
            span.end(status);
        }
        response
    }

    /// Answers a request the listener refuses before it is parsed any further (the
    /// connection's own checks on HTTP/1 heads, so never a gRPC call), and counts it.
    pub fn refuse(&self, refused: &RequestRefused) -> Response<ProxyBody> {
        let response = auth::refusal(refused).answer(Caller::Http);
        self.metrics.proxied(response.status().as_u16());
        response
    }

    async fn answer(
        &self,
        request: Request<Incoming>,
        downstream: Downstream,
    ) -> Response<ProxyBody> {
        let config = self.exchanger.config();
        let (mut parts, body) = request.into_parts();
        let caller = if grpc::is_grpc(&parts.headers) {
            Caller::Grpc
        } else {
            Caller::Http
        };
        // Everything below matches on the normalized path, and the app receives exactly that
        // path: what baton matched is what the app serves (module docs of `request_path`).
        if let Err(refused) = auth::normalize_target(&mut parts) {
            return auth::refusal(&refused).answer(caller);
        }
        let path = parts.uri.path();
        if config.server.tokens_path.as_deref() == Some(path) {
            // Boxed: its future (the whole exchange) would otherwise make every proxied
            // request's future as large.
            return Box::pin(self.serve_tokens(&parts, body)).await;
        }
        if config.server.jwks_path.as_deref() == Some(path) {
            return serve_document(&parts, &config, published::jwks(&config));
        }
        if config.server.metadata_path.as_deref() == Some(path) {
            return serve_document(&parts, &config, published::metadata(&config));
        }

        let cors_origin = cors::listed_origin(&config, &parts.headers);
        if let Some(origin) = &cors_origin
            && cors::is_preflight(&parts)
        {
            let empty = whole(Bytes::new());
            return cors::preflight(&parts, origin.clone(), empty);
        }
        let mut response = self.proxied(parts, body, caller, downstream, &config).await;
        if let Some(origin) = cors_origin {
            for name in cors::APP_CORS_HEADERS {
                response.headers_mut().remove(name);
            }
            let refused = response.extensions().get::<RefusedWith>().is_some();
            cors::allow(&mut response, origin, refused);
        }
        response
    }

    /// Answers a request for the app: authorized, then forwarded (or refused).
    async fn proxied(
        &self,
        mut parts: http::request::Parts,
        body: Incoming,
        caller: Caller,
        downstream: Downstream,
        config: &Config,
    ) -> Response<ProxyBody> {
        // Before anything reads the headers: the app gets these names from baton only.
        policy::strip_claim_headers(&mut parts.headers, &config.proxy.claim_header_names);
        let admitted = match auth::authorize(
            &self.exchanger,
            &self.metrics,
            Surface::Proxy,
            config,
            &mut parts,
            Some(&downstream.kept.last_exchange),
        )
        .await
        {
            Ok(admitted) => admitted,
            Err(refusal) => return refusal.answer(caller),
        };
        let upstream = self.upstream.load();
        let Some(target) = upstream.target() else {
            return Refusal::upstream(UpstreamFailure::NotConfigured).answer(caller);
        };
        let kept = Arc::clone(&downstream.kept);
        let downstream_upgrade =
            forward::prepare_request(&mut parts, admitted, downstream, &config.proxy, target);
        let started = Instant::now();
        let sent = target.send(Request::from_parts(parts, body), &kept.upstream);
        let mut response = match sent.await {
            Ok(response) => response,
            Err(failure) if failure.client_body_failed() => {
                tracing::debug!(error = %failure, "the client's request body broke");
                return auth::refusal(&RequestRefused::BrokenBody).answer(caller);
            }
            Err(failure) => {
                tracing::debug!(error = %failure, "the upstream request failed");
                return Refusal::upstream(failure.kind()).answer(caller);
            }
        };
        self.metrics.upstream(started.elapsed());
        match forward::prepare_response(&mut response, downstream_upgrade) {
            Ok(None) => {}
            Ok(Some(upgrades)) => {
                forward::spawn_tunnel(upgrades, Arc::clone(&self.tunnels));
            }
            Err(failure) => return Refusal::upstream(failure).answer(caller),
        }
        response.map(|body| Either::Left(target.response_body(body)))
    }

    /// Answers `/tokens`: reads the body (at most 64 KiB) and replies.
    async fn serve_tokens(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Response<ProxyBody> {
        let text = |name: header::HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
        };
        let declared_length = text(header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
        if declared_length.is_some_and(|len| len > MAX_BODY_BYTES) {
            return respond(Reply::body_too_large());
        }
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return respond(Reply::body_too_large());
            }
            Err(e) => {
                // The client went away or sent a broken body: nobody reads an answer.
                tracing::debug!(error = %e, "could not read a /tokens body");
                return respond(Reply::oauth_error(
                    400,
                    "invalid_request",
                    "the request body could not be read",
                ));
            }
        };
        let request = TokenRequest {
            method: parts.method.as_str(),
            content_type: text(header::CONTENT_TYPE),
            authorization: text(header::AUTHORIZATION),
            origin: text(header::ORIGIN),
            body: &body,
        };
        respond(sts::handle(&self.exchanger, &self.metrics, &request).await)
    }
}

/// Answers a well-known document (GET/HEAD, with CORS for listed origins).
fn serve_document(
    parts: &http::request::Parts,
    config: &Config,
    document: serde_json::Value,
) -> Response<ProxyBody> {
    let origin = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok());
    let cors = sts::cors_origin(config, origin);
    let reply = match parts.method {
        // A CORS preflight from a listed origin (DESIGN: the well-known documents answer them).
        Method::OPTIONS if cors.is_some() => Reply::preflight("GET, HEAD"),
        Method::GET | Method::HEAD => Reply {
            status: 200,
            headers: vec![("cache-control", "public, max-age=300".to_owned())],
            content_type: "application/json",
            body: document.to_string().into_bytes(),
        },
        _ => {
            Reply::oauth_error(405, "invalid_request", "use GET").with_header("allow", "GET, HEAD")
        }
    };
    respond(reply.allow_origin(cors))
}

// === impl Refusal ===

impl Refusal {
    /// The refusal when the upstream could not be reached or did not answer in time
    /// (errors.rs decides status and wording).
    fn upstream(failure: UpstreamFailure) -> Self {
        let Rejection {
            status,
            error,
            description,
        } = upstream_rejection(failure);
        let body = json!({ "error": error, "error_description": description });
        Self {
            http: Reply {
                status,
                headers: Vec::new(),
                content_type: "application/json",
                body: body.to_string().into_bytes(),
            },
            description,
        }
    }

    /// The whole response to `caller`, marked with the HTTP status it stands for.
    fn answer(self, caller: Caller) -> Response<ProxyBody> {
        let status = self.http.status;
        let reply = match caller {
            Caller::Http => self.http,
            Caller::Grpc => grpc::trailers_only(&self.http, self.description),
        };
        let mut response = respond(reply);
        response.extensions_mut().insert(RefusedWith(status));
        response
    }
}

/// The HTTP status a response stands for (a gRPC refusal's, not its 200).
fn answered_status<B>(response: &Response<B>) -> u16 {
    response
        .extensions()
        .get::<RefusedWith>()
        .map_or_else(|| response.status().as_u16(), |refused| refused.0)
}

/// `reply` as the whole response (hyper sets `Content-Length` from the body).
fn respond(reply: Reply) -> Response<ProxyBody> {
    let Reply {
        status,
        headers,
        content_type,
        body,
    } = reply;
    let empty = body.is_empty();
    let mut response = Response::new(whole(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let map = response.headers_mut();
    for (name, value) in headers {
        // baton's own replies hold only visible ASCII; a value that is not is left out
        // rather than sent broken.
        if let Ok(value) = HeaderValue::try_from(value) {
            map.append(name, value);
        }
    }
    if !empty {
        map.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// `bytes` as a whole body of baton's own.
fn whole(bytes: Bytes) -> ProxyBody {
    Either::Right(Either::Left(Full::new(bytes)))
}
