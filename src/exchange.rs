//! The pipeline: verify → IdP mapping → provider mapping → mint, behind a cache of minted
//! tokens. No HTTP types: the proxy, `POST /tokens` and `baton explain` all call this.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Map, Value};

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::explain::Trace;
use crate::idp::jwks::{JwksCache, JwksError, JwksPolicy};
use crate::idp::verify::{Verifier, VerifyError};
use crate::idp::{IdpSet, KeySource};
use crate::mapping::MappedClaimsTooLarge;
use crate::mint::keys::SigningKey;
use crate::mint::{MintError, Profile, TokenProvider};
pub use crate::mint::{Minted, Payload};
use crate::policy::{Claims, Condition, Inputs, Undecided};
use crate::token::UnverifiedToken;

mod key;
mod last;
use key::{DigestHasher, cache_key};
pub use last::LastExchange;

/// Default bound on the minted-token cache.
pub const DEFAULT_CACHE_CAPACITY: u64 = 100_000;

/// A minted token nobody asked for in this long leaves the cache (the next request for it
/// mints anew: one cold exchange per idle client per quarter hour).
const CACHE_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Takes subject tokens, gives minted tokens.
#[derive(Debug)]
pub struct Exchanger {
    pipeline: ArcSwap<Pipeline>,
    minted: moka::future::Cache<[u8; 32], CachedToken, DigestHasher>,
    verifier: Verifier,
    clock: SharedClock,
    generations: AtomicU64,
    stats: CacheStats,
}

/// A minted token in the cache, and until when (Unix seconds) it is handed out.
#[derive(Clone, Debug)]
struct CachedToken {
    minted: Arc<Minted>,
    serve_until: u64,
}

impl CachedToken {
    fn exchanged(self, cached: bool) -> Exchanged {
        Exchanged {
            minted: self.minted,
            cached,
        }
    }
}

/// A proxied request's credentials and its connection's memory of its last exchange, for
/// [`Exchanger::authorize`] to remember what it served.
#[derive(Clone, Copy, Debug)]
pub struct Remember<'a> {
    /// The connection's memory.
    pub last: &'a LastExchange,
    /// The `Authorization` value the bearer token was parsed from, as the client sent it.
    pub credentials: &'a [u8],
}

/// How to build an [`Exchanger`].
#[derive(Debug, Clone)]
pub struct ExchangerOptions {
    /// Most minted tokens kept (default 100 000).
    pub cache_capacity: u64,
    /// JWKS fetching rules.
    pub jwks: JwksPolicy,
    /// The clock for `exp`/`nbf`/`iat` and minting.
    pub clock: SharedClock,
}

/// Hits and misses of the minted-token cache.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: AtomicU64,
    /// Lookups that ran the pipeline.
    pub misses: AtomicU64,
}

/// What one run of the pipeline is asked.
#[derive(Clone, Copy)]
struct Request<'a> {
    subject_token: &'a str,
    /// RFC 8693 `actor_token` (delegation), if any.
    actor_token: Option<&'a str>,
    service: &'a str,
    /// The client `/tokens` authenticated, if any.
    client: Option<&'a str>,
}

/// One configuration's compiled pipeline.
#[derive(Debug)]
struct Pipeline {
    generation: u64,
    config: Arc<Config>,
    idps: IdpSet,
    providers: HashMap<String, Arc<TokenProvider>>,
}

/// A successful exchange.
#[derive(Debug, Clone)]
pub struct Exchanged {
    /// The minted token (possibly from the cache).
    pub minted: Arc<Minted>,
    /// Whether it came from the cache.
    pub cached: bool,
}

/// The proxy's decision on a bearer token.
#[derive(Debug, Clone)]
pub enum Authorized {
    /// An IdP token, exchanged: forward this token instead.
    Exchanged(Exchanged),
    /// A token baton minted, verified: forward it as it is. Its payload is what the route's
    /// condition and claim headers read.
    Own(Arc<Payload>),
}

