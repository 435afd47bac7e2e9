//! HTTP/2 through baton: h2c clients (prior knowledge) on the proxy port, many streams on one
//! connection, and an h2c upstream (`[proxy] upstream_protocol = "h2c"`) with trailers.

use super::*;

use hyper::client::conn::http2::SendRequest;

/// An HTTP/2 connection with prior knowledge to `addr` (what `curl --http2-prior-knowledge`
/// opens), driven in the background.
pub(super) async fn h2c_connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 handshake with baton");
    tokio::spawn(connection);
    sender
}

/// One answer over HTTP/2: status, body, trailers.
struct H2Answer {
    status: u16,
    body: Bytes,
    trailers: Option<http::HeaderMap>,
}

async fn h2c_get(
    sender: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
) -> H2Answer {
    let mut request = Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header("te", "trailers");
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    sender.ready().await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
        .await
        .expect("an answer within 20 s")
        .expect("an HTTP/2 answer");
    assert_eq!(response.version(), http::Version::HTTP_2);
    let status = response.status().as_u16();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    H2Answer {
        status,
        body: collected.to_bytes(),
        trailers,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn many_h2c_streams_on_one_connection_are_each_exchanged_for_their_own_token() {
    let h = Harness::start(Opts::default()).await;
    let sender = h2c_connect(h.baton.addr).await;
    let streams = 24;
    let mut tasks = Vec::new();
    for i in 0..streams {
        let mut sender = sender.clone();
        let token = h.idp_token(&format!("stream-{i}"));
        let addr = h.baton.addr;
        tasks.push(tokio::spawn(async move {
            (
                i,
                h2c_get(&mut sender, addr, &format!("/h2/{i}"), Some(&token)).await,
            )
        }));
    }
    // An HTTP/1.1 client on the same port at the same time.
    let http1 = h.get("/h1", Some(&h.idp_token("plain"))).await;
    assert_eq!(http1.status, 200, "{http1:?}");
    for task in tasks {
        let (i, answer) = task.await.unwrap();
        assert_eq!(answer.status, 200, "stream {i}: {:?}", answer.body);
        let echoed: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(echoed["target"], format!("/h2/{i}"));
        let forwarded = echoed["authorization"].as_str().unwrap();
        let minted = forwarded.strip_prefix("Bearer ").unwrap();
        assert_eq!(
            h.verify_minted(minted, KEY_A, STATEBACKED_AUD)["act"]["user"],
            format!("stream-{i}"),
            "stream {i} got another stream's token"
        );
    }
    let seen = h.upstream.seen();
    assert_eq!(seen.len(), streams + 1);
    for request in seen.iter().filter(|s| s.target.starts_with("/h2/")) {
        // The app speaks HTTP/1.1 (the default upstream_protocol), with the client's
        // `:authority` as `Host`, and no HTTP/2 `te` toward an HTTP/1.1 upstream.
        assert_eq!(request.version, "HTTP/1.1", "{request:?}");
        let authority = h.baton.addr.to_string();
        assert_eq!(request.header("host"), Some(authority.as_str()));
        assert_eq!(request.header("x-forwarded-host"), Some(authority.as_str()));
        assert_eq!(request.header("te"), None, "{request:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h2c_refusal_is_baton_s_own_answer_and_reaches_no_upstream() {
    let h = Harness::start(Opts::default()).await;
    let mut sender = h2c_connect(h.baton.addr).await;
    let answer = h2c_get(&mut sender, h.baton.addr, "/api", None).await;
    assert_eq!(answer.status, 401);
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["error"], "invalid_request");
    let answer = h2c_get(&mut sender, h.baton.addr, "/public/..%2fapi", None).await;
    assert_eq!(answer.status, 400);
    assert_eq!(h.upstream.arrived(), 0, "{:#?}", h.upstream.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h2c_upstream_gets_http2_streams_with_the_baton_token_and_trailers_come_back() {
    let h = Harness::start(Opts {
        upstream_protocol: "h2c",
        ..Opts::default()
    })
    .await;
    // Over HTTP/1.1 from the client: the app still gets HTTP/2.
    let answer = h.get("/plain", Some(&h.idp_token("uma"))).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // Over h2c end to end, with trailers asked for (`te: trailers`) and sent.
    let mut sender = h2c_connect(h.baton.addr).await;
    let answer = h2c_get(
        &mut sender,
        h.baton.addr,
        "/trailers",
        Some(&h.idp_token("vic")),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], b"payload");
    let trailers = answer.trailers.expect("the upstream's trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(trailers.get("grpc-message").unwrap(), "fine");

    let seen = h.upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for (request, user) in seen.iter().zip(["uma", "vic"]) {
        assert_eq!(request.version, "HTTP/2.0", "{request:?}");
        let minted = request.bearer().expect("a baton token");
        assert_eq!(
            h.verify_minted(minted, KEY_A, STATEBACKED_AUD)["act"]["user"],
            user
        );
        // The stream's `:authority` is the upstream's; the client's host is forwarded.
        let authority = h.baton.addr.to_string();
        assert_eq!(request.header("host"), None, "{request:?}");
        assert_eq!(request.header("x-forwarded-host"), Some(authority.as_str()));
    }
    assert_eq!(seen[1].header("te"), Some("trailers"), "{:?}", seen[1]);
    assert_eq!(seen[0].header("te"), None, "{:?}", seen[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_with_prior_knowledge_gets_exchanged_streams_beside_http1_clients() {
    let h = Harness::start(Opts::default()).await;
    let token = h.idp_token("curl-user");
    // curl reads the token from a file (`-H @file`), never from its command line.
    let header_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        header_file.path(),
        format!("authorization: Bearer {token}\n"),
    )
    .unwrap();
    // One request per curl, several curls at once: curl 7.88 (Debian 12) fails a second
    // stream on a prior-knowledge connection against any server (hyper and nginx alike:
    // "Error in the HTTP2 framing layer"), so many streams on one connection are the Rust
    // client's test above.
    let streams = 6;
    let curls: Vec<_> = (0..streams)
        .map(|i| {
            tokio::process::Command::new("curl")
                .args(["--silent", "--show-error", "--http2-prior-knowledge", "-H"])
                .arg(format!("@{}", header_file.path().display()))
                .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
                .arg(format!("http://{}/curl/{i}", h.baton.addr))
                .output()
        })
        .collect();
    let curls: Vec<_> = curls.into_iter().map(tokio::spawn).collect();
    // HTTP/1.1 clients on the same port while curl's streams are open.
    for i in 0..4 {
        let answer = h
            .get(&format!("/h1/{i}"), Some(&h.idp_token("plain")))
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    for curl in curls {
        let output = tokio::time::timeout(Duration::from_secs(30), curl)
            .await
            .expect("curl done within 30 s")
            .unwrap()
            .expect("curl (scripts/test.sh installs it)");
        assert!(output.status.success(), "curl failed: {output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "2 200");
    }
    let seen = h.upstream.seen();
    let from_curl: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.starts_with("/curl/"))
        .collect();
    assert_eq!(from_curl.len(), streams);
    for request in from_curl {
        let minted = request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_else(|| panic!("no bearer token: {request:?}"));
        assert_ne!(minted, token, "the IdP token reached the app");
        assert_eq!(
            h.verify_minted(minted, KEY_A, STATEBACKED_AUD)["act"]["user"],
            "curl-user"
        );
    }
}
