//! Signatures with keys parsed once, on aws-lc-rs.
//!
//! jsonwebtoken's `crypto::sign`/`verify` re-parse the key on every call (an RSA private
//! key is parsed and checked per signature; an RSA public key gets a new Montgomery context
//! per verification). baton signs and verifies on every request, so keys are parsed when
//! the config or a JWKS loads, and public keys once per algorithm on first use.

use std::fmt;
use std::sync::OnceLock;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily};

use crate::algorithm;

/// The RSA modulus sizes the verification algorithms accept (`RSA_*_2048_8192_*`).
const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// A key that signs: an HMAC secret or a parsed private key.
pub struct Signer {
    algorithm: Algorithm,
    kind: SignerKind,
}

// HMAC keys hold precomputed pads (over a kilobyte): boxed to keep every variant small.
enum SignerKind {
    Hmac(Box<hmac::Key>),
    Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A key that verifies: an HMAC secret or a public key, parsed per algorithm on first use.
pub struct Verifier {
    family: AlgorithmFamily,
    material: Material,
    // One slot per algorithm of SUPPORTED (same index).
    parsed: [OnceLock<Option<Parsed>>; 12],
}

enum Material {
    Secret(Vec<u8>),
    /// PKCS#1 or SubjectPublicKeyInfo DER, an uncompressed EC point, or a raw Ed25519 key.
    Public(Vec<u8>),
}

enum Parsed {
    Hmac(Box<hmac::Key>),
    Public(ParsedPublicKey),
}

/// A key that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CryptoError(pub String);

// === impl Signer ===

impl Signer {
    /// An HMAC signer over `secret`'s bytes.
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Result<Self, CryptoError> {
        let hmac_alg = hmac_algorithm(alg)
            .ok_or_else(|| CryptoError(format!("{} is not HMAC", algorithm::name(alg))))?;
        Ok(Self {
            algorithm: alg,
            kind: SignerKind::Hmac(Box::new(hmac::Key::new(hmac_alg, secret))),
        })
    }

    /// A signer from a PEM private key: PKCS#8 for every family, PKCS#1 for RSA, SEC1 for EC.
    pub fn from_pem(alg: Algorithm, pem_bytes: &[u8]) -> Result<Self, CryptoError> {
        let pem = pem::parse(pem_bytes)
            .map_err(|e| CryptoError(format!("not a PEM private key: {e}")))?;
        let der = pem.contents();
        let rejected = |e: aws_lc_rs::error::KeyRejected| {
            CryptoError(format!(
                "the key does not fit {} ({e})",
                algorithm::name(alg)
            ))
        };
        let kind = match alg.family() {
            AlgorithmFamily::Hmac => {
                return Err(CryptoError("HMAC keys are secrets, not PEM".to_owned()));
            }
            AlgorithmFamily::Rsa => {
                let key = match pem.tag() {
                    "RSA PRIVATE KEY" => RsaKeyPair::from_der(der),
                    _ => RsaKeyPair::from_pkcs8(der),
                }
                .map_err(rejected)?;
                let encoding: &'static dyn signature::RsaEncoding = match alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                SignerKind::Rsa(key, encoding)
            }
            AlgorithmFamily::Ec => {
                let signing = if alg == Algorithm::ES384 {
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING
                } else {
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING
                };
                let key = match pem.tag() {
                    "EC PRIVATE KEY" => EcdsaKeyPair::from_private_key_der(signing, der),
                    _ => EcdsaKeyPair::from_pkcs8(signing, der),
                }
                .map_err(rejected)?;
                SignerKind::Ecdsa(key)
            }
            AlgorithmFamily::Ed => SignerKind::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?,
            ),
        };
        Ok(Self {
            algorithm: alg,
            kind,
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Signs `message`; the signature in JWS form (ECDSA as fixed `r || s`).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let failed = |_| CryptoError("signing failed".to_owned());
        Ok(match &self.kind {
            SignerKind::Hmac(key) => hmac::sign(key, message).as_ref().to_vec(),
            SignerKind::Rsa(key, encoding) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(*encoding, &SystemRandom::new(), message, &mut signature)
                    .map_err(failed)?;
                signature
            }
            SignerKind::Ecdsa(key) => key
                .sign(&SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            SignerKind::Ed25519(key) => key.sign(message).as_ref().to_vec(),
        })
    }

    /// The verifier of an asymmetric key's public half; `None` for HMAC, whose verifier is
    /// built from the secret ([`Verifier::hmac`]).
    pub fn public_verifier(&self) -> Option<Verifier> {
        let (family, public) = match &self.kind {
            SignerKind::Hmac(_) => return None,
            SignerKind::Rsa(key, _) => (AlgorithmFamily::Rsa, key.public_key().as_ref()),
            SignerKind::Ecdsa(key) => (AlgorithmFamily::Ec, key.public_key().as_ref()),
            SignerKind::Ed25519(key) => (AlgorithmFamily::Ed, key.public_key().as_ref()),
        };
        Some(Verifier::public(family, public.to_vec()))
    }
}

// === impl Verifier ===

impl Verifier {
    /// Verifies HMAC signatures made with `secret`'s bytes.
    pub fn hmac(secret: &[u8]) -> Self {
        Self::new(AlgorithmFamily::Hmac, Material::Secret(secret.to_vec()))
    }