/// Why an exchange failed. [`ExchangeError::stage`] names the stage.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The actor token (RFC 8693 `actor_token`) was refused.
    #[error("actor token: {0}")]
    Actor(VerifyError),
    /// A delegation rule refused the actor ([`DelegationRefused`]).
    #[error(transparent)]
    Delegation(#[from] DelegationRefused),
    /// A mapping would produce more values than allowed: the token's fault, like a
    /// malformed one.
    #[error(transparent)]
    Mapping(#[from] MappedClaimsTooLarge),
    /// Minting failed (a key that cannot sign): baton's fault.
    #[error(transparent)]
    Mint(#[from] MintError),
    /// The subject token was refused.
    #[error(transparent)]
    Token(#[from] VerifyError),
    /// No token provider has this service.
    #[error("no token provider for service {0:?}")]
    UnknownService(String),
    /// A condition (or a client's IdP limit) refused the exchange or the request.
    #[error(transparent)]
    Denied(#[from] Denied),
}

/// A policy refusal: which check said no, and whether it said no or could not decide (an
/// evaluation error, refused all the same). The detail names no claim value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{denial}{}", match .undecided { Some(why) => format!(" (undecided: {why})"), None => String::new() })]
pub struct Denied {
    pub denial: Denial,
    /// Why the condition could not decide, when it could not.
    pub undecided: Option<String>,
}

/// Why a delegated exchange (one with an actor token) was refused, beyond the actor token
/// failing verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelegationRefused {
    /// The actor token has no `sub`, which `act` and `may_act` need.
    #[error("the actor token has no sub")]
    ActorWithoutSubject,
    /// The subject token's `may_act` (RFC 8693 §4.4) does not name this actor.
    #[error("the subject token's may_act does not allow this actor")]
    MayActMismatch,
    /// The provider does not have `delegation = true`.
    #[error("delegation is not enabled for this service")]
    NotEnabled,
}

/// Which policy check refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// `[[idps]] condition`: the subject token is not acceptable.
    #[error("the IdP's condition refused the subject token")]
    IdpCondition,
    /// `[[idps]] condition` of the actor token's IdP: the actor token is not acceptable.
    #[error("the IdP's condition refused the actor token")]
    ActorIdpCondition,
    /// `[[token_providers]] condition`: no token for this service.
    #[error("the token provider's condition refused the exchange")]
    ProviderCondition,
    /// The authenticated client may not exchange tokens of this IdP (`clients[].idps`).
    #[error("the client may not exchange tokens of this IdP")]
    ClientNotAllowed,
    /// `[[proxy.routes]] condition`: the request may not reach the app.
    #[error("the route's condition refused the request")]
    RouteCondition,
}

impl Denied {
    /// The outcome of a condition: `Ok(())` when it held.
    pub fn check(denial: Denial, outcome: Result<bool, Undecided>) -> Result<(), Self> {
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(Self {
                denial,
                undecided: None,
            }),
            Err(undecided) => Err(Self {
                denial,
                undecided: Some(undecided.to_string()),
            }),
        }
    }
}

/// Who is at fault for an [`ExchangeError`]; decides the HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The caller: a bad token, an unknown service (4xx).
    Client,
    /// The IdP: its keys cannot be had (503).
    Upstream,
    /// baton itself (500).
    Internal,
}

// === impl Exchanger ===

impl Exchanger {
    /// Builds the pipeline for `config`.
    pub fn new(config: Config, options: ExchangerOptions) -> Result<Self, JwksError> {
        let jwks = JwksCache::new(options.jwks)?;
        let minted = moka::future::Cache::builder()
            .max_capacity(options.cache_capacity)
            // No per-entry expiry in moka (a timer-wheel node per entry, ~5 MiB at 100 000):
            // `cached` checks each hit's serve-until time instead. Entries nobody asks for are
            // dropped after an idle time (kept in the access order moka keeps anyway), so stale
            // ones do not sit in the cache until the capacity bound pushes them out.
            .time_to_idle(CACHE_IDLE_TIMEOUT)
            .build_with_hasher(DigestHasher);
        Ok(Self {
            pipeline: ArcSwap::from_pointee(Pipeline::new(config, 1)),
            minted,
            verifier: Verifier::new(jwks, Arc::clone(&options.clock))?,
            clock: options.clock,
            generations: AtomicU64::new(1),
            stats: CacheStats::default(),
        })
    }

