//! Traces over OTLP/HTTP from the real `baton serve` to a real receiver: an OTLP/HTTP
//! endpoint on 127.0.0.1:0 that decodes each export with the published OpenTelemetry protos
//! (`opentelemetry-proto`). A request's server span continues the caller's `traceparent`,
//! its exchange span is the server span's child with the exchange's attributes (and never a
//! token), and the upstream gets a `traceparent` whose parent is baton's span.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use jsonwebtoken::Algorithm;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;
use prost::Message as _;
use serde_json::json;
use support::baton::{Baton, reserve_addr};
use support::{TestKey, now};

const ISS: &str = "https://idp.traces.test";
const AUD: &str = "traces-app";
/// The caller's trace: a `traceparent` of W3C Trace Context, sampled.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Serves `handler` on 127.0.0.1:0.
async fn serve<F>(handler: F) -> SocketAddr
where
    F: Fn(
            Request<Incoming>,
        ) -> std::pin::Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The OTLP/HTTP receiver: every span of every export, decoded.
async fn receiver() -> (SocketAddr, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let addr = serve({
        let spans = Arc::clone(&spans);
        move |request: Request<Incoming>| {
            let spans = Arc::clone(&spans);
            Box::pin(async move {
                assert_eq!(request.uri().path(), "/v1/traces");
                assert_eq!(request.headers()["content-type"], "application/x-protobuf");
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let export = ExportTraceServiceRequest::decode(body).expect("an OTLP export");
                for resource in export.resource_spans {
                    let service_name = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref()?.value.clone());
                    assert_eq!(
                        service_name,
                        Some(AnyValue::StringValue("baton-under-test".into()))
                    );
                    for scope in resource.scope_spans {
                        spans.lock().extend(scope.spans);
                    }
                }
                Response::new(Full::new(Bytes::new()))
            }) as _
        }
    })
    .await;
    (addr, spans)
}

/// What the upstream saw of each request: its `traceparent` and `authorization`.
type Forwarded = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// The upstream: records each request's `traceparent` and `authorization`.
async fn upstream() -> (SocketAddr, Forwarded) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = serve({
        let seen = Arc::clone(&seen);
        move |request: Request<Incoming>| {
            let seen = Arc::clone(&seen);
            Box::pin(async move {
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_owned())
                };
                seen.lock()
                    .push((header("traceparent"), header("authorization")));
                Response::new(Full::new(Bytes::from_static(b"ok")))
            }) as _
        }
    })
    .await;
    (addr, seen)
}

fn attribute(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.clone())
}

