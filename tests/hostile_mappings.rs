//! Hostile mappings and hostile claims against the real `baton` binary: JSONPaths that
//! overflowed the parser's stack or took exponential time (through `baton check`, a SIGHUP,
//! the file watch and the admin API), and tokens whose claims are too deep, too many, copied
//! past the mapped-claims bound, or whose JOSE header is not UTF-8 (at `POST /tokens` and at
//! the proxy, with a recording upstream that must never see them).

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::Algorithm;
use parking_lot::Mutex;
use serde_json::{Value, json};
use support::baton::{Baton, reserve_addr, reserve_port};
use support::{now, payload, sign_hmac};

const ISS: &str = "https://idp.hostile-mappings.test";
const IDP_SECRET: &str = "idp-secret-for-hostile-mapping-tests";
const SERVICE: &str = "app";
const ADMIN_TOKEN: &str = "admin-token-for-hostile-mappings-0123";
/// 32 bytes, base64.
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Every refusal here must come quickly: the bounds are checked before any expensive work.
const FAST: Duration = Duration::from_secs(3);

/// 5000 nested parentheses: overflowed the stack inside serde_json_path's parser.
fn deep_parentheses() -> String {
    format!("$[?{}@.a{}]", "(".repeat(5000), ")".repeat(5000))
}

/// 100 nested parentheses, within the length bound.
fn nested_parentheses() -> String {
    format!("$[?{}@.a{}]", "(".repeat(100), ")".repeat(100))
}

/// 97 bytes, 24 nested filters: took tens of seconds to parse (x4 per 2 levels).
fn nested_filters() -> String {
    format!("${}{}", "[?@".repeat(24), "]".repeat(24))
}

/// Nested descendant filters: a small deep token made one exchange run for seconds.
const NESTED_DESCENDANTS: &str = "$..[?@..[?@..[?@..x]]]";

/// A TOML basic string (JSON's escapes are TOML's).
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

// --- the recording upstream -------------------------------------------------------------

/// An HTTP/1.1 server that answers 200 and records each request's `Authorization`.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                        let authorization = req
                            .headers()
                            .get("authorization")
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                        record.lock().push(authorization);
                        async {
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                "upstream ok",
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// --- baton --------------------------------------------------------------------------------

struct Setup<'a> {
    proxy: SocketAddr,
    upstream: SocketAddr,
    admin_port: u16,
    watch: bool,
    /// The IdP mapping, as TOML inline-table entries.
    idp_mapping: &'a str,
    /// The provider mapping, as TOML inline-table entries.
    provider_mapping: &'a str,
}

fn config(setup: &Setup<'_>) -> String {
    format!(
        r#"
[server]
issuer = "https://baton.hostile-mappings.test"
watch_config = {watch}

[proxy]
listen = "{proxy}"
upstream = "{upstream}"
service = "{SERVICE}"
threads = 1

[admin]
listen = "127.0.0.1:{admin_port}"
token_env = "ADMIN_TOKEN"
state_file = "state.json"
master_key_env = "MASTER_KEY"

[[keys]]
id = "sbk_hostile"
algorithm = "HS256"
secret = "sbsec_hostile_mappings_key"

[[idps]]
issuer = "{ISS}"
algorithms = ["HS256"]
key = "{idp_key}"
mapping = {{ {idp_mapping} }}

[[token_providers]]
service = "{SERVICE}"
key = "sbk_hostile"
mapping = {{ {provider_mapping} }}
"#,
        watch = setup.watch,
        proxy = setup.proxy,
        upstream = setup.upstream,
        admin_port = setup.admin_port,
        idp_key = URL_SAFE_NO_PAD.encode(IDP_SECRET),
        idp_mapping = setup.idp_mapping,
        provider_mapping = setup.provider_mapping,
    )
}

const GOOD_IDP_MAPPING: &str = r#""sub.$" = "$.sub", "roles.$" = "$..roles""#;
const GOOD_PROVIDER_MAPPING: &str = r#""sub.$" = "$.sub", "roles.$" = "$.roles""#;

/// A running baton, its upstream and its admin listener.
struct Harness {
    baton: Baton,
    upstream: Upstream,
    admin_url: String,
    proxy_addr: SocketAddr,
    admin_port: u16,
}