    /// Replaces the configuration atomically. Tokens minted under the old one are never
    /// served again: cache keys carry the generation, and the cache is cleared.
    pub fn reload(&self, config: Config) {
        let generation = self.generations.fetch_add(1, Ordering::AcqRel) + 1;
        self.pipeline
            .store(Arc::new(Pipeline::new(config, generation)));
        self.minted.invalidate_all();
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.pipeline.load().config)
    }

    /// The generation of the configuration in force (1 for the first, +1 per reload).
    pub fn generation(&self) -> u64 {
        self.pipeline.load().generation
    }

    /// The JWKS cache (for readiness and metrics).
    pub fn jwks(&self) -> &JwksCache {
        self.verifier.jwks()
    }

    /// The introspection client and cache (for metrics and tests).
    pub fn introspector(&self) -> &crate::idp::introspection::Introspector {
        self.verifier.introspector()
    }

    /// Cache hit and miss counts.
    pub fn cache_stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Fetches the keys of every IdP that uses a JWKS or discovery, so that the first
    /// tokens do not wait and readiness can be told. Failures are logged, not fatal.
    pub async fn prefetch_keys(&self) {
        let pipeline = self.pipeline.load_full();
        let jwks = self.verifier.jwks();
        for idp in pipeline.idps.iter() {
            let url: Arc<str> = match &idp.keys {
                KeySource::Static(_) | KeySource::Introspected => continue,
                KeySource::JwksUrl(url) => Arc::from(url.as_str()),
                KeySource::Discovery => {
                    match jwks
                        .discover(idp.issuer.as_deref().unwrap_or_default(), idp.url_policy)
                        .await
                    {
                        Ok(url) => url,
                        Err(e) => {
                            tracing::warn!(idp = %idp.name, error = %e, "discovery failed");
                            continue;
                        }
                    }
                }
            };
            if let Err(e) = jwks.prefetch(&url, idp.url_policy).await {
                tracing::warn!(idp = %idp.name, error = %e, "fetching the IdP's keys failed");
            }
        }
    }

    /// Each IdP's name and whether its keys are at hand (static keys always are).
    pub async fn keys_ready(&self) -> Vec<(String, bool)> {
        let pipeline = self.pipeline.load_full();
        let jwks = self.verifier.jwks();
        let mut readiness = Vec::new();
        for idp in pipeline.idps.iter() {
            let ready = match &idp.keys {
                KeySource::Static(_) | KeySource::Introspected => true,
                KeySource::JwksUrl(url) => jwks.has_keys(url, idp.url_policy),
                KeySource::Discovery => match idp.issuer.as_deref() {
                    Some(issuer) => match jwks.discovered(issuer, idp.url_policy).await {
                        Some(url) => jwks.has_keys(&url, idp.url_policy),
                        None => false,
                    },
                    None => false,
                },
            };
            readiness.push((idp.name.to_string(), ready));
        }
        readiness
    }

    /// How many minted tokens the cache holds (approximately).
    pub fn cached_tokens(&self) -> u64 {
        self.minted.entry_count()
    }

    /// Exchanges `subject_token` for a token of `service`'s provider on behalf of no
    /// authenticated client: [`Exchanger::exchange_for_client`] with `None`.
    pub async fn exchange(
        &self,
        subject_token: &str,
        service: &str,
    ) -> Result<Exchanged, ExchangeError> {
        self.exchange_for_client(subject_token, service, None).await
    }

    /// Exchanges `subject_token` for a token of `service`'s provider, for `client` (the id
    /// of the client `/tokens` authenticated against that provider, if any): that client's
    /// `idps` limit and the provider's condition (which reads `client`) apply. From the
    /// cache when the same token was exchanged for the same service and client under the
    /// same configuration.
    pub async fn exchange_for_client(
        &self,
        subject_token: &str,
        service: &str,
        client: Option<&str>,
    ) -> Result<Exchanged, ExchangeError> {
        self.exchange_delegated(subject_token, None, service, client)
            .await
    }

    /// [`Exchanger::exchange_for_client`] with an RFC 8693 `actor_token`: the minted token
    /// says the actor acts for the subject. The actor token is verified as a subject token
    /// is (by a configured IdP, or as a token baton minted), and only a provider with
    /// `delegation = true` accepts one. With an actor, the subject token may also be a token
    /// baton minted (a delegation chain).
    pub async fn exchange_delegated(
        &self,
        subject_token: &str,
        actor_token: Option<&str>,
        service: &str,
        client: Option<&str>,
    ) -> Result<Exchanged, ExchangeError> {
        let pipeline = self.pipeline.load_full();
        let key = cache_key(
            pipeline.generation,
            service,
            client,
            actor_token,
            subject_token,
        );
        // A hit needs no condition evaluated: the entry was minted under this generation's
        // configuration for this same token, service and client, so the client's `idps`
        // limit and the IdP's and provider's conditions (whose inputs are all fixed by that
        // key) passed when it was.
        if let Some(hit) = self.cached(&key).await {
            return Ok(hit.exchanged(true));
        }
        // Boxed: the miss path's future is kilobytes, and every request's future would be
        // as large (and copied as often) if it were inline; a hit never allocates it.
        Box::pin(self.run_and_cache(
            pipeline,
            key,
            Request {
                subject_token,
                actor_token,
                service,
                client,
            },
        ))
        .await
        .map(|minted| minted.exchanged(false))
    }

    /// What the proxy does with a bearer token: a token baton minted itself (under any of its
    /// keys, retired ones included) is verified and passed as it is; any other is exchanged.
    /// With `remember`, the connection remembers the exchange for
    /// [`Exchanger::serve_again`].
    pub async fn authorize(
        &self,
        bearer: &str,
        service: &str,
        remember: Option<Remember<'_>>,
    ) -> Result<Authorized, ExchangeError> {
        let pipeline = self.pipeline.load_full();
        // The proxy authenticates no client: its entries are keyed without one. A hit passed
        // the IdP's and provider's conditions when it was minted (see `exchange_for_client`).
        let key = match remember {
            Some(Remember { last, credentials }) => {
                last.key(pipeline.generation, service, credentials, bearer)
            }
            None => cache_key(pipeline.generation, service, None, None, bearer),
        };
        let served = |token: CachedToken, cached: bool| {
            if let Some(Remember { last, .. }) = remember {
                last.served(&key, &token.minted, token.serve_until);
            }
            Authorized::Exchanged(token.exchanged(cached))
        };
        if let Some(hit) = self.cached(&key).await {
            return Ok(served(hit, true));
        }
        if let Some(own) = pipeline.verify_own(bearer, self.clock.now_unix()) {
            return own
                .map(|claims| Authorized::Own(Arc::new(Payload::new(Value::Object(claims)))))
                .map_err(ExchangeError::Token);
        }
        // Boxed, as in `exchange`: keeps the cache-hit future small.
        let request = Request {
            subject_token: bearer,
            actor_token: None,
            service,
            client: None,
        };
        Box::pin(self.run_and_cache(pipeline, key, request))
            .await
            .map(|minted| served(minted, false))
    }

    /// The token a proxied request's connection was served last time for the same
    /// `credentials` and `service` under the configuration in force, while it may still be
    /// served: a cache hit that needs neither the credentials parsed nor the cache.
    pub fn serve_again(
        &self,
        last: &LastExchange,
        credentials: &[u8],
        service: &str,
    ) -> Option<Exchanged> {
        let generation = self.pipeline.load().generation;
        let minted = last.serve_again(generation, service, credentials, self.clock.now_unix())?;
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        Some(Exchanged {
            minted,
            cached: true,
        })
    }

    /// The current Unix time of the exchanger's clock.
    pub fn now_unix(&self) -> u64 {
        self.clock.now_unix()
    }

    async fn cached(&self, key: &[u8; 32]) -> Option<CachedToken> {
        let hit = self.minted.get(key).await?;
        if self.clock.now_unix() >= hit.serve_until {
            // Stale: drop it, so that the miss that follows mints anew instead of finding it.
            self.minted.invalidate(key).await;
            return None;
        }
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        Some(hit)
    }

    async fn run_and_cache(
        &self,
        pipeline: Arc<Pipeline>,
        key: [u8; 32],
        request: Request<'_>,
    ) -> Result<CachedToken, ExchangeError> {
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        // Concurrent misses for one key run the pipeline once.
        self.minted
            .try_get_with(key, async {
                let mut trace = Trace::off();
                pipeline
                    .run(&self.verifier, request, self.clock.now_unix(), &mut trace)
                    .await
                    .map(|(minted, cache_until)| CachedToken {
                        // A token minted on an introspection answer is served no longer than
                        // that answer is reused: a revocation takes effect within the bound.
                        serve_until: serve_until(&minted).min(cache_until.unwrap_or(u64::MAX)),
                        minted: Arc::new(minted),
                    })
            })
            .await
            .map_err(|e| (*e).clone())
    }

    /// Runs the pipeline without the cache, recording every step (`baton explain`), for
    /// `client` as [`Exchanger::exchange_for_client`] would.
    pub async fn explain(
        &self,
        subject_token: &str,
        service: &str,
        client: Option<&str>,
    ) -> (Result<Minted, ExchangeError>, Trace) {
        self.explain_delegated(subject_token, None, service, client)
            .await
    }

    /// [`Exchanger::explain`] with an actor token, as [`Exchanger::exchange_delegated`].
    pub async fn explain_delegated(
        &self,
        subject_token: &str,
        actor_token: Option<&str>,
        service: &str,
        client: Option<&str>,
    ) -> (Result<Minted, ExchangeError>, Trace) {
        let pipeline = self.pipeline.load_full();
        let mut trace = Trace::recording();
        let result = pipeline
            .run(
                &self.verifier,
                Request {
                    subject_token,
                    actor_token,
                    service,
                    client,
                },
                self.clock.now_unix(),
                &mut trace,
            )
            .await
            .map(|(minted, _)| minted);
        (result, trace)
    }
}

