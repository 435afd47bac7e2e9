//! `baton keys generate`: new key ids, HMAC secrets and PEM private keys from a CSPRNG.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily};

use crate::secret::Secret;
use crate::token::b64url;

/// A freshly generated key.
#[derive(Debug)]
pub struct GeneratedKey {
    /// `sbk_…`.
    pub id: String,
    /// The algorithm it is for.
    pub algorithm: Algorithm,
    /// For HMAC, the `sbsec_…` secret; otherwise a PKCS#8 PEM private key.
    pub material: Secret,
}

/// Key generation failed (the system's random source or the crypto library refused).
#[derive(Debug, thiserror::Error)]
#[error("key generation failed")]
pub struct KeygenError;

/// Generates a key for `alg`: an `sbsec_` secret (32 random bytes) for HMAC, an RSA-2048,
/// P-256, P-384 or Ed25519 PKCS#8 PEM otherwise.
pub fn generate(alg: Algorithm) -> Result<GeneratedKey, KeygenError> {
    let rng = SystemRandom::new();
    let id = format!("sbk_{}", random_token(&rng, 16)?);
    let material = match alg.family() {
        AlgorithmFamily::Hmac => Secret::new(format!("sbsec_{}", random_token(&rng, 32)?)),
        AlgorithmFamily::Rsa => {
            let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| KeygenError)?;
            let der = key.as_der().map_err(|_| KeygenError)?;
            pkcs8_pem(der.as_ref())
        }
        AlgorithmFamily::Ec => {
            let signing = if alg == Algorithm::ES384 {
                &ECDSA_P384_SHA384_FIXED_SIGNING
            } else {
                &ECDSA_P256_SHA256_FIXED_SIGNING
            };
            let key = EcdsaKeyPair::generate(signing).map_err(|_| KeygenError)?;
            pkcs8_pem(key.to_pkcs8v1().map_err(|_| KeygenError)?.as_ref())
        }
        AlgorithmFamily::Ed => {
            let key = Ed25519KeyPair::generate().map_err(|_| KeygenError)?;
            pkcs8_pem(key.to_pkcs8v1().map_err(|_| KeygenError)?.as_ref())
        }
    };
    Ok(GeneratedKey {
        id,
        algorithm: alg,
        material,
    })
}

/// `n` random bytes as base64url.
pub fn random_token(rng: &dyn SecureRandom, n: usize) -> Result<String, KeygenError> {
    let mut bytes = vec![0u8; n];
    rng.fill(&mut bytes).map_err(|_| KeygenError)?;
    Ok(b64url(&bytes))
}

fn pkcs8_pem(der: &[u8]) -> Secret {
    Secret::new(pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mint::keys::SigningKey;

    #[test]
    fn generated_keys_load_and_sign() {
        for alg in [
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            let generated = generate(alg).unwrap();
            assert!(generated.id.starts_with("sbk_"));
            let key = if alg.family() == AlgorithmFamily::Hmac {
                assert!(generated.material.expose().starts_with(b"sbsec_"));
                SigningKey::hmac(&generated.id, alg, &generated.material)
            } else {
                SigningKey::from_private_pem(&generated.id, alg, generated.material.expose())
            };
            let key = key.unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert!(key.sign(b"x").is_ok());
        }
    }

    #[test]
    fn ids_and_secrets_are_distinct() {
        let a = generate(Algorithm::HS256).unwrap();
        let b = generate(Algorithm::HS256).unwrap();
        assert_ne!(a.id, b.id);
        assert_ne!(a.material, b.material);
    }

    #[test]
    fn a_key_that_does_not_fit_its_algorithm_is_refused() {
        let p384 = generate(Algorithm::ES384).unwrap();
        assert!(
            SigningKey::from_private_pem("k", Algorithm::ES256, p384.material.expose()).is_err()
        );
        let ed = generate(Algorithm::EdDSA).unwrap();
        assert!(SigningKey::from_private_pem("k", Algorithm::RS256, ed.material.expose()).is_err());
        assert!(SigningKey::from_private_pem("k", Algorithm::HS256, ed.material.expose()).is_err());
    }
}
