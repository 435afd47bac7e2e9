//! Shared test fixtures: real keys, real signed tokens, a real JWKS/discovery HTTP server
//! on 127.0.0.1:0.

#![allow(dead_code, unreachable_pub)] // each test crate uses a different subset

pub mod baton;
pub mod demo;
pub mod http;
pub mod postgres;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::baton::keygen;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use parking_lot::Mutex;
use serde_json::{Value, json};

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A private key of baton's generator, with its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub private_pem: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    pub fn generate(alg: Algorithm, kid: &str) -> Self {
        let generated = keygen::generate(alg).unwrap();
        let private_pem = String::from_utf8(generated.material.expose().to_vec()).unwrap();
        let encoding = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()),
            _ => panic!("asymmetric algorithms only"),
        }
        .unwrap();
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            alg,
            private_pem,
            encoding,
            jwk: serde_json::to_value(jwk).unwrap(),
        }
    }

    /// Signs `claims` with header `{alg, kid, typ: JWT}`.
    pub fn sign(&self, claims: &Value) -> String {
        let header =
            json!({ "alg": ::baton::algorithm::name(self.alg), "kid": self.kid, "typ": "JWT" });
        self.sign_raw(&header, claims)
    }

    /// Signs any header and payload, as a hostile IdP might.
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{input}.{signature}")
    }

    /// The public key as SubjectPublicKeyInfo PEM.
    pub fn public_pem(&self) -> String {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        let der = pem::parse(&self.private_pem).unwrap().into_contents();
        let spki: Vec<u8> = match self.alg {
            Algorithm::RS256 | Algorithm::PS256 => aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
                .unwrap()
                .public_key()
                .as_der()
                .unwrap()
                .as_ref()
                .to_vec(),
            Algorithm::ES256 => aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &der,
            )
            .unwrap()
            .public_key()
            .as_der()
            .unwrap()
            .as_ref()
            .to_vec(),
            _ => panic!("public_pem supports RS256/PS256/ES256"),
        };
        pem::encode(&pem::Pem::new("PUBLIC KEY", spki))
    }
}

/// HMAC-signs any header and payload with `secret`'s bytes.
pub fn sign_hmac(secret: &[u8], alg: Algorithm, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &EncodingKey::from_secret(secret), alg)
            .unwrap();
    format!("{input}.{signature}")
}

pub fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Decodes a token's payload without verifying it (to read what baton minted).
pub fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Decodes a token's header without verifying it.
pub fn header(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// What the JWKS server answers on `/jwks.json`.
#[derive(Clone, Debug)]
pub enum JwksReply {
    /// 200 with these keys and an optional `Cache-Control`.
    Keys {
        keys: Vec<Value>,
        cache_control: Option<String>,
    },
    /// This status, empty body.
    Status(u16),
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with a valid-looking body of this many bytes.
    Huge(usize),
    /// The keys, but only after this delay.
    Slow(Duration, Vec<Value>),
}

/// A real HTTP server for `/jwks.json` and `/.well-known/openid-configuration`.
pub struct JwksServer {
    pub addr: SocketAddr,
    jwks_requests: Arc<AtomicUsize>,
    reply: Arc<Mutex<JwksReply>>,
    discovery_issuer: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Starts serving `keys` on 127.0.0.1:0.
    pub async fn start(keys: Vec<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let jwks_requests = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(Mutex::new(JwksReply::Keys {
            keys,
            cache_control: None,
        }));
        let discovery_issuer = Arc::new(Mutex::new(None));
        let state = (
            Arc::clone(&jwks_requests),
            Arc::clone(&reply),
            Arc::clone(&discovery_issuer),
        );
        let task = tokio::spawn(async move {
            // Connections live in this set, so aborting the server ends them too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(req, addr, &state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            jwks_requests,
            reply,
            discovery_issuer,
            task,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// How many requests `/jwks.json` has had.
    pub fn jwks_requests(&self) -> usize {
        self.jwks_requests.load(Ordering::SeqCst)
    }

    pub fn set_reply(&self, reply: JwksReply) {
        *self.reply.lock() = reply;
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        self.set_reply(JwksReply::Keys {
            keys,
            cache_control: None,
        });
    }

    /// The `issuer` the discovery document names (default: the server's base URL).
    pub fn set_discovery_issuer(&self, issuer: &str) {
        *self.discovery_issuer.lock() = Some(issuer.to_owned());
    }

    /// Stops listening and drops every open connection.
    pub fn shut_down(&self) {
        self.task.abort();
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type State = (
    Arc<AtomicUsize>,
    Arc<Mutex<JwksReply>>,
    Arc<Mutex<Option<String>>>,
);

async fn answer(req: Request<Incoming>, addr: SocketAddr, state: &State) -> Response<Full<Bytes>> {
    let (requests, reply, discovery_issuer) = state;
    let json = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    match req.uri().path() {
        "/.well-known/openid-configuration" => {
            let issuer = discovery_issuer
                .lock()
                .clone()
                .unwrap_or_else(|| format!("http://{addr}"));
            json(
                200,
                json!({ "issuer": issuer, "jwks_uri": format!("http://{addr}/jwks.json") })
                    .to_string(),
            )
        }
        "/jwks.json" => {
            requests.fetch_add(1, Ordering::SeqCst);
            let current = reply.lock().clone();
            match current {
                JwksReply::Keys {
                    keys,
                    cache_control,
                } => {
                    let mut response = json(200, json!({ "keys": keys }).to_string());
                    if let Some(cc) = cache_control {
                        response
                            .headers_mut()
                            .insert("cache-control", cc.parse().unwrap());
                    }
                    response
                }
                JwksReply::Status(code) => json(code, String::new()),
                JwksReply::Garbage => json(200, "<html>not json".to_owned()),
                JwksReply::Huge(size) => {
                    let mut body = String::from("{\"keys\":[],\"pad\":\"");
                    body.push_str(&"x".repeat(size));
                    body.push_str("\"}");
                    json(200, body)
                }
                JwksReply::Slow(delay, keys) => {
                    tokio::time::sleep(delay).await;
                    json(200, json!({ "keys": keys }).to_string())
                }
            }
        }
        _ => json(404, String::new()),
    }
}