// === impl Pipeline ===

impl Pipeline {
    fn new(config: Config, generation: u64) -> Self {
        let idps = IdpSet::new(config.idps.clone());
        let providers = config
            .token_providers
            .iter()
            .map(|p| (p.service.clone(), Arc::clone(p)))
            .collect();
        Self {
            generation,
            config: Arc::new(config),
            idps,
            providers,
        }
    }

    /// `Some` when `token` claims to be baton's own (its `kid` is one of baton's keys and its
    /// `iss` is baton's issuer): then whether its signature and `exp` hold, and its claims
    /// when they do.
    fn verify_own(&self, token: &str, now: u64) -> Option<Result<Map<String, Value>, VerifyError>> {
        // Cheap test first: only the small header is decoded for IdP tokens.
        let (header_b64, _) = token.split_once('.')?;
        let header = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            header_b64,
        )
        .ok()?;
        let header: crate::token::Header = serde_json::from_slice(&header).ok()?;
        let key = self
            .config
            .keys
            .iter()
            .find(|k| header.kid.as_deref() == Some(k.id()))?;
        let parsed = UnverifiedToken::parse(token).ok()?;
        if parsed.issuer() != Some(self.config.server.issuer.as_str()) {
            return None;
        }
        Some(verify_own_token(key, &parsed, now).map(|()| parsed.claims))
    }

    async fn run(
        &self,
        verifier: &Verifier,
        request: Request<'_>,
        now: u64,
        trace: &mut Trace,
    ) -> Result<(Minted, Option<u64>), ExchangeError> {
        let Request {
            subject_token,
            actor_token,
            service,
            client,
        } = request;
        let provider = self
            .providers
            .get(service)
            .ok_or_else(|| ExchangeError::UnknownService(service.to_owned()));
        trace.step("service", &provider, |p| {
            format!("provider {} (key {})", p.service, p.key.id())
        });
        let provider = provider?;
        if actor_token.is_some() {
            let enabled = if provider.delegation {
                Ok(())
            } else {
                Err(DelegationRefused::NotEnabled)
            };
            trace.step("delegation", &enabled, |()| {
                format!("provider {} accepts actor tokens", provider.service)
            });
            enabled?;
        }
        // With an actor, the subject may be a token baton minted: the previous link of a
        // delegation chain. Without one, only IdP tokens are exchanged, as before.
        let own_subject = actor_token.and_then(|_| self.verify_own(subject_token, now));
        let subject = match own_subject {
            Some(own) => {
                let claims = own.map_err(ExchangeError::Token);
                trace.step("subject", &claims, |_| {
                    "a token baton minted (a delegation chain)".to_owned()
                });
                let claims = claims?;
                check_client(provider, client, OWN_IDP, trace)?;
                Vouched::own(subject_token, claims)
            }
            None => {
                let verified = verifier.verify(&self.idps, subject_token, trace).await?;
                // The client's limit before the IdP's condition: a client that may not use
                // this IdP learns nothing about how the IdP's policy judges the token.
                check_client(provider, client, &verified.idp.name, trace)?;
                Vouched::from_idp(verified, Denial::IdpCondition, "idp condition", trace)?
            }
        };
        let intermediate = &subject.intermediate;
        if let Value::Object(claims) = intermediate {
            trace.record_claims("intermediate claims (IdP mapping)", claims);
        }
        let actor = match actor_token {
            Some(token) => Some(self.vouch_actor(verifier, token, now, trace).await?),
            None => None,
        };
        if let Some(actor) = &actor {
            let allowed = may_act(&subject.claims, actor);
            trace.step("may_act", &allowed, |()| {
                match subject.claims.get("may_act") {
                    Some(_) => "the subject token's may_act allows the actor".to_owned(),
                    None => "the subject token has no may_act".to_owned(),
                }
            });
            allowed?;
        }
        if let Some(condition) = &provider.condition {
            let outcome = evaluate(
                condition,
                intermediate,
                Some(&subject.idp),
                client,
                actor.as_ref().map(|a| &a.intermediate),
            );
            let actor_shown = match &actor {
                Some(actor) => actor.intermediate.to_string(),
                None => "null".to_owned(),
            };
            trace.condition(
                "provider condition",
                condition,
                &outcome,
                intermediate,
                &format!(
                    "idp = {:?}, client = {}, actor = {actor_shown}",
                    &*subject.idp,
                    client.map_or_else(|| "null".to_owned(), |c| format!("{c:?}"))
                ),
            );
            Denied::check(Denial::ProviderCondition, outcome)?;
        }
        let claims = match &actor {
            None => provider.map(intermediate)?,
            Some(actor) => provider.map(&mapping_input(intermediate, &actor.intermediate))?,
        };
        trace.record_claims("final claims (provider mapping)", &claims);
        let act = match (&actor, provider.profile) {
            (Some(actor), Profile::AccessToken) => Some(act_claim(&subject, actor)?),
            _ => None,
        };
        // A delegated token lives no longer than either token it was made from.
        let expires_at = actor
            .as_ref()
            .map_or(subject.expires_at, |a| a.expires_at.min(subject.expires_at));
        // Served from the minted-token cache no longer than an introspection answer it rests on.
        let cache_until = match (
            subject.cache_until,
            actor.as_ref().and_then(|a| a.cache_until),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let minted = provider.mint_delegated(claims, act, expires_at, now, subject.idp);
        trace.step("mint", &minted, |m| {
            format!("exp {} ({} s from now)", m.expires_at, m.expires_in(now))
        });
        Ok((minted?, cache_until))
    }

    /// Verifies an actor token as a subject token is verified: a token baton minted (its
    /// payload is the actor's claims), else by a configured IdP (its condition and mapping
    /// apply).
    async fn vouch_actor(
        &self,
        verifier: &Verifier,
        token: &str,
        now: u64,
        trace: &mut Trace,
    ) -> Result<Vouched, ExchangeError> {
        let actor = match self.verify_own(token, now) {
            Some(own) => {
                let claims = own.map_err(ExchangeError::Actor);
                trace.step("actor", &claims, |_| "a token baton minted".to_owned());
                Vouched::own(token, claims?)
            }
            None => {
                let mut quiet = Trace::off();
                let verified = verifier
                    .verify(&self.idps, token, &mut quiet)
                    .await
                    .map_err(ExchangeError::Actor);
                trace.step("actor", &verified, |v| {
                    format!("verified by IdP {}", v.idp.name)
                });
                Vouched::from_idp(
                    verified?,
                    Denial::ActorIdpCondition,
                    "actor idp condition",
                    trace,
                )?
            }
        };
        if let Value::Object(claims) = &actor.intermediate {
            trace.record_claims("actor's intermediate claims", claims);
        }
        Ok(actor)
    }
}

