//! Envoy's `ext_authz` over gRPC end to end: the real `baton serve` binary with only its
//! forward-auth listener (h2c), a real JWKS server for the IdP, and the `Authorization`
//! client generated from Envoy's protos (`envoy-types`) as Envoy's own gRPC client would
//! call it. The same listener answers HTTP checks (`request-line`, `path_prefix`) meanwhile.
//!
//! Every answer is read for what Envoy does with it: `status.code` OK or not, the
//! `OkHttpResponse` headers it sets (replacing the client's) and removes, the
//! `DeniedHttpResponse` it sends the client. No answer may carry the IdP token.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::HeaderValueOption;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tonic::transport::Channel;

use support::baton::{Baton, reserve_addr};
use support::{JwksReply, JwksServer, TestKey, now};

/// The IdP of every token here.
const ISS: &str = "https://idp.ext-authz.test";
/// The audience baton accepts IdP tokens for.
const AUD: &str = "baton-ext-authz";
/// baton's own issuer.
const BATON_ISS: &str = "https://baton.ext-authz.test";
/// The `aud` of the tokens baton mints for `app`.
const APP_AUD: &str = "app-api";

/// baton with only `[forward_auth]` listening, its admin listener, the IdP's JWKS.
struct Harness {
    baton: Baton,
    forward_auth: SocketAddr,
    admin: SocketAddr,
    idp: TestKey,
    signing: TestKey,
    http: reqwest::Client,
    _jwks: JwksServer,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// baton with the IdP's keys served, ready (keys fetched).
    async fn start() -> Self {
        let harness = Self::launch(None).await;
        harness.wait_for_keys().await;
        harness
    }

    /// baton whose IdP's JWKS answers 500 from the start: no key is ever fetched.
    async fn start_with_keys_down() -> Self {
        Self::launch(Some(JwksReply::Status(500))).await
    }

    async fn launch(jwks_reply: Option<JwksReply>) -> Self {
        let idp = TestKey::generate(Algorithm::RS256, "idp-k1");
        let signing = TestKey::generate(Algorithm::ES256, "baton-k1");
        let jwks = JwksServer::start(vec![idp.jwk.clone()]).await;
        if let Some(reply) = jwks_reply {
            jwks.set_reply(reply);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key.pem"), &signing.private_pem).unwrap();
        let forward_auth = reserve_addr();
        let admin = reserve_addr();
        let config = format!(
            r#"
[server]
issuer = "{BATON_ISS}"

[forward_auth]
listen = "{forward_auth}"
original_request = "request-line"
path_prefix = "/authz"

[proxy]
service = "app"
headers = {{ "x-user.$" = "$.sub", "x-mail.$" = "$.email", "x-team.$" = "$.team" }}

[[proxy.routes]]
prefix = "/ops"
service = "app"
condition = 'claims.team == "ops"'

[[proxy.routes]]
prefix = "/public"
skip = true

[admin]
listen = "{admin}"

[[keys]]
id = "baton-k1"
algorithm = "ES256"
private_key_file = "key.pem"

[[idps]]
name = "test-idp"
issuer = "{ISS}"
audience = "{AUD}"
algorithms = ["RS256"]
jwks_url = "{jwks}"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "team.$" = "$.team" }}

[[token_providers]]
service = "app"
key = "baton-k1"
profile = "access_token"
audience = "{APP_AUD}"
ttl = "15m"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "team.$" = "$.team" }}
"#,
            jwks = jwks.jwks_url(),
        );
        // Ready when the forward-auth listener accepts connections (there is no proxy one).
        let baton = Baton::launch(dir.path(), forward_auth, &config)
            .start()
            .await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            baton,
            forward_auth,
            admin,
            idp,
            signing,
            http,
            _jwks: jwks,
            _dir: dir,
        }
    }

    /// Waits until `/readyz` says the IdP's keys are fetched.
    async fn wait_for_keys(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(answer) = self
                .http
                .get(format!("http://{}/readyz", self.admin))
                .send()
                .await
                && let Ok(body) = answer.json::<Value>().await
                && body["idps"]["test-idp"] == true
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "baton never fetched the IdP's keys:\n{}",
                self.baton.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A valid IdP token for `sub` with `extra` claims.
    fn idp_token(&self, sub: &str, extra: &Value) -> String {
        let mut claims = json!({
            "iss": ISS,
            "aud": AUD,
            "sub": sub,
            "email": format!("{sub}@example.com"),
            "iat": now(),
            "exp": now() + 600,
        });
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        self.idp.sign(&claims)
    }

    /// The generated `Authorization` client over h2c to the forward-auth listener.
    async fn client(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::connect(format!("http://{}", self.forward_auth))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.baton.log()))
    }

    /// One `Check` call, which must succeed as a call whatever it decides.
    async fn check(&self, request: CheckRequest) -> CheckResponse {
        let response = self
            .client()
            .await
            .check(request)
            .await
            .unwrap_or_else(|status| panic!("the call failed: {status:?}\n{}", self.baton.log()));
        response.into_inner()
    }

    /// The admin listener's `/metrics`.
    async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The claims of a token baton minted for `app`, its signature checked with baton's key.
    fn verified_baton_claims(&self, token: &str) -> Value {
        let key = DecodingKey::from_ec_pem(self.signing.public_pem().as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[APP_AUD]);
        validation.set_issuer(&[BATON_ISS]);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .unwrap_or_else(|e| panic!("not a token of baton's for app ({e}): {token}"))
            .claims
    }
}

