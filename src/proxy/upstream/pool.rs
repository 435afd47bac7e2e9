//! baton's own pool of HTTP/1.1 connections to the upstream, each one kept beside the client
//! connection whose request last used it.
//!
//! A keep-alive client sends request after request on one connection. The upstream
//! connection its last request used stays with that client connection ([`Held`]), and its
//! next request goes out on it without touching the shared pool. hyper-util's pool costs a
//! lock, a hashed key and idle-list bookkeeping for every request: with callgrind, the bare
//! pass-through (examples/passthrough.rs) took 33 700 instructions per request through it
//! and 25 200 with a connection held per client connection.
//!
//! The shared idle list serves what a held connection cannot: a client connection's first
//! request, requests in flight at the same time (HTTP/2 streams), and it takes back the
//! connection a client connection held when that one closes. Idle connections are closed
//! after [`IDLE_TIMEOUT`], at most [`MAX_IDLE`] are kept, and none outlive the config that
//! made their pool (a reload with another upstream retires it).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{RequestBody, SendFailure};

/// How long a pooled upstream connection may stay idle before baton closes it (an upstream
/// that closes it first takes it out of the pool at once).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle upstream connections kept, at most: enough for the concurrency a sidecar sees.
pub(super) const MAX_IDLE: usize = 256;

/// The HTTP/1.1 connections of one config's upstream.
#[derive(Debug)]
pub(crate) struct Pool {
    address: SocketAddr,
    connect_timeout: Duration,
    idle: Mutex<IdleList>,
}

#[derive(Debug, Default)]
struct IdleList {
    /// Oldest first: connections are taken from the back (the warmest), expire from the front.
    connections: Vec<Idle>,
    /// The config moved on: connections given back are closed.
    retired: bool,
    /// A task closes expired connections while the pool holds any.
    sweeping: bool,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

/// The upstream connection a client connection's last request used, kept for its next one.
/// When the client connection closes, its connection goes back to the shared pool.
#[derive(Debug, Default)]
pub(crate) struct Held(Mutex<Option<HeldSender>>);

#[derive(Debug)]
struct HeldSender {
    pool: Arc<Pool>,
    sender: SendRequest<RequestBody>,
}

/// A connection checked out for one request.
#[derive(Debug)]
pub(super) struct Checkout {
    pub(super) sender: SendRequest<RequestBody>,
    /// It carried a request before, so the upstream may have closed it meanwhile: a request
    /// it refuses unsent is tried once more on a new connection.
    pub(super) reused: bool,
}

// === impl Pool ===

impl Pool {
    pub(super) fn new(address: SocketAddr, connect_timeout: Duration) -> Self {
        Self {
            address,
            connect_timeout,
            idle: Mutex::default(),
        }
    }

    /// A connection for one request: the one `held` keeps if it is free, else an idle one
    /// from the pool, else a new one.
    pub(super) async fn checkout(self: &Arc<Self>, held: &Held) -> Result<Checkout, SendFailure> {
        if let Some(sender) = held.take_ready(self) {
            return Ok(Checkout {
                sender,
                reused: true,
            });
        }
        if let Some(sender) = self.take_idle() {
            return Ok(Checkout {
                sender,
                reused: true,
            });
        }
        // Boxed: connecting (a rare step) would make every request's future larger.
        Box::pin(self.connect()).await.map(|sender| Checkout {
            sender,
            reused: false,
        })
    }

