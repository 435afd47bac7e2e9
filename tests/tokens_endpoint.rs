//! `POST /tokens`, the well-known documents and CORS, end to end: the real `baton serve`
//! binary as a child process on a reserved port, a real JWKS server, real HTTP.
//!
//! Every response is checked for the subject tokens the test made: none may ever appear in
//! a body or a header. Every `/tokens` response is checked for `Cache-Control: no-store`
//! and `Pragma: no-cache`.
mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde_json::{Value, json};

use support::baton::{Baton, reserve_addr, reserve_port};
use support::http::Answer;
use support::{JwksServer, TestKey, header, now, payload};

// --- constants ------------------------------------------------------------------------

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
const FORM: &str = "application/x-www-form-urlencoded";

/// The IdP every good subject token comes from.
const ISS: &str = "https://idp.test";
/// An IdP whose JWKS server is gone before baton's first fetch.
const DOWN_ISS: &str = "https://down.idp.test";
/// The audience both IdPs require.
const AUD: &str = "baton-e2e";
/// baton's own issuer.
const BATON_ISS: &str = "https://baton.test";
const ORG: &str = "org_test";
const LISTED_ORIGIN: &str = "https://app.example.com";
const UNLISTED_ORIGIN: &str = "https://evil.example.net";

const CLIENT_ENV_SECRET: &str = "sbsec_client-env-secret-0123456789";
/// RFC 6749 §2.3.1: form-encoded before base64 in client_secret_basic.
const CLIENT_FILE_SECRET: &str = "p@ss:w+rd/é&=%";
const HMAC_SECRET: &str = "sbsec_e2e-hmac-secret-that-is-long-enough";

// --- the fixture ----------------------------------------------------------------------

/// baton with: an ES256 key (signing), a retired ES256 key, an HMAC key; an IdP at `ISS`
/// with a live JWKS and one at `DOWN_ISS` whose JWKS server is already shut down; the
/// providers `app` (ES256, `[proxy] service`), `hmac-app` and `private` (client
/// authentication required).
struct Fixture {
    baton: Baton,
    http: reqwest::Client,
    idp: TestKey,
    es_main: TestKey,
    es_old: TestKey,
    /// Every subject token handed out: none may appear in any response.
    secrets: Mutex<Vec<String>>,
    _jwks: JwksServer,
    _down: JwksServer,
    _dir: tempfile::TempDir,
}

/// What the token endpoint's tests check of an answer.
trait TokensAnswer {
    fn assert_error(&self, status: u16, error: &str) -> String;
    fn assert_no_store(&self);
}

impl TokensAnswer for Answer {
    /// An OAuth error (RFC 6749 §5.2): status, JSON `{error, error_description}`.
    fn assert_error(&self, status: u16, error: &str) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "{self:?}"
        );
        let body = self.json();
        assert_eq!(body["error"], error, "{self:?}");
        body["error_description"]
            .as_str()
            .unwrap_or_else(|| panic!("no error_description: {self:?}"))
            .to_owned()
    }

    fn assert_no_store(&self) {
        assert_eq!(self.header("cache-control"), Some("no-store"), "{self:?}");
        assert_eq!(self.header("pragma"), Some("no-cache"), "{self:?}");
    }
}

impl Fixture {
    async fn start() -> Self {
        Self::start_with("").await
    }

