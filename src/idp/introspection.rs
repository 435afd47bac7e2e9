//! RFC 7662 token introspection: how baton verifies subject tokens that are not JWTs (and
//! JWTs of an IdP that has no keys).
//!
//! - The endpoint is configured (`introspection.url`) or taken from the IdP's discovery
//!   document (`introspection_endpoint`), and obeys the IdP's [`UrlPolicy`] as a JWKS URL
//!   does. Redirects are never followed: the request carries the token and the client secret.
//! - The request is `POST token=…&token_type_hint=access_token`, with `client_secret_basic`
//!   (RFC 6749 §2.3.1) when the IdP has client credentials.
//! - Results are cached by SHA-256 of (endpoint, token): an active one until the earlier of
//!   its `exp` and the IdP's `introspection_cache_ttl`, an inactive one for
//!   [`INACTIVE_CACHE_TTL`]. Concurrent lookups of one token share one call. Failures are
//!   never cached.
//! - A response that is not a JSON object, has no boolean `active`, is over the body cap, or
//!   is not a 2xx is the endpoint's failure: [`JwksError::Fetch`], refused as unavailable
//!   (503), never accepted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::UrlPolicy;
use super::jwks::{JwksCache, JwksError, JwksPolicy};
use crate::secret::Secret;

/// How long an introspection result is reused unless the IdP sets `introspection_cache_ttl`.
pub const DEFAULT_INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(60);

/// The longest `introspection_cache_ttl` accepted: a revoked token is refused within it.
pub const MAX_INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(3600);

/// How long an `active: false` answer is reused.
pub const INACTIVE_CACHE_TTL: Duration = Duration::from_secs(10);

/// The most introspection results kept.
const RESULT_CACHE_CAPACITY: u64 = 100_000;

/// An IdP's introspection endpoint and how baton authenticates to it.
#[derive(Debug)]
pub struct Introspection {
    /// Where the endpoint is.
    pub endpoint: IntrospectionEndpoint,
    /// `client_secret_basic` credentials, when the endpoint wants them.
    pub credentials: Option<ClientCredentials>,
    /// Upper bound on how long an active result is reused.
    pub cache_ttl: Duration,
    /// Opaque tokens starting with this go to this IdP (`token_prefix`).
    pub token_prefix: Option<String>,
}

/// Where an introspection endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrospectionEndpoint {
    /// Configured.
    Url(String),
    /// The discovery document's `introspection_endpoint`.
    Discovered,
}

/// A client id and secret for `client_secret_basic`.
#[derive(Debug)]
pub struct ClientCredentials {
    /// `client_id`.
    pub id: String,
    /// `client_secret` (never logged: `Debug` redacts it).
    pub secret: Secret,
}

/// An introspection answer.
#[derive(Debug)]
pub enum Introspected {
    /// `active: true`, with the response's members (the token's claims).
    Active {
        /// The response object.
        claims: Map<String, Value>,
        /// Until when (Unix seconds) this answer is reused; a token minted on it is served
        /// from the minted-token cache no longer.
        cache_until: u64,
    },
    /// `active: false`.
    Inactive,
}

/// Calls introspection endpoints and caches their answers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Introspector {
    inner: Arc<Inner>,
}

/// Counters, for metrics and tests.
#[derive(Debug, Default)]
pub struct IntrospectionStats {
    /// Calls made to endpoints.
    pub calls: AtomicU64,
    /// Calls that failed (unreachable, non-2xx, unusable response).
    pub failed: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    jwks: JwksCache,
    /// No redirects: the request carries a token and a secret.
    client: reqwest::Client,
    max_body_bytes: usize,
    results: moka::future::Cache<[u8; 32], Cached>,
    endpoints: moka::future::Cache<(String, UrlPolicy), Arc<str>>,
    stats: IntrospectionStats,
}

#[derive(Clone, Debug)]
struct Cached {
    answer: Arc<Introspected>,
    ttl: Duration,
}

struct PerEntry;

// === impl Introspector ===

impl Introspector {
    /// An introspector with the JWKS client's timeouts and body cap; discovery documents
    /// are fetched through `jwks`.
    pub fn new(jwks: JwksCache) -> Result<Self, JwksError> {
        let policy: &JwksPolicy = jwks.policy();
        let client = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwksError::Fetch {
                url: String::new(),
                reason: format!("HTTP client: {e}"),
            })?;
        let max_body_bytes = policy.max_body_bytes;
        Ok(Self {
            inner: Arc::new(Inner {
                jwks,
                client,
                max_body_bytes,
                results: moka::future::Cache::builder()
                    .max_capacity(RESULT_CACHE_CAPACITY)
                    .expire_after(PerEntry)
                    .build(),
                endpoints: moka::future::Cache::builder()
                    .max_capacity(1024)
                    .time_to_live(Duration::from_secs(3600))
                    .build(),
                stats: IntrospectionStats::default(),
            }),
        })
    }

    /// Call counters.
    pub fn stats(&self) -> &IntrospectionStats {
        &self.inner.stats
    }

    /// What the endpoint of `introspection` says of `token` (from the cache when it has
    /// answered within the bound). `issuer` is the IdP's, for a discovered endpoint.
    pub async fn introspect(
        &self,
        introspection: &Introspection,
        issuer: Option<&str>,
        url_policy: UrlPolicy,
        token: &str,
        now: u64,
    ) -> Result<Arc<Introspected>, JwksError> {
        let url = match &introspection.endpoint {
            IntrospectionEndpoint::Url(url) => Arc::from(url.as_str()),
            IntrospectionEndpoint::Discovered => {
                self.discover(issuer.unwrap_or_default(), url_policy)
                    .await?
            }
        };
        let key = result_key(&url, token);
        let inner = &self.inner;
        inner
            .results
            .try_get_with(key, async {
                let answer = inner.call(&url, url_policy, introspection, token).await?;
                let ttl = match &answer {
                    Introspected::Inactive => INACTIVE_CACHE_TTL,
                    Introspected::Active { claims, .. } => {
                        let until_exp = claims
                            .get("exp")
                            .and_then(Value::as_u64)
                            .map_or(Duration::MAX, |exp| {
                                Duration::from_secs(exp.saturating_sub(now))
                            });
                        introspection.cache_ttl.min(until_exp)
                    }
                };
                let answer = match answer {
                    Introspected::Active { claims, .. } => Introspected::Active {
                        claims,
                        cache_until: now.saturating_add(ttl.as_secs()),
                    },
                    inactive => inactive,
                };
                Ok::<_, JwksError>(Cached {
                    answer: Arc::new(answer),
                    ttl,
                })
            })
            .await
            .map(|cached| cached.answer)
            .map_err(|e| (*e).clone())
    }

    /// The `introspection_endpoint` of `issuer`'s discovery document (cached for an hour).
    async fn discover(&self, issuer: &str, url_policy: UrlPolicy) -> Result<Arc<str>, JwksError> {
        let inner = &self.inner;
        inner
            .endpoints
            .try_get_with((issuer.to_owned(), url_policy), async {
                let url = super::jwks::discovery_url(issuer);
                let body = inner.jwks.fetch_document(&url, url_policy).await?;
                discovered_endpoint(&url, issuer, &body).map(Arc::from)
            })
            .await
            .map_err(|e| (*e).clone())
    }
}