    /// A new connection, its protocol driven by a task of its own until it closes.
    pub(super) async fn connect(&self) -> Result<SendRequest<RequestBody>, SendFailure> {
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(self.address),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(SendFailure::from_error(&e)),
            Err(_) => return Err(SendFailure::connect_timed_out(self.connect_timeout)),
        };
        // Small requests go out at once rather than waiting on Nagle.
        stream
            .set_nodelay(true)
            .map_err(|e| SendFailure::from_error(&e))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendFailure::from_error(&e))?;
        tokio::spawn(async move {
            // With upgrades: a `101` hands the connection to the tunnel (forward.rs).
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "an upstream connection failed");
            }
        });
        Ok(sender)
    }

    /// `held`'s home after a response head: the client connection keeps it for its next
    /// request, or, when it already keeps one, the pool gets it once its response is over.
    pub(super) fn keep(self: &Arc<Self>, held: &Held, sender: SendRequest<RequestBody>) {
        let Some(sender) = held.offer(self, sender) else {
            return;
        };
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let mut sender = sender;
            // Ready again when the response body has been read to its end.
            if sender.ready().await.is_ok() {
                pool.put(sender);
            }
        });
    }

    /// Takes the warmest idle connection that is still open and free.
    fn take_idle(&self) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(Idle { sender, since }) = idle.connections.pop() {
            if sender.is_ready() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    /// Gives an idle connection back (closed instead when the pool is retired or full).
    fn put(self: &Arc<Self>, sender: SendRequest<RequestBody>) {
        if !sender.is_ready() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.retired || idle.connections.len() >= MAX_IDLE {
            return;
        }
        idle.connections.push(Idle {
            sender,
            since: Instant::now(),
        });
        if !idle.sweeping {
            idle.sweeping = true;
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Closes every idle connection, and any given back later: the config that made the pool
    /// is gone.
    pub(super) fn retire(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retired = true;
        idle.connections.clear();
    }

    /// Closes connections idle for [`IDLE_TIMEOUT`] or closed by the upstream; whether any
    /// are left.
    fn close_expired(&self) -> bool {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.connections
            .retain(|idle| !idle.sender.is_closed() && idle.since.elapsed() < IDLE_TIMEOUT);
        idle.sweeping = !idle.connections.is_empty();
        idle.sweeping
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connections
            .len()
    }
}

/// Runs while `pool` holds idle connections, closing each as it expires; a pool that is
/// dropped ends it.
async fn sweep(pool: Weak<Pool>) {
    let period = IDLE_TIMEOUT / 3;
    loop {
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else { return };
        if !pool.close_expired() {
            return;
        }
    }
}

// === impl Held ===

impl Held {
    /// The held connection, if it belongs to `pool` and is free for a request now. One that
    /// belongs to an older config's pool is closed; a busy one (an HTTP/2 client's other
    /// stream is still reading its response) stays.
    fn take_ready(&self, pool: &Arc<Pool>) -> Option<SendRequest<RequestBody>> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let held = slot.as_ref()?;
        if !Arc::ptr_eq(&held.pool, pool) || held.sender.is_closed() {
            *slot = None;
            return None;
        }
        if !held.sender.is_ready() {
            return None;
        }
        slot.take().map(|held| held.sender)
    }

    /// Keeps `sender` when nothing is held; gives it back otherwise.
    fn offer(
        &self,
        pool: &Arc<Pool>,
        sender: SendRequest<RequestBody>,
    ) -> Option<SendRequest<RequestBody>> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return Some(sender);
        }
        *slot = Some(HeldSender {
            pool: Arc::clone(pool),
            sender,
        });
        None
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let slot = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(HeldSender { pool, sender }) = slot.take() {
            // Outside a runtime (its shutdown) there is nobody to sweep: the connection closes.
            if tokio::runtime::Handle::try_current().is_ok() {
                pool.put(sender);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::{Request, Response};
    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use tokio::net::TcpListener;

    use super::*;

    /// A real HTTP/1.1 upstream answering `ok` after `delay`; counts its connections.
    async fn upstream(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let service = hyper::service::service_fn(move |_: Request<Incoming>| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (addr, accepted)
    }

    /// An empty request body as the proxy forwards one: hyper makes `Incoming` bodies only for
    /// messages it parsed, so a real server parses one.
    async fn empty_body() -> RequestBody {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (parsed, body) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let parsed = Mutex::new(Some(parsed));
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                if let Some(parsed) = parsed.lock().unwrap().take() {
                    let _ = parsed.send(request.into_body());
                }
                async { Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new()))) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        RequestBody {
            inner: body.await.unwrap(),
            progress: None,
        }
    }

    /// A body-less `GET /` on a connection from `pool`; the response read to its end.
    async fn get(pool: &Arc<Pool>, held: &Held) -> (u16, bool) {
        let body = empty_body().await;
        let mut checkout = pool.checkout(held).await.unwrap();
        let request = Request::builder()
            .uri("/")
            .header("host", "upstream.test")
            .body(body)
            .unwrap();
        let response = checkout.sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        pool.keep(held, checkout.sender);
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
        (status, checkout.reused)
    }

    #[tokio::test]
    async fn a_held_connection_serves_the_next_request_and_goes_to_the_pool_when_dropped() {
        let (addr, accepted) = upstream(Duration::ZERO).await;
        let pool = Arc::new(Pool::new(addr, Duration::from_secs(5)));
        let held = Held::default();
        assert_eq!(get(&pool, &held).await, (200, false));
        assert_eq!(get(&pool, &held).await, (200, true));
        assert_eq!(pool.idle_count(), 0, "the client connection keeps it");
        drop(held);
        assert_eq!(
            pool.idle_count(),
            1,
            "given back when the client connection goes"
        );
        assert_eq!(get(&pool, &Held::default()).await, (200, true));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_of_one_client_connection_each_get_a_connection() {
        let (addr, accepted) = upstream(Duration::from_millis(100)).await;
        let pool = Arc::new(Pool::new(addr, Duration::from_secs(5)));
        let held = Held::default();
        let (a, b) = tokio::join!(get(&pool, &held), get(&pool, &held));
        assert_eq!((a.0, b.0), (200, 200));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // One is held; the other goes to the pool once its response is over.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.idle_count(), 1);
        let (a, b) = tokio::join!(get(&pool, &held), get(&pool, &held));
        assert_eq!((a, b), ((200, true), (200, true)));
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "both reused");
    }

    #[tokio::test]
    async fn a_retired_pool_closes_its_idle_connections_and_those_given_back() {
        let (addr, _) = upstream(Duration::ZERO).await;
        let pool = Arc::new(Pool::new(addr, Duration::from_secs(5)));
        let (one, two) = (Held::default(), Held::default());
        get(&pool, &one).await;
        get(&pool, &two).await;
        drop(one);
        assert_eq!(pool.idle_count(), 1);
        pool.retire();
        assert_eq!(pool.idle_count(), 0);
        drop(two);
        assert_eq!(
            pool.idle_count(),
            0,
            "given back after the retirement: closed"
        );
    }

    #[tokio::test]
    async fn a_connection_held_from_an_older_pool_is_not_used_by_a_new_one() {
        let (old_addr, old_accepted) = upstream(Duration::ZERO).await;
        let (new_addr, new_accepted) = upstream(Duration::ZERO).await;
        let old = Arc::new(Pool::new(old_addr, Duration::from_secs(5)));
        let new = Arc::new(Pool::new(new_addr, Duration::from_secs(5)));
        let held = Held::default();
        get(&old, &held).await;
        assert_eq!(get(&new, &held).await, (200, false));
        assert_eq!(old_accepted.load(Ordering::SeqCst), 1);
        assert_eq!(new_accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_listener_is_unavailable_and_a_connect_nobody_answers_times_out() {
        let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = unused.local_addr().unwrap();
        drop(unused);
        let pool = Arc::new(Pool::new(addr, Duration::from_secs(5)));
        let failure = pool.checkout(&Held::default()).await.unwrap_err();
        assert_eq!(failure.kind(), crate::errors::UpstreamFailure::Unavailable);
        // A listener that never accepts, its queue full: the kernel drops further SYNs.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let full = socket.listen(1).unwrap();
        let addr = full.local_addr().unwrap();
        let mut queued = Vec::new();
        while let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            queued.push(stream);
        }
        let pool = Arc::new(Pool::new(addr, Duration::from_millis(100)));
        let failure = pool.checkout(&Held::default()).await.unwrap_err();
        assert_eq!(failure.kind(), crate::errors::UpstreamFailure::TimedOut);
    }
}
