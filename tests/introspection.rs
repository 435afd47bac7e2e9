//! RFC 7662 introspection of opaque subject tokens, in process, against a small local
//! introspection endpoint (hyper) that counts its calls and can be told to misbehave:
//! single-flight and caching, the selection rule (an opaque token reaches one endpoint at
//! most), hostile and failing answers (never accepted), and the checks on the answer.
//! The real `oidc-provider`'s endpoint is exercised by `tests/interop_node.rs`.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use baton::config::Config;
use baton::exchange::{ExchangeError, Exchanger, ExchangerOptions, Fault};
use baton::idp::jwks::JwksPolicy;
use baton::idp::verify::VerifyError;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use parking_lot::Mutex;
use serde_json::json;
use support::{TestKey, now, payload};

const ISS: &str = "https://opaque.idp.example";
const SECRET: &str = "introspection-client-secret-d0n7-l0g";

/// What the endpoint answers: status, body (`{token}` is replaced by the token), delay.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: String,
    delay: Duration,
}

/// A local RFC 7662 endpoint.
struct Endpoint {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    reply: Arc<Mutex<Reply>>,
    /// The `Authorization` headers and form bodies it received.
    seen: Arc<Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(Mutex::new(active_reply()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = (Arc::clone(&calls), Arc::clone(&reply), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (calls, reply, seen) = state.clone();
                            async move {
                                calls.fetch_add(1, Ordering::SeqCst);
                                let auth = req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let form = String::from_utf8_lossy(&body).into_owned();
                                let token = url::form_urlencoded::parse(form.as_bytes())
                                    .find(|(k, _)| k == "token")
                                    .map(|(_, v)| v.into_owned())
                                    .unwrap_or_default();
                                seen.lock().push((auth, form));
                                let reply = reply.lock().clone();
                                tokio::time::sleep(reply.delay).await;
                                let response = hyper::Response::builder()
                                    .status(reply.status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(
                                        reply.body.replace("{token}", &token),
                                    )))
                                    .unwrap();
                                Ok::<_, Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            calls,
            reply,
            seen,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn set(&self, status: u16, body: impl Into<String>) {
        *self.reply.lock() = Reply {
            status,
            body: body.into(),
            delay: Duration::ZERO,
        };
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn active_reply() -> Reply {
    Reply {
        status: 200,
        body: json!({
            "active": true,
            "iss": ISS,
            "sub": "user-{token}",
            "scope": "read write",
            "exp": now() + 600,
        })
        .to_string(),
        delay: Duration::ZERO,
    }
}

const MINTING: &str = r#"
[[keys]]
id = "sbk_test"
algorithm = "HS256"
secret = "a-test-secret-that-is-long-enough-0123456789"

[[token_providers]]
service = "app"
key = "sbk_test"
ttl = "1h"
mapping = { "sub.$" = "$.sub", "scope.$" = "$.scope" }
"#;

fn idp(url: &str, extra: &str) -> String {
    format!(
        r#"
[[idps]]
issuer = "{ISS}"
introspection = {{ url = "{url}", client_id = "baton", client_secret_env = "INTROSPECTION_SECRET" }}
mapping = {{ "sub.$" = "$.sub", "scope.$" = "$.scope" }}
{extra}
"#
    )
}

fn env(name: &str) -> Option<String> {
    (name == "INTROSPECTION_SECRET").then(|| SECRET.to_owned())
}

fn exchanger(toml: &str) -> Exchanger {
    exchanger_with(toml, JwksPolicy::default())
}

fn exchanger_with(toml: &str, jwks: JwksPolicy) -> Exchanger {
    let config = Config::from_toml(&format!("{MINTING}{toml}"), Path::new("."), &env)
        .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{toml}"));
    let options = ExchangerOptions {
        jwks,
        ..ExchangerOptions::default()
    };
    Exchanger::new(config, options).expect("exchanger")
}

fn config_errors(toml: &str) -> String {
    match Config::from_toml(&format!("{MINTING}{toml}"), Path::new("."), &env) {
        Ok(_) => panic!("config accepted:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

async fn refused(exchanger: &Exchanger, token: &str) -> ExchangeError {
    match exchanger.exchange(token, "app").await {
        Ok(ok) => panic!("token {token} accepted: {:?}", payload(ok.minted.token())),
        Err(e) => e,
    }
}

#[tokio::test]
async fn an_active_opaque_token_is_exchanged_with_the_answers_claims_and_exp() {
    let endpoint = Endpoint::start().await;
    let exp = now() + 300;
    endpoint.set(
        200,
        json!({ "active": true, "iss": ISS, "sub": "alice", "scope": "read", "exp": exp })
            .to_string(),
    );
    let exchanger = exchanger(&idp(&endpoint.url(), ""));
    let exchanged = exchanger.exchange("opaque-abc", "app").await.unwrap();
    let minted = payload(exchanged.minted.token());
    assert_eq!(minted["act"]["sub"], "alice");
    assert_eq!(minted["act"]["scope"], "read");
    // The answer's `exp` caps the minted token's (the provider's ttl is an hour).
    assert!(minted["exp"].as_u64().unwrap() <= exp, "{minted}");

    // client_secret_basic, and the token in the form body only.
    let seen = endpoint.seen.lock().clone();
    assert_eq!(seen.len(), 1);
    let (auth, form) = &seen[0];
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("baton:{SECRET}"),
    );
    assert_eq!(auth, &format!("Basic {basic}"));
    assert_eq!(form, "token=opaque-abc&token_type_hint=access_token");

    // The config's Debug never shows the secret.
    let config = exchanger.config();
    assert!(!format!("{config:?}").contains(SECRET));
}

#[tokio::test]
async fn a_flood_of_one_token_makes_one_call_and_the_answer_is_reused() {
    let endpoint = Endpoint::start().await;
    endpoint.reply.lock().delay = Duration::from_millis(200);
    let exchanger = Arc::new(exchanger(&idp(&endpoint.url(), "")));
    let flood: Vec<_> = (0..20)
        .map(|_| {
            let exchanger = Arc::clone(&exchanger);
            tokio::spawn(async move { exchanger.exchange("flooded-token", "app").await })
        })
        .collect();
    for request in flood {
        request.await.unwrap().expect("accepted");
    }
    assert_eq!(endpoint.calls(), 1);
    // Through the proxy's entry point too, and for another service: the introspection cache
    // answers (no second call).
    exchanger
        .authorize("flooded-token", "app", None)
        .await
        .unwrap();
    assert_eq!(endpoint.calls(), 1);
    assert_eq!(
        exchanger
            .introspector()
            .stats()
            .calls
            .load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn an_inactive_token_is_refused_as_the_clients_fault_and_the_answer_kept_briefly() {
    let endpoint = Endpoint::start().await;
    endpoint.set(200, r#"{"active": false}"#);
    let exchanger = exchanger(&idp(&endpoint.url(), ""));
    for _ in 0..3 {
        let error = refused(&exchanger, "revoked-token").await;
        assert_eq!(error, ExchangeError::Token(VerifyError::Inactive));
        assert_eq!(error.fault(), Fault::Client);
    }
    assert_eq!(endpoint.calls(), 1, "active: false is cached");
}

#[tokio::test]
async fn hostile_or_failing_answers_are_never_accepted() {
    let endpoint = Endpoint::start().await;
    let exchanger = exchanger_with(
        &idp(&endpoint.url(), "introspection_cache_ttl = \"0s\""),
        JwksPolicy {
            request_timeout: Duration::from_millis(500),
            max_body_bytes: 4096,
            ..JwksPolicy::default()
        },
    );
    let big = json!({ "active": true, "iss": ISS, "sub": "x", "pad": "p".repeat(8192) });
    let cases: Vec<(&str, u16, String)> = vec![
        ("not JSON", 200, "active=true".to_owned()),
        (
            "no active",
            200,
            json!({ "sub": "x", "iss": ISS }).to_string(),
        ),
        (
            "active as a string",
            200,
            json!({ "active": "true", "sub": "x" }).to_string(),
        ),
        (
            "active as a number",
            200,
            json!({ "active": 1, "sub": "x" }).to_string(),
        ),
        ("an array", 200, json!([{ "active": true }]).to_string()),
        ("over the body cap", 200, big.to_string()),
        (
            "a 500",
            500,
            json!({ "active": true, "sub": "x" }).to_string(),
        ),
        (
            "a 401",
            401,
            json!({ "active": true, "sub": "x" }).to_string(),
        ),
        ("a redirect", 302, String::new()),
    ];
    for (n, (what, status, body)) in cases.into_iter().enumerate() {
        endpoint.set(status, body);
        let error = refused(&exchanger, &format!("hostile-{n}")).await;
        assert!(
            matches!(
                error,
                ExchangeError::Token(VerifyError::IntrospectionUnavailable(_))
            ),
            "{what}: {error:?}"
        );
        assert_eq!(error.fault(), Fault::Upstream, "{what}");
        assert!(
            !error.to_string().contains(&format!("hostile-{n}")),
            "{what}: {error}"
        );
    }
    // Failures are not cached: once the endpoint answers properly, the same token passes.
    *endpoint.reply.lock() = active_reply();
    exchanger.exchange("hostile-0", "app").await.unwrap();

    // Slow: beyond the request timeout.
    endpoint.reply.lock().delay = Duration::from_secs(2);
    let error = refused(&exchanger, "slow-token").await;
    assert_eq!(error.fault(), Fault::Upstream, "{error:?}");
}

#[tokio::test]
async fn an_endpoint_that_is_down_is_unavailable_never_an_accept() {
    let endpoint = Endpoint::start().await;
    let url = endpoint.url();
    drop(endpoint);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let exchanger = exchanger(&idp(&url, ""));
    let error = refused(&exchanger, "some-opaque-token").await;
    assert!(
        matches!(
            error,
            ExchangeError::Token(VerifyError::IntrospectionUnavailable(_))
        ),
        "{error:?}"
    );
    assert_eq!(error.fault(), Fault::Upstream);
}

#[tokio::test]
async fn an_opaque_token_never_reaches_a_second_endpoint() {
    let first = Endpoint::start().await;
    let second = Endpoint::start().await;
    let fallback = Endpoint::start().await;
    let two = |fallback_url: Option<&str>| {
        let mut toml = format!(
            r#"
[[idps]]
name = "first"
issuer = "{ISS}/a"
token_prefix = "a_"
introspection = {{ url = "{}" }}
mapping = {{ "sub.$" = "$.sub" }}

[[idps]]
name = "second"
issuer = "{ISS}/b"
token_prefix = "a_b_"
introspection = {{ url = "{}" }}
mapping = {{ "sub.$" = "$.sub" }}
"#,
            first.url(),
            second.url()
        );
        if let Some(url) = fallback_url {
            toml.push_str(&format!(
                r#"
[[idps]]
name = "fallback"
issuer = "{ISS}"
introspection = {{ url = "{url}" }}
mapping = {{ "sub.$" = "$.sub" }}
"#
            ));
        }
        toml
    };
    // The answers carry no `iss`: accepted by whichever IdP asked.
    for endpoint in [&first, &second, &fallback] {
        endpoint.set(200, json!({ "active": true, "sub": "s" }).to_string());
    }
    let exchanger = exchanger(&two(None));
    exchanger.exchange("a_token", "app").await.unwrap();
    assert_eq!((first.calls(), second.calls()), (1, 0));
    // The longest prefix wins.
    exchanger.exchange("a_b_token", "app").await.unwrap();
    assert_eq!((first.calls(), second.calls()), (1, 1));
    // Refused by its endpoint: never tried at another.
    first.set(200, r#"{"active": false}"#);
    let error = refused(&exchanger, "a_refused").await;
    assert_eq!(error, ExchangeError::Token(VerifyError::Inactive));
    first.set(503, "{}");
    let error = refused(&exchanger, "a_down").await;
    assert_eq!(error.fault(), Fault::Upstream);
    assert_eq!((first.calls(), second.calls()), (3, 1));
    // No prefix matches and no IdP without one: refused without any call.
    let error = refused(&exchanger, "c_token").await;
    assert_eq!(error, ExchangeError::Token(VerifyError::NoMatchingIdp));
    assert_eq!((first.calls(), second.calls()), (3, 1));

    // With an IdP without a prefix, the rest go there, and only there.
    first.set(200, json!({ "active": true, "sub": "s" }).to_string());
    let exchanger = self::exchanger(&two(Some(&fallback.url())));
    exchanger.exchange("c_token", "app").await.unwrap();
    exchanger.exchange("a_token2", "app").await.unwrap();
    assert_eq!((first.calls(), second.calls(), fallback.calls()), (4, 1, 1));
}

#[tokio::test]
async fn the_answers_iss_and_aud_must_be_the_idps_when_present() {
    let endpoint = Endpoint::start().await;
    let exchanger = exchanger(&format!(
        r#"
[[idps]]
issuer = "{ISS}"
audience = "api"
introspection = {{ url = "{}" }}
mapping = {{ "sub.$" = "$.sub" }}
"#,
        endpoint.url()
    ));
    let cases = [
        (
            json!({ "active": true, "sub": "s", "iss": "https://evil" }),
            Some(VerifyError::WrongIssuer),
        ),
        (
            json!({ "active": true, "sub": "s", "aud": "other" }),
            Some(VerifyError::WrongAudience),
        ),
        (
            json!({ "active": true, "sub": "s", "aud": ["other", "api"], "iss": ISS }),
            None,
        ),
        (json!({ "active": true, "sub": "s" }), None),
        (
            json!({ "active": true, "sub": "s", "exp": now() - 3600 }),
            Some(VerifyError::Expired { exp: 0, now: 0 }),
        ),
    ];
    for (n, (answer, want)) in cases.into_iter().enumerate() {
        endpoint.set(200, answer.to_string());
        let result = exchanger.exchange(&format!("t{n}"), "app").await;
        match (want, result) {
            (None, Ok(_)) => {}
            (
                Some(VerifyError::Expired { .. }),
                Err(ExchangeError::Token(VerifyError::Expired { .. })),
            ) => {}
            (Some(want), Err(ExchangeError::Token(got))) => assert_eq!(got, want, "{answer}"),
            (want, got) => panic!("{answer}: wanted {want:?}, got {got:?}"),
        }
    }
}

#[tokio::test]
async fn jwts_keep_their_path_unless_the_idp_has_no_keys() {
    let endpoint = Endpoint::start().await;
    let key = TestKey::generate(jsonwebtoken::Algorithm::RS256, "k1");
    let pem = key.public_pem();
    std::fs::write(
        std::env::temp_dir().join("baton-introspection-k1.pem"),
        &pem,
    )
    .unwrap();
    let exchanger = exchanger(&format!(
        r#"
[[idps]]
name = "local"
issuer = "{ISS}/local"
key_file = "{}"
introspection = {{ url = "{url}" }}
mapping = {{ "sub.$" = "$.sub" }}

[[idps]]
name = "remote"
issuer = "{ISS}/remote"
token_prefix = "never-"
introspection = {{ url = "{url}" }}
mapping = {{ "sub.$" = "$.sub" }}
"#,
        std::env::temp_dir()
            .join("baton-introspection-k1.pem")
            .display(),
        url = endpoint.url()
    ));
    let claims = |iss: &str| json!({ "iss": iss, "sub": "jwt-user", "exp": now() + 600 });
    // An IdP with keys verifies its JWTs locally.
    let local = key.sign(&claims(&format!("{ISS}/local")));
    exchanger.exchange(&local, "app").await.unwrap();
    assert_eq!(endpoint.calls(), 0);
    // One without keys introspects them.
    endpoint.set(
        200,
        json!({ "active": true, "sub": "jwt-user" }).to_string(),
    );
    let remote = key.sign(&claims(&format!("{ISS}/remote")));
    exchanger.exchange(&remote, "app").await.unwrap();
    assert_eq!(endpoint.calls(), 1);
}

#[test]
fn the_selection_rule_is_checked_at_load() {
    let plain = |name: &str, prefix: Option<&str>| {
        format!(
            "[[idps]]\nname = \"{name}\"\naudience = \"{name}\"\n{}introspection = {{ url = \"https://idp.test/i\" }}\nmapping = {{ \"sub.$\" = \"$.sub\" }}\n",
            prefix
                .map(|p| format!("token_prefix = \"{p}\"\n"))
                .unwrap_or_default()
        )
    };
    let errors = config_errors(&format!("{}{}", plain("a", None), plain("b", None)));
    assert!(errors.contains("without token_prefix"), "{errors}");
    let errors = config_errors(&format!(
        "{}{}",
        plain("a", Some("x")),
        plain("b", Some("x"))
    ));
    assert!(errors.contains("token_prefix"), "{errors}");
    let errors = config_errors(
        "[[idps]]\nissuer = \"https://idp.test\"\nintrospection = true\nmapping = {}\n",
    );
    assert!(errors.contains("discovery"), "{errors}");
    let errors = config_errors(
        "[[idps]]\nissuer = \"https://idp.test\"\nintrospection = { url = \"http://idp.test/i\" }\nmapping = {}\n",
    );
    assert!(errors.contains("https"), "{errors}");
    let errors = config_errors(
        "[[idps]]\nissuer = \"https://idp.test\"\njwks_url = \"https://idp.test/jwks\"\ntoken_prefix = \"x\"\nmapping = {}\n",
    );
    assert!(errors.contains("introspection only"), "{errors}");
    // One prefix-less plus prefixed ones is fine.
    let toml = format!("{MINTING}{}{}", plain("a", None), plain("b", Some("b_")));
    Config::from_toml(&toml, Path::new("."), &env).unwrap();
}
