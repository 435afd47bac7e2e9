//! The signing algorithms baton knows (State Backed's `SigningAlgorithm` list).

use jsonwebtoken::{Algorithm, AlgorithmFamily};

/// Every algorithm an IdP may allow or a key may use. `none` is not one of them.
pub const SUPPORTED: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// Parses an algorithm name from the supported list.
pub fn parse(name: &str) -> Result<Algorithm, String> {
    let alg = match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "none" | "None" | "NONE" => {
            return Err("`none` is never accepted: unsigned tokens prove nothing".to_owned());
        }
        other => {
            return Err(format!(
                "unknown algorithm `{other}`; expected one of {}",
                SUPPORTED.join(", ")
            ));
        }
    };
    Ok(alg)
}

/// The name of an algorithm, as it appears in a JOSE header.
pub fn name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        // `Algorithm` is non-exhaustive; baton never parses an algorithm it cannot name.
        _ => "unsupported",
    }
}

/// Whether `alg` is an HMAC (shared-secret) algorithm.
pub fn is_hmac(alg: Algorithm) -> bool {
    alg.family() == AlgorithmFamily::Hmac
}
