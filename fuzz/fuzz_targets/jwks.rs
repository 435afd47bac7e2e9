//! What an IdP serves: a JWKS document (`KeySet::from_document`: the JSON, each JWK, the key
//! material handed to the crypto library) and an OIDC discovery document
//! (`discovered_jwks_uri`). Every key that parses is then used once per algorithm it fits
//! to check a signature, as a token would.
//!
//! Input: the document's body; both parsers read every input.

#![no_main]

use std::time::Duration;

use baton::idp::jwks::{JwksError, KeySet, discovered_jwks_uri};
use baton::token::b64url;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const JWKS_URL: &str = "https://idp.fuzz/.well-known/jwks.json";
const ISSUER: &str = "https://idp.fuzz";
const DISCOVERY_URL: &str = "https://idp.fuzz/.well-known/openid-configuration";

/// Every algorithm baton verifies, by its JOSE name.
const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

fuzz_target!(|data: &[u8]| {
    check_key_set(data);
    check_discovery(data);
});

fn check_key_set(body: &[u8]) {
    let set = match KeySet::from_document(JWKS_URL, body, Duration::from_secs(600)) {
        Ok(set) => set,
        Err(JwksError::Fetch { url, .. }) => {
            assert_eq!(url, JWKS_URL);
            return;
        }
        Err(e) => panic!("a JWKS parse error of another kind: {e}"),
    };
    // Every key of the document is either usable or counted as skipped. (serde also reads a
    // struct from an array of its fields in order: `[[keys…]]` is a JWKS to it.)
    let listed = match as_json(body) {
        Some(Value::Object(doc)) => doc.get("keys").and_then(Value::as_array).map(Vec::len),
        Some(Value::Array(fields)) => fields.first().and_then(Value::as_array).map(Vec::len),
        _ => None,
    };
    assert_eq!(Some(set.len() + set.skipped()), listed);

    let message = b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJmdXp6In0";
    for name in ALGORITHMS {
        let alg = baton::algorithm::parse(name).expect("a supported algorithm");
        assert!(
            set.find(None, alg)
                .all(|key| !baton::algorithm::is_hmac(alg) && key.fits(alg)),
            "a JWKS key fits {name}"
        );
        for key in set.find(None, alg) {
            // A junk signature of a plausible length: verifying runs the key's math.
            let signature = b64url(&vec![0x5a; signature_len(name)]);
            let _ = key.verifier().verify(alg, message, &signature);
            let kid = key.kid.as_deref();
            assert!(
                set.find(kid, alg).count() >= 1,
                "a key is not found by its own kid"
            );
        }
    }
}

fn check_discovery(body: &[u8]) {
    match discovered_jwks_uri(DISCOVERY_URL, ISSUER, body) {
        Ok(jwks_uri) => {
            let doc = as_json(body).expect("a discovery document is JSON");
            let (issuer, uri) = match &doc {
                Value::Array(fields) => (&fields[0], &fields[1]),
                _ => (&doc["issuer"], &doc["jwks_uri"]),
            };
            assert_eq!(issuer, ISSUER);
            assert_eq!(uri, jwks_uri.as_str());
        }
        Err(JwksError::DiscoveryIssuerMismatch { url, expected, .. }) => {
            assert_eq!(url, DISCOVERY_URL);
            assert_eq!(expected, ISSUER);
        }
        Err(JwksError::Fetch { url, .. }) => assert_eq!(url, DISCOVERY_URL),
        Err(e) => panic!("a discovery error of another kind: {e}"),
    }
}

/// `body` as JSON, for checking what the parsers made of it. serde_json does not check the
/// UTF-8 of a member the parsers ignore, so invalid sequences are replaced first.
fn as_json(body: &[u8]) -> Option<Value> {
    serde_json::from_str(&String::from_utf8_lossy(body)).ok()
}

fn signature_len(alg: &str) -> usize {
    match alg {
        "ES256" | "EdDSA" => 64,
        "ES384" => 96,
        _ => 256,
    }
}
