//! Policy on the exchange side, end to end with the real `baton serve`: `[[idps]]` and
//! `[[token_providers]]` conditions, a client's `idps` limit on `/tokens`, the minted-token
//! cache per client, the proxy's 403, `baton_exchanges_total{outcome="denied"}`, and
//! conditions written through the admin API.
//!
//! The IdP is Google-shaped (`https://accounts.google.com`, RS256 from a JWKS, `email`,
//! `email_verified`, `hd`, `groups`), with GCP-style attribute conditions. No response may
//! ever echo a condition's expression or a claim value: [`Fixture::check`] looks at every
//! body and header.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use support::baton::{Baton, reserve_addr, reserve_port};
use support::http::Answer;
use support::{JwksServer, TestKey, now, payload, sign_hmac};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const GOOGLE: &str = "https://accounts.google.com";
/// A second IdP on the same keys: what a client limited to `google` may not use.
const PARTNER: &str = "https://partner.test";
const AUD: &str = "baton-policy-e2e";
const ADMIN_TOKEN: &str = "admin-token-for-policy-tests-0123";
/// 32 bytes, base64.
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const WEB_SECRET: &str = "web-secret-0123456789";
const BATCH_SECRET: &str = "batch-secret-0123456789";

const IDP_CONDITION: &str = r#"claims.email_verified == true && claims.hd == "example.com""#;
const APP_CONDITION: &str = r#""admins" in claims.groups"#;
const GATED_CONDITION: &str = r#"client == "web" && idp == "google""#;

/// Text that must never appear in an answer: the expressions, and the claim values the
/// tests' tokens carry.
const NEVER_ECHOED: [&str; 8] = [
    IDP_CONDITION,
    APP_CONDITION,
    GATED_CONDITION,
    "email_verified",
    "example.com",
    "other.example",
    "alice@",
    "admins",
];

