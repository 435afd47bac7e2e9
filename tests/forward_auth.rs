//! The forward-auth listener behind the real front proxies it is written for: nginx
//! (`auth_request`) and Caddy (`forward_auth`), each started from its file in
//! `examples/forward_auth/` (ports substituted, nothing else), with the real `baton serve` on
//! the example's baton config beside it, a real JWKS server for the IdP and a recording
//! upstream (the app) behind the front proxy. So the examples are what is proven: a change to
//! one that lets an IdP token or a client's own claim header reach the app fails here.
//!
//! Every IdP token this file makes is registered in [`IDP_TOKENS`]; an [`Upstream`] fails its
//! test when dropped if any ever arrived (as a header value or in the target).
//!
//! Traefik and Envoy cannot be installed here (neither is on PyPI or in Debian), so their
//! examples are not run; `direct.rs` checks baton's side of Envoy's convention (the
//! `request-line` answers) against baton alone.

mod support;

#[path = "forward_auth/direct.rs"]
mod direct;
#[path = "forward_auth/front.rs"]
mod front;
#[path = "forward_auth/rows.rs"]
mod rows;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use front::{Front, FrontProxy};
use support::baton::{Baton, reserve_addr};
use support::http::Answer;
use support::{JwksReply, JwksServer, TestKey, now, payload};

// --- constants ------------------------------------------------------------------------

/// The IdP of the example configs (`[[idps]] issuer`), unchanged by the tests.
const IDP_ISS: &str = "https://idp.example.com/";
/// Its audience, which is also the service.
const AUD: &str = "my-app";
/// `[server] issuer` of the example configs.
const BATON_ISS: &str = "https://baton.example.com";
/// The JWKS URL of the example configs, replaced by the test JWKS server's.
const EXAMPLE_JWKS_URL: &str = "https://idp.example.com/.well-known/jwks.json";
/// Where the examples put baton's forward-auth listener, its admin listener, the front
/// proxy's listener and the app.
const EXAMPLE_FORWARD_AUTH: &str = "127.0.0.1:8090";
const EXAMPLE_ADMIN: &str = "127.0.0.1:9901";
const EXAMPLE_FRONT: &str = "127.0.0.1:8080";
const EXAMPLE_APP: &str = "127.0.0.1:3000";
/// The environment variable of the examples' HS256 key (`secret_env`), and its value here.
const KEY_ENV: &str = "BATON_KEY_MAIN";
const KEY_SECRET: &str = "forward-auth-test-signing-secret-0123456789";

/// Every IdP token made in this file: none may ever reach an upstream.
static IDP_TOKENS: Mutex<Vec<String>> = Mutex::new(Vec::new());

// --- the examples ---------------------------------------------------------------------

/// `examples/forward_auth/<name>`.
fn example_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/forward_auth")
        .join(name)
}

/// The example file `name` with each `(from, to)` replaced; every `from` must occur in it,
/// so an example that changes its ports or URLs breaks this test rather than being run
/// half-substituted.
fn example(name: &str, replacements: &[(&str, &str)]) -> String {
    let path = example_path(name);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    for (from, to) in replacements {
        assert!(text.contains(from), "{name} no longer contains {from:?}");
        text = text.replace(from, to);
    }
    text
}

// --- the IdP --------------------------------------------------------------------------

/// The IdP of the examples: an RS256 key and a real JWKS server.
struct Idp {
    key: TestKey,
    jwks: JwksServer,
}

impl Idp {
    /// Serving its key.
    async fn start() -> Self {
        let key = TestKey::generate(Algorithm::RS256, "idp-k1");
        let jwks = JwksServer::start(vec![key.jwk.clone()]).await;
        Self { key, jwks }
    }

    /// Its JWKS answering 500 to every fetch: baton never gets the keys.
    async fn keys_down() -> Self {
        let idp = Self::start().await;
        idp.jwks.set_reply(JwksReply::Status(500));
        idp
    }