    fn public(family: AlgorithmFamily, bytes: Vec<u8>) -> Self {
        Self::new(family, Material::Public(bytes))
    }

    fn new(family: AlgorithmFamily, material: Material) -> Self {
        Self {
            family,
            material,
            parsed: Default::default(),
        }
    }

    /// A public key from a JWK (`RSA`, `EC` P-256/P-384, `OKP` Ed25519) or a secret (`oct`).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, CryptoError> {
        let b64 = |field: &str, value: &str| {
            URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .map_err(|_| CryptoError(format!("JWK `{field}` is not base64url")))
        };
        match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let modulus = b64("n", &rsa.n)?;
                // aws-lc parses any modulus and checks its size only when verifying.
                let bits = bit_length(&modulus);
                if !RSA_MODULUS_BITS.contains(&bits) {
                    return Err(CryptoError(format!(
                        "an RSA modulus of {bits} bits (2048 to 8192 verify)"
                    )));
                }
                let der = rsa_public_key_der(&modulus, &b64("e", &rsa.e)?);
                Self::public(AlgorithmFamily::Rsa, der).parsed_now()
            }
            AlgorithmParameters::EllipticCurve(ec) => {
                let size = match ec.curve {
                    EllipticCurve::P256 => 32,
                    EllipticCurve::P384 => 48,
                    _ => return Err(CryptoError("unsupported EC curve".to_owned())),
                };
                let (x, y) = (b64("x", &ec.x)?, b64("y", &ec.y)?);
                if x.len() != size || y.len() != size {
                    return Err(CryptoError("EC coordinates of the wrong size".to_owned()));
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Self::public(AlgorithmFamily::Ec, point).parsed_now()
            }
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                Self::public(AlgorithmFamily::Ed, b64("x", &okp.x)?).parsed_now()
            }
            AlgorithmParameters::OctetKey(oct) => Ok(Self::hmac(&b64("k", &oct.value)?)),
            _ => Err(CryptoError("unsupported JWK key type".to_owned())),
        }
    }

    /// A public key from PEM (`PUBLIC KEY`, or `RSA PUBLIC KEY`), for `family`.
    pub fn from_public_pem(family: AlgorithmFamily, pem_bytes: &[u8]) -> Result<Self, CryptoError> {
        let pem = pem::parse(pem_bytes).map_err(|e| CryptoError(format!("not PEM: {e}")))?;
        if !matches!(pem.tag(), "PUBLIC KEY" | "RSA PUBLIC KEY") {
            return Err(CryptoError(format!(
                "a PEM `{}`, not a public key",
                pem.tag()
            )));
        }
        Self::public(family, pem.contents().to_vec()).parsed_now()
    }

    /// The key family.
    pub fn family(&self) -> AlgorithmFamily {
        self.family
    }

    /// Whether `signature_b64` (base64url) is `alg`'s signature of `message` under this key.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature_b64: &str) -> bool {
        if alg.family() != self.family {
            return false;
        }
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature_b64) else {
            return false;
        };
        match self.parsed(alg) {
            Some(Parsed::Hmac(key)) => hmac::verify(key, message, &signature).is_ok(),
            Some(Parsed::Public(key)) => key.verify_sig(message, &signature).is_ok(),
            None => false,
        }
    }

    /// `self` once its public key parses for one algorithm of its family: a bad key (a
    /// 3-byte Ed25519 key, an RSA modulus under 2048 bits, a point off the curve) fails when
    /// it is loaded (config, JWKS), not at the first token. The parse is kept for that
    /// algorithm.
    fn parsed_now(self) -> Result<Self, CryptoError> {
        if matches!(self.material, Material::Secret(_)) {
            return Ok(self);
        }
        let probes: &[Algorithm] = match self.family {
            AlgorithmFamily::Rsa => &[Algorithm::RS256],
            AlgorithmFamily::Ec => &[Algorithm::ES256, Algorithm::ES384],
            AlgorithmFamily::Ed => &[Algorithm::EdDSA],
            _ => &[],
        };
        if probes.iter().any(|alg| self.parsed(*alg).is_some()) {
            Ok(self)
        } else {
            Err(CryptoError(format!("not a {:?} public key", self.family)))
        }
    }

    /// The key parsed for `alg`, parsing it on first use; `None` if it does not fit `alg`
    /// (a P-256 key asked for ES384, say).
    fn parsed(&self, alg: Algorithm) -> Option<&Parsed> {
        let slot = algorithm::SUPPORTED
            .iter()
            .position(|name| *name == algorithm::name(alg))?;
        self.parsed[slot]
            .get_or_init(|| match &self.material {
                Material::Secret(secret) => {
                    hmac_algorithm(alg).map(|a| Parsed::Hmac(Box::new(hmac::Key::new(a, secret))))
                }
                Material::Public(bytes) => {
                    ParsedPublicKey::new(verification_algorithm(alg)?, bytes)
                        .ok()
                        .map(Parsed::Public)
                }
            })
            .as_ref()
    }
}

fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn verification_algorithm(alg: Algorithm) -> Option<&'static dyn signature::VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        _ => return None,
    })
}

/// DER of PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
/// The bits of a big-endian unsigned integer, leading zeros not counted.
fn bit_length(be_bytes: &[u8]) -> usize {
    match be_bytes.iter().position(|b| *b != 0) {
        None => 0,
        Some(first) => (be_bytes.len() - first) * 8 - be_bytes[first].leading_zeros() as usize,
    }
}

fn rsa_public_key_der(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let mut body = der_integer(modulus);
    body.extend(der_integer(exponent));
    let mut der = vec![0x30];
    der.extend(der_length(body.len()));
    der.extend(body);
    der
}

fn der_integer(big_endian: &[u8]) -> Vec<u8> {
    let trimmed = match big_endian.iter().position(|b| *b != 0) {
        Some(first) => &big_endian[first..],
        None => &[0][..],
    };
    // A set high bit would read as negative: prefix a zero byte.
    let pad = trimmed[0] & 0x80 != 0;
    let mut der = vec![0x02];
    der.extend(der_length(trimmed.len() + usize::from(pad)));
    if pad {
        der.push(0);
    }
    der.extend_from_slice(trimmed);
    der
}

fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        // Lengths under 128 are one byte (X.690 §8.1.3.4).
        vec![u8::try_from(len).unwrap_or(0)]
    } else {
        let bytes = len.to_be_bytes();
        let first = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        let significant = &bytes[first..];
        let mut der = vec![0x80 | u8::try_from(significant.len()).unwrap_or(0)];
        der.extend_from_slice(significant);
        der
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_encodes_integers_and_lengths() {
        assert_eq!(
            der_integer(&[0x01, 0x00, 0x01]),
            [0x02, 0x03, 0x01, 0x00, 0x01]
        );
        assert_eq!(der_integer(&[0x00, 0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_length(0x7f), [0x7f]);
        assert_eq!(der_length(0x100), [0x82, 0x01, 0x00]);
        assert_eq!(bit_length(&[0x00, 0x01, 0x00]), 9);
        assert_eq!(bit_length(&[0x80; 256]), 2048);
        assert_eq!(bit_length(&[0x00]), 0);
    }

    #[test]
    fn rsa_from_jwk_components_verifies_what_the_private_key_signs() {
        let pem = crate::keygen::generate(Algorithm::RS256).unwrap();
        let signer = Signer::from_pem(Algorithm::RS256, pem.material.expose()).unwrap();
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.material.expose()).unwrap();
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap();
        let verifier = Verifier::from_jwk(&jwk).unwrap();
        let signature = URL_SAFE_NO_PAD.encode(signer.sign(b"message").unwrap());
        assert!(verifier.verify(Algorithm::RS256, b"message", &signature));
        assert!(!verifier.verify(Algorithm::RS256, b"other", &signature));
        assert!(!verifier.verify(Algorithm::PS256, b"message", &signature));
        assert!(!verifier.verify(Algorithm::HS256, b"message", &signature));
    }

    #[test]
    fn a_jwk_whose_public_key_does_not_parse_is_refused_when_loaded() {
        let zeros = URL_SAFE_NO_PAD.encode([0u8; 32]);
        for jwk in [
            serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": "AAAA" }),
            serde_json::json!({ "kty": "RSA", "n": "AQ", "e": "AQAB" }),
            serde_json::json!({ "kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc5; 128]), "e": "AQAB" }),
            serde_json::json!({ "kty": "EC", "crv": "P-256", "x": zeros, "y": zeros }),
        ] {
            let parsed: Jwk = serde_json::from_value(jwk.clone()).unwrap();
            assert!(Verifier::from_jwk(&parsed).is_err(), "{jwk} loaded");
        }
    }

    #[test]
    fn hmac_verifies_only_its_own_algorithm() {
        let signer = Signer::hmac(Algorithm::HS384, b"secret").unwrap();
        let signature = URL_SAFE_NO_PAD.encode(signer.sign(b"m").unwrap());
        let verifier = Verifier::hmac(b"secret");
        assert!(verifier.verify(Algorithm::HS384, b"m", &signature));
        assert!(!verifier.verify(Algorithm::HS256, b"m", &signature));
        assert!(!Verifier::hmac(b"other").verify(Algorithm::HS384, b"m", &signature));
    }
}