// === impl Inner ===

impl Inner {
    async fn call(
        &self,
        url: &str,
        url_policy: UrlPolicy,
        introspection: &Introspection,
        token: &str,
    ) -> Result<Introspected, JwksError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.post(url, url_policy, introspection, token).await;
        if let Err(e) = &result {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            // The error names the URL and what went wrong, never the token or the secret.
            tracing::warn!(error = %e, "introspection failed");
        }
        result
    }

    async fn post(
        &self,
        url: &str,
        url_policy: UrlPolicy,
        introspection: &Introspection,
        token: &str,
    ) -> Result<Introspected, JwksError> {
        let fail = |reason: String| JwksError::Fetch {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| fail(format!("not an absolute URL: {e}")))?;
        super::url_policy::check_url(&parsed, url_policy).map_err(|reason| {
            JwksError::RefusedUrl {
                url: url.to_owned(),
                context: String::new(),
                reason,
            }
        })?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let mut request = self
            .client
            .post(parsed)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        if let Some(credentials) = &introspection.credentials {
            request = request.header(reqwest::header::AUTHORIZATION, basic(credentials));
        }
        let mut response = request.send().await.map_err(|e| {
            fail(if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "connection failed".to_owned()
            } else {
                "request failed".to_owned()
            })
        })?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP status {}", response.status())));
        }
        let cap = self.max_body_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > cap as u64)
        {
            return Err(fail(format!("body larger than {cap} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            fail(if e.is_timeout() {
                "timed out".to_owned()
            } else {
                "reading the body failed".to_owned()
            })
        })? {
            if body.len() + chunk.len() > cap {
                return Err(fail(format!("body larger than {cap} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        parse_response(&body).map_err(|reason| fail(reason.to_owned()))
    }
}

/// Reads an introspection response: a JSON object with a boolean `active`. Anything else is
/// the endpoint's failure (the reason names no value from the body).
pub fn parse_response(body: &[u8]) -> Result<Introspected, &'static str> {
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(body) else {
        return Err("the response is not a JSON object");
    };
    match claims.get("active") {
        Some(Value::Bool(true)) => {
            crate::token::check_claims_shape(&claims)
                .map_err(|_| "the response is too deep or too large")?;
            Ok(Introspected::Active {
                claims,
                cache_until: 0,
            })
        }
        Some(Value::Bool(false)) => Ok(Introspected::Inactive),
        Some(_) => Err("the response's `active` is not a boolean"),
        None => Err("the response has no `active`"),
    }
}

/// The `introspection_endpoint` of the discovery document `body`, fetched from `url` for
/// `issuer`.
pub fn discovered_endpoint(url: &str, issuer: &str, body: &[u8]) -> Result<String, JwksError> {
    let fail = |reason: &str| JwksError::Fetch {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else {
        return Err(fail("not a discovery document"));
    };
    let found = doc
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if found != issuer {
        return Err(JwksError::DiscoveryIssuerMismatch {
            url: url.to_owned(),
            expected: issuer.to_owned(),
            found: found.to_owned(),
        });
    }
    doc.get("introspection_endpoint")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| fail("the discovery document has no introspection_endpoint"))
}

/// Whether `token` has the shape of a compact JWS: three base64url segments.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut segments = 0;
    for segment in token.split('.') {
        segments += 1;
        if segments > 3
            || !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    segments == 3
}

/// `Authorization: Basic …` per RFC 6749 §2.3.1: id and secret form-urlencoded first.
fn basic(credentials: &ClientCredentials) -> String {
    let id: String = url::form_urlencoded::byte_serialize(credentials.id.as_bytes()).collect();
    let secret: String =
        url::form_urlencoded::byte_serialize(credentials.secret.expose()).collect();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// SHA-256 over (endpoint, token), length-prefixed: the raw token is never a key.
fn result_key(url: &str, token: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((url.len() as u64).to_le_bytes());
    hasher.update(url.as_bytes());
    hasher.update(token.as_bytes());
    hasher.finalize().into()
}

// === impl PerEntry ===

impl moka::Expiry<[u8; 32], Cached> for PerEntry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Cached,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

#[cfg(test)]
mod tests;
