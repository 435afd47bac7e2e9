//! JWKS: fetching, parsing and caching an IdP's public keys.
//!
//! One [`JwksCache`] serves every IdP. Per URL it keeps the last good [`KeySet`]:
//! - fresh for the response's `Cache-Control: max-age`, clamped to [1 min, 24 h]
//!   (10 min when absent), and refreshed in the background once 80% of that has passed;
//! - a token whose `kid` is unknown triggers one refetch at a time per URL, and at most
//!   one every 30 s, so a flood of made-up kids costs one request to the IdP;
//! - a failed fetch keeps serving the last good set (stale-if-error) for up to 24 h;
//! - keys that cannot be parsed, that are not for signatures, or that are symmetric are
//!   skipped, never fatal;
//! - every URL fetched, and every redirect followed, obeys the IdP's [`UrlPolicy`]
//!   ([`super::url_policy`]): `https` unless loopback or `allow_http`, at most three
//!   redirects, never from `https` to `http`. Each policy has its own client and caches, so
//!   an IdP with `allow_http` never shares a fetch with one without.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::Deserialize;
use serde_json::Value;

use super::url_policy::{self, RedirectRefused, UrlPolicy, UrlRefusal};
use crate::algorithm;

/// How long a key set is fresh when the response says nothing.
pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(10 * 60);

/// Timeouts, size caps and refresh rules for fetching key sets.
#[derive(Clone, Debug)]
pub struct JwksPolicy {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout, body included.
    pub request_timeout: Duration,
    /// The largest JWKS or discovery document read, in bytes.
    pub max_body_bytes: usize,
    /// Lower bound on a key set's freshness, whatever `max-age` says.
    pub min_ttl: Duration,
    /// Upper bound on a key set's freshness.
    pub max_ttl: Duration,
    /// Freshness when the response has no `max-age`.
    pub default_ttl: Duration,
    /// Least time between two refetches triggered by unknown `kid`s, per URL.
    pub unknown_kid_interval: Duration,
    /// How long after a failed fetch the next synchronous attempt waits (stale served meanwhile).
    pub retry_interval: Duration,
    /// How long the last good set is served while fetches fail.
    pub stale_limit: Duration,
}

/// The verification keys of one JWKS document.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
    skipped: usize,
    fetched_at: Instant,
    refresh_at: Instant,
    expires_at: Instant,
}

/// One usable public key from a JWKS.
#[derive(Debug)]
pub struct VerificationKey {
    /// `kid`, when the JWKS gives one.
    pub kid: Option<String>,
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    curve: Option<EllipticCurve>,
    key: crate::crypto::Verifier,
}

/// Why keys could not be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The discovery document names another issuer than the one configured.
    #[error("discovery at {url} names issuer {found:?}, not the configured {expected:?}")]
    DiscoveryIssuerMismatch {
        /// The discovery URL.
        url: String,
        /// The configured issuer.
        expected: String,
        /// The `issuer` in the document.
        found: String,
    },
    /// The document could not be fetched or read.
    #[error("fetching {url} failed: {reason}")]
    Fetch {
        /// The URL fetched.
        url: String,
        /// What went wrong (never includes a token).
        reason: String,
    },
    /// A URL the IdP's [`UrlPolicy`] refuses: never fetched.
    #[error("refused to fetch {url}{context}: {reason}")]
    RefusedUrl {
        /// The URL refused.
        url: String,
        /// Where it came from, when not from the config (` (the jwks_uri of …)`).
        context: String,
        /// The rule it breaks.
        reason: UrlRefusal,
    },
}

/// Counters of fetches, for metrics and tests.
#[derive(Debug, Default)]
pub struct JwksStats {
    /// Successful JWKS fetches.
    pub fetched: AtomicU64,
    /// Failed JWKS fetches.
    pub failed: AtomicU64,
    /// Lookups answered by a cached key set.
    pub hits: AtomicU64,
    /// Lookups that had to fetch (no set, or an expired one).
    pub misses: AtomicU64,
}

/// The shared JWKS and discovery cache.
#[derive(Clone, Debug)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    policy: JwksPolicy,
    https_or_loopback: Lane,
    insecure_http: Lane,
    stats: JwksStats,
}

