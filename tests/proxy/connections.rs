//! What a client connection to baton lives through: the idle and request-head timeouts, a
//! response streamed as the upstream writes it (and cut where the upstream cut it), and
//! hostile HTTP/1.1 framing (request smuggling, oversized heads) that never reaches the app.

use super::*;

use tokio::net::TcpListener;

/// One keep-alive request (no `Connection: close`) on `stream`, and its answer read whole.
async fn keep_alive_get(stream: &mut BufReader<TcpStream>, target: &str) -> Answer {
    keep_alive_get_with(stream, target, "").await
}

/// How long `stream` stays open from now until baton closes it (EOF or reset), reading and
/// keeping what arrives meanwhile; panics after `limit`.
async fn open_for(stream: &mut BufReader<TcpStream>, limit: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0_u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("still open after {limit:?}"));
    (started.elapsed(), received)
}

/// Sends `bytes` on a new connection and reads what comes back until baton closes it:
/// how long that took and what arrived, as text.
async fn send_until_closed(addr: SocketAddr, bytes: &[u8]) -> (Duration, String) {
    let mut stream = connect(addr).await;
    stream.get_mut().write_all(bytes).await.unwrap();
    let (open, received) = open_for(&mut stream, Duration::from_secs(10)).await;
    (open, String::from_utf8_lossy(&received).into_owned())
}

async fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(addr).await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout_and_a_busy_one_is_not() {
    let h = Harness::start(Opts {
        idle_timeout: "2s",
        ..Opts::default()
    })
    .await;
    // Busy: a request every half second for twice the idle timeout, on one connection.
    let mut busy = connect(h.baton.addr).await;
    let started = Instant::now();
    let mut last_answer = started;
    while started.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(keep_alive_get(&mut busy, "/public/busy").await.status, 200);
        last_answer = Instant::now();
    }
    // Then idle: closed about idle_timeout after its last answer, with nothing sent.
    let (_, received) = open_for(&mut busy, Duration::from_secs(10)).await;
    let open = last_answer.elapsed();
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    assert!(
        open >= Duration::from_millis(1500) && open < Duration::from_secs(5),
        "closed {open:?} after the last answer; idle_timeout is 2 s"
    );
    // A connection that never sends anything is idle from the start.
    let mut silent = connect(h.baton.addr).await;
    let (open, _) = open_for(&mut silent, Duration::from_secs(10)).await;
    assert!(open >= Duration::from_millis(1500), "{open:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_h2c_connection_gets_a_goaway_after_idle_timeout() {
    let h = Harness::start(Opts {
        idle_timeout: "2s",
        ..Opts::default()
    })
    .await;
    let stream = TcpStream::connect(h.baton.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get(format!("http://{}/public/h2", h.baton.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answered = Instant::now();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    // The client's side of the connection ends cleanly once baton's GOAWAY arrives.
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the h2c connection still open 10 s after its last answer")
        .unwrap();
    let open = answered.elapsed();
    assert!(ended.is_ok(), "not a clean GOAWAY: {ended:?}");
    assert!(open >= Duration::from_millis(1500), "{open:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_slower_than_header_timeout_gets_408_and_a_close() {
    let h = Harness::start(Opts {
        header_timeout: "1s",
        idle_timeout: "30s",
        ..Opts::default()
    })
    .await;
    // The head begins and never ends (slowloris).
    let (open, received) = send_until_closed(
        h.baton.addr,
        b"GET /public/slow HTTP/1.1\r\nHost: app.example.test\r\nX-Slow: 1",
    )
    .await;
    assert!(received.starts_with("HTTP/1.1 408 "), "{received:?}");
    assert!(received.contains("\"invalid_request\""), "{received:?}");
    assert!(
        open >= Duration::from_millis(900) && open < Duration::from_secs(5),
        "answered {open:?} after the first byte; header_timeout is 1 s"
    );

    // `PRI * HTTP/1.1` is HTTP/1 (only the whole HTTP/2 preface is HTTP/2): timed too.
    let (_, received) = send_until_closed(h.baton.addr, b"PRI * HTTP/1.1\r\nHost: a").await;
    assert!(received.starts_with("HTTP/1.1 408 "), "{received:?}");

    // A head trickled a few bytes at a time but complete within the timeout is served.
    let mut trickle = connect(h.baton.addr).await;
    for piece in [
        "GET /public/tr",
        "ickle HTTP/1.1\r\n",
        "Host: app.example.test\r\n",
        "\r\n",
    ] {
        trickle.get_mut().write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (status, _) = read_head(&mut trickle).await;
    assert_eq!(status, 200);

    // Waiting for the next request is idleness, not a slow head: a keep-alive connection
    // quiet for longer than header_timeout still serves its next request.
    let mut waiting = connect(h.baton.addr).await;
    assert_eq!(
        keep_alive_get(&mut waiting, "/public/first").await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        keep_alive_get(&mut waiting, "/public/second").await.status,
        200
    );

    let targets: Vec<String> = h.upstream.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        ["/public/trickle", "/public/first", "/public/second"],
        "the slow request must not reach the app"
    );
}

/// An upstream that answers every connection with `script`: it reads the request head, then
/// writes each piece after its delay; `reset` ends the connection with a TCP reset instead
/// of a close.
async fn scripted_upstream(script: Vec<(Duration, Vec<u8>)>, reset: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let script = script.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                if !skip_request_head(&mut stream).await {
                    return;
                }
                let mut stream = stream.into_inner();
                for (delay, bytes) in script {
                    tokio::time::sleep(delay).await;
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                if reset {
                    stream.set_zero_linger().unwrap();
                }
                drop(stream);
            });
        }
    });
    addr
}