/// baton with the IdPs `google` (with [`IDP_CONDITION`]) and `partner`, and the providers
/// `app` (public, [`APP_CONDITION`], `[proxy] service`), `private` (clients `web`, limited to
/// `google`, and `batch`, limited to `partner`) and `gated` (clients `web` and `batch`,
/// unlimited, [`GATED_CONDITION`]); an upstream that counts what reaches it.
struct Fixture {
    baton: Baton,
    admin_url: String,
    http: reqwest::Client,
    idp: TestKey,
    upstream: CountingUpstream,
    _jwks: JwksServer,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Self {
        let idp = TestKey::generate(Algorithm::RS256, "google-key-1");
        let jwks = JwksServer::start(vec![idp.jwk.clone()]).await;
        let upstream = CountingUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let addr = reserve_addr();
        let admin_port = reserve_port();
        let jwks_url = jwks.jwks_url();
        let config = format!(
            r#"
[server]
issuer = "https://baton.policy.test"

[proxy]
listen = "{addr}"
upstream = "{upstream}"
service = "app"
threads = 1

[admin]
listen = "127.0.0.1:{admin_port}"
token_env = "ADMIN_TOKEN"
state_file = "state.json"
master_key_env = "MASTER_KEY"

[[keys]]
id = "sbk_main"
algorithm = "HS256"
secret = "sbsec_policy_key_long_enough"

[[idps]]
name = "google"
issuer = "{GOOGLE}"
audience = "{AUD}"
jwks_url = "{jwks_url}"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "groups.$" = "$.groups" }}
condition = '{IDP_CONDITION}'

[[idps]]
name = "partner"
issuer = "{PARTNER}"
audience = "{AUD}"
jwks_url = "{jwks_url}"
mapping = {{ "sub.$" = "$.sub", "groups.$" = "$.groups" }}

[[token_providers]]
service = "app"
key = "sbk_main"
mapping = {{ "sub.$" = "$.sub" }}
condition = '{APP_CONDITION}'

[[token_providers]]
service = "private"
key = "sbk_main"
mapping = {{ "sub.$" = "$.sub" }}

[[token_providers.clients]]
id = "web"
secret_env = "WEB_SECRET"
idps = ["google"]

[[token_providers.clients]]
id = "batch"
secret_env = "BATCH_SECRET"
idps = ["partner"]

[[token_providers]]
service = "gated"
key = "sbk_main"
mapping = {{ "sub.$" = "$.sub" }}
condition = '{GATED_CONDITION}'

[[token_providers.clients]]
id = "web"
secret_env = "WEB_SECRET"

[[token_providers.clients]]
id = "batch"
secret_env = "BATCH_SECRET"
"#,
            upstream = upstream.addr,
        );
        let baton = Baton::launch(dir.path(), addr, &config)
            .envs(&[
                ("ADMIN_TOKEN", ADMIN_TOKEN),
                ("MASTER_KEY", MASTER_KEY),
                ("WEB_SECRET", WEB_SECRET),
                ("BATCH_SECRET", BATCH_SECRET),
            ])
            .start()
            .await;
        Self {
            baton,
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            http: reqwest::Client::new(),
            idp,
            upstream,
            _jwks: jwks,
            _dir: dir,
        }
    }

    /// A Google-shaped ID token from `issuer` with these claims over the defaults
    /// (`email_verified`, `hd` of example.com, `groups` with `admins`).
    fn token(&self, issuer: &str, overrides: &Value) -> String {
        let mut claims = json!({
            "iss": issuer,
            "aud": AUD,
            "sub": "110169484474386276334",
            "email": "alice@example.com",
            "email_verified": true,
            "hd": "example.com",
            "groups": ["admins", "dev"],
            "iat": now() - 10,
            "exp": now() + 3600,
        });
        for (name, value) in overrides.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        self.idp.sign(&claims)
    }

    /// `POST /tokens` for `service`, authenticated as `client` (id, secret) with `method`.
    async fn exchange(
        &self,
        token: &str,
        service: &str,
        client: Option<(&str, &str)>,
        method: ClientAuth,
    ) -> Answer {
        let mut form = vec![
            ("grant_type", GRANT.to_owned()),
            ("subject_token", token.to_owned()),
            ("audience", service.to_owned()),
        ];
        let mut request = self.http.post(self.baton.url("/tokens"));
        if let Some((id, secret)) = client {
            match method {
                ClientAuth::Basic => {
                    let encoded = STANDARD.encode(format!("{id}:{secret}"));
                    request = request.header("authorization", format!("Basic {encoded}"));
                }
                ClientAuth::Post => {
                    form.push(("client_id", id.to_owned()));
                    form.push(("client_secret", secret.to_owned()));
                }
            }
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        let request = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let answer = Answer::read(request.send().await.unwrap()).await;
        self.check(&answer, token);
        answer
    }

    /// `GET /orders?id=1` through the proxy with `token` as the bearer.
    async fn proxy_get(&self, token: &str) -> Answer {
        let request = self
            .http
            .get(self.baton.url("/orders?id=1"))
            .bearer_auth(token);
        let answer = Answer::read(request.send().await.unwrap()).await;
        self.check(&answer, token);
        answer
    }

    /// No answer shows the subject token, an expression or a claim value.
    fn check(&self, answer: &Answer, token: &str) {
        let mut shown = answer.text();
        for (name, value) in &answer.headers {
            shown.push_str(&format!("\n{name}: {value}"));
        }
        assert!(
            !shown.contains(token),
            "the subject token leaked: {answer:?}"
        );
        for needle in NEVER_ECHOED {
            assert!(!shown.contains(needle), "{needle:?} leaked: {answer:?}");
        }
    }

    /// An admin API call; the status and the JSON body (`Null` when empty).
    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.admin_url))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text}: {e}"))
        };
        (status, json)
    }

    /// `baton_exchanges_total` for this surface, outcome and service (0 when absent).
    async fn exchanges(&self, surface: &str, outcome: &str, service: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.admin_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|line| line.starts_with("baton_exchanges_total{"))
            .filter(|line| {
                line.contains(&format!("surface=\"{surface}\""))
                    && line.contains(&format!("outcome=\"{outcome}\""))
                    && line.contains(&format!("service=\"{service}\""))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

#[derive(Clone, Copy, Debug)]
enum ClientAuth {
    Basic,
    Post,
}

/// An OAuth error answer's `error` (and its status).
fn oauth_error(answer: &Answer) -> (u16, String) {
    (
        answer.status,
        answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// A real HTTP/1.1 upstream on 127.0.0.1:0 that answers 200 and counts requests.
struct CountingUpstream {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingUpstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counted = Arc::clone(&counted);
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        counted.fetch_add(1, Ordering::SeqCst);
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
        Self {
            addr,
            requests,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// --- /tokens ----------------------------------------------------------------------------

#[tokio::test]
async fn gcp_style_idp_and_provider_conditions_on_a_google_token() {
    let f = Fixture::start().await;
    let good = f.token(GOOGLE, &json!({}));
    let answer = f.exchange(&good, "app", None, ClientAuth::Basic).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let minted = answer.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(payload(&minted)["act"]["sub"], "110169484474386276334");

    // The IdP's condition: the subject token is not acceptable (RFC 8693 §2.2.2).
    for overrides in [
        json!({ "hd": "other.example" }),
        json!({ "email_verified": false }),
        // GCP's tokens carry `email_verified` as a bool; a string is a type error.
        json!({ "email_verified": "true" }),
    ] {
        let token = f.token(GOOGLE, &overrides);
        let answer = f.exchange(&token, "app", None, ClientAuth::Basic).await;
        assert_eq!(
            oauth_error(&answer),
            (400, "invalid_request".into()),
            "{overrides}: {answer:?}"
        );
        assert_eq!(
            answer.json()["error_description"],
            "subject_token is not acceptable to this identity provider's policy"
        );
    }

    // The provider's condition: not for this audience (`invalid_target`).
    let no_admin = f.token(GOOGLE, &json!({ "groups": ["dev"] }));
    let answer = f.exchange(&no_admin, "app", None, ClientAuth::Basic).await;
    assert_eq!(
        oauth_error(&answer),
        (400, "invalid_target".into()),
        "{answer:?}"
    );
    assert_eq!(
        answer.json()["error_description"],
        "subject_token may not be exchanged for this audience or resource"
    );

    // Each refusal counted as `denied`, apart from plain refusals.
    assert_eq!(f.exchanges("tokens", "denied", "app").await, 4);
    assert_eq!(f.exchanges("tokens", "ok", "app").await, 1);
    assert_eq!(f.exchanges("tokens", "refused", "app").await, 0);
    let log = f.baton.log();
    assert!(
        log.contains("idp condition") && log.contains("provider condition"),
        "{log}"
    );
}

#[tokio::test]
async fn a_missing_claim_refuses_never_passes() {
    let f = Fixture::start().await;
    // No `hd` (a consumer Google account): the IdP's condition cannot decide.
    let no_hd = f.token(GOOGLE, &json!({ "hd": null }));
    let answer = f.exchange(&no_hd, "app", None, ClientAuth::Basic).await;
    assert_eq!(
        oauth_error(&answer),
        (400, "invalid_request".into()),
        "{answer:?}"
    );
    // No `groups`: the provider's condition cannot decide.
    let no_groups = f.token(GOOGLE, &json!({ "groups": null }));
    let answer = f.exchange(&no_groups, "app", None, ClientAuth::Basic).await;
    assert_eq!(
        oauth_error(&answer),
        (400, "invalid_target".into()),
        "{answer:?}"
    );
    assert_eq!(f.exchanges("tokens", "denied", "app").await, 2);
    // The log says why (a field's name, never its value).
    let log = f.baton.log();
    assert!(log.contains("undecided: no field `hd`"), "{log}");
}

#[tokio::test]
async fn a_client_exchanges_only_tokens_of_its_idps_with_either_authentication() {
    let f = Fixture::start().await;
    let google = f.token(GOOGLE, &json!({}));
    let partner = f.token(PARTNER, &json!({}));
    let web = Some(("web", WEB_SECRET));
    let batch = Some(("batch", BATCH_SECRET));
    for method in [ClientAuth::Basic, ClientAuth::Post] {
        let refused = f.exchange(&partner, "private", web, method).await;
        assert_eq!(
            oauth_error(&refused),
            (400, "unauthorized_client".into()),
            "{method:?}: {refused:?}"
        );
        assert_eq!(
            refused.json()["error_description"],
            "the client may not exchange tokens of this issuer"
        );
        let refused = f.exchange(&google, "private", batch, method).await;
        assert_eq!(oauth_error(&refused), (400, "unauthorized_client".into()));

        let allowed = f.exchange(&google, "private", web, method).await;
        assert_eq!(allowed.status, 200, "{method:?}: {allowed:?}");
        let allowed = f.exchange(&partner, "private", batch, method).await;
        assert_eq!(allowed.status, 200, "{method:?}: {allowed:?}");
    }
    assert_eq!(f.exchanges("tokens", "denied", "private").await, 4);
    assert_eq!(f.exchanges("tokens", "ok", "private").await, 4);
    // Client authentication still comes first: a wrong secret is 401, not a policy answer.
    let wrong = f
        .exchange(&google, "private", Some(("web", "nope")), ClientAuth::Basic)
        .await;
    assert_eq!(oauth_error(&wrong), (401, "invalid_client".into()));
}

#[tokio::test]
async fn a_token_minted_for_one_client_is_never_served_to_another() {
    let f = Fixture::start().await;
    let google = f.token(GOOGLE, &json!({}));
    let web = Some(("web", WEB_SECRET));
    let batch = Some(("batch", BATCH_SECRET));

    // `private`: web's exchange (then a cache hit) does not let batch, limited to another
    // IdP, have the token.
    for _ in 0..2 {
        let answer = f.exchange(&google, "private", web, ClientAuth::Basic).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let answer = f
        .exchange(&google, "private", batch, ClientAuth::Basic)
        .await;
    assert_eq!(oauth_error(&answer), (400, "unauthorized_client".into()));

    // `gated`: its condition reads `client`; web's cached token is not batch's.
    for _ in 0..2 {
        let answer = f.exchange(&google, "gated", web, ClientAuth::Post).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let answer = f.exchange(&google, "gated", batch, ClientAuth::Post).await;
    assert_eq!(
        oauth_error(&answer),
        (400, "invalid_target".into()),
        "{answer:?}"
    );
    // And the other way round: batch's refusal does not stop web.
    let answer = f.exchange(&google, "gated", web, ClientAuth::Basic).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

// --- the proxy --------------------------------------------------------------------------

#[tokio::test]
async fn through_the_proxy_a_failed_condition_is_403_and_the_upstream_sees_nothing() {
    let f = Fixture::start().await;
    for (overrides, why) in [
        (json!({ "hd": "other.example" }), "the IdP's condition"),
        (json!({ "hd": null }), "the IdP's condition, undecided"),
        (json!({ "groups": ["dev"] }), "the provider's condition"),
    ] {
        let answer = f.proxy_get(&f.token(GOOGLE, &overrides)).await;
        assert_eq!(answer.status, 403, "{why}: {answer:?}");
        let challenge = answer.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer") && challenge.contains(r#"error="insufficient_scope""#),
            "{why}: {challenge}"
        );
        assert_eq!(answer.json()["error"], "insufficient_scope", "{why}");
    }
    assert_eq!(
        f.upstream.requests(),
        0,
        "a refused request reached the app"
    );
    assert_eq!(f.exchanges("proxy", "denied", "app").await, 3);

    let answer = f.proxy_get(&f.token(GOOGLE, &json!({}))).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.text(), "upstream ok");
    assert_eq!(f.upstream.requests(), 1);
}

// --- the admin API ----------------------------------------------------------------------

#[tokio::test]
async fn conditions_written_through_the_admin_api_are_validated_listed_kept_and_enforced() {
    let f = Fixture::start().await;
    const API_ISS: &str = "https://api.idp.test/";
    const API_SECRET: &str = "api-idp-secret-0123456789";
    let idp_body = |condition: &str| {
        json!({
            "iss": API_ISS,
            "algs": ["HS256"],
            "key": URL_SAFE_NO_PAD.encode(API_SECRET),
            "mapping": { "sub.$": "$.sub", "tenant.$": "$.tenant" },
            "condition": condition,
        })
    };

    // Refused like the file's: 400 with the place and the problem; nothing kept.
    let (status, body) = f
        .admin(
            "POST",
            "/idps",
            Some(idp_body(r#"request.method == "GET""#)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("condition: names `request`, which is not a variable here"),
        "{message}"
    );
    let (status, body) = f
        .admin("POST", "/idps", Some(idp_body("claims.tenant + 1")))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("does not return a bool")
    );
    let (_, listed) = f.admin("GET", "/idps", None).await;
    assert!(!listed.to_string().contains(API_ISS), "{listed}");

    // A good one: listed back (the file's too), and enforced at once.
    let condition = r#"claims.tenant == "acme""#;
    let (status, body) = f.admin("POST", "/idps", Some(idp_body(condition))).await;
    assert_eq!(status, 204, "{body}");
    let (_, listed) = f.admin("GET", "/idps", None).await;
    let idps = listed["idps"].as_array().unwrap();
    let api = idps.iter().find(|i| i["iss"] == API_ISS).unwrap();
    assert_eq!(api["condition"], condition);
    assert_eq!(api["readOnly"], false);
    let google = idps.iter().find(|i| i["iss"] == GOOGLE).unwrap();
    assert_eq!(google["condition"], IDP_CONDITION);

    let provider_condition = r#"idp == "https://api.idp.test/" && claims.tenant != "blocked""#;
    let (status, body) = f
        .admin(
            "POST",
            "/token-providers",
            Some(json!({
                "service": "api-app",
                "keyId": "sbk_main",
                "mapping": { "sub.$": "$.sub" },
                "condition": provider_condition,
            })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = f
        .admin(
            "POST",
            "/token-providers",
            Some(json!({
                "service": "bad-app",
                "keyId": "sbk_main",
                "mapping": {},
                "condition": "actor.sub ==",
            })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("condition: does not parse"),
        "{body}"
    );
    let (_, listed) = f.admin("GET", "/token-providers", None).await;
    let providers = listed["tokenProviders"].as_array().unwrap();
    let api_app = providers
        .iter()
        .find(|p| p["service"] == "api-app")
        .unwrap();
    assert_eq!(api_app["condition"], provider_condition);
    assert!(providers.iter().all(|p| p["service"] != "bad-app"));
    let app = providers.iter().find(|p| p["service"] == "app").unwrap();
    assert_eq!(app["condition"], APP_CONDITION);

    let subject = |tenant: &str| {
        sign_hmac(
            API_SECRET.as_bytes(),
            Algorithm::HS256,
            &json!({ "alg": "HS256", "typ": "JWT" }),
            &json!({ "iss": API_ISS, "sub": "u-1", "tenant": tenant, "exp": now() + 600 }),
        )
    };
    let acme = f
        .exchange(&subject("acme"), "api-app", None, ClientAuth::Basic)
        .await;
    assert_eq!(acme.status, 200, "{acme:?}");
    let other = f
        .exchange(&subject("globex"), "api-app", None, ClientAuth::Basic)
        .await;
    assert_eq!(oauth_error(&other), (400, "invalid_request".into()));

    // Kept in the state file, as written.
    let state = std::fs::read_to_string(Path::new(f._dir.path()).join("state.json")).unwrap();
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["idps"][0]["condition"], condition);
    assert_eq!(state["tokenProviders"][0]["condition"], provider_condition);
}

// --- the command line -------------------------------------------------------------------

/// `baton <args>` with the test's client secrets set; (success, stdout + stderr).
fn baton_command(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .env("WEB_SECRET", WEB_SECRET)
        .env("BATCH_SECRET", BATCH_SECRET)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

const CLI_IDP_SECRET: &str = "cli-idp-secret-0123456789";

fn cli_config(dir: &Path, idp_condition: &str) -> String {
    let path = dir.join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[keys]]
id = "sbk_cli"
algorithm = "HS256"
secret = "sbsec_cli_policy_key"

[[idps]]
name = "google"
issuer = "{GOOGLE}"
algorithms = ["HS256"]
key = "{key}"
mapping = {{ "sub.$" = "$.sub", "groups.$" = "$.groups" }}
condition = '{idp_condition}'

[[token_providers]]
service = "gated"
key = "sbk_cli"
mapping = {{ "sub.$" = "$.sub" }}
condition = '{GATED_CONDITION} && {APP_CONDITION}'

[[token_providers.clients]]
id = "web"
secret_env = "WEB_SECRET"
idps = ["google"]

[[token_providers.clients]]
id = "batch"
secret_env = "BATCH_SECRET"
"#,
            key = URL_SAFE_NO_PAD.encode(CLI_IDP_SECRET),
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn check_names_the_place_of_a_bad_condition() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), r#"request.method == "GET""#);
    let (ok, shown) = baton_command(&["check", "--config", &config]);
    assert!(!ok, "{shown}");
    assert!(
        shown.contains("idps[0].condition: names `request`, which is not a variable here"),
        "{shown}"
    );
}

#[test]
fn explain_shows_each_condition_with_its_source_and_result() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), IDP_CONDITION);
    let token = |claims: Value| {
        sign_hmac(
            CLI_IDP_SECRET.as_bytes(),
            Algorithm::HS256,
            &json!({ "alg": "HS256", "typ": "JWT" }),
            &claims,
        )
    };
    let good = token(json!({
        "iss": GOOGLE, "sub": "u-1", "email_verified": true, "hd": "example.com",
        "groups": ["admins"], "exp": now() + 600
    }));
    let explain = |token: &str, client: Option<&str>| {
        let mut args = vec![
            "explain",
            "--config",
            &config,
            "--service",
            "gated",
            "--token",
            token,
        ];
        if let Some(client) = client {
            args.extend(["--client", client]);
        }
        baton_command(&args)
    };

    let (ok, shown) = explain(&good, Some("web"));
    assert!(ok, "{shown}");
    assert!(shown.contains("service gated, client web:"), "{shown}");
    assert!(
        shown.contains(&format!(
            "idp condition      `{IDP_CONDITION}` -> true (read: claims.email_verified = true, \
             claims.hd = \"example.com\")"
        )),
        "{shown}"
    );
    assert!(
        shown.contains(
            r#"-> true (read: claims.groups = ["admins"], idp = "google", client = "web", actor = null)"#
        ),
        "{shown}"
    );
    assert!(
        shown.contains("client web may exchange tokens of IdP google"),
        "{shown}"
    );
    assert!(!shown.contains(&good), "explain printed the token");
    assert!(!shown.contains("sbsec_cli_policy_key") && !shown.contains(WEB_SECRET));

    // Another client: the provider's condition is false.
    let (ok, shown) = explain(&good, Some("batch"));
    assert!(!ok, "{shown}");
    assert!(shown.contains("[FAIL] provider condition"), "{shown}");
    assert!(shown.contains("-> false (read: "), "{shown}");
    assert!(
        shown.contains(r#"client = "batch", actor = null)"#),
        "{shown}"
    );
    assert!(
        shown.contains("refused at stage `provider condition`"),
        "{shown}"
    );

    // A missing claim: undecided, with why, and refused.
    let no_hd = token(json!({
        "iss": GOOGLE, "sub": "u-1", "email_verified": true, "groups": [], "exp": now() + 600
    }));
    let (ok, shown) = explain(&no_hd, None);
    assert!(!ok, "{shown}");
    assert!(
        shown.contains(
            "-> undecided (no field `hd`), refused as false (read: claims.email_verified = true, \
             claims.hd = (absent))"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("refused at stage `idp condition`"),
        "{shown}"
    );
}

#[test]
fn explain_shows_the_claim_headers_the_proxy_would_send_and_the_route_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[proxy]
service = "app"
headers = {{ "x-user-id.$" = "$.act.sub", "x-name.$" = "$.act.name", "x-team" = "ops" }}

[[proxy.routes]]
prefix = "/admin"
service = "app"
condition = 'request.method == "GET" && claims.act.sub == "u-1"'
headers = {{ "x-admin.$" = "$.act.sub" }}

[[keys]]
id = "sbk_cli"
algorithm = "HS256"
secret = "sbsec_cli_policy_key"

[[idps]]
name = "google"
issuer = "{GOOGLE}"
algorithms = ["HS256"]
key = "{key}"
mapping = {{ "sub.$" = "$.sub", "name.$" = "$.name" }}

[[token_providers]]
service = "app"
key = "sbk_cli"
mapping = {{ "sub.$" = "$.sub", "name.$" = "$.name" }}
"#,
            key = URL_SAFE_NO_PAD.encode(CLI_IDP_SECRET),
        ),
    )
    .unwrap();
    let token = sign_hmac(
        CLI_IDP_SECRET.as_bytes(),
        Algorithm::HS256,
        &json!({ "alg": "HS256", "typ": "JWT" }),
        &json!({ "iss": GOOGLE, "sub": "u-1", "name": "Zoë\r\nx-evil: 1", "exp": now() + 600 }),
    );
    let config = path.to_str().unwrap();
    let (ok, shown) = baton_command(&[
        "explain",
        "--config",
        config,
        "--service",
        "app",
        "--token",
        &token,
    ]);
    assert!(ok, "{shown}");
    assert!(
        shown.contains("claim headers the proxy would send ([proxy] headers):"),
        "{shown}"
    );
    assert!(shown.contains("  x-user-id: u-1\n"), "{shown}");
    assert!(shown.contains("  x-team: ops\n"), "{shown}");
    // As the app would receive it: percent-encoded, the line break no header of its own.
    assert!(
        shown.contains("  x-name: Zo%C3%AB%0D%0Ax-evil: 1\n"),
        "{shown}"
    );
    assert!(!shown.contains("\nx-evil"), "{shown}");
    assert!(
        shown.contains(r#"proxy.routes[0] (prefix "/admin") headers"#)
            && shown.contains("  x-admin: u-1\n"),
        "{shown}"
    );
    assert!(
        shown.contains(
            r#"proxy.routes[0] (prefix "/admin") condition, evaluated per request: `request.method == "GET" && claims.act.sub == "u-1"`"#
        ),
        "{shown}"
    );
    assert!(!shown.contains(&token), "explain printed the token");
    assert!(!shown.contains("sbsec_cli_policy_key"));
}