/// The client and caches of one [`UrlPolicy`].
#[derive(Debug)]
struct Lane {
    /// Its redirect policy applies the lane's [`UrlPolicy`] to every hop.
    client: reqwest::Client,
    sets: moka::sync::Cache<String, Arc<Entry>>,
    discovered: moka::future::Cache<String, Arc<str>>,
}

#[derive(Debug)]
struct Entry {
    url: String,
    url_policy: UrlPolicy,
    current: ArcSwapOption<KeySet>,
    fetch_lock: tokio::sync::Mutex<()>,
    last_kid_refetch: parking_lot::Mutex<Option<Instant>>,
    last_failure: parking_lot::Mutex<Option<(Instant, JwksError)>>,
    background_refresh: AtomicBool,
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<Value>,
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
}

// === impl JwksPolicy ===

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            max_body_bytes: 512 * 1024,
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            default_ttl: DEFAULT_JWKS_TTL,
            unknown_kid_interval: Duration::from_secs(30),
            retry_interval: Duration::from_secs(5),
            stale_limit: Duration::from_secs(24 * 3600),
        }
    }
}

// === impl JwksCache ===

impl JwksCache {
    /// A cache fetching with `policy`.
    pub fn new(policy: JwksPolicy) -> Result<Self, JwksError> {
        Ok(Self {
            inner: Arc::new(Inner {
                https_or_loopback: Lane::new(&policy, UrlPolicy::HttpsOrLoopback)?,
                insecure_http: Lane::new(&policy, UrlPolicy::InsecureHttpAllowed)?,
                policy,
                stats: JwksStats::default(),
            }),
        })
    }

    /// Fetch counters.
    pub fn stats(&self) -> &JwksStats {
        &self.inner.stats
    }

    /// The timeouts and caps fetches obey (introspection uses the same).
    pub fn policy(&self) -> &JwksPolicy {
        &self.inner.policy
    }

    /// GETs the JSON document at `url` under `url_policy` (redirects checked), with the
    /// timeouts and body cap of key fetches. Not cached.
    pub(crate) async fn fetch_document(
        &self,
        url: &str,
        url_policy: UrlPolicy,
    ) -> Result<Vec<u8>, JwksError> {
        self.inner
            .fetch_body(url, url_policy)
            .await
            .map(|(body, _)| body)
    }

    /// The JWKS URL of `issuer`, by OIDC discovery (cached for an hour). The discovery URL
    /// and the document's `jwks_uri` must both pass `url_policy`.
    pub async fn discover(
        &self,
        issuer: &str,
        url_policy: UrlPolicy,
    ) -> Result<Arc<str>, JwksError> {
        let inner = Arc::clone(&self.inner);
        self.inner
            .lane(url_policy)
            .discovered
            .try_get_with(issuer.to_owned(), async move {
                let url = discovery_url(issuer);
                let body = inner.fetch_body(&url, url_policy).await?.0;
                let jwks_uri = discovered_jwks_uri(&url, issuer, &body)?;
                // The document is as trusted as the keys it points at: its `jwks_uri` obeys
                // the same rule as a configured `jwks_url`.
                check(&jwks_uri, url_policy).map_err(|refusal| match refusal {
                    JwksError::RefusedUrl {
                        url: jwks_uri,
                        reason,
                        ..
                    } => JwksError::RefusedUrl {
                        url: jwks_uri,
                        context: format!(" (the jwks_uri of {url})"),
                        reason,
                    },
                    other => other,
                })?;
                Ok::<_, JwksError>(Arc::from(jwks_uri))
            })
            .await
            .map_err(|e| (*e).clone())
    }