    /// `server_extra` is added to `[server]`.
    async fn start_with(server_extra: &str) -> Self {
        let idp = TestKey::generate(Algorithm::RS256, "idp-key-1");
        let es_main = TestKey::generate(Algorithm::ES256, "sbk_es_main");
        let es_old = TestKey::generate(Algorithm::ES256, "sbk_es_old");
        let jwks = JwksServer::start(vec![idp.jwk.clone()]).await;
        let down = JwksServer::start(vec![idp.jwk.clone()]).await;
        down.shut_down();
        // The aborted task drops its listener: wait until the port refuses connections.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&down.addr, Duration::from_millis(200)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "the JWKS server did not shut down"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("es-main.pem"), &es_main.private_pem).unwrap();
        std::fs::write(dir.path().join("es-old.pem"), &es_old.private_pem).unwrap();
        std::fs::write(
            dir.path().join("client-secret.txt"),
            format!("{CLIENT_FILE_SECRET}\n"),
        )
        .unwrap();
        let addr = reserve_addr();
        let config = format!(
            r#"
[server]
org = "{ORG}"
issuer = "{BATON_ISS}"
cors_origins = ["{LISTED_ORIGIN}"]
{server_extra}

[proxy]
listen = "{addr}"
service = "app"

[admin]
listen = "127.0.0.1:{admin_port}"

[[keys]]
id = "sbk_es_main"
algorithm = "ES256"
private_key_file = "es-main.pem"

[[keys]]
id = "sbk_es_old"
algorithm = "ES256"
private_key_file = "es-old.pem"
retired = true

[[keys]]
id = "sbk_hmac"
algorithm = "HS256"
secret_env = "E2E_HMAC_SECRET"

[[idps]]
name = "test-idp"
issuer = "{ISS}"
audience = "{AUD}"
algorithms = ["RS256"]
jwks_url = "{jwks_url}"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email" }}

[[idps]]
name = "down-idp"
issuer = "{DOWN_ISS}"
audience = "{AUD}"
algorithms = ["RS256"]
jwks_url = "{down_url}"
mapping = {{ "sub.$" = "$.sub" }}

[[token_providers]]
service = "app"
key = "sbk_es_main"
ttl = "15m"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email" }}

[[token_providers]]
service = "hmac-app"
key = "sbk_hmac"
mapping = {{ "sub.$" = "$.sub" }}

[[token_providers]]
service = "private"
key = "sbk_es_main"
mapping = {{ "sub.$" = "$.sub" }}
clients = [{{ id = "client-env", secret_env = "E2E_CLIENT_SECRET" }}, {{ id = "client-file", secret_file = "client-secret.txt" }}]
"#,
            admin_port = reserve_port(),
            jwks_url = jwks.jwks_url(),
            down_url = down.jwks_url(),
        );
        let baton = Baton::launch(dir.path(), addr, &config)
            .log_format("json")
            .env("E2E_HMAC_SECRET", HMAC_SECRET)
            .env("E2E_CLIENT_SECRET", CLIENT_ENV_SECRET)
            .start()
            .await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            baton,
            http,
            idp,
            es_main,
            es_old,
            secrets: Mutex::new(Vec::new()),
            _jwks: jwks,
            _down: down,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.baton.addr)
    }

    /// Remembers `token` as one that must never come back.
    fn secret(&self, token: String) -> String {
        self.secrets.lock().push(token.clone());
        token
    }

    /// A good subject token for `sub` from the live IdP (valid for an hour).
    fn subject(&self, sub: &str) -> String {
        self.subject_with(json!({
            "iss": ISS, "aud": AUD, "sub": sub, "email": format!("{sub}@example.com"),
            "iat": now(), "exp": now() + 3600,
        }))
    }

    fn subject_with(&self, claims: Value) -> String {
        self.secret(self.idp.sign(&claims))
    }

    /// Fails when any subject token handed out appears in `answer`'s headers or body.
    fn assert_no_leak(&self, answer: &Answer) {
        let body = answer.text();
        for token in self.secrets.lock().iter() {
            let mut needles = vec![token.as_str()];
            // The signature alone identifies a token too.
            if let Some(signature) = token.split('.').nth(2).filter(|s| s.len() >= 16) {
                needles.push(signature);
            }
            for needle in needles {
                assert!(
                    !body.contains(needle),
                    "a subject token leaked into the body: {answer:?}"
                );
                for (name, value) in &answer.headers {
                    assert!(
                        !value.contains(needle),
                        "a subject token leaked into header {name}"
                    );
                }
            }
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let answer = Answer::read(request.send().await.unwrap()).await;
        self.assert_no_leak(&answer);
        answer
    }

    /// A request to the token endpoint; checks the no-store headers every answer carries.
    async fn tokens(&self, request: reqwest::RequestBuilder) -> Answer {
        let answer = self.send(request).await;
        answer.assert_no_store();
        answer
    }

    async fn post_form(&self, pairs: &[(&str, &str)]) -> Answer {
        self.post_form_with(pairs, &[]).await
    }

    /// The plain exchange: `subject_token` for `audience`, nothing else.
    async fn exchange(&self, subject_token: &str, audience: &str) -> Answer {
        self.post_form(&[
            ("grant_type", GRANT),
            ("subject_token", subject_token),
            ("audience", audience),
        ])
        .await
    }

    async fn post_form_with(&self, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .http
            .post(self.url("/tokens"))
            .header("content-type", FORM)
            .body(form(pairs));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.tokens(request).await
    }

    async fn post_json(&self, body: &Value) -> Answer {
        self.tokens(
            self.http
                .post(self.url("/tokens"))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.http.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// The published key set.
    async fn jwks(&self) -> Vec<Value> {
        let answer = self.get("/.well-known/jwks.json", &[]).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.json()["keys"].as_array().unwrap().clone()
    }

    /// Checks a 200 token response and verifies the minted token with the key baton
    /// publishes; returns the token.
    async fn assert_minted(&self, answer: &Answer, sub: &str) -> String {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(
            answer
                .header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json"))
        );
        let body = answer.json();
        assert_eq!(body["issued_token_type"], ACCESS_TOKEN_TYPE, "{body}");
        assert_eq!(body["token_type"], "Bearer", "{body}");
        let expires_in = body["expires_in"]
            .as_u64()
            .unwrap_or_else(|| panic!("expires_in: {body}"));
        assert!((880..=900).contains(&expires_in), "ttl is 15 min: {body}");
        let token = body["access_token"].as_str().unwrap().to_owned();

        let head = header(&token);
        assert_eq!(head["alg"], "ES256");
        assert_eq!(head["kid"], "sbk_es_main");
        let claims = payload(&token);
        assert_eq!(claims["act"]["sub"], sub, "{claims}");
        assert_eq!(claims["iss"], BATON_ISS, "{claims}");

        let keys = self.jwks().await;
        let jwk = keys
            .iter()
            .find(|k| k["kid"] == "sbk_es_main")
            .expect("signing key published");
        let jwk: Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[BATON_ISS]);
        validation.set_audience(&["https://api.statebacked.dev/"]);
        jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
            .unwrap_or_else(|e| {
                panic!("the minted token does not verify with the published key: {e}")
            });
        token
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Sends `request` over a fresh TCP connection and reads the whole answer.
fn raw_http(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may answer (and stop reading) before the body is all sent.
    let _ = stream.write_all(request);
    let mut received = Vec::new();
    let mut buf = [0_u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                received.extend_from_slice(&buf[..n]);
                if complete(&received) {
                    break;
                }
            }
            Err(e) if received.is_empty() => panic!("no answer: {e}"),
            Err(_) => break,
        }
    }
    parse_response(&received)
}

fn split_head(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((end + 4, &bytes[..end]))
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

fn complete(bytes: &[u8]) -> bool {
    split_head(bytes).is_some_and(|(start, head)| bytes.len() >= start + content_length(head))
}

fn parse_response(bytes: &[u8]) -> Answer {
    let (start, head) = split_head(bytes)
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(head).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length = content_length(head.as_bytes());
    let body = bytes[start..(start + length).min(bytes.len())].to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

// --- success ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn form_body_exchanges() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-form");
    let answer = fx.exchange(&token, "app").await;
    let minted = fx.assert_minted(&answer, "user-form").await;
    assert_eq!(payload(&minted)["act"]["email"], "user-form@example.com");
    assert!(
        !fx.baton.log().contains(&token),
        "the log holds the subject token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_exchange_is_one_json_log_line_without_token_or_secret() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-logged");
    let exchange = |token: String| {
        let fx = &fx;
        async move { fx.exchange(&token, "app").await }
    };
    fx.assert_minted(&exchange(token.clone()).await, "user-logged")
        .await;
    let expired =
        fx.subject_with(json!({ "iss": ISS, "aud": AUD, "sub": "late", "exp": now() - 3600 }));
    exchange(expired.clone())
        .await
        .assert_error(400, "invalid_request");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let log = fx.baton.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .filter(|line: &Value| line["target"] == "baton::exchange")
        .collect();
    let ok: Vec<&Value> = lines.iter().filter(|l| l["outcome"] == "ok").collect();
    let refused: Vec<&Value> = lines.iter().filter(|l| l["outcome"] == "refused").collect();
    assert_eq!((ok.len(), refused.len()), (1, 1), "{log}");
    assert_eq!(ok[0]["service"], "app");
    assert_eq!(ok[0]["surface"], "tokens");
    assert!(
        ok[0]["idp"].as_str().is_some_and(|idp| !idp.is_empty()),
        "{log}"
    );
    assert!(ok[0]["latency_us"].is_u64(), "{log}");
    assert_eq!(refused[0]["stage"], "time claims");
    for secret in [
        token.as_str(),
        expired.as_str(),
        HMAC_SECRET,
        CLIENT_ENV_SECRET,
    ] {
        assert!(!log.contains(secret), "the log holds a token or a secret");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_body_exchanges() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-json");
    let answer = fx
        .post_json(&json!({ "grant_type": GRANT, "subject_token": token, "audience": "app" }))
        .await;
    fx.assert_minted(&answer, "user-json").await;

    // State Backed's JSON example, with the misspelt `requested_token-type`.
    let token = fx.subject("user-json-sb");
    let answer = fx
        .post_json(&json!({
            "grant_type": GRANT,
            "audience": format!("https://tokens.statebacked.dev/{ORG}/app"),
            "requested_token-type": ACCESS_TOKEN_TYPE,
            "subject_token": token,
        }))
        .await;
    fx.assert_minted(&answer, "user-json-sb").await;
}

/// Byte for byte the body of State Backed's documented curl example (with our org, service
/// and token): form, State Backed audience, misspelt `requested_token-type`, no
/// `subject_token_type`.
#[tokio::test(flavor = "multi_thread")]
async fn statebacked_documented_request_exchanges() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-sb");
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
         &audience=https%3A%2F%2Ftokens.statebacked.dev%2F{ORG}%2Fapp\
         &requested_token-type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
         &subject_token={token}"
    );
    let answer = fx
        .tokens(
            fx.http
                .post(fx.url("/tokens"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await;
    fx.assert_minted(&answer, "user-sb").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn audience_forms_resource_and_default_service() {
    let fx = Fixture::start().await;
    // Bare service.
    let token = fx.subject("user-bare");
    let answer = fx.exchange(&token, "app").await;
    fx.assert_minted(&answer, "user-bare").await;

    // State Backed form: {audience_base}/{org}/{service}.
    let token = fx.subject("user-sbform");
    let audience = format!("https://tokens.statebacked.dev/{ORG}/app");
    let answer = fx
        .post_form(&[
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("audience", &audience),
        ])
        .await;
    fx.assert_minted(&answer, "user-sbform").await;

    // `resource` instead of `audience`, in both forms.
    let token = fx.subject("user-resource");
    let answer = fx
        .post_form(&[
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("resource", "app"),
        ])
        .await;
    fx.assert_minted(&answer, "user-resource").await;
    let token = fx.subject("user-resource-sb");
    let answer = fx
        .post_form(&[
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("resource", &audience),
        ])
        .await;
    fx.assert_minted(&answer, "user-resource-sb").await;

    // Neither: `[proxy] service` (app).
    let token = fx.subject("user-default");
    let answer = fx
        .post_form(&[("grant_type", GRANT), ("subject_token", &token)])
        .await;
    fx.assert_minted(&answer, "user-default").await;

    // A second service, by audience: minted with its own (HMAC) key.
    let token = fx.subject("user-hmac");
    let answer = fx.exchange(&token, "hmac-app").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let minted = answer.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(header(&minted)["kid"], "sbk_hmac");
    assert_eq!(payload(&minted)["act"]["sub"], "user-hmac");
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_token_types() {
    let fx = Fixture::start().await;
    for (i, kind) in [JWT_TYPE, ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE]
        .into_iter()
        .enumerate()
    {
        let sub = format!("user-type-{i}");
        let token = fx.subject(&sub);
        let answer = fx
            .post_form(&[
                ("grant_type", GRANT),
                ("subject_token", &token),
                ("subject_token_type", kind),
                ("requested_token_type", ACCESS_TOKEN_TYPE),
            ])
            .await;
        fx.assert_minted(&answer, &sub).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_audience_naming_one_service_is_allowed() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-two-aud");
    let audience = format!("https://tokens.statebacked.dev/{ORG}/app");
    let answer = fx
        .post_form(&[
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("audience", "app"),
            ("audience", &audience),
            ("resource", "app"),
        ])
        .await;
    fx.assert_minted(&answer, "user-two-aud").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn same_subject_token_same_service_gets_the_cached_token() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-cache");
    let pairs = [
        ("grant_type", GRANT),
        ("subject_token", token.as_str()),
        ("audience", "app"),
    ];
    let first = fx.post_form(&pairs).await;
    let first = fx.assert_minted(&first, "user-cache").await;
    // ES256 signatures are randomised: only the cache can give the same token again.
    let second = fx.post_form(&pairs).await;
    let second = fx.assert_minted(&second, "user-cache").await;
    assert_eq!(first, second);
    let third = fx
        .post_json(&json!({ "grant_type": GRANT, "subject_token": token, "resource": "app" }))
        .await;
    assert_eq!(fx.assert_minted(&third, "user-cache").await, first);

    // Another service: another token.
    let other = fx.exchange(&token, "hmac-app").await;
    assert_eq!(other.status, 200, "{other:?}");
    assert_ne!(other.json()["access_token"].as_str().unwrap(), first);
}

// --- request errors -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn missing_parameters_are_invalid_request() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-missing");
    let answer = fx
        .post_form(&[("subject_token", &token), ("audience", "app")])
        .await;
    let description = answer.assert_error(400, "invalid_request");
    assert!(description.contains("grant_type"), "{description}");

    let answer = fx
        .post_form(&[("grant_type", GRANT), ("audience", "app")])
        .await;
    let description = answer.assert_error(400, "invalid_request");
    assert!(description.contains("subject_token"), "{description}");

    let answer = fx.post_json(&json!({ "grant_type": GRANT })).await;
    answer.assert_error(400, "invalid_request");

    let answer = fx.post_form(&[]).await;
    answer.assert_error(400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_grant_types_are_unsupported() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-grant");
    for grant in [
        "client_credentials",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "",
    ] {
        let answer = fx
            .post_form(&[("grant_type", grant), ("subject_token", &token)])
            .await;
        answer.assert_error(400, "unsupported_grant_type");
    }
    let answer = fx
        .post_json(&json!({ "grant_type": "password", "subject_token": token }))
        .await;
    answer.assert_error(400, "unsupported_grant_type");
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_parameters_are_invalid_request() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-repeat");
    let other = fx.subject("user-repeat-2");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("grant_type", GRANT),
            ("grant_type", GRANT),
            ("subject_token", &token),
        ],
        vec![
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("subject_token", &other),
        ],
        vec![
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("subject_token", &token),
        ],
        vec![
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("subject_token_type", JWT_TYPE),
            ("subject_token_type", JWT_TYPE),
        ],
        vec![
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ],
    ];
    for pairs in cases {
        let answer = fx.post_form(&pairs).await;
        let description = answer.assert_error(400, "invalid_request");
        assert!(description.contains("repeated"), "{description}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_token_types_are_invalid_request() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-types");
    let cases = [
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:saml2",
        ),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:refresh_token",
        ),
        ("subject_token_type", "jwt"),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:refresh_token",
        ),
        ("requested_token_type", ID_TOKEN_TYPE),
        ("requested_token_type", JWT_TYPE),
        ("requested_token-type", ID_TOKEN_TYPE),
    ];
    for (name, value) in cases {
        let answer = fx
            .post_form(&[
                ("grant_type", GRANT),
                ("subject_token", &token),
                (name, value),
            ])
            .await;
        let description = answer.assert_error(400, "invalid_request");
        assert!(
            description.contains("token_type"),
            "{name}={value}: {description}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn actor_tokens_need_delegation_and_a_type() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-subject");
    let actor = fx.subject("user-actor");
    // `app` has no `delegation = true`: today's 400 stays, saying why.
    let answer = fx
        .post_form(&[
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("actor_token", &actor),
            ("actor_token_type", JWT_TYPE),
        ])
        .await;
    let description = answer.assert_error(400, "invalid_request");
    assert!(
        description.contains("delegation") && description.contains("not enabled"),
        "{description}"
    );

    // RFC 8693 §2.1: actor_token_type is required with actor_token, forbidden without it.
    let answer = fx
        .post_json(&json!({ "grant_type": GRANT, "subject_token": token, "actor_token": actor }))
        .await;
    let description = answer.assert_error(400, "invalid_request");
    assert!(
        description.contains("actor_token_type is missing"),
        "{description}"
    );
    let answer = fx
        .post_form(&[
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("actor_token_type", JWT_TYPE),
        ])
        .await;
    let description = answer.assert_error(400, "invalid_request");
    assert!(description.contains("without actor_token"), "{description}");
    let answer = fx
        .post_form(&[
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("actor_token", &actor),
            ("actor_token_type", "urn:ietf:params:oauth:token-type:saml2"),
        ])
        .await;
    let description = answer.assert_error(400, "invalid_request");
    assert!(description.contains("actor_token_type"), "{description}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_audiences_are_invalid_target() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-target");
    let targets = [
        ("audience", "nope".to_owned()),
        (
            "audience",
            format!("https://tokens.statebacked.dev/{ORG}/nope"),
        ),
        (
            "audience",
            "https://tokens.statebacked.dev/org_other/app".to_owned(),
        ),
        (
            "audience",
            "https://elsewhere.example/org_test/app".to_owned(),
        ),
        ("audience", "not a service!".to_owned()),
        ("resource", "nope".to_owned()),
    ];
    for (name, target) in &targets {
        let answer = fx
            .post_form(&[
                ("grant_type", GRANT),
                ("subject_token", &token),
                (name, target),
            ])
            .await;
        answer.assert_error(400, "invalid_target");
    }
    let answer = fx
        .post_json(&json!({ "grant_type": GRANT, "subject_token": token, "audience": "nope" }))
        .await;
    answer.assert_error(400, "invalid_target");
}

/// Each refused subject token: 400 invalid_request with the fixed description of its
/// failure class, never the token or its claims.
#[tokio::test(flavor = "multi_thread")]
async fn subject_tokens_failing_verification_are_invalid_request() {
    let fx = Fixture::start().await;
    let impostor = TestKey::generate(Algorithm::RS256, "idp-key-1"); // same kid, other key
    let claims = |iss: &str, exp: u64| json!({ "iss": iss, "aud": AUD, "sub": "victim", "email": "victim@example.com", "exp": exp });
    let cases = [
        (
            "expired",
            fx.subject_with(json!({ "iss": ISS, "aud": AUD, "sub": "victim", "iat": now() - 7200, "exp": now() - 3600 })),
            "subject_token has expired",
        ),
        (
            "bad signature",
            fx.secret(impostor.sign(&claims(ISS, now() + 600))),
            "subject_token's signature does not verify",
        ),
        (
            "unknown issuer",
            fx.subject_with(claims("https://unknown.idp.test", now() + 600)),
            "subject_token is not from a trusted issuer and audience",
        ),
        (
            "wrong audience",
            fx.subject_with(json!({ "iss": ISS, "aud": "someone-else", "sub": "victim", "exp": now() + 600 })),
            "subject_token is not from a trusted issuer and audience",
        ),
        ("garbage", fx.secret("this-is-not-a-jwt-at-all-0123456789".to_owned()), "subject_token is not a well-formed signed JWT"),
        ("garbage segments", fx.secret("eyJub3Q.a.jwt-signature-garbage".to_owned()), "subject_token is not a well-formed signed JWT"),
    ];
    for (what, token, expected) in &cases {
        let answer = fx.exchange(token, "app").await;
        let description = answer.assert_error(400, "invalid_request");
        assert_eq!(description, *expected, "{what}");
        assert!(
            !answer.text().contains("victim"),
            "{what}: claims echoed: {answer:?}"
        );
    }
    let log = fx.baton.log();
    for (what, token, _) in &cases {
        assert!(
            !log.contains(token.as_str()),
            "{what}: the log holds the subject token"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_idp_keys_are_temporarily_unavailable() {
    let fx = Fixture::start().await;
    let token = fx.subject_with(
        json!({ "iss": DOWN_ISS, "aud": AUD, "sub": "user-down", "exp": now() + 600 }),
    );
    let answer = fx.exchange(&token, "app").await;
    answer.assert_error(503, "temporarily_unavailable");
    // The live IdP still works meanwhile.
    let good = fx.subject("user-up");
    let answer = fx.exchange(&good, "app").await;
    fx.assert_minted(&answer, "user-up").await;
}

// --- HTTP-level errors --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn methods_other_than_post_get_405_with_allow() {
    let fx = Fixture::start().await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let answer = fx
            .tokens(fx.http.request(method.clone(), fx.url("/tokens")))
            .await;
        assert_eq!(answer.status, 405, "{method}: {answer:?}");
        assert_eq!(answer.header("allow"), Some("POST"), "{method}: {answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn other_content_types_get_415() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-415");
    let body = form(&[("grant_type", GRANT), ("subject_token", &token)]);
    for content_type in [
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = fx.http.post(fx.url("/tokens")).body(body.clone());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let answer = fx.tokens(request).await;
        assert_eq!(answer.status, 415, "{content_type:?}: {answer:?}");
    }
    // Parameters on the media type are fine.
    let answer = fx
        .tokens(
            fx.http
                .post(fx.url("/tokens"))
                .header(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=UTF-8",
                )
                .body(form(&[("grant_type", GRANT), ("subject_token", &token)])),
        )
        .await;
    fx.assert_minted(&answer, "user-415").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_64_kib_get_413() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-413");
    let padding = "x".repeat(64 * 1024);
    let body = form(&[
        ("grant_type", GRANT),
        ("subject_token", &token),
        ("padding", &padding),
    ]);
    assert!(body.len() > 64 * 1024);

    // With Content-Length.
    let request = format!(
        "POST /tokens HTTP/1.1\r\nHost: baton\r\nContent-Type: {FORM}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_http(fx.baton.addr, request.as_bytes());
    fx.assert_no_leak(&answer);
    answer.assert_no_store();
    assert_eq!(answer.status, 413, "{answer:?}");

    // Chunked, with no declared length.
    let mut request = format!(
        "POST /tokens HTTP/1.1\r\nHost: baton\r\nContent-Type: {FORM}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.as_bytes().chunks(8 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_http(fx.baton.addr, &request);
    fx.assert_no_leak(&answer);
    answer.assert_no_store();
    assert_eq!(answer.status, 413, "{answer:?}");

    // Through an ordinary client too.
    let answer = fx
        .tokens(
            fx.http
                .post(fx.url("/tokens"))
                .header("content-type", FORM)
                .body(body),
        )
        .await;
    assert_eq!(answer.status, 413, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn subject_tokens_over_16_kib_are_invalid_request() {
    let fx = Fixture::start().await;
    // A real, valid token, just too long.
    let token = fx.subject_with(json!({
        "iss": ISS, "aud": AUD, "sub": "user-long", "exp": now() + 600, "pad": "p".repeat(13 * 1024),
    }));
    assert!(token.len() > 16 * 1024);
    let body = form(&[
        ("grant_type", GRANT),
        ("subject_token", &token),
        ("audience", "app"),
    ]);
    assert!(body.len() < 64 * 1024);
    let answer = fx
        .tokens(
            fx.http
                .post(fx.url("/tokens"))
                .header("content-type", FORM)
                .body(body),
        )
        .await;
    answer.assert_error(400, "invalid_request");
}

// --- client authentication ----------------------------------------------------------------

fn basic(id: &str, secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn client_authentication() {
    let fx = Fixture::start().await;
    let token = fx.subject("user-client");
    let base = [
        ("grant_type", GRANT),
        ("subject_token", token.as_str()),
        ("audience", "private"),
    ];

    // client_secret_basic (env secret, and a file secret that needs form-encoding).
    let answer = fx
        .post_form_with(
            &base,
            &[("authorization", &basic("client-env", CLIENT_ENV_SECRET))],
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = fx
        .post_form_with(
            &base,
            &[("authorization", &basic("client-file", CLIENT_FILE_SECRET))],
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // client_secret_post.
    let mut post = base.to_vec();
    post.extend([
        ("client_id", "client-env"),
        ("client_secret", CLIENT_ENV_SECRET),
    ]);
    let answer = fx.post_form(&post).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = fx
        .post_json(&json!({
            "grant_type": GRANT, "subject_token": token, "audience": "private",
            "client_id": "client-file", "client_secret": CLIENT_FILE_SECRET,
        }))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // Both methods at once.
    let answer = fx
        .post_form_with(
            &post,
            &[("authorization", &basic("client-env", CLIENT_ENV_SECRET))],
        )
        .await;
    answer.assert_error(400, "invalid_request");

    // Failures: 401 invalid_client with a Basic challenge.
    let mut wrong_post = base.to_vec();
    wrong_post.extend([("client_id", "client-env"), ("client_secret", "wrong")]);
    let mut unknown_post = base.to_vec();
    unknown_post.extend([
        ("client_id", "nobody"),
        ("client_secret", CLIENT_ENV_SECRET),
    ]);
    let mut secret_only = base.to_vec();
    secret_only.push(("client_secret", CLIENT_ENV_SECRET));
    /// (what is wrong, form fields, `Authorization` header)
    type Attempt<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<String>);
    let failures: Vec<Attempt<'_>> = vec![
        ("no credentials", base.to_vec(), None),
        (
            "wrong basic secret",
            base.to_vec(),
            Some(basic("client-env", "wrong")),
        ),
        (
            "other client's secret",
            base.to_vec(),
            Some(basic("client-file", CLIENT_ENV_SECRET)),
        ),
        (
            "unknown basic id",
            base.to_vec(),
            Some(basic("nobody", CLIENT_ENV_SECRET)),
        ),
        (
            "basic not base64",
            base.to_vec(),
            Some("Basic %%%not-base64%%%".to_owned()),
        ),
        ("wrong post secret", wrong_post, None),
        ("unknown post id", unknown_post, None),
        ("post secret without id", secret_only, None),
    ];
    for (what, pairs, authorization) in failures {
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        let answer = fx.post_form_with(&pairs, &headers).await;
        answer.assert_error(401, "invalid_client");
        let challenge = answer
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("{what}: no challenge"));
        assert!(challenge.starts_with("Basic"), "{what}: {challenge}");
        assert!(
            !answer.text().contains(CLIENT_ENV_SECRET),
            "{what}: the secret echoed"
        );
    }

    // A provider without clients ignores no credentials.
    let answer = fx.exchange(&token, "app").await;
    fx.assert_minted(&answer, "user-client").await;
}

// --- published documents ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn jwks_publishes_asymmetric_keys_including_retired() {
    let fx = Fixture::start().await;
    let answer = fx.get("/.well-known/jwks.json", &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json"))
    );
    let keys = answer.json()["keys"].as_array().unwrap().clone();
    for (kid, key) in [("sbk_es_main", &fx.es_main), ("sbk_es_old", &fx.es_old)] {
        let published = keys
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap_or_else(|| panic!("{kid} not published: {keys:?}"));
        assert_eq!(published["kty"], "EC", "{published}");
        assert_eq!(published["crv"], "P-256", "{published}");
        assert_eq!(
            published["x"], key.jwk["x"],
            "{kid}: not this key's public half"
        );
        assert_eq!(
            published["y"], key.jwk["y"],
            "{kid}: not this key's public half"
        );
        assert!(
            published.get("d").is_none(),
            "{kid}: private part published!"
        );
    }
    assert!(
        !keys.iter().any(|k| k["kid"] == "sbk_hmac"),
        "HMAC key published: {keys:?}"
    );
    assert!(
        !keys
            .iter()
            .any(|k| k["kty"] == "oct" || k.get("k").is_some()),
        "{keys:?}"
    );
    assert!(!answer.text().contains(HMAC_SECRET));
    assert_eq!(keys.len(), 2, "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_server_metadata() {
    let fx = Fixture::start().await;
    let answer = fx.get("/.well-known/oauth-authorization-server", &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let doc = answer.json();
    assert_eq!(doc["issuer"], BATON_ISS, "{doc}");
    assert_eq!(
        doc["token_endpoint"],
        format!("{BATON_ISS}/tokens"),
        "{doc}"
    );
    assert_eq!(
        doc["jwks_uri"],
        format!("{BATON_ISS}/.well-known/jwks.json"),
        "{doc}"
    );
    let grants = doc["grant_types_supported"].as_array().unwrap();
    assert!(grants.iter().any(|g| g == GRANT), "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_path_false_turns_the_endpoint_off() {
    let fx = Fixture::start_with("tokens_path = false").await;
    let token = fx.subject("user-off");
    let pairs = [
        ("grant_type", GRANT),
        ("subject_token", token.as_str()),
        ("audience", "app"),
    ];
    // Proxied like any path: no bearer token → 401 (on_missing = reject).
    let answer = fx
        .send(
            fx.http
                .post(fx.url("/tokens"))
                .header("content-type", FORM)
                .body(form(&pairs)),
        )
        .await;
    assert!(matches!(answer.status, 401 | 502), "{answer:?}");
    assert!(
        !answer.text().contains("access_token"),
        "a token response: {answer:?}"
    );
    // With a good bearer token it is exchanged, then there is no upstream: 502.
    let bearer = format!("Bearer {token}");
    let answer = fx
        .send(
            fx.http
                .post(fx.url("/tokens"))
                .header("content-type", FORM)
                .header("authorization", &bearer)
                .body(form(&pairs)),
        )
        .await;
    assert!(matches!(answer.status, 401 | 502), "{answer:?}");
    assert!(
        !answer.text().contains("access_token"),
        "a token response: {answer:?}"
    );
    // The documents stay.
    assert_eq!(fx.jwks().await.len(), 2);
}

// --- CORS ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn cors_for_listed_origins_only() {
    let fx = Fixture::start().await;
    let preflight = |origin: &str| {
        fx.http
            .request(reqwest::Method::OPTIONS, fx.url("/tokens"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
    };
    let answer = fx.tokens(preflight(LISTED_ORIGIN)).await;
    assert_eq!(answer.status, 204, "{answer:?}");
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some(LISTED_ORIGIN)
    );
    assert!(
        answer
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST")),
        "{answer:?}"
    );
    let allowed = answer
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed.contains("content-type"), "{answer:?}");
    assert!(
        answer.header("vary").is_some_and(|v| v.contains("Origin")),
        "{answer:?}"
    );
    assert_ne!(answer.header("access-control-allow-origin"), Some("*"));

    let answer = fx.tokens(preflight(UNLISTED_ORIGIN)).await;
    assert_eq!(
        answer.header("access-control-allow-origin"),
        None,
        "{answer:?}"
    );
    assert!(!(200..300).contains(&answer.status), "{answer:?}");

    // The actual requests.
    let token = fx.subject("user-cors");
    let pairs = [
        ("grant_type", GRANT),
        ("subject_token", token.as_str()),
        ("audience", "app"),
    ];
    let answer = fx
        .post_form_with(&pairs, &[("origin", LISTED_ORIGIN)])
        .await;
    fx.assert_minted(&answer, "user-cors").await;
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some(LISTED_ORIGIN)
    );
    let answer = fx
        .post_form_with(&pairs, &[("origin", UNLISTED_ORIGIN)])
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        None,
        "{answer:?}"
    );
    // Errors carry it too, so the browser can read them.
    let answer = fx
        .post_form_with(&[("grant_type", "nope")], &[("origin", LISTED_ORIGIN)])
        .await;
    answer.assert_error(400, "unsupported_grant_type");
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some(LISTED_ORIGIN)
    );

    for path in [
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ] {
        let answer = fx.get(path, &[("origin", LISTED_ORIGIN)]).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(
            answer.header("access-control-allow-origin"),
            Some(LISTED_ORIGIN),
            "{path}"
        );
        let answer = fx.get(path, &[("origin", UNLISTED_ORIGIN)]).await;
        assert_eq!(answer.header("access-control-allow-origin"), None, "{path}");
    }
}

/// DESIGN.md: "`/tokens` and the well-known documents answer CORS preflights for the
/// origins in `[server] cors_origins`".
#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_on_well_known_documents() {
    let fx = Fixture::start().await;
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ] {
        let answer = fx
            .send(
                fx.http
                    .request(reqwest::Method::OPTIONS, fx.url(path))
                    .header("origin", LISTED_ORIGIN)
                    .header("access-control-request-method", "GET")
                    .header("access-control-request-headers", "authorization"),
            )
            .await;
        assert!(
            (200..300).contains(&answer.status),
            "{path}: preflight refused: {answer:?}"
        );
        assert_eq!(
            answer.header("access-control-allow-origin"),
            Some(LISTED_ORIGIN),
            "{path}"
        );
        assert!(
            answer
                .header("access-control-allow-methods")
                .is_some_and(|m| m.contains("GET")),
            "{path}: {answer:?}"
        );

        let answer = fx
            .send(
                fx.http
                    .request(reqwest::Method::OPTIONS, fx.url(path))
                    .header("origin", UNLISTED_ORIGIN)
                    .header("access-control-request-method", "GET"),
            )
            .await;
        assert_eq!(answer.header("access-control-allow-origin"), None, "{path}");
    }
}