/// The IdP name a token baton minted goes by (in `idp`, logs, and `clients[].idps`).
const OWN_IDP: &str = "baton";

/// A verified token (subject or actor) and what the pipeline derives from it.
struct Vouched {
    /// The IdP that vouched for it ([`OWN_IDP`] for baton's own).
    idp: Arc<str>,
    /// Its verified claims.
    claims: Map<String, Value>,
    /// Its intermediate claims: its IdP's mapping, or a baton token's payload.
    intermediate: Value,
    expires_at: u64,
    /// Until when an introspection answer it rests on is reused (none for a JWT).
    cache_until: Option<u64>,
    /// Whether its `act` claim is RFC 8693's (an IdP's token, or an `access_token`-profile
    /// baton token) rather than a `statebacked` token's auth context.
    rfc_act: bool,
}

// === impl Vouched ===

impl Vouched {
    fn own(token: &str, claims: Map<String, Value>) -> Self {
        let rfc_act =
            UnverifiedToken::parse(token).is_ok_and(|t| t.header.typ.as_deref() == Some("at+jwt"));
        Self {
            idp: Arc::from(OWN_IDP),
            expires_at: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
            cache_until: None,
            intermediate: Value::Object(claims.clone()),
            claims,
            rfc_act,
        }
    }

    fn from_idp(
        verified: crate::idp::verify::Verified,
        denial: Denial,
        step: &'static str,
        trace: &mut Trace,
    ) -> Result<Self, ExchangeError> {
        let idp = verified.idp;
        let verified_claims = Value::Object(verified.claims);
        if let Some(condition) = &idp.condition {
            let outcome = evaluate(condition, &verified_claims, None, None, None);
            trace.condition(step, condition, &outcome, &verified_claims, "");
            Denied::check(denial, outcome)?;
        }
        let intermediate = Value::Object(idp.mapping.apply(&verified_claims)?);
        let claims = match verified_claims {
            Value::Object(claims) => claims,
            _ => Map::new(),
        };
        Ok(Self {
            idp: Arc::clone(&idp.name),
            claims,
            intermediate,
            expires_at: verified.expires_at,
            cache_until: verified.cache_until,
            rfc_act: true,
        })
    }