    /// The key set at `url`, with a key for (`kid`, `alg`) if the IdP has one.
    ///
    /// When no key fits, this refetches at most once (single-flight, rate-limited) before
    /// answering with the set it has; the caller then reports the unknown key.
    pub async fn key_set(
        &self,
        url: &str,
        url_policy: UrlPolicy,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<KeySet>, JwksError> {
        let entry = self.entry(url, url_policy);
        let set = self.current_set(&entry).await?;
        if set.find(kid, alg).next().is_some() {
            return Ok(set);
        }
        Ok(self.refetch_for_unknown_kid(&entry, set).await)
    }

    /// Fetches the key set at `url` unless a fresh one is cached (start-up and readiness).
    pub async fn prefetch(&self, url: &str, url_policy: UrlPolicy) -> Result<(), JwksError> {
        let entry = self.entry(url, url_policy);
        self.current_set(&entry).await.map(|_| ())
    }

    /// Whether a usable key set for `url` is at hand (fresh, or stale within the limit).
    pub fn has_keys(&self, url: &str, url_policy: UrlPolicy) -> bool {
        self.inner
            .lane(url_policy)
            .sets
            .get(url)
            .is_some_and(|entry| {
                entry
                    .current
                    .load()
                    .as_ref()
                    .is_some_and(|set| set.fetched_at.elapsed() < self.inner.policy.stale_limit)
            })
    }

    /// The JWKS URL discovery found for `issuer`, if it has run.
    pub async fn discovered(&self, issuer: &str, url_policy: UrlPolicy) -> Option<Arc<str>> {
        self.inner.lane(url_policy).discovered.get(issuer).await
    }

    fn entry(&self, url: &str, url_policy: UrlPolicy) -> Arc<Entry> {
        self.inner.lane(url_policy).sets.get_with_by_ref(url, || {
            Arc::new(Entry {
                url: url.to_owned(),
                url_policy,
                current: ArcSwapOption::empty(),
                fetch_lock: tokio::sync::Mutex::new(()),
                last_kid_refetch: parking_lot::Mutex::new(None),
                last_failure: parking_lot::Mutex::new(None),
                background_refresh: AtomicBool::new(false),
            })
        })
    }

    /// The usable set for `entry`: fetched if there is none, refreshed if expired,
    /// refreshed in the background if it is due.
    async fn current_set(&self, entry: &Arc<Entry>) -> Result<Arc<KeySet>, JwksError> {
        let policy = &self.inner.policy;
        let seen = entry.current.load_full();
        let now = Instant::now();
        let stats = &self.inner.stats;
        match &seen {
            Some(set) if now < set.refresh_at => {
                stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Arc::clone(set));
            }
            Some(set) if now < set.expires_at => {
                stats.hits.fetch_add(1, Ordering::Relaxed);
                self.spawn_background_refresh(entry);
                return Ok(Arc::clone(set));
            }
            Some(set) if entry.failed_within(policy.retry_interval) => {
                stats.hits.fetch_add(1, Ordering::Relaxed);
                return self.stale_or(set, entry);
            }
            _ => {}
        }
        stats.misses.fetch_add(1, Ordering::Relaxed);
        let _flight = entry.fetch_lock.lock().await;
        let current = entry.current.load_full();
        if let Some(set) = &current
            && !same(&seen, &current)
        {
            // Another request fetched while this one waited.
            return Ok(Arc::clone(set));
        }
        if let Some(error) = entry.failed_since(now) {
            // Another request's fetch failed while this one waited: share its outcome.
            return match &current {
                Some(set) => self.stale_or(set, entry),
                None => Err(error),
            };
        }
        match self.inner.fetch_into(entry).await {
            Ok(set) => Ok(set),
            Err(e) => match &current {
                Some(set) => self.stale_or(set, entry),
                None => Err(e),
            },
        }
    }

    /// Serves `set` past its freshness if it is within the stale limit.
    fn stale_or(&self, set: &Arc<KeySet>, entry: &Entry) -> Result<Arc<KeySet>, JwksError> {
        if set.fetched_at.elapsed() < self.inner.policy.stale_limit {
            Ok(Arc::clone(set))
        } else {
            Err(JwksError::Fetch {
                url: entry.url.clone(),
                reason: "no key set fetched within the stale limit".to_owned(),
            })
        }
    }