async fn start(dir: &Path, watch: bool) -> Harness {
    let upstream = Upstream::start().await;
    let (proxy, admin_port) = (reserve_addr(), reserve_port());
    let source = config(&Setup {
        proxy,
        upstream: upstream.addr,
        admin_port,
        watch,
        idp_mapping: GOOD_IDP_MAPPING,
        provider_mapping: GOOD_PROVIDER_MAPPING,
    });
    let baton = Baton::launch(dir, proxy, &source)
        .envs(&[("ADMIN_TOKEN", ADMIN_TOKEN), ("MASTER_KEY", MASTER_KEY)])
        .start()
        .await;
    Harness {
        baton,
        upstream,
        admin_url: format!("http://127.0.0.1:{admin_port}"),
        proxy_addr: proxy,
        admin_port,
    }
}

impl Harness {
    /// The config file with these mappings in place of the good ones.
    fn config_with(&self, idp_mapping: &str, provider_mapping: &str) -> String {
        config(&Setup {
            proxy: self.proxy_addr,
            upstream: self.upstream.addr,
            admin_port: self.admin_port,
            watch: false,
            idp_mapping,
            provider_mapping,
        })
    }

    /// `POST /tokens`: the status and the JSON body.
    async fn exchange(&self, subject_token: &str) -> (u16, Value) {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT)
            .append_pair("subject_token", subject_token)
            .append_pair("audience", SERVICE)
            .finish();
        let response = reqwest::Client::new()
            .post(self.baton.url("/tokens"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .timeout(FAST)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// A proxied `GET /api` with the bearer token: the status and `WWW-Authenticate`.
    async fn proxy(&self, bearer: &str) -> (u16, Option<String>) {
        let response = reqwest::Client::new()
            .get(self.baton.url("/api"))
            .bearer_auth(bearer)
            .timeout(FAST)
            .send()
            .await
            .unwrap();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status().as_u16(), challenge)
    }

    /// An admin API call with the admin token: the status and the JSON body.
    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", self.admin_url))
            .bearer_auth(ADMIN_TOKEN)
            .timeout(FAST);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A good exchange still works, with the good mappings (the roles pass through).
    async fn assert_serving_the_good_config(&mut self) {
        assert!(
            self.baton.process.exited().is_none(),
            "baton died:\n{}",
            self.baton.log()
        );
        let (status, answer) = self.exchange(&idp_token(&claims(json!(["reader"])))).await;
        assert_eq!(status, 200, "{answer}\n{}", self.baton.log());
        let minted = payload(answer["access_token"].as_str().unwrap());
        assert_eq!(
            minted["act"],
            json!({ "sub": "user-1", "roles": ["reader"] })
        );
    }

    /// Waits until the log holds `text` `times` times.
    async fn wait_for_log(&self, text: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.baton.log();
            if log.matches(text).count() >= times {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "never logged {text:?} {times} times:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

// --- tokens -------------------------------------------------------------------------------

fn claims(roles: Value) -> Value {
    json!({ "iss": ISS, "sub": "user-1", "exp": now() + 600, "roles": roles })
}

fn idp_token(claims: &Value) -> String {
    sign_hmac(
        IDP_SECRET.as_bytes(),
        Algorithm::HS256,
        &json!({ "alg": "HS256", "typ": "JWT" }),
        claims,
    )
}

/// A correctly signed HS256 token over raw header and payload bytes.
fn idp_token_raw(header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, IDP_SECRET.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

// --- baton check --------------------------------------------------------------------------

fn baton_check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .envs([("ADMIN_TOKEN", ADMIN_TOKEN), ("MASTER_KEY", MASTER_KEY)])
        .output()
        .unwrap()
}

#[test]
fn check_refuses_deep_and_explosive_paths_naming_the_key_fast() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.toml");
    let idp_mapping = format!(
        r#""sub.$" = "$.sub", "role.$" = {}, "nest.$" = {}"#,
        toml_string(&deep_parentheses()),
        toml_string(&nested_parentheses())
    );
    let provider_mapping = format!(
        r#""sub.$" = "$.sub", "filters.$" = {}, "descend.$" = {}, "re.$" = "$[?match(@.a, $.b)]""#,
        toml_string(&nested_filters()),
        toml_string(NESTED_DESCENDANTS)
    );
    std::fs::write(
        &path,
        config(&Setup {
            proxy: reserve_addr(),
            upstream: reserve_addr(),
            admin_port: reserve_port(),
            watch: false,
            idp_mapping: &idp_mapping,
            provider_mapping: &provider_mapping,
        }),
    )
    .unwrap();
    let started = Instant::now();
    let output = baton_check(&path);
    let elapsed = started.elapsed();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(elapsed < FAST, "baton check took {elapsed:?}");
    for expected in [
        r#"idps[0].mapping."role.$": the JSONPath is 10007 bytes long; at most 512 are allowed"#,
        r#"idps[0].mapping."nest.$": the JSONPath nests 101 levels deep; at most 6 are allowed"#,
        r#"token_providers[0].mapping."filters.$": the JSONPath nests 24 levels deep; at most 6 are allowed"#,
        r#"token_providers[0].mapping."descend.$": the JSONPath has 4 descendant segments (`..`); at most 1 is allowed"#,
        r#"token_providers[0].mapping."re.$": the JSONPath function `match()` is not supported"#,
    ] {
        assert!(
            shown.contains(expected),
            "missing {expected:?} in:\n{shown}"
        );
    }
    // Each bad path once, the good ones not at all.
    assert_eq!(shown.matches(".mapping.").count(), 5, "{shown}");
}

// --- reloads ------------------------------------------------------------------------------

#[tokio::test]
async fn a_sighup_with_a_deep_or_explosive_path_is_rejected_and_the_old_config_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = start(dir.path(), false).await;
    h.assert_serving_the_good_config().await;

    let bad_configs = [
        (
            h.config_with(
                &format!(
                    r#""sub.$" = "$.sub", "role.$" = {}"#,
                    toml_string(&deep_parentheses())
                ),
                GOOD_PROVIDER_MAPPING,
            ),
            r#"idps[0].mapping.\"role.$\": the JSONPath is 10007 bytes long"#,
        ),
        (
            h.config_with(
                GOOD_IDP_MAPPING,
                &format!(
                    r#""sub.$" = "$.sub", "x.$" = {}"#,
                    toml_string(&nested_filters())
                ),
            ),
            r#"token_providers[0].mapping.\"x.$\": the JSONPath nests 24 levels deep"#,
        ),
    ];
    for (rejections, (bad, logged)) in (1..).zip(bad_configs) {
        h.baton.write_config(&bad);
        let started = Instant::now();
        h.baton.signal("HUP");
        let log = h
            .wait_for_log(
                "configuration rejected; the old one keeps serving",
                rejections,
            )
            .await;
        assert!(
            started.elapsed() < FAST,
            "the rejection took {:?}",
            started.elapsed()
        );
        let logged_plain = logged.replace("\\\"", "\"");
        assert!(
            log.contains(logged) || log.contains(&logged_plain),
            "the log does not name the key ({logged_plain}):\n{log}"
        );
        h.assert_serving_the_good_config().await;
    }
}

#[tokio::test]
async fn the_file_watch_rejects_a_deep_path_and_the_old_config_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = start(dir.path(), true).await;
    h.assert_serving_the_good_config().await;
    let bad = h
        .config_with(
            &format!(
                r#""sub.$" = "$.sub", "role.$" = {}"#,
                toml_string(&nested_parentheses())
            ),
            GOOD_PROVIDER_MAPPING,
        )
        .replace("watch_config = false", "watch_config = true");
    h.baton.write_config(&bad);
    // The watch polls every 2 s.
    let log = h
        .wait_for_log("configuration rejected; the old one keeps serving", 1)
        .await;
    assert!(
        log.contains("the JSONPath nests 101 levels deep; at most 6 are allowed"),
        "{log}"
    );
    h.assert_serving_the_good_config().await;
}

// --- the admin API ------------------------------------------------------------------------

#[tokio::test]
async fn the_admin_api_refuses_deep_and_explosive_paths_and_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = start(dir.path(), false).await;
    let state = dir.path().join("state.json");
    let state_before = std::fs::read(&state).ok();

