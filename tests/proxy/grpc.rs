//! gRPC through baton, checked with software nobody here wrote: Python's grpcio is the app
//! (`tests/interop/grpc/server.py`, baton's h2c upstream) and the client
//! (`tests/interop/grpc/client.py`). Calls of every kind must reach the app with a baton
//! token, their metadata and the app's trailers intact, and baton's own refusals must be
//! gRPC statuses a gRPC client reads (`UNAUTHENTICATED`, `UNAVAILABLE`), with baton's words.
//!
//! python3 with grpcio is required (`scripts/test.sh` installs it): when it is missing
//! these tests fail, they never skip.

use std::process::Stdio;

use hyper::body::Body as _;

use super::http2::h2c_connect;
use super::*;
use crate::support::baton::ChildGuard;

const UNARY: &str = "/baton.test.Echo/Unary";
const SERVER_STREAM: &str = "/baton.test.Echo/ServerStream";
const BIDI: &str = "/baton.test.Echo/Bidi";
const SLOW: &str = "/baton.test.Echo/Slow";

fn script(name: &str) -> String {
    format!("{}/tests/interop/grpc/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The grpcio server, on 127.0.0.1:<the port it printed>, killed on drop.
struct GrpcApp {
    addr: SocketAddr,
    process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl GrpcApp {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("grpc-server.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = std::process::Command::new("python3")
            .arg(script("server.py"))
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}): these tests need grpcio"));
        let stdin = child.stdin.take();
        let mut process = ChildGuard::new("grpcio server", child, stdin, log);
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(port) = process
                .log()
                .lines()
                .find_map(|line| line.strip_prefix("PORT ")?.trim().parse::<u16>().ok())
            {
                break port;
            }
            if let Some(status) = process.exited() {
                panic!(
                    "the grpcio server exited ({status}) before serving; exit 3 means grpcio \
                     is missing (`scripts/test.sh` installs it):\n{}",
                    process.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the grpcio server printed no port:\n{}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Self {
            addr: ([127, 0, 0, 1], port).into(),
            process,
            _dir: dir,
        }
    }

    /// The methods the server was called with, in order.
    fn calls(&self) -> Vec<String> {
        self.process
            .log()
            .lines()
            .filter_map(|line| line.strip_prefix("CALL ").map(str::to_owned))
            .collect()
    }
}

/// baton (`upstream_protocol = "h2c"`) in front of a grpcio app.
async fn baton_before_grpc_app(opts: Opts) -> (Harness, GrpcApp) {
    let app = GrpcApp::start().await;
    let h = Harness::start(Opts {
        upstream_protocol: "h2c",
        upstream_at: Some(app.addr),
        ..opts
    })
    .await;
    (h, app)
}

/// One call for the grpcio client: `kind` is `unary`, `server_stream` or `bidi`.
fn call(kind: &str, method: &str, messages: &[&str], metadata: &[(&str, &str)]) -> Value {
    json!({
        "kind": kind,
        "method": method,
        "messages": messages,
        "metadata": metadata.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
        "timeout": 20,
    })
}

/// `authorization: Bearer <token>` as call metadata.
fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

/// Runs the grpcio client against `target` (baton); what it says of each call. The job,
/// tokens included, goes on stdin, never on a command line.
async fn grpc_client(target: SocketAddr, calls: &[Value]) -> Vec<Value> {
    let job = json!({ "target": target.to_string(), "calls": calls });
    let mut child = tokio::process::Command::new("python3")
        .arg(script("client.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): these tests need grpcio"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(job.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the grpcio client finished within 60 s")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(3) => panic!("grpcio is missing (`scripts/test.sh` installs it): {stderr}"),
        _ => panic!("the grpcio client failed ({}):\n{stderr}", output.status),
    }
    let results: Vec<Value> = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("the grpcio client printed no JSON ({e}):\n{stderr}"));
    assert_eq!(results.len(), calls.len(), "{results:#?}");
    results
}

/// What the app echoed in each response of a call.
fn echoed(result: &Value) -> Vec<Value> {
    result["responses"]
        .as_array()
        .unwrap_or_else(|| panic!("no responses: {result}"))
        .iter()
        .map(|text| serde_json::from_str(text.as_str().unwrap()).unwrap())
        .collect()
}

fn trailer<'r>(result: &'r Value, name: &str) -> Option<&'r str> {
    result["trailing_metadata"]
        .as_array()?
        .iter()
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_str())
}

/// Asserts the app saw a baton token for `user` (never `idp_token`) in every response.
fn assert_baton_token_for(h: &Harness, result: &Value, user: &str, idp_token: &str) {
    let responses = echoed(result);
    assert!(!responses.is_empty(), "{result:#}");
    for response in responses {
        let authorization = response["authorization"]
            .as_str()
            .unwrap_or_else(|| panic!("the app saw no authorization: {response}"));
        let minted = authorization
            .strip_prefix("Bearer ")
            .unwrap_or_else(|| panic!("not a bearer credential: {authorization}"));
        assert_ne!(minted, idp_token, "the app received the IdP token");
        assert!(
            !authorization.contains(idp_token),
            "the app received the IdP token"
        );
        let claims = h.verify_minted(minted, KEY_A, STATEBACKED_AUD);
        assert_eq!(claims["iss"], BATON_ISS);
        assert_eq!(claims["act"]["user"], user, "{claims}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcio_unary_streaming_and_bidi_calls_reach_a_grpcio_app_with_a_baton_token() {
    let (h, app) = baton_before_grpc_app(Opts::default()).await;
    let token = h.idp_token("grace");
    let (name, value) = bearer(&token);
    let metadata = [(name, value.as_str()), ("x-request-id", "interop-7")];
    let results = grpc_client(
        h.baton.addr,
        &[
            call("unary", UNARY, &["hello"], &metadata),
            call("server_stream", SERVER_STREAM, &["3"], &metadata),
            call("bidi", BIDI, &["one", "two", "three"], &metadata),
        ],
    )
    .await;
    for (result, method) in results.iter().zip(["Unary", "ServerStream", "Bidi"]) {
        assert_eq!(result["code"], "OK", "{method}: {result:#}");
        assert_baton_token_for(&h, result, "grace", &token);
        // Request metadata reaches the app; the app's trailing metadata reaches the client.
        for response in echoed(result) {
            assert_eq!(response["method"], method);
            assert_eq!(
                response["metadata"]["x-request-id"], "interop-7",
                "{response}"
            );
        }
        assert_eq!(
            trailer(result, "x-upstream-trailer"),
            Some(method),
            "{result:#}"
        );
    }
    let unary = echoed(&results[0]);
    assert_eq!(unary.len(), 1);
    assert_eq!(unary[0]["request"], "hello");
    let streamed = echoed(&results[1]);
    assert_eq!(
        streamed
            .iter()
            .map(|r| r["index"].clone())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let bidi = echoed(&results[2]);
    assert_eq!(
        bidi.iter()
            .map(|r| r["request"].clone())
            .collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
    assert_eq!(app.calls(), ["Unary", "ServerStream", "Bidi"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_grpc_call_is_unauthenticated_with_baton_s_message_and_reaches_no_app() {
    let (h, app) = baton_before_grpc_app(Opts::default()).await;
    let expired = h.idp_token_with(json!({
        "iss": ISS, "aud": AUD, "sub": "hal", "iat": now() - 7200, "exp": now() - 3600,
    }));
    let (name, value) = bearer(&expired);
    let results = grpc_client(
        h.baton.addr,
        &[
            call("unary", UNARY, &["no token"], &[]),
            call("unary", UNARY, &["expired"], &[(name, value.as_str())]),
            call(
                "server_stream",
                SERVER_STREAM,
                &["2"],
                &[(name, value.as_str())],
            ),
            call(
                "bidi",
                BIDI,
                &["a", "b"],
                &[("authorization", "Bearer not-a-jwt")],
            ),
        ],
    )
    .await;
    let expected = [
        "a bearer token is required",
        "the token has expired",
        "the token has expired",
        "the token is not a well-formed signed JWT",
    ];
    for (result, details) in results.iter().zip(expected) {
        assert_eq!(result["code"], "UNAUTHENTICATED", "{result:#}");
        assert_eq!(result["details"], details, "{result:#}");
        assert_eq!(result["responses"], json!([]), "{result:#}");
        let text = result.to_string();
        assert!(!text.contains(&expired), "baton echoed the token: {text}");
    }
    assert_eq!(
        app.calls(),
        Vec::<String>::new(),
        "a refused call reached the app"
    );

    // Counted as what they are: 401s, not successes.
    let metrics = h.admin_get("/metrics").await.text();
    assert_eq!(
        sample(
            &metrics,
            "baton_proxied_requests_total",
            &[("status", "401")]
        ),
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "baton_proxied_requests_total",
            &[("status", "200")]
        ),
        None,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_call_is_unavailable_while_the_idp_s_keys_cannot_be_had() {
    let (h, app) = baton_before_grpc_app(Opts {
        down_idp: true,
        ..Opts::default()
    })
    .await;
    let token = h.idp_token_with(json!({
        "iss": DOWN_ISS, "aud": AUD, "sub": "ida", "iat": now(), "exp": now() + 600,
    }));
    let (name, value) = bearer(&token);
    let good = h.idp_token("jon");
    let (good_name, good_value) = bearer(&good);
    let results = grpc_client(
        h.baton.addr,
        &[
            call("unary", UNARY, &["keys down"], &[(name, value.as_str())]),
            call(
                "unary",
                UNARY,
                &["keys up"],
                &[(good_name, good_value.as_str())],
            ),
        ],
    )
    .await;
    assert_eq!(results[0]["code"], "UNAVAILABLE", "{:#}", results[0]);
    assert_eq!(
        results[0]["details"],
        "the identity provider's keys are unavailable; try again later"
    );
    // The other IdP is unaffected, on the same channel.
    assert_eq!(results[1]["code"], "OK", "{:#}", results[1]);
    assert_baton_token_for(&h, &results[1], "jon", &good);
    assert_eq!(app.calls(), ["Unary"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_call_is_unavailable_when_the_upstream_is_down() {
    let h = Harness::start(Opts {
        upstream_protocol: "h2c",
        upstream_down: true,
        ..Opts::default()
    })
    .await;
    let token = h.idp_token("kim");
    let (name, value) = bearer(&token);
    let results = grpc_client(
        h.baton.addr,
        &[
            call("unary", UNARY, &["down"], &[(name, value.as_str())]),
            call("bidi", BIDI, &["down"], &[(name, value.as_str())]),
        ],
    )
    .await;
    for result in &results {
        assert_eq!(result["code"], "UNAVAILABLE", "{result:#}");
        assert_eq!(
            result["details"], "the upstream is unavailable",
            "{result:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_call_the_app_answers_after_read_timeout_is_unavailable() {
    let (h, app) = baton_before_grpc_app(Opts {
        read_timeout: "300ms",
        ..Opts::default()
    })
    .await;
    let token = h.idp_token("lea");
    let (name, value) = bearer(&token);
    let results = grpc_client(
        h.baton.addr,
        &[call("unary", SLOW, &["3000"], &[(name, value.as_str())])],
    )
    .await;
    // Envoy answers its own upstream timeout to a gRPC caller as UNAVAILABLE too (a local
    // 504); DEADLINE_EXCEEDED is the client's own deadline (20 s here).
    assert_eq!(results[0]["code"], "UNAVAILABLE", "{:#}", results[0]);
    assert_eq!(results[0]["details"], "the upstream timed out");
    assert_eq!(app.calls(), ["Slow"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_refusal_is_http_200_trailers_only_with_grpc_status_16_and_the_challenge() {
    let h = Harness::start(Opts {
        upstream_protocol: "h2c",
        ..Opts::default()
    })
    .await;
    let mut sender = h2c_connect(h.baton.addr).await;
    // A gRPC frame (uncompressed, 5 bytes) in the body, as a real client would send.
    let frame = Bytes::from_static(b"\x00\x00\x00\x00\x05hello");
    let request = Request::builder()
        .method("POST")
        .uri(format!("http://{}{UNARY}", h.baton.addr))
        .header("content-type", "application/grpc+proto")
        .header("te", "trailers")
        .body(Full::new(frame.clone()))
        .unwrap();
    sender.ready().await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
        .await
        .expect("an answer within 20 s")
        .expect("an HTTP/2 answer");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200, "{response:?}");
    let headers = response.headers();
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap());
    assert_eq!(header("content-type"), Some("application/grpc"));
    assert_eq!(header("grpc-status"), Some("16"));
    assert_eq!(header("grpc-message"), Some("a bearer token is required"));
    assert_eq!(
        header("www-authenticate"),
        Some("Bearer realm=\"baton\""),
        "{headers:?}"
    );
    assert!(
        matches!(header("content-length"), None | Some("0")),
        "{headers:?}"
    );
    // Trailers-only: the HEADERS frame ended the stream, nothing follows.
    assert!(
        response.body().is_end_stream(),
        "the response head did not end the stream"
    );
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers(), None);
    assert!(collected.to_bytes().is_empty());

    // The same request as plain HTTP keeps its HTTP answer.
    let request = Request::builder()
        .method("POST")
        .uri(format!("http://{}{UNARY}", h.baton.addr))
        .header("content-type", "application/octet-stream")
        .body(Full::new(frame))
        .unwrap();
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers().get("grpc-status"), None);
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error_description"], "a bearer token is required");
    assert_eq!(h.upstream.arrived(), 0, "{:#?}", h.upstream.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_call_a_route_condition_refuses_is_permission_denied_and_reaches_no_app() {
    let (h, app) = baton_before_grpc_app(Opts {
        routes_extra: r#"
[[proxy.routes]]
prefix = "/baton.test.Echo"
service = "app"
condition = 'claims.act.user == "grace" && request.headers["content-type"].startsWith("application/grpc")'
"#
        .to_owned(),
        ..Opts::default()
    })
    .await;
    let hal = h.idp_token("hal");
    let grace = h.idp_token("grace");
    let (name, hal_value) = bearer(&hal);
    let (_, grace_value) = bearer(&grace);
    let results = grpc_client(
        h.baton.addr,
        &[
            call("unary", UNARY, &["hal"], &[(name, hal_value.as_str())]),
            call("unary", UNARY, &["grace"], &[(name, grace_value.as_str())]),
        ],
    )
    .await;
    assert_eq!(results[0]["code"], "PERMISSION_DENIED", "{:#}", results[0]);
    assert_eq!(
        results[0]["details"], "the token does not allow this request",
        "{:#}",
        results[0]
    );
    assert_eq!(results[0]["responses"], json!([]));
    assert_eq!(results[1]["code"], "OK", "{:#}", results[1]);
    assert_baton_token_for(&h, &results[1], "grace", &grace);
    assert_eq!(app.calls(), ["Unary"], "the refused call reached the app");
    // Counted as the 403 it stands for.
    let metrics = h.admin_get("/metrics").await.text();
    assert_eq!(
        sample(
            &metrics,
            "baton_proxied_requests_total",
            &[("status", "403")]
        ),
        Some(1.0),
        "{metrics}"
    );
}
