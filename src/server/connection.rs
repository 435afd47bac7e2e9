//! One client connection's clocks: the idle keep-alive timeout and the HTTP/1 request head's
//! deadline (`[proxy] idle_timeout`, `header_timeout`).
//!
//! The two are separate, as in Envoy: a connection with no request in flight is idle, and
//! after `idle_timeout` it is shut down gracefully (an HTTP/2 client gets a GOAWAY); a
//! request head that has begun to arrive is governed by `header_timeout` alone, from its
//! first byte, and when that runs out the client gets a 408 and the connection closes
//! (slowloris). hyper's own `header_read_timeout` cannot do this: it starts when hyper
//! begins waiting for a head, so it also cuts idle keep-alive connections, and it closes
//! without an answer.
//!
//! The IO also hands each HTTP/1 request head to [`HeadScan`] for request smuggling; the
//! service refuses what it finds.
//!
//! [`Activity`] is what the two halves of a connection know of each other: the service
//! counts requests in flight (a request is in flight from its head until its response body
//! is finished, [`TrackedBody`]); the IO ([`ClientIo`]) sees bytes arrive. Both are
//! lock-free and cost a few atomic operations per request.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::head_scan::{HeadScan, Smuggling};
use crate::errors::{RequestRefused, request_rejection};

/// What a connection is doing, shared by its IO and its service.
#[derive(Debug)]
pub(super) struct Activity {
    /// When the connection was accepted: the origin of `idle_since`.
    epoch: Instant,
    /// Requests whose response is not finished.
    in_flight: AtomicUsize,
    /// Request heads received so far: tells the IO that the head it timed has arrived.
    heads: AtomicU64,
    /// When `in_flight` last fell to zero, in nanoseconds since `epoch`.
    idle_since: AtomicU64,
    /// An HTTP/1 request head has begun to arrive and is not complete yet.
    head_arriving: AtomicBool,
    /// The connection switched protocols (WebSocket…): its bytes are no longer HTTP.
    upgraded: AtomicBool,
    /// What the scan of the head now arriving found (a [`Smuggling`] code; 0 is nothing).
    smuggling: AtomicU8,
}

/// Counts a request as in flight while it lives.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

/// A response body that keeps its request in flight until it is finished or dropped.
#[derive(Debug)]
pub(super) struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

/// The client's connection as hyper reads it: times request heads (HTTP/1 only) and
/// answers one that is too slow with a 408 before closing.
pub(super) struct ClientIo<I> {
    inner: I,
    activity: Arc<Activity>,
    header_timeout: Option<Duration>,
    protocol: Protocol,
    /// The HTTP/1 request head now arriving.
    head: Option<ArrivingHead>,
    /// The head's deadline, kept from head to head (reset, not reallocated).
    deadline: Option<Pin<Box<Sleep>>>,
    scan: HeadScan,
    /// How much of the 408 answer has been written, once the head's time ran out.
    refusing: Option<usize>,
}

/// What the connection speaks, from its first bytes: HTTP/2 begins with the connection
/// preface (RFC 9113 §3.4, over TLS and cleartext alike), and its requests have no head to
/// time (a HEADERS frame is bounded by hyper's h2 limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// Fewer bytes than [`PREFACE_START`] seen so far, all matching it.
    Unknown {
        matched: usize,
    },
    Http1,
    Http2,
}

/// The HTTP/2 connection preface, whole: hyper-util tells the protocols apart by all 24
/// bytes, so `PRI * HTTP/1.1` is HTTP/1 here too.
const PREFACE_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A request head that has begun to arrive.
struct ArrivingHead {
    /// `Activity::heads` when the head began: once it moves, the head has arrived.
    heads_before: u64,
    /// Whether `deadline` times this head (`header_timeout` is set and the head did not
    /// arrive whole in its first read).
    timed: bool,
}