fn text(span: &Span, key: &str) -> String {
    match attribute(span, key) {
        Some(AnyValue::StringValue(text)) => text,
        other => panic!("{key} of {}: {other:?}", span.name),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits until `count` spans have arrived (the export interval is 100 ms).
async fn spans_arrived(spans: &Mutex<Vec<Span>>, count: usize, baton: &Baton) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let arrived = spans.lock().clone();
        if arrived.len() >= count {
            return arrived;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} spans arrived: {arrived:#?}\n{}",
            arrived.len(),
            baton.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// baton in front of `app`, exporting to `collector` every 100 ms, with `telemetry` added
/// to its `[telemetry]` section.
fn traced_config(
    collector: SocketAddr,
    listen: SocketAddr,
    app: SocketAddr,
    admin: SocketAddr,
    telemetry: &str,
) -> String {
    format!(
        r#"
[telemetry]
otlp_endpoint = "http://{collector}"
service_name = "baton-under-test"
export_interval = "100ms"
{telemetry}

[proxy]
listen = "{listen}"
upstream = "{app}"
service = "app"

[admin]
listen = "{admin}"

[[keys]]
id = "sbk_traces"
algorithm = "HS256"
secret = "sbsec_traces_test_secret_value"

[[idps]]
issuer = "{ISS}"
audience = "{AUD}"
key_file = "idp.pem"
mapping = {{ "sub.$" = "$.sub" }}

[[token_providers]]
service = "app"
key = "sbk_traces"
mapping = {{ "sub.$" = "$.sub" }}
"#
    )
}

/// A baton exporting to a receiver, in front of a recording upstream, with its IdP key.
struct Traced {
    baton: Baton,
    key: TestKey,
    spans: Arc<Mutex<Vec<Span>>>,
    seen: Forwarded,
    _dir: tempfile::TempDir,
}

impl Traced {
    /// Starts one, with `telemetry` added to its `[telemetry]` section.
    async fn start(telemetry: &str) -> Self {
        let (collector, spans) = receiver().await;
        let (app, seen) = upstream().await;
        let key = TestKey::generate(Algorithm::RS256, "traces-key");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("idp.pem"), key.public_pem()).unwrap();
        let listen = reserve_addr();
        let admin = reserve_addr();
        let config = traced_config(collector, listen, app, admin, telemetry);
        let baton = Baton::launch(dir.path(), listen, &config).start().await;
        Self {
            baton,
            key,
            spans,
            seen,
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_continue_the_callers_trace_and_the_upstream_continues_batons() {
    let Traced {
        baton,
        key,
        spans,
        seen,
        _dir,
    } = Traced::start("").await;
    let token =
        key.sign(&json!({ "iss": ISS, "aud": AUD, "sub": "traced-user", "exp": now() + 600 }));
    let client = reqwest::Client::new();
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    for _ in 0..2 {
        let answer = client
            .get(baton.url("/orders/42?page=1"))
            .bearer_auth(&token)
            .header("traceparent", &traceparent)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let refused = client
        .get(baton.url("/orders/43"))
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // Two requests of the caller's trace and one of its own, each with an exchange span.
    let arrived = spans_arrived(&spans, 6, &baton).await;
    let servers: Vec<&Span> = arrived.iter().filter(|s| s.name == "GET").collect();
    let exchanges: Vec<&Span> = arrived
        .iter()
        .filter(|s| s.name == "baton.exchange")
        .collect();
    assert_eq!((servers.len(), exchanges.len()), (3, 3), "{arrived:#?}");

    let continued: Vec<&&Span> = servers
        .iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    assert_eq!(
        continued.len(),
        2,
        "the caller's trace was not continued: {servers:#?}"
    );
    for server in &continued {
        assert_eq!(hex(&server.parent_span_id), CALLER_SPAN);
        assert_eq!(server.kind, 2, "SPAN_KIND_SERVER");
        assert_eq!(text(server, "http.request.method"), "GET");
        assert_eq!(text(server, "url.path"), "/orders/42");
        assert_eq!(text(server, "baton.listener"), "proxy");
        assert_eq!(
            attribute(server, "http.response.status_code"),
            Some(AnyValue::IntValue(200))
        );
    }
    // A request without a traceparent starts its own trace.
    let own = servers
        .iter()
        .find(|s| hex(&s.trace_id) != TRACE_ID)
        .unwrap();
    assert_eq!(
        attribute(own, "http.response.status_code"),
        Some(AnyValue::IntValue(401))
    );

    // Each exchange span is its request's child.
    for exchange in &exchanges {
        let parent = servers
            .iter()
            .find(|s| s.span_id == exchange.parent_span_id)
            .unwrap_or_else(|| panic!("an exchange span without its request: {exchange:#?}"));
        assert_eq!(exchange.trace_id, parent.trace_id);
        assert_eq!(text(exchange, "baton.surface"), "proxy");
        assert_eq!(text(exchange, "baton.service"), "app");
    }
    let mut hits: Vec<(String, Option<AnyValue>)> = exchanges
        .iter()
        .map(|e| (text(e, "baton.outcome"), attribute(e, "baton.cache_hit")))
        .collect();
    hits.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(
        hits,
        [
            ("ok".to_owned(), Some(AnyValue::BoolValue(false))),
            ("ok".to_owned(), Some(AnyValue::BoolValue(true))),
            ("refused".to_owned(), Some(AnyValue::BoolValue(false))),
        ]
    );
    let refusal = exchanges
        .iter()
        .find(|e| text(e, "baton.outcome") == "refused")
        .unwrap();
    assert_eq!(text(refusal, "baton.stage"), "parse");
    let accepted = exchanges
        .iter()
        .find(|e| text(e, "baton.outcome") == "ok")
        .unwrap();
    assert_eq!(text(accepted, "baton.idp"), ISS);

    // No span carries a token, the IdP's or baton's.
    let forwarded = seen.lock().clone();
    let baton_token = forwarded[0].1.clone().unwrap();
    let everything = format!("{arrived:?}");
    assert!(!everything.contains(&token), "a span holds the IdP token");
    assert!(
        !everything.contains(baton_token.trim_start_matches("Bearer ")),
        "a span holds baton's token"
    );

    // The upstream continues baton's span, not the caller's.
    assert_eq!(forwarded.len(), 2);
    for (traceparent, _) in &forwarded {
        let traceparent = traceparent.as_deref().expect("no traceparent upstream");
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts[1], TRACE_ID, "{traceparent}");
        assert_ne!(
            parts[2], CALLER_SPAN,
            "the caller's span was passed as it came"
        );
        assert!(
            continued.iter().any(|s| hex(&s.span_id) == parts[2]),
            "the upstream's parent is not a baton span: {traceparent}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sample_ratio_samples_new_traces_and_follows_the_callers_decision() {
    let Traced {
        baton,
        key,
        spans,
        seen,
        _dir,
    } = Traced::start("sample_ratio = 0.0").await;
    let token =
        key.sign(&json!({ "iss": ISS, "aud": AUD, "sub": "sampled-user", "exp": now() + 600 }));
    let client = reqwest::Client::new();
    let not_sampled = format!("00-{TRACE_ID}-{CALLER_SPAN}-00");
    let sampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let sampled = format!("00-{sampled_trace}-{CALLER_SPAN}-01");
    for traceparent in [None, Some(&not_sampled), Some(&sampled)] {
        let mut request = client.get(baton.url("/sampled")).bearer_auth(&token);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        assert_eq!(request.send().await.unwrap().status(), 200);
    }

    // Only the caller's sampled request is exported (its server and exchange spans); the
    // two others, sent before it, would have been batched with it.
    let arrived = spans_arrived(&spans, 2, &baton).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrived_later = spans.lock().clone();
    assert_eq!(arrived_later.len(), 2, "{arrived_later:#?}");
    assert!(
        arrived.iter().all(|s| hex(&s.trace_id) == sampled_trace),
        "{arrived:#?}"
    );

    // Each still passes its trace on, with its decision: a new trace's (not sampled), the
    // caller's unsampled one, the caller's sampled one.
    let forwarded: Vec<String> = seen
        .lock()
        .iter()
        .map(|(traceparent, _)| traceparent.clone().expect("no traceparent upstream"))
        .collect();
    assert_eq!(forwarded.len(), 3);
    let fields: Vec<Vec<&str>> = forwarded.iter().map(|t| t.split('-').collect()).collect();
    assert_ne!(fields[0][1], TRACE_ID);
    assert_eq!(fields[0][3], "00", "{forwarded:?}");
    assert_eq!(
        (fields[1][1], fields[1][3]),
        (TRACE_ID, "00"),
        "{forwarded:?}"
    );
    assert_eq!(
        (fields[2][1], fields[2][3]),
        (sampled_trace, "01"),
        "{forwarded:?}"
    );
}