    let idp = |mapping: Value| {
        json!({
            "iss": "https://api.idp.hostile-mappings.test/",
            "algs": ["HS256"],
            "key": URL_SAFE_NO_PAD.encode("api-idp-secret"),
            "mapping": mapping,
        })
    };
    let cases = [
        (
            "/idps",
            idp(json!({ "sub.$": "$.sub", "role.$": deep_parentheses() })),
            "the JSONPath is 10007 bytes long; at most 512 are allowed",
        ),
        (
            "/idps",
            idp(json!({ "role.$": nested_filters() })),
            "the JSONPath nests 24 levels deep; at most 6 are allowed",
        ),
        (
            "/idps",
            idp(json!({ "role.$": NESTED_DESCENDANTS })),
            "descendant segments (`..`); at most 1 is allowed",
        ),
        (
            "/token-providers",
            json!({ "service": "api-app", "keyId": "sbk_hostile", "mapping": { "x.$": nested_filters() } }),
            "the JSONPath nests 24 levels deep; at most 6 are allowed",
        ),
    ];
    for (path, body, reason) in cases {
        let started = Instant::now();
        let (status, error) = h.admin("POST", path, Some(body)).await;
        assert!(
            started.elapsed() < FAST,
            "{path} took {:?}",
            started.elapsed()
        );
        assert_eq!(status, 400, "{path}: {error}");
        assert_eq!(error["code"], "invalid-request", "{error}");
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(reason), "{path}: {message}");
        assert!(message.contains("mapping"), "{path}: {message}");
    }
    // Alive, nothing saved, nothing listed, and the old entries serve.
    assert_eq!(std::fs::read(&state).ok(), state_before);
    let (status, idps) = h.admin("GET", "/idps", None).await;
    assert_eq!(status, 200);
    assert_eq!(idps["idps"].as_array().unwrap().len(), 1, "{idps}");
    let (_, providers) = h.admin("GET", "/token-providers", None).await;
    assert!(!providers.to_string().contains("api-app"), "{providers}");
    h.assert_serving_the_good_config().await;
}