    /// A valid token for `sub`, with `email` when given (registered: it must never reach the
    /// app).
    fn token(&self, sub: &str, email: Option<&str>) -> String {
        let mut claims = json!({
            "iss": IDP_ISS,
            "aud": AUD,
            "sub": sub,
            "iat": now(),
            "exp": now() + 600,
        });
        if let Some(email) = email {
            claims["email"] = json!(email);
        }
        self.sign(&claims)
    }

    /// A token that expired ten minutes ago (beyond the 60 s leeway).
    fn expired_token(&self, sub: &str) -> String {
        self.sign(&json!({
            "iss": IDP_ISS,
            "aud": AUD,
            "sub": sub,
            "email": format!("{sub}@example.com"),
            "iat": now() - 1200,
            "exp": now() - 600,
        }))
    }

    fn sign(&self, claims: &Value) -> String {
        let token = self.key.sign(claims);
        IDP_TOKENS.lock().push(token.clone());
        token
    }
}

// --- the app --------------------------------------------------------------------------

/// One request as the app received it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Path and query.
    target: String,
    /// Names lowercased, in the order received, repeated names kept.
    headers: Vec<(String, String)>,
}

impl Seen {
    /// Every value of header `name`.
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of `name`, `None` when absent; panics when repeated.
    fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "{name} arrived {} times: {self:?}",
            all.len()
        );
        all.first().copied()
    }
}

/// A real HTTP/1.1 server on 127.0.0.1:0 (the app) that records every request and answers
/// `200 app`.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted: a request that reaches the app at all counts here, even one it
    /// could not parse.
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (record, count) = (Arc::clone(&seen), Arc::clone(&connections));
        let task = tokio::spawn(async move {
            // Connections live in this set, so aborting the server ends them too.
            let mut open = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let record = Arc::clone(&record);
                open.spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let record = Arc::clone(&record);
                        async move {
                            let target = req
                                .uri()
                                .path_and_query()
                                .map_or_else(|| req.uri().to_string(), |pq| pq.to_string());
                            record.lock().push(Seen {
                                method: req.method().to_string(),
                                target,
                                headers: support::http::header_pairs(req.headers()),
                            });
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"app",
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
            seen,
            connections,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    /// How many requests the app received.
    fn received(&self) -> usize {
        self.seen.lock().len()
    }

    /// The last request the app received.
    fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the app received a request")
    }

    /// Every IdP token found in what the app received.
    fn idp_tokens_received(&self) -> Vec<String> {
        let tokens = IDP_TOKENS.lock();
        let mut found = Vec::new();
        for seen in self.seen() {
            for token in tokens.iter() {
                if seen.target.contains(token.as_str()) {
                    found.push(format!("an IdP token in the target of {}", seen.target));
                }
                for (name, value) in &seen.headers {
                    if value.contains(token.as_str()) {
                        found.push(format!("an IdP token in {name} of {}", seen.target));
                    }
                }
            }
        }
        found
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
        if !std::thread::panicking() {
            let found = self.idp_tokens_received();
            assert!(found.is_empty(), "the app received IdP tokens: {found:#?}");
        }
    }
}

// --- baton ----------------------------------------------------------------------------

/// Where a baton of an example config listens.
struct Ports {
    forward_auth: SocketAddr,
    admin: SocketAddr,
}

impl Ports {
    fn reserve() -> Self {
        Self {
            forward_auth: reserve_addr(),
            admin: reserve_addr(),
        }
    }
}

/// The example baton config `name` on these ports and this IdP; `extra_proxy` goes right
/// under `[proxy]` (e.g. `listen` and `upstream`).
fn baton_config(name: &str, ports: &Ports, idp: &Idp, extra_proxy: &str) -> String {
    let forward_auth = ports.forward_auth.to_string();
    let admin = ports.admin.to_string();
    let proxy = format!("[proxy]\n{extra_proxy}");
    example(
        name,
        &[
            (EXAMPLE_FORWARD_AUTH, &forward_auth),
            (EXAMPLE_ADMIN, &admin),
            (EXAMPLE_JWKS_URL, &idp.jwks.jwks_url()),
            ("[proxy]\n", &proxy),
        ],
    )
}

/// Starts `baton serve` on `config` in `dir`, ready when `wait_on` accepts connections and,
/// unless the IdP's keys are down, when `/readyz` says its keys are loaded.
async fn start_baton(dir: &Path, wait_on: SocketAddr, config: &str, admin: SocketAddr) -> Baton {
    let baton = Baton::launch(dir, wait_on, config)
        .env(KEY_ENV, KEY_SECRET)
        .start()
        .await;
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = http
            .get(format!("http://{admin}/readyz"))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        if ready {
            return baton;
        }
        assert!(
            Instant::now() < deadline,
            "baton never got ready:\n{}",
            baton.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An HTTP client that never uses a proxy from the environment.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

// --- the whole stack ------------------------------------------------------------------

/// client → front proxy (from its example) → app, the front proxy asking baton (from its
/// example config) about each request.
struct Stack {
    front: FrontProxy,
    baton: Baton,
    app: Upstream,
    idp: Idp,
    admin: SocketAddr,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// With the IdP's keys served.
    async fn start(front: Front) -> Self {
        Self::start_with(front, Idp::start().await, Keys::Served).await
    }

    /// With the IdP's JWKS answering 500 from the start: baton never has its keys.
    async fn start_keys_down(front: Front) -> Self {
        Self::start_with(front, Idp::keys_down().await, Keys::Down).await
    }

    async fn start_with(front: Front, idp: Idp, keys: Keys) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let app = Upstream::start().await;
        let ports = Ports::reserve();
        let config = baton_config(front.baton_example(), &ports, &idp, "");
        let baton = match keys {
            Keys::Served => start_baton(dir.path(), ports.forward_auth, &config, ports.admin).await,
            // `/readyz` never says ready: the listener accepting is enough.
            Keys::Down => {
                Baton::launch(dir.path(), ports.forward_auth, &config)
                    .env(KEY_ENV, KEY_SECRET)
                    .start()
                    .await
            }
        };
        let front = FrontProxy::start(front, dir.path(), ports.forward_auth, app.addr).await;
        Self {
            front,
            baton,
            app,
            idp,
            admin: ports.admin,
            http: client(),
            _dir: dir,
        }
    }

    /// `method path` through the front proxy, with `Authorization: Bearer <bearer>` when
    /// given and `headers`.
    async fn request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.front.addr));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap_or_else(|e| {
            panic!(
                "{path} through {}: {e}\n{}\n{}",
                self.front.name(),
                self.front.log(),
                self.baton.log()
            )
        });
        Answer::read(response).await
    }

    /// baton's metrics.
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
}