/// A check of `method path` (the query in `path`, as Envoy sends it) with `headers`, in the
/// shape Envoy's filter gives it: lower-case names, pseudo-headers among them.
fn check_request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut map: std::collections::HashMap<String, String> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    map.insert(":authority".to_owned(), "app.example".to_owned());
    map.insert(":method".to_owned(), method.to_owned());
    map.insert(":path".to_owned(), path.to_owned());
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    host: "app.example".to_owned(),
                    scheme: "https".to_owned(),
                    protocol: "HTTP/1.1".to_owned(),
                    headers: map,
                    ..HttpRequest::default()
                }),
            }),
            ..AttributeContext::default()
        }),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The `OkHttpResponse` of an allowing answer (status OK); panics on anything else.
fn allowed(response: &CheckResponse) -> &OkHttpResponse {
    let code = response.status.as_ref().map(|status| status.code);
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) if code == Some(0) => ok,
        _ => panic!("not an allowing answer: {response:?}"),
    }
}

/// The `DeniedHttpResponse` and `status.code` of a denying answer; panics on anything else.
fn denied(response: &CheckResponse) -> (&DeniedHttpResponse, i32) {
    let code = response.status.as_ref().map_or(0, |status| status.code);
    match &response.http_response {
        Some(HttpResponse::DeniedResponse(denied)) if code != 0 => (denied, code),
        _ => panic!("not a denying answer: {response:?}"),
    }
}

/// The (name, value) of each header line.
fn lines(options: &[HeaderValueOption]) -> Vec<(&str, &str)> {
    options
        .iter()
        .map(|option| {
            let header = option.header.as_ref().expect("a header");
            (header.key.as_str(), header.value.as_str())
        })
        .collect()
}

/// The value of the one line `name` in `options`.
fn line<'o>(options: &'o [HeaderValueOption], name: &str) -> Option<&'o str> {
    let mut found = lines(options)
        .into_iter()
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value);
    let value = found.next();
    assert!(found.next().is_none(), "{name} more than once: {options:?}");
    value
}

/// The denial's HTTP status, `WWW-Authenticate`, and body as JSON.
fn denial_parts(denied: &DeniedHttpResponse) -> (i32, Option<&str>, Value) {
    let status = denied.status.as_ref().map_or(0, |status| status.code);
    assert_eq!(
        line(&denied.headers, "content-type"),
        Some("application/json"),
        "{denied:?}"
    );
    let body = serde_json::from_str(&denied.body).expect("a JSON body");
    (status, line(&denied.headers, "www-authenticate"), body)
}

