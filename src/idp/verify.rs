//! Verifying a subject token: select the IdP, check the header, the key, the signature and
//! the time claims.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::{Map, Value};

use super::introspection::{Introspected, Introspector, looks_like_jwt};
use super::jwks::{JwksCache, JwksError};
use super::{IdentityProvider, IdpSet, KeySource, NoMatch};
use crate::algorithm;
use crate::clock::SharedClock;
use crate::explain::Trace;
use crate::token::{MalformedToken, UnverifiedToken};

/// Verifies subject tokens against a set of IdPs.
#[derive(Clone, Debug)]
pub struct Verifier {
    jwks: JwksCache,
    introspector: Introspector,
    clock: SharedClock,
}

/// A token that passed every check.
#[derive(Debug)]
pub struct Verified {
    /// The IdP that vouched for it.
    pub idp: Arc<IdentityProvider>,
    /// Its claims.
    pub claims: Map<String, Value>,
    /// Its `exp`, in Unix seconds (`u64::MAX` for an introspected token without `exp`).
    pub expires_at: u64,
    /// For an introspected token: until when (Unix seconds) the introspection answer is
    /// reused, and so how long a token minted on it may be served from a cache.
    pub cache_until: Option<u64>,
}

/// Why a subject token was refused. Each variant names the stage that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// `alg` is not in the IdP's allow-list (or is HMAC against a non-secret key).
    #[error("algorithm {alg} is not allowed for IdP {idp}")]
    AlgorithmNotAllowed {
        /// The header's `alg`.
        alg: String,
        /// The IdP.
        idp: String,
    },
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("the token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The time of the check.
        now: u64,
    },
    /// `iat` is in the future (beyond the leeway).
    #[error("the token is issued in the future ({iat}, now {now})")]
    IssuedInFuture {
        /// The token's `iat`.
        iat: u64,
        /// The time of the check.
        now: u64,
    },
    /// A time claim is present but not a number.
    #[error("the `{0}` claim is not a number")]
    InvalidTimeClaim(&'static str),
    /// The IdP's keys could not be fetched.
    #[error("the IdP's keys are unavailable: {0}")]
    KeysUnavailable(JwksError),
    /// The introspection endpoint says the token is not active (`active: false`).
    #[error("the introspection endpoint says the token is not active")]
    Inactive,
    /// The introspection endpoint could not be reached, failed, or gave an unusable answer.
    #[error("introspection is unavailable: {0}")]
    IntrospectionUnavailable(JwksError),
    /// The token could not be parsed.
    #[error("malformed token: {0}")]
    Malformed(#[from] MalformedToken),
    /// The token has no `exp`; baton refuses tokens that never expire.
    #[error("the token has no `exp` claim")]
    MissingExpiry,
    /// No IdP has this token's issuer and audience.
    #[error("no IdP matches the token's issuer and audience")]
    NoMatchingIdp,
    /// `alg` is `none` (or another non-signature).
    #[error("algorithm {0:?} is not a signature algorithm baton accepts")]
    UnsupportedAlgorithm(String),
    /// `nbf` is in the future (beyond the leeway).
    #[error("the token is not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
        /// The time of the check.
        now: u64,
    },
    /// The IdP has no key with the token's `kid` that fits its `alg`.
    #[error("the IdP has no key {kid:?} for {alg}")]
    UnknownKey {
        /// The header's `kid`.
        kid: Option<String>,
        /// The header's `alg`.
        alg: String,
    },
    /// An IdP has the token's audience but another issuer.
    #[error("the token's issuer is not the one its audience's IdP has")]
    WrongIssuer,
    /// An IdP has the token's issuer but an audience the token lacks.
    #[error("the token's audience is not the one its issuer's IdP requires")]
    WrongAudience,
}

// === impl Verifier ===

impl Verifier {
    /// A verifier fetching keys through `jwks` (and introspecting with its timeouts and
    /// caps), reading time from `clock`.
    pub fn new(jwks: JwksCache, clock: SharedClock) -> Result<Self, JwksError> {
        let introspector = Introspector::new(jwks.clone())?;
        Ok(Self {
            jwks,
            introspector,
            clock,
        })
    }

    /// The introspection client and cache.
    pub fn introspector(&self) -> &Introspector {
        &self.introspector
    }

    /// The JWKS cache.
    pub fn jwks(&self) -> &JwksCache {
        &self.jwks
    }

