//! Minting baton's own tokens.

pub mod keys;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::algorithm;
use crate::claim_headers::{HeaderTable, RenderCache, Rendered};
use crate::mapping::ClaimMapper;
use crate::policy::{Claims, Condition, Undecided};
use crate::token::b64url;
use keys::{KeyError, SigningKey};

/// A minted token lives this long unless its provider sets `ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The `aud` of `statebacked` tokens unless the provider sets `audience`.
pub const STATEBACKED_AUDIENCE: &str = "https://api.statebacked.dev/";

/// Claims baton sets itself, which an `access_token` mapping may not produce.
pub const REGISTERED_CLAIMS: [&str; 6] = ["iss", "aud", "exp", "iat", "nbf", "jti"];

/// The shape of a minted token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// State Backed's format: header `{alg, kid}`, payload `{act, aud, iss, iat, exp}` where
    /// `act` holds the mapped claims.
    StateBacked,
    /// RFC 9068 access token: `typ: at+jwt`, mapped claims at the top level with `iss`,
    /// `aud`, `iat`, `exp`, `jti`.
    AccessToken,
}

/// A token provider: a service name, a key, a mapping, a lifetime and a profile.
pub struct TokenProvider {
    /// The service name (`^[a-zA-Z0-9_-]{1,128}$`).
    pub service: String,
    /// The key it signs with.
    pub key: Arc<SigningKey>,
    /// Intermediate claims → the new token's claims.
    pub mapping: ClaimMapper,
    /// Lifetime of minted tokens (capped by the subject token's `exp`).
    pub ttl: Duration,
    /// Token format.
    pub profile: Profile,
    /// `aud` of minted tokens.
    pub audience: String,
    /// `iss` of minted tokens (`[server] issuer`).
    pub issuer: String,
    /// Clients that must authenticate to `/tokens` for this provider; empty = public.
    pub clients: Vec<ClientCredential>,
    /// `condition`: over the intermediate claims, the IdP's name and the client; no token
    /// for this service unless it holds.
    pub condition: Option<Condition>,
    /// `delegation`: whether an actor token (RFC 8693 §2.1 `actor_token`) is accepted.
    /// Defaults to `false`.
    pub delegation: bool,
    encoded_header: String,
}

/// A client id and secret for `/tokens` client authentication.
#[derive(Debug, Clone)]
pub struct ClientCredential {
    /// `client_id`.
    pub id: String,
    /// `client_secret`, compared in constant time.
    pub secret: crate::secret::Secret,
    /// `idps`: the names of the IdPs ([`crate::idp::IdentityProvider::name`]) whose tokens
    /// this client may exchange; `None` = any.
    pub idps: Option<Vec<Arc<str>>>,
}

/// A token baton minted.
#[derive(Clone)]
pub struct Minted {
    /// `Bearer <compact JWS>`: the proxy's `Authorization` value, built once at mint time
    /// and shared (not copied) by every request the cache answers.
    bearer: bytes::Bytes,
    /// `iat`.
    pub issued_at: u64,
    /// `exp`.
    pub expires_at: u64,
    /// The IdP that vouched for the subject token (for logs).
    pub idp: Arc<str>,
    /// The payload, decoded from the token the first time the proxy needs it (a route
    /// condition, claim headers) and then kept with the cached token: tokens only ever
    /// handed out by `/tokens` never pay for it.
    payload: OnceLock<Option<Arc<Payload>>>,
}

/// A baton token's payload as the app decodes it (`act` holds the mapped claims in the
/// `statebacked` profile, the top level in `access_token`), with what the proxy derives from
/// it — its claims converted for conditions, its claim headers — each made on first need.
pub struct Payload {
    json: Value,
    claims: OnceLock<Result<Claims, Undecided>>,
    headers: RenderCache,
}

/// The payload of a `statebacked` token, serialized without building a JSON map first.
#[derive(serde::Serialize)]
struct StateBackedPayload<'a> {
    act: &'a Map<String, Value>,
    aud: &'a str,
    iss: &'a str,
    iat: u64,
    exp: u64,
}

/// Minting failed: baton's own fault (a key that cannot sign), never the caller's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("minting failed: {0}")]
pub struct MintError(String);

// === impl TokenProvider ===

impl TokenProvider {
    /// Builds a provider, pre-encoding its JOSE header.
    pub fn new(
        service: String,
        key: Arc<SigningKey>,
        mapping: ClaimMapper,
        ttl: Duration,
        profile: Profile,
        audience: String,
        issuer: String,
    ) -> Self {
        let alg = algorithm::name(key.algorithm());
        let header = match profile {
            Profile::StateBacked => json!({ "alg": alg, "kid": key.id() }),
            Profile::AccessToken => json!({ "alg": alg, "kid": key.id(), "typ": "at+jwt" }),
        };
        let encoded_header = b64url(header.to_string().as_bytes());
        Self {
            service,
            key,
            mapping,
            ttl,
            profile,
            audience,
            issuer,
            clients: Vec::new(),
            condition: None,
            delegation: false,
            encoded_header,
        }
    }

    /// The claims of the token to mint from the intermediate claims.
    pub fn map(
        &self,
        intermediate: &Value,
    ) -> Result<Map<String, Value>, crate::mapping::MappedClaimsTooLarge> {
        self.mapping.apply(intermediate)
    }

    /// Signs `claims` into a token issued at `now`, expiring at `now + ttl` or at
    /// `subject_expires_at`, whichever is earlier.
    pub fn mint(
        &self,
        claims: Map<String, Value>,
        subject_expires_at: u64,
        now: u64,
        idp: Arc<str>,
    ) -> Result<Minted, MintError> {
        self.mint_delegated(claims, None, subject_expires_at, now, idp)
    }