    fn text(&self, claim: &str) -> Option<&str> {
        self.claims.get(claim).and_then(Value::as_str)
    }
}

/// The client's `idps` limit, for a client `/tokens` authenticated.
fn check_client(
    provider: &TokenProvider,
    client: Option<&str>,
    idp: &str,
    trace: &mut Trace,
) -> Result<(), Denied> {
    let Some(client) = client else {
        return Ok(());
    };
    let allowed = provider
        .clients
        .iter()
        .find(|known| known.id == client)
        .is_some_and(|known| known.may_use_idp(idp));
    let outcome = if allowed {
        Ok(())
    } else {
        Err(Denied {
            denial: Denial::ClientNotAllowed,
            undecided: None,
        })
    };
    trace.step("client", &outcome, |()| {
        format!("client {client} may exchange tokens of IdP {idp}")
    });
    outcome
}

/// RFC 8693 §4.4: when the subject token has `may_act`, the actor must be the one it names
/// (its `sub`, and its `iss` when `may_act` gives one).
fn may_act(subject: &Map<String, Value>, actor: &Vouched) -> Result<(), DelegationRefused> {
    let Some(may_act) = subject.get("may_act") else {
        return Ok(());
    };
    let Value::Object(may_act) = may_act else {
        return Err(DelegationRefused::MayActMismatch);
    };
    let Some(actor_sub) = actor.text("sub") else {
        return Err(DelegationRefused::ActorWithoutSubject);
    };
    let sub_ok = may_act.get("sub").and_then(Value::as_str) == Some(actor_sub);
    let iss_ok = match may_act.get("iss") {
        None => true,
        Some(iss) => iss
            .as_str()
            .is_some_and(|iss| actor.text("iss") == Some(iss)),
    };
    if sub_ok && iss_ok {
        Ok(())
    } else {
        Err(DelegationRefused::MayActMismatch)
    }
}