    async fn refetch_for_unknown_kid(&self, entry: &Arc<Entry>, seen: Arc<KeySet>) -> Arc<KeySet> {
        let _flight = entry.fetch_lock.lock().await;
        if let Some(current) = entry.current.load_full()
            && !Arc::ptr_eq(&current, &seen)
        {
            // Someone refetched while this request waited: that is this request's refetch.
            return current;
        }
        {
            let mut last = entry.last_kid_refetch.lock();
            if last.is_some_and(|at| at.elapsed() < self.inner.policy.unknown_kid_interval) {
                return seen;
            }
            *last = Some(Instant::now());
        }
        self.inner.fetch_into(entry).await.unwrap_or(seen)
    }

    fn spawn_background_refresh(&self, entry: &Arc<Entry>) {
        // After a failed refresh, wait `retry_interval` before the next one.
        if entry.failed_within(self.inner.policy.retry_interval)
            || entry.background_refresh.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let inner = Arc::clone(&self.inner);
        let entry = Arc::clone(entry);
        tokio::spawn(async move {
            {
                let _flight = entry.fetch_lock.lock().await;
                // Failure keeps the current set; a due request retries after `retry_interval`.
                let _ = inner.fetch_into(&entry).await;
            }
            entry.background_refresh.store(false, Ordering::Release);
        });
    }
}

// === impl Lane ===

impl Lane {
    fn new(policy: &JwksPolicy, url_policy: UrlPolicy) -> Result<Self, JwksError> {
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            match url_policy::check_redirect(attempt.previous(), attempt.url(), url_policy) {
                Ok(()) => attempt.follow(),
                Err(reason) => {
                    let to = attempt.url().to_string();
                    attempt.error(RedirectRefused { to, reason })
                }
            }
        });
        let client = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.request_timeout)
            .redirect(redirects)
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwksError::Fetch {
                url: String::new(),
                reason: format!("HTTP client: {e}"),
            })?;
        Ok(Self {
            client,
            sets: moka::sync::Cache::builder()
                .max_capacity(1024)
                .time_to_idle(policy.stale_limit)
                .build(),
            discovered: moka::future::Cache::builder()
                .max_capacity(1024)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        })
    }
}

// === impl Inner ===

impl Inner {
    fn lane(&self, url_policy: UrlPolicy) -> &Lane {
        match url_policy {
            UrlPolicy::HttpsOrLoopback => &self.https_or_loopback,
            UrlPolicy::InsecureHttpAllowed => &self.insecure_http,
        }
    }

    /// Fetches `entry`'s URL, stores the new set, and returns it. Call under `fetch_lock`.
    async fn fetch_into(&self, entry: &Entry) -> Result<Arc<KeySet>, JwksError> {
        match self.fetch_key_set(&entry.url, entry.url_policy).await {
            Ok(set) => {
                self.stats.fetched.fetch_add(1, Ordering::Relaxed);
                let set = Arc::new(set);
                entry.current.store(Some(Arc::clone(&set)));
                *entry.last_failure.lock() = None;
                if set.skipped > 0 {
                    tracing::debug!(url = %entry.url, skipped = set.skipped, "JWKS keys skipped");
                }
                Ok(set)
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                *entry.last_failure.lock() = Some((Instant::now(), e.clone()));
                tracing::warn!(error = %e, "JWKS fetch failed");
                Err(e)
            }
        }
    }

    async fn fetch_key_set(&self, url: &str, url_policy: UrlPolicy) -> Result<KeySet, JwksError> {
        let (body, max_age) = self.fetch_body(url, url_policy).await?;
        let policy = &self.policy;
        let ttl = max_age
            .unwrap_or(policy.default_ttl)
            .clamp(policy.min_ttl, policy.max_ttl);
        KeySet::from_document(url, &body, ttl)
    }