    /// [`TokenProvider::mint`] for a delegated exchange: an `access_token`-profile token
    /// carries `act` (RFC 8693 §4.1) at its top level, replacing any `act` the mapping gave.
    /// A `statebacked` token's `act` is its auth context, so `act` is not added there (its
    /// mapping may copy `$.actor` claims into it instead).
    pub fn mint_delegated(
        &self,
        claims: Map<String, Value>,
        act: Option<Value>,
        subject_expires_at: u64,
        now: u64,
        idp: Arc<str>,
    ) -> Result<Minted, MintError> {
        let expires_at = now
            .saturating_add(self.ttl.as_secs())
            .min(subject_expires_at);
        let payload = match self.profile {
            Profile::StateBacked => serde_json::to_vec(&StateBackedPayload {
                act: &claims,
                aud: &self.audience,
                iss: &self.issuer,
                iat: now,
                exp: expires_at,
            }),
            Profile::AccessToken => {
                let mut payload = claims;
                if let Some(act) = act {
                    payload.insert("act".to_owned(), act);
                }
                payload.insert("iss".to_owned(), Value::from(self.issuer.as_str()));
                payload.insert("aud".to_owned(), Value::from(self.audience.as_str()));
                payload.insert("iat".to_owned(), Value::from(now));
                payload.insert("exp".to_owned(), Value::from(expires_at));
                payload.insert("jti".to_owned(), Value::from(new_jti()?));
                serde_json::to_vec(&payload)
            }
        }
        .map_err(|e| MintError(e.to_string()))?;
        let mut token = String::with_capacity(
            BEARER.len() + self.encoded_header.len() + payload.len() * 4 / 3 + 400,
        );
        token.push_str(BEARER);
        token.push_str(&self.encoded_header);
        token.push('.');
        token.push_str(&b64url(&payload));
        let signature = self
            .key
            .sign(&token.as_bytes()[BEARER.len()..])
            .map_err(|KeyError(e)| MintError(e))?;
        token.push('.');
        token.push_str(&signature);
        // The capacity above guesses the signature's length high; cached tokens are many
        // (up to 100 000), so give the slack back.
        token.shrink_to_fit();
        Ok(Minted {
            bearer: bytes::Bytes::from(token),
            issued_at: now,
            expires_at,
            idp,
            payload: OnceLock::new(),
        })
    }
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("service", &self.service)
            .field("key", &self.key.id())
            .field("ttl", &self.ttl)
            .field("profile", &self.profile)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

// === impl ClientCredential ===

impl ClientCredential {
    /// Whether this client may exchange tokens the IdP named `idp` vouched for.
    pub fn may_use_idp(&self, idp: &str) -> bool {
        self.idps
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|name| &**name == idp))
    }
}

// === impl Minted ===

/// The scheme prefix of [`Minted::bearer`].
const BEARER: &str = "Bearer ";

impl Minted {
    /// The compact JWS.
    pub fn token(&self) -> &str {
        // Built from a `String` in `mint`: always UTF-8.
        std::str::from_utf8(&self.bearer[BEARER.len()..]).unwrap_or_default()
    }

    /// `Bearer <token>`, shared: cloning it copies no bytes.
    pub fn bearer(&self) -> &bytes::Bytes {
        &self.bearer
    }

    /// Seconds left at `now`.
    pub fn expires_in(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now)
    }

    /// The payload as the app decodes it, decoded once (`None` only if baton's own token
    /// did not decode, which minting rules out).
    pub fn payload(&self) -> Option<&Arc<Payload>> {
        self.payload
            .get_or_init(|| {
                let encoded = self.token().split('.').nth(1)?;
                let bytes = base64::Engine::decode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    encoded,
                )
                .ok()?;
                let json = serde_json::from_slice(&bytes).ok()?;
                Some(Arc::new(Payload::new(json)))
            })
            .as_ref()
    }
}

impl PartialEq for Minted {
    fn eq(&self, other: &Self) -> bool {
        // The payload is derived from the token: equal tokens have equal payloads.
        self.bearer == other.bearer
            && self.issued_at == other.issued_at
            && self.expires_at == other.expires_at
            && self.idp == other.idp
    }
}

impl Eq for Minted {}

// === impl Payload ===

impl Payload {
    /// A payload (a JSON object) as a token carries it.
    pub fn new(json: Value) -> Self {
        Self {
            json,
            claims: OnceLock::new(),
            headers: RenderCache::default(),
        }
    }

    /// The payload as JSON.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The payload converted for conditions, once (a few µs: never per request for a
    /// cached token).
    pub fn claims(&self) -> Result<&Claims, Undecided> {
        match self.claims.get_or_init(|| Claims::from_json(&self.json)) {
            Ok(claims) => Ok(claims),
            Err(undecided) => Err(undecided.clone()),
        }
    }

    /// `table`'s headers for this payload, rendered once per table; `too_long` hears the
    /// name of each header left out for its length.
    pub fn headers(&self, table: &HeaderTable, too_long: impl Fn(&str)) -> Rendered {
        self.headers.rendered(table, &self.json, too_long)
    }
}

impl fmt::Debug for Payload {
    // Claim values are personal data: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Payload(..)")
    }
}

impl fmt::Debug for Minted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minted")
            .field("token", &"[redacted]")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("idp", &self.idp)
            .finish()
    }
}

fn new_jti() -> Result<String, MintError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    crate::keygen::random_token(&rng, 16).map_err(|e| MintError(e.to_string()))
}
