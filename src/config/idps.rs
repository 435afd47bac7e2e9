//! `[[idps]]`: the identity providers baton trusts, and where their keys come from.

use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::keys::SecretFrom;
use super::spec::{IdpSpec, IntrospectionSpec};
use super::{Loader, Place};
use crate::algorithm;
use crate::crypto::Verifier;
use crate::idp::introspection::{
    ClientCredentials, DEFAULT_INTROSPECTION_CACHE_TTL, Introspection, IntrospectionEndpoint,
    MAX_INTROSPECTION_CACHE_TTL,
};
use crate::idp::url_policy::{self, UrlRefusal};
use crate::idp::{DEFAULT_LEEWAY, IdentityProvider, KeySource, UrlPolicy};
use crate::policy::Scope;
use crate::secret::Secret;

impl Loader<'_> {
    pub(super) fn idp(&mut self, spec: IdpSpec, place: &Place) -> Option<IdentityProvider> {
        let at = Some(place);
        let path = &place.path;
        let errors_before = self.errors.len();
        if spec.issuer.is_none() && spec.audience.is_none() {
            self.error(at, path, "an IdP needs an issuer, an audience, or both");
        }
        let algorithms: Vec<Algorithm> = match &spec.algorithms {
            None => vec![Algorithm::RS256],
            Some(names) if names.is_empty() => {
                self.error(at, &format!("{path}.algorithms"), "at least one algorithm");
                Vec::new()
            }
            Some(names) => names
                .iter()
                .enumerate()
                .filter_map(|(i, name)| {
                    algorithm::parse(name)
                        .map_err(|e| self.error(at, &format!("{path}.algorithms[{i}]"), &e))
                        .ok()
                })
                .collect(),
        };
        let introspection = self.idp_introspection(&spec, place);
        let keys = if introspection.as_ref().is_some_and(Option::is_some)
            && spec.jwks_url.is_none()
            && !spec.discovery
            && spec.key.is_none()
            && spec.key_env.is_none()
            && spec.key_file.is_none()
        {
            // Introspection alone: no local keys, every token goes to the endpoint.
            Some(KeySource::Introspected)
        } else {
            self.idp_key_source(&spec, place, &algorithms)
        };
        let url_policy = idp_url_policy(&spec);
        let leeway = self.duration(spec.leeway.as_ref(), DEFAULT_LEEWAY, place, "leeway");
        let mapping = self.mapping(&spec.mapping, place);
        let condition = self.condition(spec.condition.as_deref(), Scope::Idp, place);
        if self.errors.len() > errors_before {
            return None;
        }
        let name = spec.name();
        Some(IdentityProvider {
            name: name.into(),
            issuer: spec.issuer,
            audience: spec.audience,
            algorithms,
            keys: keys?,
            url_policy,
            leeway,
            mapping: mapping?,
            condition: condition.ok()?,
            introspection: introspection?,
        })
    }

    /// `introspection`, `token_prefix` and `introspection_cache_ttl`: `Some(None)` when the IdP
    /// has no introspection, `None` after an error.
    fn idp_introspection(
        &mut self,
        spec: &IdpSpec,
        place: &Place,
    ) -> Option<Option<Introspection>> {
        let at = Some(place);
        let path = &place.path;
        let errors_before = self.errors.len();
        let table = match &spec.introspection {
            None | Some(IntrospectionSpec::Enabled(false)) => {
                for (field, set) in [
                    ("token_prefix", spec.token_prefix.is_some()),
                    (
                        "introspection_cache_ttl",
                        spec.introspection_cache_ttl.is_some(),
                    ),
                ] {
                    if set {
                        self.error(
                            at,
                            &format!("{path}.{field}"),
                            "applies to an IdP with introspection only",
                        );
                    }
                }
                return (self.errors.len() == errors_before).then_some(None);
            }
            Some(IntrospectionSpec::Enabled(true)) => None,
            Some(IntrospectionSpec::Endpoint(table)) => Some(table),
        };
        let url = table.and_then(|t| t.url.as_deref());
        let endpoint = match url {
            None if spec.discovery => IntrospectionEndpoint::Discovered,
            None => {
                self.error(
                    at,
                    &format!("{path}.introspection"),
                    "the endpoint comes from introspection.url, or from the discovery document \
                     with discovery = true",
                );
                IntrospectionEndpoint::Discovered
            }
            Some(url) => {
                match url::Url::parse(url) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                        if let Err(refusal) = url_policy::check_url(&parsed, idp_url_policy(spec)) {
                            self.error(
                                at,
                                &format!("{path}.introspection.url"),
                                &refusal_message(&refusal, place),
                            );
                        }
                    }
                    _ => self.error(
                        at,
                        &format!("{path}.introspection.url"),
                        &format!("`{url}` is not an http(s) URL"),
                    ),
                }
                IntrospectionEndpoint::Url(url.to_owned())
            }
        };
        let credentials = match table {
            None => None,
            Some(table) => {
                let has_secret =
                    table.client_secret_env.is_some() || table.client_secret_file.is_some();
                match &table.client_id {
                    None if has_secret => {
                        self.error(
                            at,
                            &format!("{path}.introspection.client_id"),
                            "a client secret needs its client_id",
                        );
                        None
                    }
                    None => None,
                    Some(id) => {
                        let sub = Place {
                            path: format!("{path}.introspection"),
                            ..place.clone()
                        };
                        self.one_secret(
                            &sub,
                            &[
                                (
                                    "client_secret_env",
                                    table.client_secret_env.as_deref(),
                                    SecretFrom::Env,
                                ),
                                (
                                    "client_secret_file",
                                    table.client_secret_file.as_deref(),
                                    SecretFrom::File,
                                ),
                            ],
                        )
                        .map(|(_, secret)| ClientCredentials {
                            id: id.clone(),
                            secret,
                        })
                    }
                }
            }
        };
        if spec.token_prefix.as_deref() == Some("") {
            self.error(
                at,
                &format!("{path}.token_prefix"),
                "an empty prefix; leave token_prefix out instead",
            );
        }
        let cache_ttl = self.duration(
            spec.introspection_cache_ttl.as_ref(),
            DEFAULT_INTROSPECTION_CACHE_TTL,
            place,
            "introspection_cache_ttl",
        );
        if cache_ttl > MAX_INTROSPECTION_CACHE_TTL {
            self.error(
                at,
                &format!("{path}.introspection_cache_ttl"),
                "at most 1h: a revoked token is accepted for as long as its answer is reused",
            );
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Some(Introspection {
            endpoint,
            credentials,
            cache_ttl,
            token_prefix: spec.token_prefix.clone(),
        }))
    }

    /// An opaque token goes to one endpoint only: at most one introspection IdP without a
    /// `token_prefix`, and no two with the same prefix.
    pub(super) fn introspection_selection(&mut self, idps: &[(Arc<IdentityProvider>, Place)]) {
        for (i, (idp, place)) in idps.iter().enumerate() {
            let Some(introspection) = &idp.introspection else {
                continue;
            };
            if let Some((_, first)) = idps[..i].iter().find(|(other, _)| {
                other
                    .introspection
                    .as_ref()
                    .is_some_and(|o| o.token_prefix == introspection.token_prefix)
            }) {
                let problem = match &introspection.token_prefix {
                    None => format!(
                        "a second introspection IdP without token_prefix (the first is {}): \
                         an opaque token is sent to one endpoint only; give each a token_prefix",
                        first.path
                    ),
                    Some(prefix) => format!(
                        "token_prefix {prefix:?} is also {}'s: an opaque token is sent to one \
                         endpoint only",
                        first.path
                    ),
                };
                self.error(
                    Some(place),
                    &format!("{}.token_prefix", place.path),
                    &problem,
                );
            }
        }
    }

    fn idp_key_source(
        &mut self,
        spec: &IdpSpec,
        place: &Place,
        algorithms: &[Algorithm],
    ) -> Option<KeySource> {
        let at = Some(place);
        let path = &place.path;
        let mut sources = Vec::new();
        if spec.jwks_url.is_some() {
            sources.push("jwks_url");
        }
        if spec.discovery {
            sources.push("discovery");
        }
        for (name, set) in [
            ("key", spec.key.is_some()),
            ("key_env", spec.key_env.is_some()),
            ("key_file", spec.key_file.is_some()),
        ] {
            if set {
                sources.push(name);
            }
        }
        if sources.len() != 1 {
            let problem = if sources.is_empty() {
                "no key source".to_owned()
            } else {
                format!("several key sources ({})", sources.join(", "))
            };
            self.error(
                at,
                path,
                &format!("{problem}; set exactly one of jwks_url, discovery = true, key, key_env, key_file"),
            );
            return None;
        }
        let hmac_algs: Vec<&str> = algorithms
            .iter()
            .filter(|a| algorithm::is_hmac(**a))
            .map(|a| algorithm::name(*a))
            .collect();
        let refuse_hmac_with = |loader: &mut Self, what: &str| {
            loader.error(
                at,
                &format!("{path}.algorithms"),
                &format!(
                    "{} with {what}: HMAC needs a shared secret (key, key_env or key_file), \
                     never a published key",
                    hmac_algs.join(", ")
                ),
            );
        };
        if spec.allow_http && !place.is_api() {
            self.warnings.push(format!(
                "{path}: allow_http = true: its keys may come over plain http from any host, where \
                 anyone on the network path can swap them; use it on a trusted network only"
            ));
        }
        if let Some(url) = &spec.jwks_url {
            if !hmac_algs.is_empty() {
                refuse_hmac_with(self, "a JWKS");
            }
            match url::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    match url_policy::check_url(&parsed, idp_url_policy(spec)) {
                        Ok(()) => return Some(KeySource::JwksUrl(url.clone())),
                        Err(refusal) => self.error(
                            at,
                            &format!("{path}.jwks_url"),
                            &refusal_message(&refusal, place),
                        ),
                    }
                }
                _ => self.error(
                    at,
                    &format!("{path}.jwks_url"),
                    &format!("`{url}` is not an http(s) URL"),
                ),
            }
            return None;
        }
        if spec.discovery {
            if !hmac_algs.is_empty() {
                refuse_hmac_with(self, "OIDC discovery");
            }
            let Some(issuer) = &spec.issuer else {
                self.error(
                    at,
                    &format!("{path}.discovery"),
                    "discovery needs an issuer",
                );
                return Some(KeySource::Discovery);
            };
            // Discovery fetches a URL made of the issuer: the issuer obeys the URL rule.
            let discovery_url = crate::idp::jwks::discovery_url(issuer);
            match url::Url::parse(&discovery_url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    if let Err(refusal) = url_policy::check_url(&parsed, idp_url_policy(spec)) {
                        self.error(
                            at,
                            &format!("{path}.issuer"),
                            &format!(
                                "{} (discovery fetches {discovery_url})",
                                refusal_message(&refusal, place)
                            ),
                        );
                    }
                }
                _ => self.error(
                    at,
                    &format!("{path}.issuer"),
                    &format!(
                        "`{issuer}` is not an http(s) URL, which discovery needs \
                         ({{issuer}}/.well-known/openid-configuration)"
                    ),
                ),
            }
            return Some(KeySource::Discovery);
        }
        if spec.allow_http {
            self.error(
                at,
                &format!("{path}.allow_http"),
                "allow_http applies to jwks_url and discovery only; this IdP's key is given here",
            );
        }
        let (field, material) = self.one_secret(
            place,
            &[
                ("key", spec.key.as_deref(), SecretFrom::Inline),
                ("key_env", spec.key_env.as_deref(), SecretFrom::Env),
                ("key_file", spec.key_file.as_deref(), SecretFrom::File),
            ],
        )?;
        let bytes = if field == "key" {
            // State Backed's `key` field: the key's bytes, base64url.
            match base64::engine::general_purpose::GeneralPurpose::new(
                &base64::alphabet::URL_SAFE,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            )
            .decode(material.expose())
            {
                Ok(bytes) => Secret::new(bytes),
                Err(_) => {
                    self.error(
                        at,
                        &format!("{path}.key"),
                        "`key` is the key's bytes in base64url (State Backed's format)",
                    );
                    return None;
                }
            }
        } else {
            material
        };
        let key = match static_key(bytes.expose(), algorithms) {
            Ok(key) => key,
            Err(e) => {
                self.error(at, &format!("{path}.{field}"), &e);
                return None;
            }
        };
        for alg in algorithms {
            if alg.family() != key.family() {
                let message = if key.family() == AlgorithmFamily::Hmac {
                    format!(
                        "{} needs a public key, but this key is an HMAC secret",
                        algorithm::name(*alg)
                    )
                } else if algorithm::is_hmac(*alg) {
                    format!(
                        "{} (HMAC) is never verified with a public key",
                        algorithm::name(*alg)
                    )
                } else {
                    format!(
                        "{} does not fit this {:?} key",
                        algorithm::name(*alg),
                        key.family()
                    )
                };
                self.error(at, &format!("{path}.algorithms"), &message);
            }
        }
        if field == "key" && key.family() == AlgorithmFamily::Hmac && !place.is_api() {
            self.warnings.push(format!(
                "{path}: the HMAC secret is inline in the file; use key_env or key_file outside demos"
            ));
        }
        Some(KeySource::Static(Box::new(key)))
    }

    pub(super) fn duplicate_idps(&mut self, idps: &[(Arc<IdentityProvider>, Place)]) {
        for (i, (idp, place)) in idps.iter().enumerate() {
            if let Some((_, first)) = idps[..i]
                .iter()
                .find(|(other, _)| other.issuer == idp.issuer && other.audience == idp.audience)
            {
                self.error(
                    Some(place),
                    &place.path,
                    &format!(
                        "same issuer and audience as {}: a token could not tell them apart",
                        first.path
                    ),
                );
            }
        }
    }
}