    /// Verifies `token` against `idps`, recording each step in `trace`.
    pub async fn verify(
        &self,
        idps: &IdpSet,
        token: &str,
        trace: &mut Trace,
    ) -> Result<Verified, VerifyError> {
        // Without any introspection IdP a token that is not a JWT is refused as malformed,
        // as it always was.
        if !token.is_empty() && !looks_like_jwt(token) && idps.has_introspection() {
            return self.verify_opaque(idps, token, trace).await;
        }
        let parsed = UnverifiedToken::parse(token);
        trace.step("parse", &parsed, |t| {
            format!("alg {}, kid {:?}", t.header.alg, t.header.kid)
        });
        let parsed = parsed?;
        trace.record_claims("token claims", &parsed.claims);

        let selected = idps
            .select(parsed.issuer(), &parsed.audiences())
            .map_err(|no_match| match no_match {
                NoMatch::WrongAudience => VerifyError::WrongAudience,
                NoMatch::WrongIssuer => VerifyError::WrongIssuer,
                NoMatch::Unknown => VerifyError::NoMatchingIdp,
            });
        trace.step("select IdP", &selected, |idp| format!("IdP {}", idp.name));
        let idp = selected?;
        if matches!(idp.keys, KeySource::Introspected) {
            // No keys to check a signature with: the IdP's endpoint vouches for it.
            return self.introspect(idp, token, trace).await;
        }

        let alg = check_algorithm(idp, &parsed.header.alg);
        trace.step("algorithm", &alg, |alg| {
            format!("{} is allowed", algorithm::name(*alg))
        });
        let alg = alg?;

        let verified = self.check_signature(idp, &parsed, alg).await;
        trace.step("signature", &verified, |()| "valid".to_owned());
        verified?;

        let times = check_times(idp, &parsed.claims, self.clock.now_unix());
        trace.step("time claims", &times, |exp| format!("exp {exp} ok"));
        let expires_at = times?;

        Ok(Verified {
            idp: Arc::clone(idp),
            claims: parsed.claims,
            expires_at,
            cache_until: None,
        })
    }

    /// A token that is not a JWT: to the one introspection IdP [`IdpSet::select_opaque`]
    /// picks, or refused without any call.
    async fn verify_opaque(
        &self,
        idps: &IdpSet,
        token: &str,
        trace: &mut Trace,
    ) -> Result<Verified, VerifyError> {
        let selected = if token.len() > crate::token::MAX_TOKEN_BYTES {
            Err(VerifyError::Malformed(
                crate::token::MalformedToken::TooLarge,
            ))
        } else {
            idps.select_opaque(token).ok_or(VerifyError::NoMatchingIdp)
        };
        trace.step("select IdP", &selected, |idp| {
            format!("opaque token: introspection by IdP {}", idp.name)
        });
        self.introspect(selected?, token, trace).await
    }

    /// Asks `idp`'s introspection endpoint (or its cache) about `token`, then checks the
    /// answer's `iss`, `aud` and time claims as a JWT's would be.
    async fn introspect(
        &self,
        idp: &Arc<IdentityProvider>,
        token: &str,
        trace: &mut Trace,
    ) -> Result<Verified, VerifyError> {
        let now = self.clock.now_unix();
        let answer = match &idp.introspection {
            None => Err(VerifyError::NoMatchingIdp),
            Some(introspection) => self
                .introspector
                .introspect(
                    introspection,
                    idp.issuer.as_deref(),
                    idp.url_policy,
                    token,
                    now,
                )
                .await
                .map_err(VerifyError::IntrospectionUnavailable),
        };
        let answer = answer.and_then(|answer| match &*answer {
            Introspected::Inactive => Err(VerifyError::Inactive),
            Introspected::Active {
                claims,
                cache_until,
            } => Ok((claims.clone(), *cache_until)),
        });
        trace.step("introspection", &answer, |(_, until)| {
            format!("active (answer reused until {until})")
        });
        let (claims, cache_until) = answer?;
        trace.record_claims("introspected claims", &claims);
        let checked = check_introspected(idp, &claims, now);
        trace.step("introspected claims", &checked, |exp| {
            format!("iss, aud and times ok (exp {exp})")
        });
        let expires_at = checked?;
        Ok(Verified {
            idp: Arc::clone(idp),
            claims,
            expires_at,
            cache_until: Some(cache_until),
        })
    }

