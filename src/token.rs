//! Parsing a compact JWS (`header.payload.signature`) without trusting it.
//!
//! Everything here is unverified: it is what the token *claims*, used to pick the IdP and
//! the key. Nothing in the header (`jwk`, `jku`, `x5u`, `x5c`) is ever used as a key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The largest subject token baton reads, in bytes. Real IdP tokens are a few KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The deepest nesting of objects and arrays in a token's claims (the claims object is 1).
/// Real tokens nest 2 to 5 deep (Keycloak's `resource_access.<client>.roles` is 4).
pub const MAX_CLAIMS_DEPTH: usize = 16;

/// The most JSON values (objects, arrays, strings, numbers, booleans, nulls) in a token's
/// claims. A real 16 KiB token holds a few hundred; only tiny values packed together
/// (`[0,0,0,…]`) reach this. Bounds what a claim mapping's filters iterate over.
pub const MAX_CLAIM_VALUES: usize = 1024;

/// A token split into its parts, header and payload decoded, signature not yet checked.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    /// The header fields baton uses.
    pub header: Header,
    /// The decoded payload (claims), always a JSON object.
    pub claims: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The base64url signature segment.
    pub signature: &'a str,
}

/// The JOSE header fields baton reads. Others are ignored.
#[derive(Debug, Deserialize)]
pub struct Header {
    /// `alg`, as written (checked against the IdP's allow-list later).
    pub alg: String,
    /// `kid`, when present.
    #[serde(default)]
    pub kid: Option<String>,
    /// `crit`: extensions the issuer says must be understood. baton understands none.
    #[serde(default)]
    pub crit: Option<Value>,
    /// `typ`, when present (`at+jwt` marks baton's `access_token`-profile tokens).
    #[serde(default)]
    pub typ: Option<String>,
}

/// Why a token could not even be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedToken {
    /// A segment is not valid base64url.
    #[error("a segment is not valid base64url")]
    BadBase64,
    /// The header is not a UTF-8 JSON object with a string `alg` (RFC 7515 §5.2).
    #[error("the header is not a UTF-8 JSON object with an `alg`")]
    BadHeader,
    /// The claims nest objects and arrays deeper than [`MAX_CLAIMS_DEPTH`].
    #[error("the claims nest deeper than {MAX_CLAIMS_DEPTH} levels")]
    ClaimsTooDeep,
    /// The header has a `crit` member; baton supports no critical extensions (RFC 7515 §4.1.11).
    #[error("the header lists critical extensions, which are not supported")]
    CriticalHeader,
    /// The token has five segments: it is encrypted (JWE), which baton does not accept.
    #[error("encrypted tokens (JWE) are not supported")]
    Encrypted,
    /// The payload is not a UTF-8 JSON object.
    #[error("the payload is not a UTF-8 JSON object")]
    PayloadNotObject,
    /// The token is not three dot-separated segments.
    #[error("the token is not a compact JWS (three dot-separated segments)")]
    Segments,
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// The claims hold more than [`MAX_CLAIM_VALUES`] values.
    #[error("the claims hold more than {MAX_CLAIM_VALUES} values")]
    TooManyClaimValues,
}

// === impl UnverifiedToken ===

impl<'a> UnverifiedToken<'a> {
    /// Splits and decodes `token`. Checks shape only, never the signature.
    pub fn parse(token: &'a str) -> Result<Self, MalformedToken> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(MalformedToken::TooLarge);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(MalformedToken::Segments)?;
        let (header_b64, payload_b64) = signing_input
            .split_once('.')
            .ok_or(MalformedToken::Segments)?;
        if payload_b64.contains('.') {
            return Err(if token.split('.').count() == 5 {
                MalformedToken::Encrypted
            } else {
                MalformedToken::Segments
            });
        }
        // An empty signature (RFC 7515's unsecured `alg: none` form) parses, so that the
        // algorithm check names what is wrong; no signature ever verifies as empty.
        let header_bytes = decode_segment(header_b64)?;
        // From `str`, not bytes: serde_json checks UTF-8 only in the strings it keeps, and
        // skips the members `Header` ignores unchecked.
        let header_text =
            std::str::from_utf8(&header_bytes).map_err(|_| MalformedToken::BadHeader)?;
        let header: Header =
            serde_json::from_str(header_text).map_err(|_| MalformedToken::BadHeader)?;
        if header.crit.is_some() {
            return Err(MalformedToken::CriticalHeader);
        }
        let payload_bytes = decode_segment(payload_b64)?;
        let payload_text =
            std::str::from_utf8(&payload_bytes).map_err(|_| MalformedToken::PayloadNotObject)?;
        let Ok(Value::Object(claims)) = serde_json::from_str::<Value>(payload_text) else {
            return Err(MalformedToken::PayloadNotObject);
        };
        check_claims_shape(&claims)?;
        // The signature is decoded by the verifier; checking its alphabet here makes a
        // mangled signature a parse error rather than a "bad signature".
        if !signature
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(MalformedToken::BadBase64);
        }
        Ok(Self {
            header,
            claims,
            signing_input,
            signature,
        })
    }

    /// The `iss` claim, when it is a string.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// The `aud` claim as a list: a string is a list of one; other types give none.
    pub fn audiences(&self) -> Vec<&str> {
        match self.claims.get("aud") {
            Some(Value::String(aud)) => vec![aud.as_str()],
            Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

/// Bounds the claims' depth and size, in one walk over the parsed value (serde_json
/// already stops at 128 levels while parsing).
pub(crate) fn check_claims_shape(claims: &Map<String, Value>) -> Result<(), MalformedToken> {
    /// `value` sits at `depth` (the claims object is at 1).
    fn walk(value: &Value, depth: usize, count: &mut usize) -> Result<(), MalformedToken> {
        *count += 1;
        if *count > MAX_CLAIM_VALUES {
            return Err(MalformedToken::TooManyClaimValues);
        }
        match value {
            Value::Array(items) => walk_all(items.iter(), depth, count),
            Value::Object(members) => walk_all(members.values(), depth, count),
            _ => Ok(()),
        }
    }
    fn walk_all<'v>(
        children: impl Iterator<Item = &'v Value>,
        depth: usize,
        count: &mut usize,
    ) -> Result<(), MalformedToken> {
        if depth > MAX_CLAIMS_DEPTH {
            return Err(MalformedToken::ClaimsTooDeep);
        }
        children
            .into_iter()
            .try_for_each(|child| walk(child, depth + 1, count))
    }
    let mut count = 1;
    walk_all(claims.values(), 1, &mut count)
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, MalformedToken> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| MalformedToken::BadBase64)
}

/// base64url without padding, as JOSE uses.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests;
