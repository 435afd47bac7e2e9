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
}

/// Why a token could not even be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedToken {
    /// A segment is not valid base64url.
    #[error("a segment is not valid base64url")]
    BadBase64,
    /// The header is not a JSON object with a string `alg`.
    #[error("the header is not a JSON object with an `alg`")]
    BadHeader,
    /// The header has a `crit` member; baton supports no critical extensions (RFC 7515 §4.1.11).
    #[error("the header lists critical extensions, which are not supported")]
    CriticalHeader,
    /// The token has five segments: it is encrypted (JWE), which baton does not accept.
    #[error("encrypted tokens (JWE) are not supported")]
    Encrypted,
    /// The payload is not a JSON object.
    #[error("the payload is not a JSON object")]
    PayloadNotObject,
    /// The token is not three dot-separated segments.
    #[error("the token is not a compact JWS (three dot-separated segments)")]
    Segments,
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
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
        let header: Header =
            serde_json::from_slice(&header_bytes).map_err(|_| MalformedToken::BadHeader)?;
        if header.crit.is_some() {
            return Err(MalformedToken::CriticalHeader);
        }
        let payload_bytes = decode_segment(payload_b64)?;
        let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&payload_bytes) else {
            return Err(MalformedToken::PayloadNotObject);
        };
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