/// The `act` claim of a delegated `access_token`: the actor's `sub` and `iss`, with the
/// subject token's own `act` (the chain so far) nested inside (RFC 8693 §4.1).
fn act_claim(subject: &Vouched, actor: &Vouched) -> Result<Value, DelegationRefused> {
    let sub = actor
        .text("sub")
        .ok_or(DelegationRefused::ActorWithoutSubject)?;
    let mut act = Map::new();
    act.insert("sub".to_owned(), Value::from(sub));
    if let Some(iss) = actor.text("iss") {
        act.insert("iss".to_owned(), Value::from(iss));
    }
    if subject.rfc_act
        && let Some(prior @ Value::Object(_)) = subject.claims.get("act")
    {
        act.insert("act".to_owned(), prior.clone());
    }
    Ok(Value::Object(act))
}

/// The provider mapping's input with an actor: the subject's intermediate claims with the
/// actor's under `actor` (so `$.actor.sub`); an `actor` claim of the subject's is shadowed.
/// Without an actor the input is the intermediate claims alone, as it always was.
fn mapping_input(intermediate: &Value, actor: &Value) -> Value {
    let mut input = match intermediate {
        Value::Object(claims) => claims.clone(),
        _ => Map::new(),
    };
    input.insert("actor".to_owned(), actor.clone());
    Value::Object(input)
}

