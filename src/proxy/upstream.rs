//! `[proxy] upstream`: where requests go, over pooled connections.
//!
//! The upstream's address is resolved when the config loads (never per request) and each
//! config gets its own connections: a reload with another address or other timeouts starts a
//! new pool, and the old one closes with the last request that used it. HTTP/1.1 goes through
//! baton's own pool ([`pool`]), whose connections stay with the client connection that last
//! used them; h2c through hyper-util's client, whose one connection carries every request as
//! a stream.

use std::future::Future as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{Config, UpstreamProtocol};
use crate::errors::UpstreamFailure;

mod pool;

pub(crate) use pool::Held;
use pool::Pool;

/// The body of an upstream's response, passed to the client as it arrives; an upstream that
/// sends nothing for `[proxy] read_timeout` ends it with an error (the client's connection is
/// closed: its status is already sent).
#[derive(Debug)]
pub struct ResponseBody {
    inner: Incoming,
    read_timeout: Duration,
    /// Armed while the upstream has nothing to give, created the first time it waits.
    idle: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

/// The client's body on its way to the upstream; counts the frames it forwards so that the
/// wait for the response head is a wait without progress (a slow upload is no timeout).
#[derive(Debug)]
pub(crate) struct RequestBody {
    inner: Incoming,
    progress: Option<Arc<Progress>>,
}

/// How far a request body has gone: frames forwarded, and whether the client broke it.
#[derive(Debug, Default)]
struct Progress {
    frames: AtomicU64,
    client_failed: AtomicBool,
}

/// The upstream sent nothing for `[proxy] read_timeout` in the middle of a body.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {0:?}")]
struct ReadTimedOut(Duration);

/// A config's upstream, if it names one.
#[derive(Debug)]
pub(crate) struct Upstream {
    target: Option<Target>,
}

/// A resolved upstream and the client that reaches it.
#[derive(Debug)]
pub(crate) struct Target {
    /// The resolved address, as the requests' authority (an IP literal: no DNS per connect).
    authority: Authority,
    /// `[proxy] upstream` as written, for requests that come without `Host`.
    host: HeaderValue,
    connections: Connections,
    read_timeout: Duration,
}

/// How requests reach the upstream, by `[proxy] upstream_protocol`.
#[derive(Debug)]
enum Connections {
    /// HTTP/1.1: one request at a time per connection, from baton's pool.
    Http1(Arc<Pool>),
    /// h2c: hyper-util's client, every request a stream of one connection (prior knowledge,
    /// no upgrade dance), as gRPC servers expect.
    H2c(Box<Client<HttpConnector, RequestBody>>),
}

/// The config's upstream could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("proxy.upstream: cannot resolve upstream {upstream:?}: {reason}")]
pub struct UpstreamError {
    upstream: String,
    reason: String,
}

/// A request the upstream did not answer: why, for the client's answer, and the cause, for
/// the log.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}: {cause}")]
pub(crate) struct SendFailure {
    kind: UpstreamFailure,
    cause: String,
    /// The client's body broke (a malformed chunk, a reset), not the upstream.
    client_body_failed: bool,
}

// === impl Upstream ===

impl Upstream {
    /// Resolves `config`'s upstream (blocking on DNS for a name).
    pub(crate) fn resolve(config: &Config) -> Result<Self, UpstreamError> {
        let Some(upstream) = &config.proxy.upstream else {
            return Ok(Self { target: None });
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
        let authority = Authority::try_from(addr.to_string()).map_err(|e| fail(e.to_string()))?;
        let host = HeaderValue::try_from(upstream.as_str()).map_err(|e| fail(e.to_string()))?;
        let connect_timeout = config.proxy.connect_timeout;
        let connections = match config.proxy.upstream_protocol {
            UpstreamProtocol::Http1 => {
                Connections::Http1(Arc::new(Pool::new(addr, connect_timeout)))
            }
            UpstreamProtocol::H2c => {
                let mut connector = HttpConnector::new();
                // Small requests go out at once rather than waiting on Nagle.
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(connect_timeout));
                let client = Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(pool::IDLE_TIMEOUT)
                    .http2_only(true)
                    .build(connector);
                Connections::H2c(Box::new(client))
            }
        };
        Ok(Self {
            target: Some(Target {
                authority,
                host,
                connections,
                read_timeout: config.proxy.read_timeout,
            }),
        })
    }

    /// The upstream, when the config names one.
    pub(crate) fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }
}

// === impl Target ===

impl Target {
    /// Whether requests go out as HTTP/2 streams.
    pub(crate) fn is_h2c(&self) -> bool {
        matches!(self.connections, Connections::H2c(_))
    }

    /// The value of `Host` for a request that has none.
    pub(crate) fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// `uri`'s path and query on this upstream: origin-form on an HTTP/1.1 connection (the
    /// request line), with the upstream's authority for h2c (hyper-util's client connects by
    /// it and sends it as `:authority`).
    pub(crate) fn uri_for(&self, uri: &Uri) -> Uri {
        let path_and_query = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        if self.is_h2c() {
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(self.authority.clone());
        }
        parts.path_and_query = Some(path_and_query);
        // A path and query, with or without a scheme and an authority, make a valid URI.
        #[allow(clippy::expect_used)]
        Uri::from_parts(parts).expect("a path, with a scheme and an authority, makes a URI")
    }