    /// GETs `url` (if `url_policy` allows it, and each redirect too), insisting on a 2xx and
    /// a body under the cap. Returns the body and the response's `max-age`.
    async fn fetch_body(
        &self,
        url: &str,
        url_policy: UrlPolicy,
    ) -> Result<(Vec<u8>, Option<Duration>), JwksError> {
        // Config validation checked the URLs it knows; this also covers any other (belt and
        // braces), before a connection is made.
        check(url, url_policy)?;
        let fail = |reason: String| JwksError::Fetch {
            url: url.to_owned(),
            reason,
        };
        let mut response = self
            .lane(url_policy)
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fail(describe_reqwest(&e)))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP status {}", response.status())));
        }
        let cap = self.policy.max_body_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > cap as u64)
        {
            return Err(fail(format!("body larger than {cap} bytes")));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(describe_reqwest(&e)))?
        {
            if body.len() + chunk.len() > cap {
                return Err(fail(format!("body larger than {cap} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }
}

// === impl Entry ===

impl Entry {
    fn failed_within(&self, interval: Duration) -> bool {
        self.last_failure
            .lock()
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < interval)
    }

    /// The error of a fetch that failed at or after `since`.
    fn failed_since(&self, since: Instant) -> Option<JwksError> {
        self.last_failure
            .lock()
            .as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, e)| e.clone())
    }
}

// === impl KeySet ===

impl KeySet {
    /// Parses the JWKS document `body`, fetched from `url` just now and fresh for `ttl`.
    /// Unusable keys are skipped (counted in [`KeySet::skipped`]); a body that is not a JWKS
    /// document is an error naming `url`.
    pub fn from_document(url: &str, body: &[u8], ttl: Duration) -> Result<Self, JwksError> {
        let doc: JwksDocument = serde_json::from_slice(body).map_err(|e| JwksError::Fetch {
            url: url.to_owned(),
            reason: format!("not a JWKS document: {e}"),
        })?;
        let total = doc.keys.len();
        let keys: Vec<VerificationKey> = doc
            .keys
            .into_iter()
            .filter_map(VerificationKey::from_json)
            .collect();
        let fetched_at = Instant::now();
        Ok(Self {
            skipped: total - keys.len(),
            keys,
            fetched_at,
            refresh_at: fetched_at + ttl.mul_f64(0.8),
            expires_at: fetched_at + ttl,
        })
    }

    /// The keys that may verify a token with this `kid` and `alg`.
    ///
    /// A token with a `kid` matches only keys with that `kid`; one without matches every key
    /// that fits the algorithm.
    pub fn find<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerificationKey> + 'a {
        self.keys.iter().filter(move |key| {
            let kid_ok = match kid {
                Some(kid) => key.kid.as_deref() == Some(kid),
                None => true,
            };
            kid_ok && key.fits(alg)
        })
    }

    /// How many keys the set holds (usable ones only).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys in the document were skipped as unusable.
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

// === impl VerificationKey ===

impl VerificationKey {
    /// Parses one JWK, or `None` when it is unusable for verifying signatures.
    fn from_json(value: Value) -> Option<Self> {
        let jwk: Jwk = serde_json::from_value(value).ok()?;
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            return None;
        }
        let (family, curve) = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, None),
            AlgorithmParameters::EllipticCurve(ec) => (AlgorithmFamily::Ec, Some(ec.curve.clone())),
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                (AlgorithmFamily::Ed, Some(EllipticCurve::Ed25519))
            }
            // Symmetric keys are never taken from a JWKS: HMAC against a published key
            // would let anyone who can read the JWKS sign tokens.
            _ => return None,
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(key_alg) => Some(algorithm::parse(&key_alg.to_string()).ok()?),
        };
        if alg.is_some_and(|alg| alg.family() != family) {
            return None;
        }
        let key = crate::crypto::Verifier::from_jwk(&jwk).ok()?;
        Some(Self {
            kid: jwk.common.key_id,
            alg,
            family,
            curve,
            key,
        })
    }

    /// Whether this key may verify `alg`: its `kty` (and curve) fit, and its `alg`, when
    /// set, is `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|own| own != alg) || alg.family() != self.family {
            return false;
        }
        match alg {
            Algorithm::ES256 => self.curve == Some(EllipticCurve::P256),
            Algorithm::ES384 => self.curve == Some(EllipticCurve::P384),
            _ => true,
        }
    }

    /// The key.
    pub fn verifier(&self) -> &crate::crypto::Verifier {
        &self.key
    }
}

