//! Identity providers: which tokens baton trusts, and how it picks the IdP for a token.

pub mod introspection;
pub mod jwks;
pub mod url_policy;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::crypto::Verifier;

use crate::mapping::ClaimMapper;
use crate::policy::Condition;
use introspection::Introspection;

pub use url_policy::UrlPolicy;

/// The clock skew allowed on `exp`, `nbf` and `iat` unless an IdP sets its own `leeway`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// A trusted identity provider, validated.
#[derive(Debug)]
pub struct IdentityProvider {
    /// A name for logs and metrics (`name`, else the issuer, else the audience).
    /// Shared by every token minted on its word (`Minted::idp`), not copied into each.
    pub name: Arc<str>,
    /// `iss` must equal this exactly, when set.
    pub issuer: Option<String>,
    /// `aud` (a string or an array) must contain this, when set.
    pub audience: Option<String>,
    /// The `alg` values accepted. Never `none`; HMAC only with a static secret.
    pub algorithms: Vec<Algorithm>,
    /// Where the verification keys come from.
    pub keys: KeySource,
    /// Which URLs its keys may be fetched from (`allow_http`).
    pub url_policy: UrlPolicy,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Verified claims → intermediate claims.
    pub mapping: ClaimMapper,
    /// `condition`: over the verified claims; a token it does not hold for is not acceptable.
    pub condition: Option<Condition>,
    /// `introspection`: opaque tokens (and JWTs, when it has no keys) are verified by its
    /// RFC 7662 endpoint.
    pub introspection: Option<Introspection>,
}

/// Where an IdP's verification keys come from: exactly one source.
#[derive(Debug)]
pub enum KeySource {
    /// OIDC discovery at `{issuer}/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery,
    /// A JWKS document at this URL.
    JwksUrl(String),
    /// A key given in the config: an HMAC secret or a public key.
    Static(Box<Verifier>),
    /// No local keys: every token of this IdP, JWT or not, is introspected.
    Introspected,
}

/// Why no IdP was selected for a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoMatch {
    /// An IdP has this token's issuer but wants an audience the token does not carry.
    WrongAudience,
    /// An IdP wants an audience the token carries, but a different issuer.
    WrongIssuer,
    /// Neither the issuer nor any audience is one baton knows.
    Unknown,
}

/// The configured IdPs, in selection order.
#[derive(Clone, Debug, Default)]
pub struct IdpSet {
    // Most specific first: issuer and audience, then issuer only, then audience only.
    ordered: Vec<Arc<IdentityProvider>>,
    /// Whether any of them has introspection (opaque tokens are then introspected).
    introspection: bool,
}

// === impl IdentityProvider ===

impl IdentityProvider {
    /// Whether a token with this `iss` and these audiences is this IdP's.
    pub fn matches(&self, issuer: Option<&str>, audiences: &[&str]) -> bool {
        let issuer_ok = self
            .issuer
            .as_deref()
            .is_none_or(|want| issuer == Some(want));
        let audience_ok = self
            .audience
            .as_deref()
            .is_none_or(|want| audiences.contains(&want));
        issuer_ok && audience_ok
    }

    fn specificity(&self) -> u8 {
        match (&self.issuer, &self.audience) {
            (Some(_), Some(_)) => 0,
            (Some(_), None) => 1,
            _ => 2,
        }
    }
}

// === impl IdpSet ===

impl IdpSet {
    /// Orders `idps` for selection; config order breaks ties.
    pub fn new(idps: Vec<Arc<IdentityProvider>>) -> Self {
        let mut ordered = idps;
        ordered.sort_by_key(|idp| idp.specificity());
        let introspection = ordered.iter().any(|idp| idp.introspection.is_some());
        Self {
            ordered,
            introspection,
        }
    }

    /// The most specific IdP matching the (unverified) `iss` and `aud`.
    pub fn select(
        &self,
        issuer: Option<&str>,
        audiences: &[&str],
    ) -> Result<&Arc<IdentityProvider>, NoMatch> {
        if let Some(idp) = self
            .ordered
            .iter()
            .find(|idp| idp.matches(issuer, audiences))
        {
            return Ok(idp);
        }
        let issuer_known = self
            .ordered
            .iter()
            .any(|idp| idp.issuer.is_some() && idp.issuer.as_deref() == issuer);
        let audience_known = self.ordered.iter().any(|idp| {
            idp.audience
                .as_deref()
                .is_some_and(|aud| audiences.contains(&aud))
        });
        Err(if issuer_known {
            NoMatch::WrongAudience
        } else if audience_known {
            NoMatch::WrongIssuer
        } else {
            NoMatch::Unknown
        })
    }

    /// Whether any IdP has an introspection endpoint.
    pub fn has_introspection(&self) -> bool {
        self.introspection
    }

    /// The one IdP whose introspection endpoint an opaque `token` may go to: the one with
    /// the longest `token_prefix` the token starts with, else the introspection IdP without
    /// a prefix (config validation allows at most one), else none.
    pub fn select_opaque(&self, token: &str) -> Option<&Arc<IdentityProvider>> {
        let mut fallback = None;
        let mut best: Option<(&Arc<IdentityProvider>, usize)> = None;
        for idp in &self.ordered {
            let Some(introspection) = &idp.introspection else {
                continue;
            };
            match introspection.token_prefix.as_deref() {
                None => fallback = fallback.or(Some(idp)),
                Some(prefix) if token.starts_with(prefix) => {
                    if best.is_none_or(|(_, len)| prefix.len() > len) {
                        best = Some((idp, prefix.len()));
                    }
                }
                Some(_) => {}
            }
        }
        best.map(|(idp, _)| idp).or(fallback)
    }

    /// The IdPs, most specific first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<IdentityProvider>> {
        self.ordered.iter()
    }
}

#[cfg(test)]
mod tests;