    async fn check_signature(
        &self,
        idp: &IdentityProvider,
        token: &UnverifiedToken<'_>,
        alg: Algorithm,
    ) -> Result<(), VerifyError> {
        let kid = token.header.kid.as_deref();
        let jwks_url: Arc<str> = match &idp.keys {
            KeySource::Static(key) => {
                return verify_with(key, token, alg);
            }
            // `verify` introspects these instead.
            KeySource::Introspected => return Err(VerifyError::BadSignature),
            KeySource::JwksUrl(url) => Arc::from(url.as_str()),
            KeySource::Discovery => {
                // Validation guarantees a discovery IdP has an issuer.
                let issuer = idp.issuer.as_deref().unwrap_or_default();
                self.jwks
                    .discover(issuer, idp.url_policy)
                    .await
                    .map_err(VerifyError::KeysUnavailable)?
            }
        };
        let set = self
            .jwks
            .key_set(&jwks_url, idp.url_policy, kid, alg)
            .await
            .map_err(VerifyError::KeysUnavailable)?;
        let mut candidates = set.find(kid, alg).peekable();
        if candidates.peek().is_none() {
            return Err(VerifyError::UnknownKey {
                kid: kid.map(str::to_owned),
                alg: algorithm::name(alg).to_owned(),
            });
        }
        // Without a `kid` several keys may fit; any one verifying is enough.
        if candidates.any(|key| verify_with(key.verifier(), token, alg).is_ok()) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

/// The header's `alg`, if the IdP allows it and it can be used with the IdP's keys.
fn check_algorithm(idp: &IdentityProvider, alg: &str) -> Result<Algorithm, VerifyError> {
    let parsed =
        algorithm::parse(alg).map_err(|_| VerifyError::UnsupportedAlgorithm(alg.to_owned()))?;
    let not_allowed = || VerifyError::AlgorithmNotAllowed {
        alg: alg.to_owned(),
        idp: idp.name.to_string(),
    };
    if !idp.algorithms.contains(&parsed) {
        return Err(not_allowed());
    }
    // Belt and braces: validation already refuses HMAC with a JWKS or a public key.
    let key_is_secret =
        matches!(&idp.keys, KeySource::Static(k) if k.family() == AlgorithmFamily::Hmac);
    if algorithm::is_hmac(parsed) != key_is_secret {
        return Err(not_allowed());
    }
    Ok(parsed)
}

fn verify_with(
    key: &crate::crypto::Verifier,
    token: &UnverifiedToken<'_>,
    alg: Algorithm,
) -> Result<(), VerifyError> {
    if key.verify(alg, token.signing_input.as_bytes(), token.signature) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// Checks `exp` (required), `nbf` and `iat` with the IdP's leeway; returns `exp`.
fn check_times(
    idp: &IdentityProvider,
    claims: &Map<String, Value>,
    now: u64,
) -> Result<u64, VerifyError> {
    let leeway = idp.leeway.as_secs();
    let exp = time_claim(claims, "exp")?.ok_or(VerifyError::MissingExpiry)?;
    if now >= exp.saturating_add(leeway) {
        return Err(VerifyError::Expired { exp, now });
    }
    if let Some(nbf) = time_claim(claims, "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(VerifyError::NotYetValid { nbf, now });
    }
    if let Some(iat) = time_claim(claims, "iat")?
        && iat > now.saturating_add(leeway)
    {
        return Err(VerifyError::IssuedInFuture { iat, now });
    }
    Ok(exp)
}

/// Checks an introspection answer against `idp`: `iss`, when the answer has one, must be
/// the IdP's issuer (when it has one); `aud`, when the answer has one, must contain the
/// IdP's audience (when it has one); `exp` (optional here: RFC 7662 makes it so), `nbf` and
/// `iat` as for a JWT. Returns the `exp` that caps a minted token (`u64::MAX` without one).
fn check_introspected(
    idp: &IdentityProvider,
    claims: &Map<String, Value>,
    now: u64,
) -> Result<u64, VerifyError> {
    if let (Some(want), Some(iss)) = (&idp.issuer, claims.get("iss"))
        && iss.as_str() != Some(want.as_str())
    {
        return Err(VerifyError::WrongIssuer);
    }
    if let (Some(want), Some(aud)) = (&idp.audience, claims.get("aud")) {
        let has = match aud {
            Value::String(one) => one == want,
            Value::Array(many) => many.iter().any(|a| a.as_str() == Some(want.as_str())),
            _ => false,
        };
        if !has {
            return Err(VerifyError::WrongAudience);
        }
    }
    if claims.contains_key("exp") {
        check_times(idp, claims, now)
    } else {
        let mut with_exp = claims.clone();
        with_exp.insert("exp".to_owned(), Value::from(u64::MAX));
        check_times(idp, &with_exp, now)
    }
}

/// A NumericDate claim (RFC 7519 §2: may be fractional), floored to whole seconds.
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => match value.as_u64() {
            Some(seconds) => Ok(Some(seconds)),
            None => match value.as_f64() {
                // Truncation is the intent: NumericDate seconds, fractions dropped.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Some(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(Some(seconds as u64)),
                _ => Err(VerifyError::InvalidTimeClaim(name)),
            },
        },
    }
}