    /// Sends `request` and waits for the response head: the wait fails after
    /// `[proxy] read_timeout` without progress (no response, no request body forwarded).
    /// `held` is the upstream connection the client's connection keeps between its requests.
    pub(crate) async fn send(
        &self,
        request: Request<Incoming>,
        held: &Held,
    ) -> Result<Response<Incoming>, SendFailure> {
        let (parts, body) = request.into_parts();
        // A request without a body (most) needs no progress counter.
        let progress = (!body.is_end_stream()).then(|| Arc::new(Progress::default()));
        let body = RequestBody {
            inner: body,
            progress: progress.clone(),
        };
        let request = Request::from_parts(parts, body);
        let response = async {
            match &self.connections {
                Connections::Http1(pool) => send_http1(pool, held, request).await,
                Connections::H2c(client) => client
                    .request(request)
                    .await
                    .map_err(|e| SendFailure::from_error(&e)),
            }
        };
        tokio::pin!(response);
        let mut seen = 0;
        loop {
            match tokio::time::timeout(self.read_timeout, &mut response).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(mut failure)) => {
                    failure.client_body_failed = progress
                        .as_ref()
                        .is_some_and(|p| p.client_failed.load(Ordering::Acquire));
                    return Err(failure);
                }
                Err(_) => {
                    let now = progress
                        .as_ref()
                        .map_or(0, |p| p.frames.load(Ordering::Relaxed));
                    if now == seen {
                        return Err(SendFailure {
                            kind: UpstreamFailure::TimedOut,
                            cause: format!("no response head within {:?}", self.read_timeout),
                            client_body_failed: false,
                        });
                    }
                    seen = now;
                }
            }
        }
    }

    /// The response body as the client gets it.
    pub(crate) fn response_body(&self, body: Incoming) -> ResponseBody {
        ResponseBody {
            inner: body,
            read_timeout: self.read_timeout,
            idle: None,
            armed: false,
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // The config moved on: its idle connections close now, not at their idle timeout.
        if let Connections::Http1(pool) = &self.connections {
            pool.retire();
        }
    }
}

/// Sends `request` over an HTTP/1.1 connection from `pool` and, once the response head is
/// in, leaves the connection with `held` for the client connection's next request. A reused
/// connection the upstream closed before the request went out gets the request again, on a
/// new connection (as hyper-util's pool retries it).
async fn send_http1(
    pool: &Arc<Pool>,
    held: &Held,
    request: Request<RequestBody>,
) -> Result<Response<Incoming>, SendFailure> {
    let mut checkout = pool.checkout(held).await?;
    let response = match checkout.sender.try_send_request(request).await {
        Ok(response) => response,
        Err(mut e) => match e.take_message() {
            Some(request) if checkout.reused => {
                tracing::debug!(error = %e.error(), "a pooled upstream connection was closed; retrying");
                checkout.sender = Box::pin(pool.connect()).await?;
                checkout
                    .sender
                    .send_request(request)
                    .await
                    .map_err(|e| SendFailure::from_error(&e))?
            }
            _ => return Err(SendFailure::from_error(e.error())),
        },
    };
    // After a `101` the connection belongs to the tunnel.
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        pool.keep(held, checkout.sender);
    }
    Ok(response)
}

// === impl ResponseBody ===

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        // Nothing yet: the timer runs from the first wait after each frame (a body that is
        // already buffered never touches it).
        if !this.armed {
            let deadline = tokio::time::Instant::now() + this.read_timeout;
            match &mut this.idle {
                Some(idle) => idle.as_mut().reset(deadline),
                None => this.idle = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            this.armed = true;
        }
        // Set just above.
        let Some(idle) = &mut this.idle else {
            return Poll::Pending;
        };
        match idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(ReadTimedOut(this.read_timeout).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl RequestBody ===

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Poll::Ready(Some(result)), Some(progress)) = (&frame, &this.progress) {
            match result {
                Ok(_) => progress.frames.fetch_add(1, Ordering::Relaxed),
                Err(_) => {
                    progress.client_failed.store(true, Ordering::Release);
                    0
                }
            };
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl SendFailure ===

impl SendFailure {
    /// What the client is told.
    pub(crate) fn kind(&self) -> UpstreamFailure {
        self.kind
    }

    /// Whether the client's request body broke first (its fault, not the upstream's).
    pub(crate) fn client_body_failed(&self) -> bool {
        self.client_body_failed
    }

    /// No connection within `[proxy] connect_timeout` (504).
    fn connect_timed_out(timeout: Duration) -> Self {
        Self {
            kind: UpstreamFailure::TimedOut,
            cause: format!("no connection within {timeout:?}"),
            client_body_failed: false,
        }
    }

    /// A connect timeout is a timeout (504: the kernel's `ETIMEDOUT` too); any other failure
    /// to connect or to get an answer, the upstream being unavailable (502).
    fn from_error(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut timed_out = false;
        let mut cause = String::new();
        let mut source = Some(error);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
            }
            if !cause.is_empty() {
                cause.push_str(": ");
            }
            cause.push_str(&e.to_string());
            source = e.source();
        }
        Self {
            kind: if timed_out {
                UpstreamFailure::TimedOut
            } else {
                UpstreamFailure::Unavailable
            },
            cause,
            client_body_failed: false,
        }
    }
}