// --- hostile claims -----------------------------------------------------------------------

#[tokio::test]
async fn tokens_with_hostile_claims_or_a_non_utf8_header_are_refused_on_both_surfaces() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = start(dir.path(), false).await;

    // Control: a good token passes both, and the upstream sees a minted token.
    let good = idp_token(&claims(json!(["reader"])));
    assert_eq!(h.exchange(&good).await.0, 200);
    assert_eq!(h.proxy(&good).await.0, 200);
    let seen = h.upstream.seen();
    assert_eq!(seen.len(), 1);
    let forwarded = seen[0].as_deref().unwrap().strip_prefix("Bearer ").unwrap();
    assert_ne!(forwarded, good);

    // 17 levels of arrays in a claim (the claims object is level 1).
    let mut deep = json!(0);
    for _ in 0..16 {
        deep = json!([deep]);
    }
    // 1100 values, in a token well under the size bound.
    let many = json!(vec![0; 1100]);
    // Within both bounds, but `$..roles` copies each nested `roles` once per enclosing one:
    // over the mapped-claims bound.
    let mut overlapping = json!(vec![0; 150]);
    for _ in 0..10 {
        overlapping = json!({ "roles": overlapping });
    }
    let payload_bytes = claims(json!("reader")).to_string();
    let not_utf8_header = b"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"x\":\"\xff\xfe\"}";
    let hostile = [
        ("claims 17 levels deep", idp_token(&claims(deep))),
        ("1100 claim values", idp_token(&claims(many))),
        ("overlapping roles", idp_token(&claims(overlapping))),
        (
            "a JOSE header that is not UTF-8",
            idp_token_raw(not_utf8_header, payload_bytes.as_bytes()),
        ),
    ];
    for (name, token) in &hostile {
        assert!(token.len() < baton::token::MAX_TOKEN_BYTES, "{name}");
        let started = Instant::now();
        let (status, error) = h.exchange(token).await;
        assert_eq!(status, 400, "{name}: {error}");
        assert_eq!(error["error"], "invalid_request", "{name}: {error}");
        let description = error["error_description"].as_str().unwrap_or_default();
        assert!(
            !description.contains(token.as_str()),
            "{name}: {description}"
        );
        let (status, challenge) = h.proxy(token).await;
        assert_eq!(status, 401, "{name}");
        assert!(
            challenge
                .as_deref()
                .is_some_and(|c| c.contains("invalid_token")),
            "{name}: {challenge:?}"
        );
        assert!(
            started.elapsed() < FAST,
            "{name} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        h.upstream.seen().len(),
        1,
        "the upstream saw a hostile request"
    );
    // Not one token reached the log.
    let log = h.baton.log();
    for (name, token) in &hostile {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "{name}: the log holds the token");
    }
    h.assert_serving_the_good_config().await;
}