// === impl Activity ===

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            heads: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_arriving: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            smuggling: AtomicU8::new(0),
        })
    }

    /// What the scan of the request just started found in its head (clears it).
    pub(super) fn take_smuggling(&self) -> Option<Smuggling> {
        if self.smuggling.load(Ordering::Acquire) == 0 {
            return None;
        }
        Smuggling::from_code(self.smuggling.swap(0, Ordering::AcqRel))
    }

    /// A request head arrived: the request is in flight until the returned guard drops.
    pub(super) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.heads.fetch_add(1, Ordering::Release);
        self.head_arriving.store(false, Ordering::Release);
        InFlight(Arc::clone(self))
    }

    /// The connection switched protocols (a `101` went out).
    pub(super) fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    /// Resolves once the connection has had no request in flight (and no head arriving) for
    /// `timeout`.
    pub(super) async fn idle_for(&self, timeout: Duration) {
        loop {
            let busy = self.in_flight.load(Ordering::Acquire) > 0
                || self.head_arriving.load(Ordering::Acquire);
            let wake_at = if busy {
                // Looked at again a timeout later: cheaper than a wake-up per request.
                Instant::now() + timeout
            } else {
                let idle_since =
                    self.epoch + Duration::from_nanos(self.idle_since.load(Ordering::Acquire));
                let deadline = idle_since + timeout;
                if deadline <= Instant::now() {
                    return;
                }
                deadline
            };
            tokio::time::sleep_until(wake_at).await;
        }
    }

    fn nanos_since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

// === impl InFlight ===

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        // The clock is read only when the last request ends: idle starts then.
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity
                .idle_since
                .store(activity.nanos_since_epoch(), Ordering::Release);
        }
    }
}

// === impl TrackedBody ===

impl<B> TrackedBody<B> {
    pub(super) fn new(inner: B, in_flight: InFlight) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl ClientIo ===

impl<I> ClientIo<I> {
    pub(super) fn new(inner: I, activity: Arc<Activity>, header_timeout: Option<Duration>) -> Self {
        Self {
            inner,
            activity,
            header_timeout,
            protocol: Protocol::Unknown { matched: 0 },
            head: None,
            deadline: None,
            scan: HeadScan::default(),
            refusing: None,
        }
    }

    /// Notes what `read` (the bytes just read) says: the protocol, and whether a request
    /// head begins.
    fn saw(&mut self, read: &[u8]) {
        if let Protocol::Unknown { matched } = self.protocol {
            let wanted = &PREFACE_START[matched..];
            let n = wanted.len().min(read.len());
            self.protocol = if read[..n] != wanted[..n] {
                Protocol::Http1
            } else if matched + n == PREFACE_START.len() {
                Protocol::Http2
            } else {
                Protocol::Unknown {
                    matched: matched + n,
                }
            };
        }
        if self.protocol == Protocol::Http2 {
            // What was taken for the start of a head was the preface.
            if self.head.take().is_some() {
                self.activity.head_arriving.store(false, Ordering::Release);
            }
            return;
        }
        if self.activity.upgraded.load(Ordering::Acquire) {
            return;
        }
        if self.head.is_none() {
            // Bytes that arrive while no request is in flight begin the next head (a
            // request's body arrives while it is in flight).
            if self.activity.in_flight.load(Ordering::Acquire) > 0 {
                return;
            }
            self.begin_head();
        }
        if let Some(found) = self.scan.feed(read) {
            self.activity
                .smuggling
                .store(found as u8, Ordering::Release);
        }
        // A head that arrives whole in its first read is not timed: only one that does not
        // is (from the end of that read). That spares a connection's keep-alive requests a
        // clock read and a timer; its first head is always timed, as hyper-util reads at
        // most 24 bytes first to tell HTTP/2 apart.
        if !self.scan.head_complete()
            && let Some(head) = &mut self.head
            && !head.timed
            && let Some(timeout) = self.header_timeout
        {
            let deadline = Instant::now() + timeout;
            match &mut self.deadline {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.deadline = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            head.timed = true;
        }
    }

    fn begin_head(&mut self) {
        // Without a header_timeout a head is not timed, and idle_timeout still applies.
        self.activity
            .head_arriving
            .store(self.header_timeout.is_some(), Ordering::Release);
        self.activity.smuggling.store(0, Ordering::Release);
        self.scan.restart();
        self.head = Some(ArrivingHead {
            heads_before: self.activity.heads.load(Ordering::Acquire),
            timed: false,
        });
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> ClientIo<I> {
    /// Writes the 408 (as much as the socket takes now, the rest on later polls), then
    /// fails the read so that hyper closes the connection.
    fn refuse_late_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let answer = late_head_answer();
        let mut written = self.refusing.unwrap_or(0);
        while written < answer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &answer[written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                Poll::Ready(Ok(n)) => written += n,
                Poll::Pending => {
                    self.refusing = Some(written);
                    return Poll::Pending;
                }
            }
        }
        self.refusing = Some(answer.len());
        if Pin::new(&mut self.inner).poll_flush(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the request head did not arrive within header_timeout",
        )))
    }
}

