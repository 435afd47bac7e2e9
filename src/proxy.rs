//! The pingora side: baton as the application's front door.
//!
//! [`Gateway`] implements pingora's `ProxyHttp`. `request_filter` answers `/tokens` and the
//! well-known documents itself; for every other request it exchanges the bearer token (or
//! passes one baton minted), then pingora forwards the request to `[proxy] upstream` with
//! `Authorization: Bearer <baton token>`. This is the only module that knows pingora.

use std::borrow::Cow;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use serde_json::json;

use crate::authorization::Credentials;
use crate::config::{Config, OnMissing};
use crate::errors::{RequestRefused, Surface, rejection, request_rejection};
use crate::exchange::{Authorized, Exchanger};
use crate::metrics::Metrics;
use crate::published;
use crate::request_path;
use crate::sts::{self, MAX_BODY_BYTES, Reply, TokenRequest};
use crate::telemetry;

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1). `Connection`,
/// `Upgrade` and `Transfer-Encoding` are pingora's to manage.
const HOP_BY_HOP: [&str; 4] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
];

/// The proxy.
#[derive(Debug)]
pub struct Gateway {
    exchanger: Arc<Exchanger>,
    upstream: Arc<ArcSwap<Upstream>>,
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

/// Where requests go, resolved when the config loads (never per request).
#[derive(Debug)]
struct Upstream {
    peer: Option<Box<HttpPeer>>,
}

/// A config's upstream, resolved ahead of [`Gateway::install`].
#[derive(Debug)]
pub struct PreparedUpstream(Upstream);

/// Per-request state.
#[derive(Debug, Default)]
pub struct RequestCtx {
    authorization: Option<HeaderValue>,
    counted: bool,
    upstream_started: Option<Instant>,
}

/// The config's upstream could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve upstream {upstream:?}: {reason}")]
pub struct UpstreamError {
    upstream: String,
    reason: String,
}

// === impl Gateway ===

impl Gateway {
    /// A gateway over `exchanger`, sending requests to its config's upstream.
    pub fn new(exchanger: Arc<Exchanger>) -> Result<Self, UpstreamError> {
        let upstream = Upstream::resolve(&exchanger.config())?;
        let metrics = Arc::new(Metrics::new(Arc::clone(&exchanger)));
        Ok(Self {
            exchanger,
            upstream: Arc::new(ArcSwap::from_pointee(upstream)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            metrics,
        })
    }

    /// A second handle on the same gateway state (pingora's app owns its `ProxyHttp` by
    /// value; reloads through either handle are seen by both).
    pub fn clone_shared(this: &Self) -> Self {
        Self {
            exchanger: Arc::clone(&this.exchanger),
            upstream: Arc::clone(&this.upstream),
            in_flight: Arc::clone(&this.in_flight),
            metrics: Arc::clone(&this.metrics),
        }
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

    /// Requests being handled now (for draining on shutdown).
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.in_flight)
    }

    /// The exchanger.
    pub fn exchanger(&self) -> &Arc<Exchanger> {
        &self.exchanger
    }

    /// Answers `/tokens`: reads the body (at most 64 KiB) and replies.
    async fn serve_tokens(&self, session: &mut Session) -> Result<()> {
        let (method, content_type, authorization, origin, declared_length) = {
            let header = session.req_header();
            let get = |name: &str| {
                header
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            (
                header.method.as_str().to_owned(),
                get("content-type"),
                get("authorization"),
                get("origin"),
                get("content-length").and_then(|v| v.parse::<usize>().ok()),
            )
        };
        if declared_length.is_some_and(|len| len > MAX_BODY_BYTES) {
            return respond(session, &Reply::body_too_large()).await;
        }
        let mut body = Vec::new();
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return respond(session, &Reply::body_too_large()).await;
            }
            body.extend_from_slice(&chunk);
        }
        let request = TokenRequest {
            method: &method,
            content_type: content_type.as_deref(),
            authorization: authorization.as_deref(),
            origin: origin.as_deref(),
            body: &body,
        };
        let reply = sts::handle(&self.exchanger, &self.metrics, &request).await;
        respond(session, &reply).await
    }