/// The `jwks_uri` of the OIDC discovery document `body`, fetched from `url` for `issuer`;
/// an error when it is not a discovery document or names another issuer.
pub fn discovered_jwks_uri(url: &str, issuer: &str, body: &[u8]) -> Result<String, JwksError> {
    let doc: DiscoveryDocument = serde_json::from_slice(body).map_err(|e| JwksError::Fetch {
        url: url.to_owned(),
        reason: format!("not a discovery document: {e}"),
    })?;
    if doc.issuer != issuer {
        return Err(JwksError::DiscoveryIssuerMismatch {
            url: url.to_owned(),
            expected: issuer.to_owned(),
            found: doc.issuer,
        });
    }
    Ok(doc.jwks_uri)
}

fn same(a: &Option<Arc<KeySet>>, b: &Option<Arc<KeySet>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// `max-age` from a `Cache-Control` value; `no-store`/`no-cache` count as zero (then
/// clamped up to the minimum).
fn max_age(cache_control: &str) -> Option<Duration> {
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            return seconds
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    None
}

/// `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Whether `url` is an absolute URL `url_policy` lets baton fetch.
fn check(url: &str, url_policy: UrlPolicy) -> Result<(), JwksError> {
    let refused = |reason| JwksError::RefusedUrl {
        url: url.to_owned(),
        context: String::new(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| JwksError::Fetch {
        url: url.to_owned(),
        reason: format!("not an absolute URL: {e}"),
    })?;
    url_policy::check_url(&parsed, url_policy).map_err(refused)
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    // A redirect the policy refused: say which rule, not reqwest's generic wording.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<RedirectRefused>() {
            return refused.to_string();
        }
        source = cause.source();
    }
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        // reqwest errors name the URL, never a token (baton never puts tokens in URLs).
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::{JwksError, KeySet, discovered_jwks_uri, max_age};
    use std::time::Duration;

    const URL: &str = "https://idp.test/jwks";
    const ED25519_X: &str = "W711MsUGa28DIt57UqMRCpc232-DNAbZq7R-BaXE0Co";

    #[test]
    fn a_jwks_document_keeps_usable_keys_and_counts_the_rest() {
        let body = serde_json::json!({ "keys": [
            { "kty": "OKP", "crv": "Ed25519", "x": ED25519_X, "kid": "ed" },
            { "kty": "OKP", "crv": "Ed25519", "x": ED25519_X, "use": "enc" },
            { "kty": "OKP", "crv": "Ed25519", "x": "AAAA" },
            { "kty": "oct", "k": "c2VjcmV0" },
            "not a key",
        ]})
        .to_string();
        let set = KeySet::from_document(URL, body.as_bytes(), Duration::from_secs(60)).unwrap();
        assert_eq!((set.len(), set.skipped()), (1, 4));
        let eddsa = crate::algorithm::parse("EdDSA").unwrap();
        assert_eq!(set.find(Some("ed"), eddsa).count(), 1);
    }

    #[test]
    fn a_body_that_is_not_a_jwks_is_an_error_naming_the_url() {
        for body in [&b"[]"[..], b"{\"kes\": []}", b"\xff", b""] {
            let err = KeySet::from_document(URL, body, Duration::from_secs(60)).unwrap_err();
            assert!(
                matches!(&err, JwksError::Fetch { url, .. } if url == URL),
                "{err}"
            );
        }
    }

    #[test]
    fn discovery_gives_the_jwks_uri_of_exactly_the_configured_issuer() {
        let url = "https://idp.test/.well-known/openid-configuration";
        let doc =
            |issuer: &str| serde_json::json!({ "issuer": issuer, "jwks_uri": URL }).to_string();
        let found =
            discovered_jwks_uri(url, "https://idp.test", doc("https://idp.test").as_bytes());
        assert_eq!(found, Ok(URL.to_owned()));
        let other =
            discovered_jwks_uri(url, "https://idp.test", doc("https://idp.test/").as_bytes());
        assert!(matches!(
            other,
            Err(JwksError::DiscoveryIssuerMismatch { .. })
        ));
        let junk = discovered_jwks_uri(url, "https://idp.test", b"{\"issuer\": 1}");
        assert!(matches!(junk, Err(JwksError::Fetch { .. })));
    }

    #[test]
    fn reads_max_age() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}