/// The whole 408 answer: baton's JSON error, then the connection closes.
fn late_head_answer() -> &'static [u8] {
    static ANSWER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ANSWER.get_or_init(|| {
        let r = request_rejection(&RequestRefused::HeadTimedOut);
        let body =
            serde_json::json!({ "error": r.error, "error_description": r.description }).to_string();
        format!(
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.refusing.is_some() {
            return this.refuse_late_head(cx);
        }
        if let Some(head) = &this.head {
            if this.activity.heads.load(Ordering::Acquire) != head.heads_before {
                this.head = None;
            } else if head.timed
                && let Some(deadline) = &mut this.deadline
                && deadline.as_mut().poll(cx).is_ready()
            {
                this.head = None;
                tracing::debug!("a request head did not arrive within header_timeout");
                return this.refuse_late_head(cx);
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.saw(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ClientIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocol_after(reads: &[&[u8]]) -> Protocol {
        let mut io = ClientIo::new((), Activity::new(), None);
        for read in reads {
            io.saw(read);
        }
        io.protocol
    }

    #[test]
    fn the_http2_preface_is_told_from_http1_even_split_over_reads() {
        let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(protocol_after(&[preface]), Protocol::Http2);
        assert_eq!(
            protocol_after(&[&preface[..3], &preface[3..10], &preface[10..]]),
            Protocol::Http2
        );
        // hyper-util serves this as HTTP/1 (method PRI): so must the clocks and the scan.
        assert_eq!(protocol_after(&[b"PRI * HTTP/1.1\r\n"]), Protocol::Http1);
        assert_eq!(protocol_after(&[b"POST"]), Protocol::Http1);
        assert_eq!(protocol_after(&[b"P", b"U"]), Protocol::Http1);
        assert_eq!(protocol_after(&[b"GET / "]), Protocol::Http1);
        assert_eq!(
            protocol_after(&[b"PRI * "]),
            Protocol::Unknown { matched: 6 },
            "not decided on a prefix of both"
        );
    }

    #[test]
    fn the_late_head_answer_is_a_complete_408_with_a_json_body() {
        let answer = std::str::from_utf8(late_head_answer()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 "), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("connection: close"), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "invalid_request");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_nothing_in_flight() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(90);
        let in_flight = activity.request_started();
        // Busy for longer than the timeout: not idle.
        let idle = tokio::time::timeout(Duration::from_secs(200), activity.idle_for(timeout));
        assert!(idle.await.is_err(), "idle with a request in flight");
        drop(in_flight);
        let started = Instant::now();
        activity.idle_for(timeout).await;
        assert_eq!(
            started.elapsed().as_secs(),
            90,
            "idle from the end of the request"
        );
    }
}
