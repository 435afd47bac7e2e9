//! The real `baton serve` against software nobody here wrote, from npm (`tests/interop`):
//! - State Backed's own client (`@statebacked/client`) exchanges an IdP token at baton's
//!   `POST /tokens` as it would at api.statebacked.dev, and administers baton through its
//!   admin API (identity providers, keys, token providers), then exchanges through them;
//! - a real OpenID Provider (`oidc-provider`) issues RFC 9068 access tokens that baton
//!   accepts through OIDC discovery, before and after the provider rotates its signing key;
//! - `jose` verifies the tokens baton mints: ES256 through baton's published JWKS, HS256
//!   with the State Backed key's secret.
//!
//! Node.js and the packages of `tests/interop/package-lock.json` are required; when they are
//! missing these tests fail, they never skip: run `scripts/test.sh`, which runs `npm ci`.
//! No process outlives its test: `baton serve` and the provider are held by a [`ChildGuard`]
//! (killed and reaped on drop, panics included), short scripts run under a timeout with
//! tokio's `kill_on_drop`.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use support::baton::{Baton, ChildGuard, STARTUP, reserve_port};
use support::{JwksServer, TestKey, header, now, payload};

/// The packages `tests/interop/package.json` pins.
const NPM_PACKAGES: [&str; 3] = ["oidc-provider", "@statebacked/client", "jose"];
/// State Backed's default token audience (`aud` of `statebacked`-profile tokens).
const STATEBACKED_AUD: &str = "https://api.statebacked.dev/";
/// The org of State Backed's audience form `https://tokens.statebacked.dev/<org>/<service>`.
const ORG: &str = "org_interop";
/// The client `oidc_provider.mjs` registers.
const OP_CLIENT_ID: &str = "baton-test";
const OP_CLIENT_SECRET: &str = "baton-test-secret";

/// `oidc_provider.mjs serve`, listening.
struct OidcProvider {
    issuer: String,
    port: u16,
    token_endpoint: String,
    _process: ChildGuard,
}

/// What a Node script printed and how it exited.
struct NodeRun {
    code: i32,
    /// The last line of standard output, as JSON.
    json: Value,
    stderr: String,
}

// === impl Baton ===

// What these tests ask of the shared `support::baton::Baton`.
impl Baton {
    /// Writes a config (`[server]`, `[proxy]`, `[admin]` on reserved ports, then `rest`)
    /// into `dir` and runs `baton serve` on it with `env` until it answers.
    async fn start(dir: &Path, service: &str, rest: &str, env: &[(&str, &str)]) -> Self {
        let port = reserve_port();
        let base_url = format!("http://127.0.0.1:{port}");
        let config = format!(
            r#"
[server]
org = "{ORG}"
issuer = "{base_url}"

[proxy]
listen = "127.0.0.1:{port}"
upstream = "127.0.0.1:{upstream}"
service = "{service}"
threads = 1

[admin]
listen = "127.0.0.1:{admin}"
{rest}"#,
            upstream = reserve_port(),
            admin = reserve_port(),
        );
        // Ready when the proxy listener serves the published JWKS.
        Self::launch(dir, ([127, 0, 0, 1], port).into(), &config)
            .envs(env)
            .ready_when_serving("/.well-known/jwks.json")
            .start()
            .await
    }