// === impl ExchangeError ===

impl ExchangeError {
    /// The pipeline stage that failed.
    pub fn stage(&self) -> &'static str {
        match self {
            Self::Actor(_) => "actor",
            Self::Delegation(DelegationRefused::NotEnabled) => "delegation",
            Self::Delegation(_) => "may_act",
            Self::Mapping(_) => "map",
            Self::Mint(_) => "mint",
            Self::UnknownService(_) => "service",
            Self::Denied(denied) => match denied.denial {
                Denial::IdpCondition => "idp condition",
                Denial::ActorIdpCondition => "actor idp condition",
                Denial::ProviderCondition => "provider condition",
                Denial::ClientNotAllowed => "client",
                Denial::RouteCondition => "route condition",
            },
            Self::Token(e) => match e {
                VerifyError::Malformed(_) => "parse",
                VerifyError::NoMatchingIdp
                | VerifyError::WrongAudience
                | VerifyError::WrongIssuer => "select IdP",
                VerifyError::AlgorithmNotAllowed { .. } | VerifyError::UnsupportedAlgorithm(_) => {
                    "algorithm"
                }
                VerifyError::KeysUnavailable(_) | VerifyError::UnknownKey { .. } => "keys",
                VerifyError::BadSignature => "signature",
                VerifyError::Inactive | VerifyError::IntrospectionUnavailable(_) => "introspection",
                _ => "time claims",
            },
        }
    }

    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Mint(_) => Fault::Internal,
            Self::Token(
                VerifyError::KeysUnavailable(_) | VerifyError::IntrospectionUnavailable(_),
            )
            | Self::Actor(
                VerifyError::KeysUnavailable(_) | VerifyError::IntrospectionUnavailable(_),
            ) => Fault::Upstream,
            Self::Actor(_)
            | Self::Delegation(_)
            | Self::Mapping(_)
            | Self::Token(_)
            | Self::UnknownService(_)
            | Self::Denied(_) => Fault::Client,
        }
    }
}

fn verify_own_token(
    key: &SigningKey,
    token: &UnverifiedToken<'_>,
    now: u64,
) -> Result<(), VerifyError> {
    if crate::algorithm::parse(&token.header.alg) != Ok(key.algorithm()) {
        return Err(VerifyError::AlgorithmNotAllowed {
            alg: token.header.alg.clone(),
            idp: "baton".to_owned(),
        });
    }
    let signature_ok = key.verifier().verify(
        key.algorithm(),
        token.signing_input.as_bytes(),
        token.signature,
    );
    if !signature_ok {
        return Err(VerifyError::BadSignature);
    }
    match token.claims.get("exp").and_then(Value::as_u64) {
        None => Err(VerifyError::MissingExpiry),
        Some(exp) if exp <= now => Err(VerifyError::Expired { exp, now }),
        Some(_) => Ok(()),
    }
}

/// Evaluates `condition` over `claims` (converted only here, when a condition exists: the
/// conversion costs microseconds that an exchange without conditions should not pay).
fn evaluate(
    condition: &Condition,
    claims: &Value,
    idp: Option<&str>,
    client: Option<&str>,
    actor: Option<&Value>,
) -> Result<bool, Undecided> {
    let claims = Claims::from_json(claims)?;
    let actor = actor.map(Claims::from_json).transpose()?;
    condition.evaluate(&Inputs {
        claims: Some(&claims),
        idp,
        client,
        actor: actor.as_ref(),
        request: None,
    })
}

/// A cached token is handed out for the first 80% of its life only, so a caller never
/// gets one about to expire (the rest of its life, at least a fifth, is left to the caller).
fn serve_until(minted: &Minted) -> u64 {
    let lifetime = minted.expires_at.saturating_sub(minted.issued_at);
    minted.issued_at + lifetime * 4 / 5
}

impl Default for ExchangerOptions {
    fn default() -> Self {
        Self {
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            jwks: JwksPolicy::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

#[cfg(test)]
mod tests;