/// The value of the sample `name` whose labels include every one of `wanted`.
fn sample(metrics: &str, name: &str, wanted: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            if metric != name {
                return None;
            }
            wanted
                .iter()
                .all(|(label, want)| labels.contains(&format!("{label}=\"{want}\"")))
                .then(|| value.parse().ok())?
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allowed_check_sets_the_baton_token_and_claim_headers_and_removes_the_rest() {
    let h = Harness::start().await;
    let idp_token = h.idp_token("alice", &json!({}));
    let authorization = bearer(&idp_token);
    // The client sends claim headers of its own: one the token produces, one it does not.
    let response = h
        .check(check_request(
            "GET",
            "/api/orders?page=2",
            &[
                ("authorization", &authorization),
                ("x-user", "mallory"),
                ("x-team", "ops"),
            ],
        ))
        .await;
    let ok = allowed(&response);
    let minted = line(&ok.headers, "authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_else(|| panic!("no baton token to set: {ok:?}"));
    let claims = h.verified_baton_claims(minted);
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["email"], "alice@example.com", "{claims}");
    assert_eq!(line(&ok.headers, "x-user"), Some("alice"));
    assert_eq!(line(&ok.headers, "x-mail"), Some("alice@example.com"));
    assert_eq!(lines(&ok.headers).len(), 3, "{ok:?}");
    // Each replaces the client's line of its name, in the field new and old Envoys read.
    for option in &ok.headers {
        assert_eq!(
            option.append_action,
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            "{option:?}"
        );
        #[allow(deprecated)] // what Envoys without `append_action` read
        let append = option.append.as_ref().map(|append| append.value);
        assert_eq!(append, Some(false), "{option:?}");
    }
    // The token has no team: the client's own `x-team` must not reach the app.
    assert_eq!(ok.headers_to_remove, ["x-team"], "{ok:?}");
    let answer = format!("{response:?}");
    assert!(
        !answer.contains(&idp_token),
        "the IdP token is in the answer"
    );
    assert!(!answer.contains("mallory"), "the client's x-user survived");
    assert!(
        !h.baton.log().contains(&idp_token),
        "the IdP token was logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_baton_token_passes_and_is_echoed_with_its_claim_headers() {
    let h = Harness::start().await;
    let idp_token = h.idp_token("bob", &json!({ "team": "ops" }));
    let first = h
        .check(check_request(
            "GET",
            "/api",
            &[("authorization", &bearer(&idp_token))],
        ))
        .await;
    let own = line(&allowed(&first).headers, "authorization")
        .expect("a baton token")
        .to_owned();
    let response = h
        .check(check_request("POST", "/api/x", &[("authorization", &own)]))
        .await;
    let ok = allowed(&response);
    assert_eq!(line(&ok.headers, "authorization"), Some(own.as_str()));
    assert_eq!(line(&ok.headers, "x-user"), Some("bob"));
    assert_eq!(line(&ok.headers, "x-team"), Some("ops"));
    assert!(ok.headers_to_remove.is_empty(), "{ok:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_is_denied_401_unauthenticated_with_the_challenge() {
    let h = Harness::start().await;
    // Signed by a key the IdP does not publish.
    let stranger = TestKey::generate(Algorithm::RS256, "idp-k1");
    let forged = stranger.sign(&json!({
        "iss": ISS, "aud": AUD, "sub": "eve", "iat": now(), "exp": now() + 600,
    }));
    let response = h
        .check(check_request(
            "GET",
            "/api",
            &[("authorization", &bearer(&forged))],
        ))
        .await;
    let (answer, code) = denied(&response);
    assert_eq!(code, 16, "UNAUTHENTICATED: {response:?}");
    let (status, challenge, body) = denial_parts(answer);
    assert_eq!(status, 401, "{response:?}");
    let challenge = challenge.expect("a WWW-Authenticate challenge");
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert!(
        !format!("{response:?}").contains(&forged),
        "the token is echoed"
    );

    // No token at all: the bare challenge.
    let response = h.check(check_request("GET", "/api", &[])).await;
    let (answer, code) = denied(&response);
    assert_eq!(code, 16);
    let (status, challenge, _) = denial_parts(answer);
    assert_eq!((status, challenge), (401, Some("Bearer realm=\"baton\"")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_condition_denies_403_permission_denied_and_admits_who_it_names() {
    let h = Harness::start().await;
    let dev = h.idp_token("carol", &json!({ "team": "dev" }));
    let response = h
        .check(check_request(
            "GET",
            "/ops/deploy",
            &[("authorization", &bearer(&dev))],
        ))
        .await;
    let (answer, code) = denied(&response);
    assert_eq!(code, 7, "PERMISSION_DENIED: {response:?}");
    let (status, challenge, body) = denial_parts(answer);
    assert_eq!(status, 403);
    assert!(
        challenge.is_some_and(|c| c.contains("error=\"insufficient_scope\"")),
        "{challenge:?}"
    );
    assert_eq!(body["error"], "insufficient_scope", "{body}");

    let ops = h.idp_token("dave", &json!({ "team": "ops" }));
    let response = h
        .check(check_request(
            "GET",
            "/ops/deploy",
            &[("authorization", &bearer(&ops))],
        ))
        .await;
    assert_eq!(line(&allowed(&response).headers, "x-team"), Some("ops"));
}

#[tokio::test(flavor = "multi_thread")]
async fn idp_keys_down_is_denied_503_unavailable() {
    let h = Harness::start_with_keys_down().await;
    let idp_token = h.idp_token("alice", &json!({}));
    let response = h
        .check(check_request(
            "GET",
            "/api",
            &[("authorization", &bearer(&idp_token))],
        ))
        .await;
    let (answer, code) = denied(&response);
    assert_eq!(code, 14, "UNAVAILABLE: {response:?}");
    let (status, _, body) = denial_parts(answer);
    assert_eq!(status, 503, "{response:?}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(!format!("{response:?}").contains(&idp_token));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_skip_route_allows_and_removes_a_bearer_and_every_claim_header() {
    let h = Harness::start().await;
    let idp_token = h.idp_token("alice", &json!({}));
    let response = h
        .check(check_request(
            "GET",
            "/public/logo.png",
            &[
                ("authorization", &bearer(&idp_token)),
                ("x-user", "mallory"),
            ],
        ))
        .await;
    let ok = allowed(&response);
    assert!(ok.headers.is_empty(), "{ok:?}");
    let mut removed = ok.headers_to_remove.clone();
    removed.sort();
    assert_eq!(removed, ["authorization", "x-mail", "x-team", "x-user"]);
    assert!(!format!("{response:?}").contains(&idp_token));

    // Without a bearer there is no `authorization` to remove.
    let response = h.check(check_request("GET", "/public/logo.png", &[])).await;
    let ok = allowed(&response);
    assert!(
        !ok.headers_to_remove
            .iter()
            .any(|name| name == "authorization"),
        "{ok:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_check_without_a_readable_original_request_is_denied_never_allowed() {
    let h = Harness::start().await;
    let idp_token = h.idp_token("alice", &json!({}));
    let authorization = bearer(&idp_token);
    let mut no_http = check_request("GET", "/api", &[("authorization", &authorization)]);
    no_http
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http = None;
    let cases = [
        ("an empty CheckRequest", CheckRequest::default()),
        ("no attributes.request.http", no_http),
        (
            "an absolute-form path",
            check_request(
                "GET",
                "http://evil.example/api",
                &[("authorization", &authorization)],
            ),
        ),
        (
            "no method",
            check_request("", "/api", &[("authorization", &authorization)]),
        ),
    ];
    for (what, request) in cases {
        let response = h.check(request).await;
        let (answer, code) = denied(&response);
        assert_eq!(code, 3, "{what}: INVALID_ARGUMENT: {response:?}");
        let (status, _, body) = denial_parts(answer);
        assert_eq!(status, 400, "{what}: {response:?}");
        assert_eq!(body["error"], "invalid_request", "{what}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_answers_http_checks_beside_grpc_and_counts_both() {
    let h = Harness::start().await;
    let idp_token = h.idp_token("alice", &json!({}));
    let authorization = bearer(&idp_token);
    // An HTTP/1.1 check (Envoy's HTTP ext_authz: the original's line under the prefix) and
    // a gRPC one at the same time.
    let http_check = h
        .http
        .get(format!("http://{}/authz/api/orders", h.forward_auth))
        .header("authorization", &authorization)
        .header("x-team", "ops")
        .send();
    let grpc_check = h.check(check_request(
        "GET",
        "/api/orders",
        &[("authorization", &authorization)],
    ));
    let (http_answer, grpc_answer) = tokio::join!(http_check, grpc_check);
    let http_answer = http_answer.unwrap();
    assert_eq!(http_answer.status(), 200);
    assert_eq!(http_answer.version(), reqwest::Version::HTTP_11);
    let http_token = http_answer.headers()["authorization"].to_str().unwrap();
    assert_eq!(
        h.verified_baton_claims(http_token.strip_prefix("Bearer ").unwrap())["sub"],
        "alice"
    );
    assert_eq!(http_answer.headers()["x-user"], "alice");
    assert_eq!(
        http_answer.headers()["x-envoy-auth-headers-to-remove"],
        "x-team"
    );
    // The same token, the same cache: the gRPC answer sets what the HTTP one does.
    let ok = allowed(&grpc_answer);
    assert_eq!(line(&ok.headers, "authorization"), Some(http_token));

    // Refused (401), denied by the condition (403), unreadable (400), another method (404),
    // an undecodable message (400).
    let refused = h.check(check_request("GET", "/api", &[])).await;
    denied(&refused);
    let dev = h.idp_token("carol", &json!({ "team": "dev" }));
    let condition = h
        .check(check_request(
            "GET",
            "/ops",
            &[("authorization", &bearer(&dev))],
        ))
        .await;
    denied(&condition);
    denied(&h.check(CheckRequest::default()).await);
    let other = grpc_call(
        h.forward_auth,
        "/grpc.health.v1.Health/Check",
        EMPTY_MESSAGE,
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("content-type"), Some("application/grpc"));
    assert_eq!(other.header("grpc-status"), Some("12"), "UNIMPLEMENTED");
    assert!(other.body.is_empty(), "trailers-only: {other:?}");
    assert!(!other.had_trailers, "trailers-only: {other:?}");
    // A message that does not decode (a field of a wire type protobuf does not have) is
    // refused by the gRPC server before any decision: a failed call, counted as a 400.
    let garbage = grpc_call(
        h.forward_auth,
        "/envoy.service.auth.v3.Authorization/Check",
        &[0, 0, 0, 0, 2, 0x0f, 0x01],
    )
    .await;
    let code = garbage
        .header("grpc-status")
        .unwrap_or_else(|| panic!("no grpc-status: {garbage:?}"));
    assert_ne!(code, "0", "{garbage:?}");

    let metrics = h.metrics().await;
    let checks = |status: &str| {
        sample(
            &metrics,
            "baton_forward_auth_requests_total",
            &[("status", status)],
        )
    };
    assert_eq!(checks("200"), Some(2.0), "{metrics}");
    assert_eq!(checks("401"), Some(1.0), "{metrics}");
    assert_eq!(checks("403"), Some(1.0), "{metrics}");
    assert_eq!(checks("400"), Some(2.0), "{metrics}");
    assert_eq!(checks("404"), Some(1.0), "{metrics}");
    let exchanges = |outcome: &str| {
        sample(
            &metrics,
            "baton_exchanges_total",
            &[("surface", "forward_auth"), ("outcome", outcome)],
        )
    };
    // alice twice (one mint, one cache hit); carol's exchange was then denied.
    assert_eq!(exchanges("ok"), Some(2.0), "{metrics}");
    assert_eq!(exchanges("denied"), Some(1.0), "{metrics}");
}

/// What a raw gRPC call answered.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    had_trailers: bool,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One gRPC message frame holding an empty message: uncompressed (flag 0), length 0.
const EMPTY_MESSAGE: &[u8] = &[0, 0, 0, 0, 0];

/// A unary gRPC call to `path` over h2c with `frame` as its body, by hand (no generated
/// client knows a method Envoy's protos do not have, nor sends a broken message).
async fn grpc_call(addr: SocketAddr, path: &str, frame: &'static [u8]) -> RawAnswer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(frame)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = support::http::header_pairs(response.headers());
    let collected = response.into_body().collect().await.unwrap();
    let had_trailers = collected.trailers().is_some();
    RawAnswer {
        status,
        headers,
        body: collected.to_bytes(),
        had_trailers,
    }
}
