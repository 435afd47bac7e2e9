//! TLS on the proxy listener (`[proxy] tls`): HTTP/2 and HTTP/1.1 chosen by ALPN (with our
//! rustls client and with curl), tokens exchanged over TLS with `X-Forwarded-Proto: https`,
//! and the certificate swapped in place while open connections keep working.

use super::*;

use support::tls::{negotiated_protocol, peer_certificate};
use tokio_rustls::client::TlsStream;

/// How long a rotated certificate may take to be served: two polls of the files (2 s each)
/// and some slack for a loaded machine.
const ROTATION: Duration = Duration::from_secs(15);

async fn tls_harness() -> Harness {
    Harness::start(Opts {
        tls: true,
        ..Opts::default()
    })
    .await
}

impl Harness {
    fn test_ca(&self) -> &TestCa {
        &self.tls.as_ref().expect("a harness with Opts::tls").0
    }

    /// The leaf baton started with.
    fn first_leaf(&self) -> &Leaf {
        &self.tls.as_ref().expect("a harness with Opts::tls").1
    }

    fn tls_file(&self, name: &str) -> std::path::PathBuf {
        self._dir.path().join("tls").join(name)
    }

    /// Waits until a new connection is served the certificate `wanted`.
    async fn wait_for_certificate(&self, wanted: &[u8]) {
        let deadline = Instant::now() + ROTATION;
        loop {
            let stream = self.test_ca().connect(self.baton.addr, &[b"h2"]).await;
            if peer_certificate(&stream) == wanted {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "new connections never got the new certificate:\n{}",
                self.baton.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// HTTP/1.1 over an established TLS stream, driven in the background.
async fn http1_over(
    stream: TlsStream<TcpStream>,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("an HTTP/1.1 handshake over TLS");
    tokio::spawn(connection);
    sender
}

/// HTTP/2 over an established TLS stream, driven in the background.
async fn http2_over(
    stream: TlsStream<TcpStream>,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 handshake over TLS");
    tokio::spawn(connection);
    sender
}

/// `GET https://localhost:<port><path>` with the bearer `token`.
fn get_request(addr: SocketAddr, path: &str, token: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("https://localhost:{}{path}", addr.port()))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Status and version of an answer (its body read to the end).
async fn read_answer(response: Response<Incoming>) -> (u16, http::Version) {
    let status = response.status().as_u16();
    let version = response.version();
    response.into_body().collect().await.unwrap();
    (status, version)
}

async fn get_http1(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
    token: &str,
) -> (u16, http::Version) {
    let mut request = get_request(addr, path, token);
    // HTTP/1.1 sends the origin form with `Host`, as any client does.
    *request.uri_mut() = path.parse().unwrap();
    request.headers_mut().insert(
        "host",
        format!("localhost:{}", addr.port()).parse().unwrap(),
    );
    sender.ready().await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
        .await
        .expect("an answer within 20 s")
        .expect("an HTTP/1.1 answer");
    read_answer(response).await
}

async fn get_http2(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
    token: &str,
) -> (u16, http::Version) {
    sender.ready().await.unwrap();
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        sender.send_request(get_request(addr, path, token)),
    )
    .await
    .expect("an answer within 20 s")
    .expect("an HTTP/2 answer");
    read_answer(response).await
}

/// The upstream's request for `target`: exchanged (a baton token for `user`, never the IdP
/// token) and marked as having come over TLS.
fn assert_exchanged_over_tls(h: &Harness, target: &str, user: &str) {
    let seen = h.upstream.seen();
    let request = seen
        .iter()
        .find(|seen| seen.target == target)
        .unwrap_or_else(|| panic!("the upstream never received {target}: {seen:#?}"));
    let forwarded = request
        .bearer()
        .expect("a bearer token reached the upstream");
    let claims = h.verify_minted(forwarded, KEY_A, STATEBACKED_AUD);
    assert_eq!(claims["act"]["user"], user, "{claims}");
    assert_eq!(
        request.header("x-forwarded-proto"),
        Some("https"),
        "{request:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alpn_chooses_http2_or_http11_over_tls_and_tokens_are_exchanged() {
    let h = tls_harness().await;
    let addr = h.baton.addr;
    let token = h.idp_token("tess");

    let stream = h.test_ca().connect(addr, &[b"h2"]).await;
    assert_eq!(negotiated_protocol(&stream).as_deref(), Some(&b"h2"[..]));
    assert_eq!(peer_certificate(&stream), h.first_leaf().cert_der);
    let mut http2 = http2_over(stream).await;
    let answer = get_http2(&mut http2, addr, "/over/h2", &token).await;
    assert_eq!(answer, (200, http::Version::HTTP_2));
    assert_exchanged_over_tls(&h, "/over/h2", "tess");

    let stream = h.test_ca().connect(addr, &[b"http/1.1"]).await;
    assert_eq!(
        negotiated_protocol(&stream).as_deref(),
        Some(&b"http/1.1"[..])
    );
    let mut http1 = http1_over(stream).await;
    let answer = get_http1(&mut http1, addr, "/over/http1", &token).await;
    assert_eq!(answer, (200, http::Version::HTTP_11));
    assert_exchanged_over_tls(&h, "/over/http1", "tess");

    // A client offering both gets the server's first choice, HTTP/2.
    let stream = h.test_ca().connect(addr, &[b"http/1.1", b"h2"]).await;
    assert_eq!(negotiated_protocol(&stream).as_deref(), Some(&b"h2"[..]));

    // The listener speaks TLS only: a cleartext request gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /plain HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut reply)).await;
    assert!(
        !reply.starts_with(b"HTTP/"),
        "a cleartext request was answered in cleartext: {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        !h.upstream.seen().iter().any(|seen| seen.target == "/plain"),
        "a cleartext request reached the upstream"
    );
}

/// Runs curl (software nobody here wrote) against baton over TLS, trusting the test CA only;
/// returns the body and the HTTP version curl used.
async fn curl(h: &Harness, version_flag: &str, path: &str, token: &str) -> (String, String) {
    let ca_file = h.tls_file("ca.pem");
    std::fs::write(&ca_file, &h.test_ca().cert_pem).unwrap();
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", version_flag])
        .arg("--cacert")
        .arg(&ca_file)
        .args(["--write-out", "\n%{http_version}"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("https://127.0.0.1:{}{path}", h.baton.addr.port()))
        .output()
        .await
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl {version_flag} failed: {}{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr),
        h.baton.log()
    );
    let (body, version) = stdout.rsplit_once('\n').expect("curl's --write-out line");
    (body.to_owned(), version.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_trusting_the_test_ca_gets_http2_and_http11() {
    let h = tls_harness().await;
    let token = h.idp_token("curly");

    let (body, version) = curl(&h, "--http2", "/by/curl/h2", &token).await;
    assert_eq!(version, "2", "{body}");
    let echoed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["target"], "/by/curl/h2", "{echoed}");
    assert_exchanged_over_tls(&h, "/by/curl/h2", "curly");

    let (body, version) = curl(&h, "--http1.1", "/by/curl/http1", &token).await;
    assert_eq!(version, "1.1", "{body}");
    assert_exchanged_over_tls(&h, "/by/curl/http1", "curly");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_certificate_serves_new_connections_while_open_ones_keep_answering() {
    let h = tls_harness().await;
    let addr = h.baton.addr;
    let token = h.idp_token("rota");
    let first = h.first_leaf();

    let old_stream = h.test_ca().connect(addr, &[b"http/1.1"]).await;
    assert_eq!(peer_certificate(&old_stream), first.cert_der);
    let mut old_connection = http1_over(old_stream).await;
    let answer = get_http1(&mut old_connection, addr, "/before", &token).await;
    assert_eq!(answer.0, 200);

    // cert-manager's renewal: the same CA, a new key, serial and subject, written in place.
    let second = h.test_ca().leaf("baton second", 2);
    assert_ne!(second.cert_der, first.cert_der);
    second.write(&h.tls_file("cert.pem"), &h.tls_file("key.pem"));
    h.wait_for_certificate(&second.cert_der).await;
    assert!(
        h.baton.log().contains("the TLS certificate changed"),
        "{}",
        h.baton.log()
    );

    // A new connection gets the new certificate and is served with it.
    let new_stream = h.test_ca().connect(addr, &[b"h2"]).await;
    assert_eq!(peer_certificate(&new_stream), second.cert_der);
    let mut new_connection = http2_over(new_stream).await;
    let answer = get_http2(&mut new_connection, addr, "/after/new", &token).await;
    assert_eq!(answer, (200, http::Version::HTTP_2));

    // The connection opened before the rotation still answers, on its old session.
    let answer = get_http1(&mut old_connection, addr, "/after/old", &token).await;
    assert_eq!(answer, (200, http::Version::HTTP_11));
    assert_exchanged_over_tls(&h, "/after/old", "rota");
    let arrived = h.upstream.seen().len();
    assert_eq!(arrived, 3, "{:#?}", h.upstream.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_does_not_match_is_refused_at_reload_and_the_old_certificate_keeps_serving() {
    let h = tls_harness().await;
    let addr = h.baton.addr;
    let token = h.idp_token("keeper");
    let first = h.first_leaf();

    // Only the key changes: to another leaf's, which the certificate does not certify.
    let stranger = h.test_ca().leaf("somebody else", 3);
    std::fs::write(h.tls_file("key.pem"), &stranger.key_pem).unwrap();
    h.wait_for_log("does not match the certificate").await;
    let log = h.baton.log();
    assert!(
        log.contains("the old pair keeps serving") && log.contains("key.pem"),
        "{log}"
    );
    assert_no_key_material(&log, &stranger.key_pem);
    assert_no_key_material(&log, &first.key_pem);

    // New connections still get the old certificate, and are served.
    let stream = h.test_ca().connect(addr, &[b"h2"]).await;
    assert_eq!(peer_certificate(&stream), first.cert_der);
    let mut connection = http2_over(stream).await;
    let answer = get_http2(&mut connection, addr, "/still/served", &token).await;
    assert_eq!(answer, (200, http::Version::HTTP_2));

    // Once a whole new pair is in place, it is served.
    let fixed = h.test_ca().leaf("baton fixed", 4);
    fixed.write(&h.tls_file("cert.pem"), &h.tls_file("key.pem"));
    h.wait_for_certificate(&fixed.cert_der).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_reload_that_points_tls_at_other_files_serves_them() {
    let h = tls_harness().await;
    let renewed = h.test_ca().leaf("baton elsewhere", 5);
    renewed.write(&h.tls_file("cert-2.pem"), &h.tls_file("key-2.pem"));
    let config = h
        .config(&Opts {
            tls: true,
            ..Opts::default()
        })
        .replace("tls/cert.pem", "tls/cert-2.pem")
        .replace("tls/key.pem", "tls/key-2.pem");
    let generation = h.generation().await;
    h.baton.write_config(&config);
    h.baton.signal("HUP");
    h.wait_for_generation(generation + 1).await;
    h.wait_for_certificate(&renewed.cert_der).await;
    // The old files are no longer followed: rewriting them changes nothing.
    let ignored = h.test_ca().leaf("baton ignored", 6);
    ignored.write(&h.tls_file("cert.pem"), &h.tls_file("key.pem"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stream = h.test_ca().connect(h.baton.addr, &[b"h2"]).await;
    assert_eq!(peer_certificate(&stream), renewed.cert_der);
}

/// No line of the base64 body of `key_pem` appears in `text`.
fn assert_no_key_material(text: &str, key_pem: &str) {
    for line in key_pem.lines().filter(|line| !line.starts_with("-----")) {
        let line = line.trim();
        assert!(
            line.len() < 16 || !text.contains(line),
            "key material in the log:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_client_neither_holds_up_others_nor_keeps_its_connection_past_the_handshake_timeout()
 {
    let h = tls_harness().await;
    let addr = h.baton.addr;
    let token = h.idp_token("patient");
    // Connected, and never a byte of a ClientHello.
    let mut silent = TcpStream::connect(addr).await.unwrap();

    // The handshake waits in the silent connection's own task: others are served meanwhile.
    let stream = h.test_ca().connect(addr, &[b"h2"]).await;
    let mut connection = http2_over(stream).await;
    let answer = get_http2(&mut connection, addr, "/meanwhile", &token).await;
    assert_eq!(answer, (200, http::Version::HTTP_2));

    // After the 10 s handshake timeout baton closes the silent connection, without an error
    // log (a failed handshake is a debug line).
    let started = Instant::now();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buffer))
        .await
        .expect("baton closes a connection whose handshake never starts");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the silent client was sent {read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "closed after {:?}, before the handshake timeout",
        started.elapsed()
    );
    assert!(!h.baton.log().contains("ERROR"), "{}", h.baton.log());
}

#[test]
fn debug_of_the_tls_state_never_shows_the_private_key() {
    let ca = TestCa::new();
    let leaf = ca.leaf("baton", 1);
    let dir = tempfile::tempdir().unwrap();
    let files = baton::tls::TlsFiles {
        cert_file: dir.path().join("cert.pem"),
        key_file: dir.path().join("key.pem"),
    };
    leaf.write(&files.cert_file, &files.key_file);
    let pair = baton::tls::CertificatePair::load(&files).unwrap();
    assert_eq!(pair.leaf().as_ref(), leaf.cert_der.as_slice());
    let tls = baton::tls::ServerTls::new(&pair).unwrap();
    let shown = format!("{pair:?} {tls:?} {:?}", tls.current());
    assert!(shown.contains("CertificatePair"), "{shown}");
    assert_no_key_material(&shown, &leaf.key_pem);
    // The key's DER, in the forms a Debug of bytes would print it.
    let der = pem::parse(&leaf.key_pem).unwrap().into_contents();
    assert!(
        !shown.contains(&format!("{:?}", &der[der.len() - 8..])),
        "{shown}"
    );
    assert!(!shown.contains(&hex(&der[der.len() - 8..])), "{shown}");
}