    /// `POST /tokens` with a form body; the status and the JSON answer.
    async fn exchange(&self, params: &[(&str, &str)]) -> (u16, Value) {
        let body = form(params);
        let response = http()
            .post(format!("{}/tokens", self.base_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /tokens: {e}\n{}", self.process.log()));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let answer = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("/tokens answered {status} with non-JSON ({e}): {text}"));
        (status, answer)
    }

    /// Exchanges `subject_token` for `service`'s token and insists on 200.
    async fn exchange_ok(&self, subject_token: &str, service: &str) -> String {
        let (status, answer) = self
            .exchange(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", subject_token),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("audience", service),
            ])
            .await;
        assert_eq!(
            status,
            200,
            "baton refused the exchange: {answer}\n{}",
            self.process.log()
        );
        assert_eq!(answer["token_type"], "Bearer", "{answer}");
        answer["access_token"].as_str().unwrap().to_owned()
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = http()
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }
}

// === impl OidcProvider ===

impl OidcProvider {
    /// Runs `oidc_provider.mjs serve <port> <jwks>` until it prints its listening line.
    /// A port being reused right after the previous provider died may still be busy for a
    /// moment: a start that fails is retried a few times.
    async fn start(dir: &Path, port: u16, jwks: &Path) -> Self {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let n = STARTS.fetch_add(1, Ordering::SeqCst);
            let log = dir.join(format!("oidc-provider.{n}.log"));
            let log_file = std::fs::File::create(&log).unwrap();
            let mut child = node_command("oidc_provider.mjs")
                .arg("serve")
                .arg(port.to_string())
                .arg(jwks)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("{}", node_missing(&e)));
            let stdout = child.stdout.take().unwrap();
            let stdin = child.stdin.take();
            let mut process =
                ChildGuard::new(format!("oidc-provider (port {port})"), child, stdin, log);
            let (lines, line) = mpsc::channel();
            std::thread::spawn(move || {
                let mut first = String::new();
                let _ = BufReader::new(stdout).read_line(&mut first);
                let _ = lines.send(first);
            });
            let deadline = Instant::now() + STARTUP;
            let listening = loop {
                if let Ok(first) = line.try_recv() {
                    break Some(first);
                }
                if process.exited().is_some() || Instant::now() > deadline {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            };
            match listening.filter(|l| !l.trim().is_empty()) {
                Some(first) => {
                    let info: Value = serde_json::from_str(&first).unwrap_or_else(|e| {
                        panic!("oidc-provider printed non-JSON ({e}): {first}")
                    });
                    return Self {
                        issuer: info["issuer"].as_str().unwrap().to_owned(),
                        port: u16::try_from(info["port"].as_u64().unwrap()).unwrap(),
                        token_endpoint: info["token_endpoint"].as_str().unwrap().to_owned(),
                        _process: process,
                    };
                }
                None if attempt < 5 && port != 0 && process.log().contains("EADDRINUSE") => {
                    drop(process);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => {
                    let status = process.exited();
                    npm_packages_present_or_panic(&process.log());
                    panic!(
                        "oidc-provider did not start (exit {status:?}):\n{}",
                        process.log()
                    );
                }
            }
        }
    }

    /// A client_credentials access token for `resource` (RFC 8707): a JWT whose `aud` is
    /// `resource`, signed with the provider's current key.
    async fn access_token(&self, resource: &str) -> String {
        let response = http()
            .post(&self.token_endpoint)
            .basic_auth(OP_CLIENT_ID, Some(OP_CLIENT_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", "api:read"),
            ]))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert!(
            status.is_success(),
            "oidc-provider refused: {status} {answer}"
        );
        answer["access_token"].as_str().unwrap().to_owned()
    }
}

// === helpers ===

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Fails (never skips) when `npm ci` has not been run in `tests/interop`.
fn require_npm_packages() {
    let modules = interop_dir().join("node_modules");
    for package in NPM_PACKAGES {
        assert!(
            modules.join(package).join("package.json").is_file(),
            "the npm package {package} is not installed in tests/interop/node_modules: run \
             scripts/test.sh (it runs `npm ci` in tests/interop) before these tests"
        );
    }
}

/// Exit code 3 of the scripts: a package could not be loaded.
fn npm_packages_present_or_panic(stderr: &str) {
    assert!(
        !stderr.contains("run scripts/test.sh"),
        "an npm package could not be loaded: {stderr}"
    );
}

fn node_missing(e: &std::io::Error) -> String {
    format!(
        "cannot run node ({e}): the Node interop tests need Node.js (>= 20.19) on PATH and \
         the packages of tests/interop: run scripts/test.sh"
    )
}

fn node_command(script: &str) -> Command {
    let mut command = Command::new("node");
    command
        .arg(interop_dir().join(script))
        .current_dir(interop_dir());
    command
}