/// Reads a static IdP key: a PEM public key, a JWK, or else an HMAC secret's bytes.
fn static_key(bytes: &[u8], algorithms: &[Algorithm]) -> Result<Verifier, String> {
    let trimmed = bytes.trim_ascii();
    if trimmed.starts_with(b"-----BEGIN") {
        if trimmed.windows(11).any(|w| w == b"PRIVATE KEY") {
            return Err("this is a private key; give the IdP's public key".to_owned());
        }
        let family = algorithms
            .iter()
            .map(|a| a.family())
            .find(|f| *f != AlgorithmFamily::Hmac)
            .ok_or("an HMAC algorithm is never verified with a public key")?;
        return Verifier::from_public_pem(family, trimmed).map_err(|e| e.0);
    }
    if trimmed.starts_with(b"{") {
        let jwk: Jwk = serde_json::from_slice(trimmed).map_err(|e| format!("not a JWK: {e}"))?;
        return Verifier::from_jwk(&jwk).map_err(|e| format!("unusable JWK: {e}"));
    }
    if bytes.is_empty() {
        return Err("the key is empty".to_owned());
    }
    Ok(Verifier::hmac(bytes))
}

/// The URL rule of an IdP's key fetches: `allow_http` relaxes it.
fn idp_url_policy(spec: &IdpSpec) -> UrlPolicy {
    if spec.allow_http {
        UrlPolicy::InsecureHttpAllowed
    } else {
        UrlPolicy::HttpsOrLoopback
    }
}

/// What a refused IdP URL's error says. Entries of the admin API have no `allow_http` (State
/// Backed's API has no such field, and a weaker check takes access to the config file).
fn refusal_message(refusal: &UrlRefusal, place: &Place) -> String {
    match refusal {
        UrlRefusal::PlainHttp if place.is_api() => "must be https (or a loopback address); \
             allow_http is for [[idps]] entries of the config file only"
            .to_owned(),
        other => other.to_string(),
    }
}