/// Whether the IdP's JWKS serves its keys.
enum Keys {
    Served,
    Down,
}

// --- checks ---------------------------------------------------------------------------

/// The baton token of an `Authorization: Bearer …` the app received: signed with the
/// examples' key for `my-app`, issued by baton; returns its claims.
fn baton_token_claims(authorization: Option<&str>, what: &str) -> Value {
    let authorization =
        authorization.unwrap_or_else(|| panic!("{what}: the app got no Authorization"));
    let token = authorization
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("{what}: not a bearer credential: {authorization}"));
    assert!(
        !IDP_TOKENS.lock().iter().any(|idp| idp == token),
        "{what}: the app got the IdP token"
    );
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[BATON_ISS]);
    let verified = jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(KEY_SECRET.as_bytes()),
        &validation,
    )
    .unwrap_or_else(|e| panic!("{what}: not a token of baton's key ({e}): {token}"));
    assert_eq!(verified.claims, payload(token));
    verified.claims
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
                .all(|(n, v)| labels.contains(&format!("{n}=\"{v}\"")))
                .then(|| value.parse().ok())?
        })
}

/// One request written as raw bytes (`Connection: close` is added): the status line's code,
/// the headers and the body as text.
async fn raw_request(addr: SocketAddr, head: &str) -> (u16, Vec<(String, String)>, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{head}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}