/// Runs a short Node script to completion with `stdin`; its last stdout line must be JSON.
/// The process is killed if it takes longer than [`STARTUP`].
async fn run_node(script: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> NodeRun {
    let mut command = tokio::process::Command::from(node_command(script));
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{}", node_missing(&e)));
    {
        use tokio::io::AsyncWriteExt as _;
        let mut input = child.stdin.take().unwrap();
        // A script that exits before reading (a usage error) is judged by its exit code.
        let _ = input.write_all(stdin.as_bytes()).await;
    }
    let output = tokio::time::timeout(STARTUP, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {STARTUP:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let code = output.status.code().unwrap_or(-1);
    match code {
        0 | 1 => {}
        3 => panic!("{script}: an npm package is missing: {stderr}"),
        _ => panic!("{script} failed (exit {code}), not a result:\n{stderr}{stdout}"),
    }
    let last = stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    let json = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{script} printed non-JSON ({e}): {stdout}\n{stderr}"));
    NodeRun { code, json, stderr }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// An RS256 private JWK from `oidc_provider.mjs genkey` (jose's key generation).
async fn generate_provider_key(kid: &str) -> Value {
    let run = run_node("oidc_provider.mjs", &["genkey", kid], "", &[]).await;
    assert_eq!(run.code, 0, "genkey failed: {}", run.stderr);
    assert_eq!(run.json["kid"], kid);
    assert!(run.json["d"].is_string(), "genkey printed no private key");
    run.json
}

fn write_jwks(dir: &Path, name: &str, keys: &[&Value]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
    path
}

/// HMAC-SHA256 over `header.payload` with the secret's UTF-8 bytes (State Backed's keys),
/// checked with aws-lc-rs directly.
fn hs256_signature_valid(token: &str, secret: &str) -> bool {
    let (input, signature) = token.rsplit_once('.').unwrap();
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    aws_lc_rs::hmac::verify(&key, input.as_bytes(), &signature).is_ok()
}

/// An HMAC key from baton's generator: (`sbk_…` id, `sbsec_…` secret).
fn hmac_key() -> (String, String) {
    let key = baton::keygen::generate(Algorithm::HS256).unwrap();
    let secret = String::from_utf8(key.material.expose().to_vec()).unwrap();
    (key.id, secret)
}

// === tests ===

#[tokio::test(flavor = "multi_thread")]
async fn statebacked_client_exchanges_an_idp_token_at_baton() {
    require_npm_packages();
    let idp_key = TestKey::generate(Algorithm::RS256, "idp-k1");
    let idp = JwksServer::start(vec![idp_key.jwk.clone()]).await;
    let (key_id, secret) = hmac_key();
    let dir = tempfile::tempdir().unwrap();
    let baton = Baton::start(
        dir.path(),
        "interop-app",
        &format!(
            r#"
[[keys]]
id = "{key_id}"
algorithm = "HS256"
secret_env = "BATON_INTEROP_HMAC"

[[idps]]
issuer = "https://idp.interop.test/"
audience = "https://api.interop.test/"
algorithms = ["RS256"]
jwks_url = "{jwks}"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "roles.$" = "$.roles", provider = "interop-idp" }}

[[token_providers]]
service = "interop-app"
key = "{key_id}"
ttl = "15m"
mapping = {{ "user.$" = "$.sub", "mail.$" = "$.email", "roles.$" = "$.roles", "provider.$" = "$.provider", plan = "pro" }}
"#,
            jwks = idp.jwks_url()
        ),
        &[("BATON_INTEROP_HMAC", &secret)],
    )
    .await;

    let idp_exp = now() + 600;
    let idp_token = idp_key.sign(&json!({
        "iss": "https://idp.interop.test/",
        "aud": "https://api.interop.test/",
        "sub": "user-42",
        "email": "u42@example.com",
        "roles": ["admin", "reader"],
        "iat": now(),
        "exp": idp_exp,
    }));

    let run = run_node(
        "statebacked_exchange.mjs",
        &[&baton.base_url, ORG, "interop-app"],
        &idp_token,
        &[],
    )
    .await;
    assert_eq!(
        run.code,
        0,
        "State Backed's client failed: {}\n{}\n{}",
        run.json,
        run.stderr,
        baton.process.log()
    );
    let out = &run.json;

    // What the client sent: State Backed's own request shape, to baton.
    let request = &out["requests"][0];
    assert_eq!(request["url"], format!("{}/tokens", baton.base_url));
    assert_eq!(request["content_type"], "application/x-www-form-urlencoded");
    assert_eq!(
        request["params"]["audience"],
        format!("https://tokens.statebacked.dev/{ORG}/interop-app")
    );
    assert!(
        request["params"].get("subject_token_type").is_none(),
        "State Backed's client never sends subject_token_type: {request}"
    );

    // What it got: State Backed's token format with the mapped claims as `act`.
    let token = out["token"].as_str().unwrap();
    let expected_act = json!({
        "user": "user-42",
        "mail": "u42@example.com",
        "roles": ["admin", "reader"],
        "provider": "interop-idp",
        "plan": "pro",
    });
    let claims = payload(token);
    assert_eq!(out["claims"], claims);
    assert_eq!(claims["act"], expected_act, "{claims}");
    assert_eq!(claims["aud"], STATEBACKED_AUD);
    assert_eq!(claims["iss"], baton.base_url.as_str());
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert!(exp > iat && exp - iat <= 15 * 60, "{claims}");
    assert!(
        exp <= idp_exp,
        "minted token outlives the subject token: {claims}"
    );
    assert_eq!(header(token)["alg"], "HS256");
    assert_eq!(header(token)["kid"], key_id.as_str());

    // The signature is HMAC-SHA256 under the secret's UTF-8 bytes...
    assert!(hs256_signature_valid(token, &secret), "bad HS256 signature");
    assert!(!hs256_signature_valid(token, "sbsec_not_the_secret"));
    // ...and jose agrees, with issuer and audience checked.
    let verified = run_node(
        "verify_jose.mjs",
        &[
            "secret-env:INTEROP_HMAC_SECRET",
            &baton.base_url,
            STATEBACKED_AUD,
        ],
        token,
        &[("INTEROP_HMAC_SECRET", &secret)],
    )
    .await;
    assert_eq!(
        verified.code, 0,
        "jose refused baton's HS256 token: {}",
        verified.json
    );
    assert_eq!(verified.json["payload"]["act"], expected_act);

    // The client's public helper (`client.tokens.exchange`) gets the same claims.
    let helper = out["helper_token"].as_str().unwrap();
    assert_eq!(payload(helper)["act"], expected_act);
    assert!(hs256_signature_valid(helper, &secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn statebacked_client_sees_baton_refusals_as_client_errors() {
    require_npm_packages();
    let idp_key = TestKey::generate(Algorithm::RS256, "idp-k1");
    let idp = JwksServer::start(vec![idp_key.jwk.clone()]).await;
    let (key_id, secret) = hmac_key();
    let dir = tempfile::tempdir().unwrap();
    let baton = Baton::start(
        dir.path(),
        "interop-app",
        &format!(
            r#"
[[keys]]
id = "{key_id}"
algorithm = "HS256"
secret_env = "BATON_INTEROP_HMAC"

[[idps]]
issuer = "https://idp.interop.test/"
audience = "https://api.interop.test/"
jwks_url = "{jwks}"
mapping = {{ "sub.$" = "$.sub" }}

[[token_providers]]
service = "interop-app"
key = "{key_id}"
mapping = {{ "sub.$" = "$.sub" }}
"#,
            jwks = idp.jwks_url()
        ),
        &[("BATON_INTEROP_HMAC", &secret)],
    )
    .await;
    let claims = json!({
        "iss": "https://idp.interop.test/",
        "aud": "https://api.interop.test/",
        "sub": "user-42",
        "exp": now() + 600,
    });

    // Signed by a key that claims the IdP's kid but is not the IdP's.
    let forged = TestKey::generate(Algorithm::RS256, "idp-k1").sign(&claims);
    let run = run_node(
        "statebacked_exchange.mjs",
        &[&baton.base_url, ORG, "interop-app"],
        &forged,
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "a forged token was exchanged: {}", run.json);
    assert_eq!(run.json["error"]["status"], 400, "{}", run.json);
    assert_eq!(
        run.json["error"]["message"], "invalid_request",
        "{}",
        run.json
    );

    // A genuine token, but for a service of another org: State Backed's audience form with
    // an org baton does not serve.
    let genuine = idp_key.sign(&claims);
    let run = run_node(
        "statebacked_exchange.mjs",
        &[&baton.base_url, "org_someone_else", "interop-app"],
        &genuine,
        &[],
    )
    .await;
    assert_eq!(
        run.code, 1,
        "another org's audience was served: {}",
        run.json
    );
    assert_eq!(run.json["error"]["status"], 400, "{}", run.json);
    assert_eq!(
        run.json["error"]["message"], "invalid_target",
        "{}",
        run.json
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_provider_tokens_pass_discovery_and_survive_key_rotation() {
    require_npm_packages();
    const RESOURCE: &str = "https://api.interop.test/";
    let dir = tempfile::tempdir().unwrap();
    let old_key = generate_provider_key("op-k1").await;
    let new_key = generate_provider_key("op-k2").await;
    let first_set = write_jwks(dir.path(), "jwks-1.json", &[&old_key]);
    // oidc-provider signs with the first RSA key; the old one stays published.
    let rotated_set = write_jwks(dir.path(), "jwks-2.json", &[&new_key, &old_key]);

    let provider = OidcProvider::start(dir.path(), 0, &first_set).await;
    let (key_id, secret) = hmac_key();
    let baton = Baton::start(
        dir.path(),
        "interop-app",
        &format!(
            r#"
[[keys]]
id = "{key_id}"
algorithm = "HS256"
secret_env = "BATON_INTEROP_HMAC"

[[idps]]
issuer = "{issuer}"
audience = "{RESOURCE}"
algorithms = ["RS256"]
discovery = true
mapping = {{ "sub.$" = "$.sub", "client.$" = "$.client_id", "roles.$" = "$.roles", "tenant.$" = "$.tenant", "scope.$" = "$.scope" }}

[[token_providers]]
service = "interop-app"
key = "{key_id}"
mapping = {{ "sub.$" = "$.sub", "client.$" = "$.client", "roles.$" = "$.roles", "tenant.$" = "$.tenant", "scope.$" = "$.scope" }}
"#,
            issuer = provider.issuer
        ),
        &[("BATON_INTEROP_HMAC", &secret)],
    )
    .await;
    let expected_act = json!({
        "sub": OP_CLIENT_ID,
        "client": OP_CLIENT_ID,
        "roles": ["reader", "writer"],
        "tenant": "acme",
        "scope": "api:read",
    });

    let first = provider.access_token(RESOURCE).await;
    assert_eq!(header(&first)["kid"], "op-k1");
    assert_eq!(header(&first)["typ"], "at+jwt");
    assert_eq!(payload(&first)["aud"], RESOURCE);
    assert_eq!(payload(&first)["iss"], provider.issuer.as_str());
    let minted = baton.exchange_ok(&first, "interop-app").await;
    assert_eq!(payload(&minted)["act"], expected_act);
    assert!(hs256_signature_valid(&minted, &secret));

    // A token of the same provider for another resource matches no IdP.
    let other = provider.access_token("https://other.interop.test/").await;
    let (status, answer) = baton
        .exchange(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &other),
            ("audience", "interop-app"),
        ])
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "invalid_request", "{answer}");
    assert!(!answer.to_string().contains(&other), "the token was echoed");

    // Rotation: the provider restarts on the same port (same issuer, same discovery
    // document) and now signs with op-k2, a kid baton has not seen.
    let (issuer, port) = (provider.issuer.clone(), provider.port);
    drop(provider);
    let provider = OidcProvider::start(dir.path(), port, &rotated_set).await;
    assert_eq!(provider.issuer, issuer);
    let second = provider.access_token(RESOURCE).await;
    assert_eq!(header(&second)["kid"], "op-k2");
    let minted = baton.exchange_ok(&second, "interop-app").await;
    assert_eq!(payload(&minted)["act"], expected_act);
    assert!(hs256_signature_valid(&minted, &secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn jose_verifies_es256_access_tokens_through_batons_jwks() {
    require_npm_packages();
    const AUDIENCE: &str = "https://api.interop.test";
    let idp_key = TestKey::generate(Algorithm::RS256, "idp-k1");
    let idp = JwksServer::start(vec![idp_key.jwk.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let signing = TestKey::generate(Algorithm::ES256, "sbk_interop_es256");
    std::fs::write(dir.path().join("es256.pem"), &signing.private_pem).unwrap();
    let retired = TestKey::generate(Algorithm::RS256, "sbk_interop_retired");
    std::fs::write(dir.path().join("retired.pem"), &retired.private_pem).unwrap();
    let baton = Baton::start(
        dir.path(),
        "interop-api",
        &format!(
            r#"
[[keys]]
id = "sbk_interop_es256"
algorithm = "ES256"
private_key_file = "es256.pem"

[[keys]]
id = "sbk_interop_retired"
algorithm = "RS256"
private_key_file = "retired.pem"
retired = true

[[idps]]
issuer = "https://idp.interop.test/"
audience = "https://api.interop.test/"
jwks_url = "{jwks}"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "roles.$" = "$.roles" }}

[[token_providers]]
service = "interop-api"
key = "sbk_interop_es256"
profile = "access_token"
audience = "{AUDIENCE}"
ttl = "5m"
mapping = {{ "sub.$" = "$.sub", "email.$" = "$.email", "roles.$" = "$.roles" }}
"#,
            jwks = idp.jwks_url()
        ),
        &[],
    )
    .await;

    // The published documents: RFC 8414 metadata names the JWKS, which holds both public
    // keys (the retired one too) and no private material.
    let metadata = baton
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    let jwks_uri = format!("{}/.well-known/jwks.json", baton.base_url);
    assert_eq!(metadata["issuer"], baton.base_url.as_str(), "{metadata}");
    assert_eq!(metadata["jwks_uri"], jwks_uri.as_str(), "{metadata}");
    assert_eq!(
        metadata["token_endpoint"],
        format!("{}/tokens", baton.base_url),
        "{metadata}"
    );
    let published = baton.get_json("/.well-known/jwks.json").await;
    let kids: Vec<&str> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&"sbk_interop_es256") && kids.contains(&"sbk_interop_retired"),
        "{published}"
    );
    assert!(
        !published.to_string().contains("\"d\""),
        "private key published"
    );

    let subject = idp_key.sign(&json!({
        "iss": "https://idp.interop.test/",
        "aud": "https://api.interop.test/",
        "sub": "user-7",
        "email": "u7@example.com",
        "roles": ["reader"],
        "exp": now() + 600,
    }));
    let token = baton.exchange_ok(&subject, "interop-api").await;

    let verified = run_node(
        "verify_jose.mjs",
        &[&jwks_uri, &baton.base_url, AUDIENCE, "at+jwt"],
        &token,
        &[],
    )
    .await;
    assert_eq!(
        verified.code, 0,
        "jose refused baton's ES256 token: {}",
        verified.json
    );
    let (jose_header, claims) = (&verified.json["header"], &verified.json["payload"]);
    assert_eq!(jose_header["alg"], "ES256");
    assert_eq!(jose_header["kid"], "sbk_interop_es256");
    assert_eq!(claims["sub"], "user-7");
    assert_eq!(claims["email"], "u7@example.com");
    assert_eq!(claims["roles"], json!(["reader"]));
    assert!(claims["jti"].is_string(), "{claims}");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert!(exp > iat && exp - iat <= 5 * 60, "{claims}");

    // jose is not a rubber stamp: a changed payload, or another audience, is refused.
    let (head, rest) = token.split_once('.').unwrap();
    let signature = rest.split_once('.').unwrap().1;
    let mut forged_claims = claims.clone();
    forged_claims["roles"] = json!(["admin"]);
    let forged = format!(
        "{head}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(forged_claims.to_string())
    );
    let refused = run_node(
        "verify_jose.mjs",
        &[&jwks_uri, &baton.base_url, AUDIENCE, "at+jwt"],
        &forged,
        &[],
    )
    .await;
    assert_eq!(
        refused.code, 1,
        "jose accepted a forged token: {}",
        refused.json
    );
    assert_eq!(
        refused.json["error"]["code"],
        "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"
    );
    let refused = run_node(
        "verify_jose.mjs",
        &[
            &jwks_uri,
            &baton.base_url,
            "https://elsewhere.test",
            "at+jwt",
        ],
        &token,
        &[],
    )
    .await;
    assert_eq!(
        refused.code, 1,
        "jose accepted another audience: {}",
        refused.json
    );
    assert_eq!(
        refused.json["error"]["code"],
        "ERR_JWT_CLAIM_VALIDATION_FAILED"
    );
}

#[tokio::test]
async fn statebacked_client_administers_baton_and_exchanges_through_what_it_wrote() {
    require_npm_packages();
    let idp_key = TestKey::generate(Algorithm::RS256, "idp-admin-k1");
    let idp = JwksServer::start(vec![idp_key.jwk.clone()]).await;
    let (file_key_id, file_secret) = hmac_key();
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (reserve_port(), reserve_port());
    let admin_token = "interop-admin-token-0123456789abcdef";
    let master_key = URL_SAFE_NO_PAD.encode([42u8; 32]);
    let config = format!(
        r#"
[server]
org = "{ORG}"
issuer = "http://127.0.0.1:{port}"

[proxy]
listen = "127.0.0.1:{port}"
upstream = "127.0.0.1:{upstream}"
threads = 1

[admin]
listen = "127.0.0.1:{admin_port}"
token_env = "BATON_ADMIN_TOKEN"
state_file = "state.json"
master_key_env = "BATON_MASTER_KEY"

[[keys]]
id = "{file_key_id}"
algorithm = "HS256"
secret_env = "BATON_INTEROP_HMAC"
"#,
        upstream = reserve_port(),
    );
    let baton = Baton::launch(dir.path(), ([127, 0, 0, 1], port).into(), &config)
        .envs(&[
            ("BATON_ADMIN_TOKEN", admin_token),
            ("BATON_MASTER_KEY", &master_key),
            ("BATON_INTEROP_HMAC", &file_secret),
        ])
        .start()
        .await;

    let iss = "https://idp.admin-interop.test/";
    let idp_token = idp_key.sign(&json!({
        "iss": iss, "sub": "user-7", "email": "u7@example.com", "iat": now(), "exp": now() + 600,
    }));
    let admin_host = format!("http://127.0.0.1:{admin_port}");
    let run = run_node(
        "statebacked_admin.mjs",
        &[&admin_host, &baton.base_url, ORG, iss, &idp.jwks_url()],
        &idp_token,
        &[("BATON_ADMIN_TOKEN", admin_token)],
    )
    .await;
    assert_eq!(
        run.code,
        0,
        "State Backed's client failed: {}\n{}\n{}",
        run.json,
        run.stderr,
        baton.log()
    );
    let out = &run.json;

    // What the client wrote is what baton lists, next to the file's read-only key.
    let key_id = out["key_id"].as_str().unwrap();
    let secret = out["key"].as_str().unwrap();
    assert!(
        key_id.starts_with("sbk_") && secret.starts_with("sbsec_"),
        "{out}"
    );
    assert_eq!(
        out["idps"],
        json!([{ "iss": iss, "algs": ["RS256"], "jwksUrl": idp.jwks_url(),
                 "mapping": { "sub.$": "$.sub", "email.$": "$.email", "provider": "admin-interop" },
                 "readOnly": false }])
    );
    assert_eq!(
        out["token_providers"],
        json!([{ "service": "admin-app", "keyId": key_id,
                 "mapping": { "sub.$": "$.sub", "email.$": "$.email", "provider.$": "$.provider" },
                 "readOnly": false }])
    );
    let keys = out["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{out}");
    assert_eq!(
        (keys[0]["id"].as_str(), &keys[0]["readOnly"]),
        (Some(file_key_id.as_str()), &json!(true))
    );
    assert_eq!(keys[1]["id"], key_id);
    assert_eq!(keys[1]["name"], "interop key");

    // The client's exchange got a token of the new provider, signed with the new key.
    let token = out["token"].as_str().unwrap();
    assert!(
        hs256_signature_valid(token, secret),
        "not signed with the created key"
    );
    assert_eq!(header(token)["kid"], key_id);
    assert_eq!(
        out["claims"]["act"],
        json!({ "sub": "user-7", "email": "u7@example.com", "provider": "admin-interop" })
    );

    // baton's refusals reach the client as its own error classes.
    assert_eq!(out["delete_key_in_use"]["name"], "ConflictError", "{out}");
    assert_eq!(out["delete_key_in_use"]["status"], 409);
    assert_eq!(out["delete_again"]["name"], "NotFoundError", "{out}");
    assert_eq!(out["delete_again"]["status"], 404);
    // A wrong admin token: 401 (the client has no class of its own for it, only for 403).
    assert_eq!(out["wrong_token"]["status"], 401, "{out}");
    assert_eq!(out["wrong_token"]["code"], "unauthorized");
    assert_eq!(out["after"]["idps"], json!([]));
    assert_eq!(out["after"]["token_providers"], json!([]));
    assert_eq!(out["after"]["keys"].as_array().unwrap().len(), 1);
    assert!(
        !baton.log().contains(secret),
        "a key secret reached the log"
    );
}

// === introspection (RFC 7662) against oidc-provider ===

impl OidcProvider {
    /// A client_credentials access token without `resource`: opaque (no dots).
    async fn opaque_token(&self) -> String {
        let response = http()
            .post(&self.token_endpoint)
            .basic_auth(OP_CLIENT_ID, Some(OP_CLIENT_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "client_credentials"),
                ("scope", "api:read"),
            ]))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert!(
            status.is_success(),
            "oidc-provider refused: {status} {answer}"
        );
        let token = answer["access_token"].as_str().unwrap().to_owned();
        assert!(
            !token.contains('.'),
            "expected an opaque token, got {token}"
        );
        token
    }

    /// RFC 7009 revocation of `token`.
    async fn revoke(&self, token: &str) {
        let response = http()
            .post(format!("{}/token/revocation", self.issuer))
            .basic_auth(OP_CLIENT_ID, Some(OP_CLIENT_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("token", token),
                ("token_type_hint", "access_token"),
            ]))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
}

/// An upstream answering 200 with the `Authorization` header it received.
async fn echo_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            connections.spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(auth)),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// baton with one IdP verifying the provider's opaque tokens by introspection (`discovered`:
/// the endpoint from discovery, else configured), proxying to `upstream`.
async fn introspecting_baton(
    dir: &Path,
    provider: &OidcProvider,
    upstream: std::net::SocketAddr,
    discovered: bool,
) -> (Baton, String) {
    let (key_id, secret) = hmac_key();
    let port = reserve_port();
    let endpoint = if discovered {
        "discovery = true\nintrospection = { client_id = \"baton-test\", client_secret_env = \"BATON_OP_SECRET\" }".to_owned()
    } else {
        format!(
            "introspection = {{ url = \"{}/token/introspection\", client_id = \"baton-test\", client_secret_env = \"BATON_OP_SECRET\" }}",
            provider.issuer
        )
    };
    let config = format!(
        r#"
[server]
org = "{ORG}"
issuer = "http://127.0.0.1:{port}"

[proxy]
listen = "127.0.0.1:{port}"
upstream = "{upstream}"
service = "interop-app"
threads = 1

[admin]
listen = "127.0.0.1:{admin}"

[[keys]]
id = "{key_id}"
algorithm = "HS256"
secret_env = "BATON_INTEROP_HMAC"

[[idps]]
issuer = "{issuer}"
{endpoint}
introspection_cache_ttl = "1s"
mapping = {{ "sub.$" = "$.client_id", "roles.$" = "$.roles", "tenant.$" = "$.tenant", "scope.$" = "$.scope" }}

[[token_providers]]
service = "interop-app"
key = "{key_id}"
mapping = {{ "sub.$" = "$.sub", "roles.$" = "$.roles", "tenant.$" = "$.tenant", "scope.$" = "$.scope" }}
"#,
        admin = reserve_port(),
        issuer = provider.issuer,
    );
    let baton = Baton::launch(dir, ([127, 0, 0, 1], port).into(), &config)
        .envs(&[
            ("BATON_INTEROP_HMAC", &secret),
            ("BATON_OP_SECRET", OP_CLIENT_SECRET),
            ("RUST_LOG", "debug"),
        ])
        .ready_when_serving("/.well-known/jwks.json")
        .start()
        .await;
    (baton, secret)
}

async fn proxied(baton: &Baton, bearer: &str) -> (u16, String) {
    let response = http()
        .get(baton.url("/hello"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

fn refused_at_tokens(answer: &Value, token: &str) {
    assert!(!answer.to_string().contains(token), "the token was echoed");
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_provider_opaque_tokens_are_introspected_at_tokens_and_through_the_proxy() {
    require_npm_packages();
    let dir = tempfile::tempdir().unwrap();
    let key = generate_provider_key("op-k1").await;
    let provider =
        OidcProvider::start(dir.path(), 0, &write_jwks(dir.path(), "jwks.json", &[&key])).await;
    let (upstream, _upstream_task) = echo_upstream().await;
    let (baton, secret) = introspecting_baton(dir.path(), &provider, upstream, false).await;

    // /tokens: the introspection answer's claims are what the mappings see.
    let opaque = provider.opaque_token().await;
    let minted = baton.exchange_ok(&opaque, "interop-app").await;
    let claims = payload(&minted);
    assert_eq!(
        claims["act"],
        json!({ "sub": OP_CLIENT_ID, "roles": ["reader", "writer"], "tenant": "acme", "scope": "api:read" })
    );
    assert!(hs256_signature_valid(&minted, &secret));
    // The opaque token's exp (10 min) caps the minted token's.
    assert!(
        claims["exp"].as_u64().unwrap() <= now() + 10 * 60 + 5,
        "{claims}"
    );

    // The proxy with an opaque bearer: the app gets baton's token.
    let (status, forwarded) = proxied(&baton, &opaque).await;
    assert_eq!(status, 200, "{forwarded}\n{}", baton.log());
    let forwarded = forwarded.strip_prefix("Bearer ").unwrap();
    assert_eq!(payload(forwarded)["act"]["sub"], OP_CLIENT_ID);

    // A token the provider never issued: active false → 400 at /tokens, 401 at the proxy.
    let (status, answer) = baton
        .exchange(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", "made-up-opaque-token"),
            ("audience", "interop-app"),
        ])
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request")),
        "{answer}"
    );
    refused_at_tokens(&answer, "made-up-opaque-token");
    let (status, _) = proxied(&baton, "another-made-up-token").await;
    assert_eq!(status, 401);

    // Revoked: refused once the cache bound (1 s) has passed, at /tokens and the proxy.
    provider.revoke(&opaque).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, answer) = baton
        .exchange(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &opaque),
            ("audience", "interop-app"),
        ])
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request")),
        "{answer}"
    );
    let (status, _) = proxied(&baton, &opaque).await;
    assert_eq!(status, 401);

    // The provider down: 503 temporarily_unavailable, never an accept.
    let fresh = provider.opaque_token().await;
    drop(provider);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, answer) = baton
        .exchange(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &fresh),
            ("audience", "interop-app"),
        ])
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{answer}"
    );
    let (status, _) = proxied(&baton, &fresh).await;
    assert_eq!(status, 503);

    // Neither the client secret nor a token is ever logged (at debug level).
    let log = baton.log();
    assert!(log.contains("introspection failed"), "{log}");
    for secret in [OP_CLIENT_SECRET, opaque.as_str(), fresh.as_str()] {
        assert!(!log.contains(secret), "logged: {secret}\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_provider_introspection_endpoint_comes_from_discovery() {
    require_npm_packages();
    let dir = tempfile::tempdir().unwrap();
    let key = generate_provider_key("op-k1").await;
    let provider =
        OidcProvider::start(dir.path(), 0, &write_jwks(dir.path(), "jwks.json", &[&key])).await;
    let (upstream, _upstream_task) = echo_upstream().await;
    let (baton, _) = introspecting_baton(dir.path(), &provider, upstream, true).await;
    let opaque = provider.opaque_token().await;
    let minted = baton.exchange_ok(&opaque, "interop-app").await;
    assert_eq!(payload(&minted)["act"]["sub"], OP_CLIENT_ID);
    // Its JWTs are verified locally through discovery's JWKS, as before.
    let jwt = provider.access_token("https://api.interop.test/").await;
    let minted = baton.exchange_ok(&jwt, "interop-app").await;
    assert_eq!(payload(&minted)["act"]["sub"], OP_CLIENT_ID);
}