/// Reads a request head up to its empty line; `false` when the connection ends first.
async fn skip_request_head(stream: &mut BufReader<TcpStream>) -> bool {
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        if line == "\r\n" {
            return true;
        }
    }
}

/// baton, with its test config, in front of `upstream`.
async fn baton_in_front_of(upstream: SocketAddr) -> Harness {
    Harness::start(Opts {
        upstream_at: Some(upstream),
        ..Opts::default()
    })
    .await
}

/// An upstream that answers `200 ok` to up to `per_connection` requests on each connection,
/// then closes it without saying so (no `Connection: close`: the keep-alive race every pool
/// meets). Counts the connections it accepted.
async fn counting_upstream(per_connection: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                for _ in 0..per_connection {
                    if !skip_request_head(&mut stream).await {
                        return;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.get_mut().write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keep_alive_clients_requests_share_one_upstream_connection_which_a_later_client_reuses() {
    let (upstream, accepted) = counting_upstream(usize::MAX).await;
    let h = baton_in_front_of(upstream).await;
    let mut first = connect(h.baton.addr).await;
    for i in 0..5 {
        let answer = keep_alive_get(&mut first, &format!("/public/{i}")).await;
        assert_eq!((answer.status, answer.text().as_str()), (200, "ok"));
    }
    drop(first);
    // baton gives the connection back to its pool when it sees the client go.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = connect(h.baton.addr).await;
    for i in 0..5 {
        let answer = keep_alive_get(&mut second, &format!("/public/again/{i}")).await;
        assert_eq!((answer.status, answer.text().as_str()), (200, "ok"));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "ten requests from two client connections, one after the other, on one upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_closes_after_every_answer_fails_no_request() {
    let (upstream, accepted) = counting_upstream(1).await;
    let h = baton_in_front_of(upstream).await;
    let mut client = connect(h.baton.addr).await;
    for i in 0..10 {
        let answer = keep_alive_get(&mut client, &format!("/public/{i}")).await;
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (200, "ok"),
            "request {i}"
        );
        // Time for the close to reach baton: the connection it kept is then seen closed and
        // replaced, not written to.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
}

/// baton in front of `upstream`, and a connection on which `GET target` was sent and the
/// response head read (status, headers); the body is left to read.
async fn head_through_baton(
    upstream: SocketAddr,
    target: &str,
) -> (Harness, BufReader<TcpStream>, u16, Vec<(String, String)>) {
    let h = baton_in_front_of(upstream).await;
    let mut stream = connect(h.baton.addr).await;
    write_get(&mut stream, target, "").await;
    let (status, headers) = read_head(&mut stream).await;
    (h, stream, status, headers)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_reset_mid_body_reaches_the_client_as_the_bytes_sent_then_a_close() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 100000\r\n\r\n";
    let sent = vec![b'x'; 3000];
    let upstream = scripted_upstream(
        vec![
            (Duration::ZERO, head.to_vec()),
            (Duration::ZERO, sent.clone()),
            // Long enough for baton to pass the bytes on before the reset.
            (Duration::from_millis(300), Vec::new()),
        ],
        true,
    )
    .await;
    let (_h, mut stream, status, headers) = head_through_baton(upstream, "/public/download").await;
    assert_eq!(status, 200, "{headers:?}");
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.as_str());
    assert_eq!(length, Some("100000"), "{headers:?}");
    let (_, body) = open_for(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(
        body.len(),
        sent.len(),
        "the bytes sent before the reset, then the end"
    );
    assert_eq!(body, sent);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_length_response_arrives_piece_by_piece_as_the_upstream_writes_it() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 3000\r\n\r\n";
    let gap = Duration::from_millis(600);
    let upstream = scripted_upstream(
        vec![
            (Duration::ZERO, head.to_vec()),
            (Duration::ZERO, vec![b'a'; 1000]),
            (gap, vec![b'b'; 1000]),
            (gap, vec![b'c'; 1000]),
        ],
        false,
    )
    .await;
    let (_h, mut stream, status, headers) = head_through_baton(upstream, "/public/slow-body").await;
    assert_eq!(status, 200);
    let head_at = Instant::now();
    // When each byte arrived, relative to the head.
    let mut arrivals: Vec<(u8, Duration)> = Vec::new();
    read_body(&mut stream, status, &headers, |piece| {
        let at = head_at.elapsed();
        arrivals.extend(piece.iter().map(|&b| (b, at)));
    })
    .await;
    assert_eq!(arrivals.len(), 3000);
    let last_of = |byte: u8| arrivals.iter().rev().find(|(b, _)| *b == byte).unwrap().1;
    let first_of = |byte: u8| arrivals.iter().find(|(b, _)| *b == byte).unwrap().1;
    // The first piece arrived before the upstream wrote the second, and so on.
    assert!(
        last_of(b'a') < Duration::from_millis(300),
        "{:?}",
        last_of(b'a')
    );
    assert!(
        first_of(b'b') >= Duration::from_millis(400) && last_of(b'b') < first_of(b'c'),
        "b {:?}..{:?}, c from {:?}",
        first_of(b'b'),
        last_of(b'b'),
        first_of(b'c')
    );
    assert!(
        first_of(b'c') >= Duration::from_millis(1000),
        "{:?}",
        first_of(b'c')
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn smuggling_framing_and_oversized_heads_are_refused_and_reach_no_upstream() {
    let h = Harness::start(Opts::default()).await;
    let token = h.idp_token("grace");
    let cases: Vec<(&str, String)> = vec![
        (
            "Content-Length with Transfer-Encoding",
            "POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin/x HTTP/1.1\r\nHost: a\r\n\r\n".to_owned(),
        ),
        (
            "two different Content-Lengths",
            "POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd".to_owned(),
        ),
        (
            "a Content-Length list",
            "POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 40\r\n\r\nabcd".to_owned(),
        ),
        (
            "Transfer-Encoding that does not end in chunked",
            "POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n".to_owned(),
        ),
        (
            "an unknown Transfer-Encoding",
            "POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n".to_owned(),
        ),
        (
            "whitespace before the colon",
            "POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n".to_owned(),
        ),
        (
            "an obs-fold continuation line",
            "POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n".to_owned(),
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            "POST /public/x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_owned(),
        ),
        (
            "a bare LF in a header line",
            "GET /public/x HTTP/1.1\r\nHost: a\r\nX-A: 1\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
        ),
        (
            "a bare LF behind empty lines before the request line",
            "\r\n\r\nGET /public/x HTTP/1.1\r\nHost: a\nX: b\r\n\r\n".to_owned(),
        ),
        (
            "a 200 KiB header block",
            format!(
                "GET /public/x HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
                "b".repeat(200 * 1024)
            ),
        ),
        (
            "a bearer token with a smuggled second request",
            format!(
                "POST /admin/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
        ),
    ];
    for (what, request) in &cases {
        let (_, received) = send_until_closed(h.baton.addr, request.as_bytes()).await;
        let status: u16 = received
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(
            [400, 431, 501].contains(&status),
            "{what}: answered {received:?}"
        );
        assert_eq!(
            received.matches("HTTP/1.1 ").count(),
            1,
            "{what}: one answer, then the connection closes: {received:?}"
        );
    }
    assert_eq!(h.upstream.arrived(), 0, "{:#?}", h.upstream.seen());

    // A body is streamed, so the app may see the head of a request whose body then turns
    // out malformed; the client is told it was its body (400), not the upstream (502).
    let mut stream = connect(h.baton.addr).await;
    stream
        .get_mut()
        .write_all(
            b"POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
        )
        .await
        .unwrap();
    let (status, _) = read_head(&mut stream).await;
    assert_eq!(status, 400, "a malformed chunk size");

    // A refusal that leaves the body unread closes the connection: what hyper would read of
    // the body next must not be taken for the next request head (a body with bare LFs here).
    let body = "{\n  \"a\": 1\n}\n".repeat(1000);
    let mut stream = connect(h.baton.addr).await;
    let request = format!(
        "POST /admin/x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .unwrap();
    let (status, headers) = read_head(&mut stream).await;
    assert_eq!(status, 401, "no token");
    assert!(
        headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v == "close"),
        "{headers:?}"
    );
}

/// Writes a keep-alive `GET target` with these extra header lines (each ending in CRLF).
async fn write_get(stream: &mut BufReader<TcpStream>, target: &str, lines: &str) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: app.example.test\r\n{lines}\r\n");
    stream
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .unwrap();
}

/// `GET target` on a keep-alive `stream` with these extra header lines, answer read whole.
async fn keep_alive_get_with(
    stream: &mut BufReader<TcpStream>,
    target: &str,
    lines: &str,
) -> Answer {
    write_get(stream, target, lines).await;
    let (status, headers) = read_head(stream).await;
    let mut body = Vec::new();
    read_body(stream, status, &headers, |piece| {
        body.extend_from_slice(piece)
    })
    .await;
    Answer {
        status,
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_keep_alive_connection_changing_its_token_gets_each_tokens_own_claims() {
    let h = Harness::start(Opts::default()).await;
    let (alice, bob) = (h.idp_token("alice"), h.idp_token("bob"));
    let mut stream = connect(h.baton.addr).await;
    // What the connection remembers of its last exchange must never stand for another
    // request: another token, another spelling of the same one, two lines, or none.
    let requests = [
        (
            format!("Authorization: Bearer {alice}\r\n"),
            200,
            Some("alice"),
        ),
        (
            format!("Authorization: Bearer {alice}\r\n"),
            200,
            Some("alice"),
        ),
        (format!("Authorization: Bearer {bob}\r\n"), 200, Some("bob")),
        (format!("Authorization: bearer {bob}\r\n"), 200, Some("bob")),
        (
            format!("Authorization: Bearer {alice}\r\n"),
            200,
            Some("alice"),
        ),
        (
            format!("Authorization: Bearer {alice}\r\nAuthorization: Bearer {alice}\r\n"),
            400,
            None,
        ),
        (
            format!("Authorization: Bearer {alice}\r\n"),
            200,
            Some("alice"),
        ),
        (format!("Authorization: Bearer  {alice}x\r\n"), 401, None),
        (String::new(), 401, None),
        (
            format!("Authorization: Bearer {alice}\r\n"),
            200,
            Some("alice"),
        ),
    ];
    let mut expected_users = Vec::new();
    for (i, (lines, status, user)) in requests.iter().enumerate() {
        let answer = keep_alive_get_with(&mut stream, &format!("/orders/{i}"), lines).await;
        assert_eq!(answer.status, *status, "request {i}: {answer:?}");
        expected_users.extend(*user);
    }
    let seen = h.upstream.seen();
    let users: Vec<String> = seen
        .iter()
        .map(|request| {
            let claims = h.verify_minted(request.bearer().unwrap(), KEY_A, STATEBACKED_AUD);
            claims["act"]["user"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(users, expected_users, "{seen:#?}");
}