    /// Answers a well-known document (GET/HEAD, with CORS for listed origins).
    async fn serve_document(
        &self,
        session: &mut Session,
        config: &Config,
        document: serde_json::Value,
    ) -> Result<()> {
        let (method, origin) = {
            let header = session.req_header();
            let origin = header
                .headers
                .get("origin")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (header.method.as_str().to_owned(), origin)
        };
        let cors = sts::cors_origin(config, origin.as_deref());
        let reply = match method.as_str() {
            // A CORS preflight from a listed origin (DESIGN: the well-known documents answer them).
            "OPTIONS" if cors.is_some() => Reply::preflight("GET, HEAD"),
            "GET" | "HEAD" => Reply {
                status: 200,
                headers: vec![("cache-control", "public, max-age=300".to_owned())],
                content_type: "application/json",
                body: document.to_string().into_bytes(),
            },
            _ => Reply::oauth_error(405, "invalid_request", "use GET")
                .with_header("allow", "GET, HEAD"),
        };
        let reply = reply.allow_origin(cors);
        respond(session, &reply).await
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        ctx.counted = true;
        let config = self.exchanger.config();
        // Everything below matches on the normalized path, and the app receives exactly that
        // path: what baton matched is what the app serves (module docs of `request_path`).
        if let Err(refused) = normalize_target(session.req_header_mut()) {
            respond(session, &refusal(&refused)).await?;
            return Ok(true);
        }
        let path = session.req_header().uri.path();
        if config.server.tokens_path.as_deref() == Some(path) {
            self.serve_tokens(session).await?;
            return Ok(true);
        }
        if config.server.jwks_path.as_deref() == Some(path) {
            self.serve_document(session, &config, published::jwks(&config))
                .await?;
            return Ok(true);
        }
        if config.server.metadata_path.as_deref() == Some(path) {
            self.serve_document(session, &config, published::metadata(&config))
                .await?;
            return Ok(true);
        }

        let Some(service) = route(&config, path) else {
            // A `skip = true` route: passed on, but never with a bearer credential.
            drop_bearer_credentials(session.req_header_mut());
            return Ok(false);
        };
        let token = match bearer_credential(session.req_header()) {
            Ok(Some(token)) => token,
            Ok(None) if config.proxy.on_missing == OnMissing::Forward => return Ok(false),
            Ok(None) => {
                respond(session, &refusal(&RequestRefused::MissingToken)).await?;
                return Ok(true);
            }
            Err(refused) => {
                respond(session, &refusal(&refused)).await?;
                return Ok(true);
            }
        };
        let Some(service) = service else {
            respond(session, &refusal(&RequestRefused::NoService)).await?;
            return Ok(true);
        };
        let started = Instant::now();
        match self.exchanger.authorize(token, service).await {
            Ok(Authorized::Own) => Ok(false),
            Ok(Authorized::Exchanged(exchanged)) => {
                telemetry::exchange_ok(
                    &self.metrics,
                    telemetry::Surface::Proxy,
                    &exchanged.minted.idp,
                    service,
                    exchanged.cached,
                    started.elapsed(),
                );
                // `Bearer <token>` was built when the token was minted; this shares its bytes.
                ctx.authorization =
                    HeaderValue::from_maybe_shared(exchanged.minted.bearer().clone()).ok();
                Ok(false)
            }
            Err(e) => {
                telemetry::exchange_refused(
                    &self.metrics,
                    telemetry::Surface::Proxy,
                    &e,
                    service,
                    started.elapsed(),
                );
                let r = rejection(&e, Surface::Proxy);
                let reply = if r.status == 401 {
                    unauthorized(r.error, r.description)
                } else {
                    Reply::oauth_error(r.status, r.error, r.description)
                };
                respond(session, &reply).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        match &self.upstream.load().peer {
            Some(peer) => Ok(peer.clone()),
            // The upstream side failed, not the client nor baton: 502, as for an upstream that is down.
            None => Err(Error::explain(
                ErrorType::ConnectNoRoute,
                "no [proxy] upstream is configured",
            )
            .into_up()),
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(authorization) = ctx.authorization.take() {
            upstream.insert_header("authorization", authorization)?;
        }
        // One pass over the request's (few) headers rather than a lookup per hop-by-hop name.
        if upstream
            .headers
            .keys()
            .any(|name| HOP_BY_HOP.contains(&name.as_str()))
        {
            for name in HOP_BY_HOP {
                upstream.remove_header(name);
            }
        }
        forwarded_headers(session, upstream, trust_forwarded(&self.exchanger))?;
        // An HTTP/1.0 request may come without `Host`; the app gets the authority baton
        // connects to rather than none (HTTP/1.1 requires one, RFC 9112 §3.2).
        if !upstream.headers.contains_key("host")
            && let Some(authority) = &self.exchanger.config().proxy.upstream
        {
            upstream.insert_header("host", authority.as_str())?;
        }
        ctx.upstream_started = Some(Instant::now());
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream
                    if matches!(
                        e.etype(),
                        ErrorType::ConnectTimedout | ErrorType::ReadTimedout
                    ) =>
                {
                    504
                }
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => 0, // the client is gone or sent garbage
                _ => 500,
            },
        };
        if code > 0 {
            let description = match code {
                502 => "the upstream is unavailable",
                504 => "the upstream timed out",
                _ => "the request could not be proxied",
            };
            let error = match code {
                502 => "bad_gateway",
                504 => "gateway_timeout",
                _ => "server_error",
            };
            let body = json!({ "error": error, "error_description": description });
            let reply = Reply {
                status: code,
                headers: Vec::new(),
                content_type: "application/json",
                body: body.to_string().into_bytes(),
            };
            if let Err(write_error) = respond(session, &reply).await {
                tracing::debug!(error = %write_error, "could not answer a failed proxy request");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(started) = ctx.upstream_started.take() {
            self.metrics.upstream(started.elapsed());
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.counted {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(response) = session.response_written() {
            self.metrics.proxied(response.status.as_u16());
        }
    }
}

// === impl Upstream ===

impl Upstream {
    fn resolve(config: &Config) -> Result<Self, UpstreamError> {
        let Some(upstream) = &config.proxy.upstream else {
            return Ok(Self { peer: None });
        };
        let fail = |reason: String| UpstreamError {
            upstream: upstream.clone(),
            reason,
        };
        let addr: SocketAddr = upstream
            .to_socket_addrs()
            .map_err(|e| fail(e.to_string()))?
            .next()
            .ok_or_else(|| fail("no address".to_owned()))?;
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(config.proxy.connect_timeout);
        peer.options.read_timeout = Some(config.proxy.read_timeout);
        // No idle timeout on pooled upstream connections: pingora would arm a timer each time
        // a connection goes back to the pool, i.e. on every request. An idle connection still
        // leaves the pool as soon as the upstream closes it (the pool watches it for EOF), and
        // the pool is bounded.
        peer.options.idle_timeout = None;
        Ok(Self {
            peer: Some(Box::new(peer)),
        })
    }
}

fn trust_forwarded(exchanger: &Exchanger) -> bool {
    exchanger.config().proxy.trust_forwarded_headers
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`. A client's own values are replaced, unless
/// `[proxy] trust_forwarded_headers` says a trusted proxy stands in front of baton; then
/// baton appends to `X-Forwarded-For` and keeps the others.
fn forwarded_headers(session: &Session, upstream: &mut RequestHeader, trusted: bool) -> Result<()> {
    let client_ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|addr| addr.ip().to_string());
    let header = |name: &str| {
        session
            .req_header()
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // A chain may be split over several header lines (RFC 9110 §5.3): keep every hop.
    let client_chain = || {
        let lines: Vec<&str> = session
            .req_header()
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!lines.is_empty()).then(|| lines.join(", "))
    };
    let forwarded_for = match (trusted.then(client_chain).flatten(), client_ip) {
        (Some(chain), Some(ip)) => Some(format!("{chain}, {ip}")),
        (Some(chain), None) => Some(chain),
        (None, ip) => ip,
    };
    match forwarded_for {
        Some(value) => upstream.insert_header("x-forwarded-for", value)?,
        None => {
            upstream.remove_header("x-forwarded-for");
        }
    }
    if !(trusted && header("x-forwarded-proto").is_some()) {
        upstream.insert_header("x-forwarded-proto", "http")?;
    }
    if !(trusted && header("x-forwarded-host").is_some()) {
        match header("host") {
            Some(host) => upstream.insert_header("x-forwarded-host", host)?,
            None => {
                upstream.remove_header("x-forwarded-host");
            }
        }
    }
    Ok(())
}

/// The service for `path`: the first matching route's, else `[proxy] service`.
/// `None` means a `skip` route (pass untouched); `Some(None)`, that no service applies.
fn route<'c>(config: &'c Config, path: &str) -> Option<Option<&'c str>> {
    for route in &config.proxy.routes {
        let matches = path
            .strip_prefix(route.prefix.as_str())
            .is_some_and(|rest| {
                route.prefix.is_empty() || rest.is_empty() || rest.starts_with('/')
            });
        if matches {
            return route.service.as_deref().map(Some);
        }
    }
    Some(config.proxy.service.as_deref())
}

/// Refuses a request target that is not origin-form, and replaces the path with its
/// normalized form (the query untouched) when normalizing changed it.
fn normalize_target(header: &mut RequestHeader) -> Result<(), RequestRefused> {
    // pingora keeps an absolute-form or authority-form target verbatim here, with only its
    // path in the URI; an origin-form target starts with `/`.
    if header.raw_path().first() != Some(&b'/') || header.method == http::Method::CONNECT {
        return Err(RequestRefused::NotOriginForm);
    }
    let uri = &header.uri;
    let normalized = match request_path::normalize(uri.path())? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(path) => path,
    };
    let target = match uri.query() {
        Some(query) => format!("{normalized}?{query}"),
        None => normalized,
    };
    // The normalized path only holds bytes of the original target, so it parses.
    let uri = http::Uri::try_from(target).map_err(|_| RequestRefused::NotOriginForm)?;
    header.set_uri(uri);
    Ok(())
}

/// The bearer token of the request's one `Authorization` header, `None` when it has none.
/// Anything else on a route that exchanges is refused: several lines (only one could be
/// checked, and another could carry an IdP token to the app, cf. RFC 6750 §3.1), a malformed
/// value, another scheme.
fn bearer_credential(header: &RequestHeader) -> Result<Option<&str>, RequestRefused> {
    let mut lines = header.headers.get_all("authorization").iter();
    let Some(value) = lines.next() else {
        return Ok(None);
    };
    if lines.next().is_some() {
        return Err(RequestRefused::SeveralAuthorizations);
    }
    match Credentials::parse(value.as_bytes()) {
        Credentials::Bearer(token) => Ok(Some(token)),
        _ => Err(RequestRefused::NotBearer),
    }
}

/// Removes every `Authorization` line that holds a bearer credential, well-formed or not
/// (a `skip` route passes other schemes, e.g. `Basic`, to the app).
fn drop_bearer_credentials(header: &mut RequestHeader) {
    let lines = header.headers.get_all("authorization");
    if !lines
        .iter()
        .any(|value| Credentials::parse(value.as_bytes()).is_bearer())
    {
        return;
    }
    let kept: Vec<HeaderValue> = lines
        .iter()
        .filter(|value| !Credentials::parse(value.as_bytes()).is_bearer())
        .cloned()
        .collect();
    header.remove_header("authorization");
    for value in kept {
        // Appending a valid header value to a valid name cannot fail.
        let _ = header.append_header("authorization", value);
    }
}

/// The answer to a refused request (errors.rs decides status and wording).
fn refusal(refused: &RequestRefused) -> Reply {
    let r = request_rejection(refused);
    match refused {
        RequestRefused::MissingToken => Reply::oauth_error(r.status, r.error, r.description)
            .with_header("www-authenticate", "Bearer realm=\"baton\""),
        _ if r.status == 401 => unauthorized(r.error, r.description),
        RequestRefused::SeveralAuthorizations => {
            Reply::oauth_error(r.status, r.error, r.description).with_header(
                "www-authenticate",
                "Bearer realm=\"baton\", error=\"invalid_request\"",
            )
        }
        _ => Reply::oauth_error(r.status, r.error, r.description),
    }
}

/// 401 with `WWW-Authenticate: Bearer error="…", error_description="…"` (RFC 6750 §3).
fn unauthorized(error: &str, description: &str) -> Reply {
    Reply::oauth_error(401, error, description).with_header(
        "www-authenticate",
        format!("Bearer realm=\"baton\", error=\"{error}\", error_description=\"{description}\""),
    )
}

/// Writes `reply` as the whole response.
async fn respond(session: &mut Session, reply: &Reply) -> Result<()> {
    let mut header = ResponseHeader::build(reply.status, Some(reply.headers.len() + 2))?;
    for (name, value) in &reply.headers {
        header.insert_header(*name, value.as_str())?;
    }
    if !reply.body.is_empty() {
        header.insert_header("content-type", reply.content_type)?;
    }
    header.insert_header("content-length", reply.body.len().to_string())?;
    let empty = reply.body.is_empty();
    session
        .write_response_header(Box::new(header), empty)
        .await?;
    if !empty {
        session
            .write_response_body(Some(Bytes::copy_from_slice(&reply.body)), true)
            .await?;
    }
    Ok(())
}
