//! Signing keys: HMAC secrets (State Backed style) and PEM private keys.

use std::fmt;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey};

use crate::algorithm;
use crate::crypto::{Signer, Verifier};
use crate::secret::Secret;
use crate::token::b64url;

/// A key baton signs its tokens with.
///
/// `Debug` shows the id and algorithm, never key material.
pub struct SigningKey {
    id: String,
    algorithm: Algorithm,
    signer: Signer,
    verification: Verifier,
    public_jwk: Option<Jwk>,
    retired: bool,
}

/// A key that could not be loaded or does not fit its algorithm.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

// === impl SigningKey ===

impl SigningKey {
    /// An HMAC key. As State Backed does, the secret string's UTF-8 bytes are the key.
    pub fn hmac(id: &str, alg: Algorithm, secret: &Secret) -> Result<Self, KeyError> {
        if !algorithm::is_hmac(alg) {
            return Err(KeyError(format!(
                "{} needs a private key (private_key_file or private_key_env), not a secret",
                algorithm::name(alg)
            )));
        }
        if secret.expose().is_empty() {
            return Err(KeyError("the HMAC secret is empty".to_owned()));
        }
        let signer = Signer::hmac(alg, secret.expose()).map_err(|e| KeyError(e.0))?;
        Self::checked(id, signer, Verifier::hmac(secret.expose()), None)
    }

    /// An asymmetric key from a PEM private key (PKCS#8, or PKCS#1 for RSA).
    pub fn from_private_pem(id: &str, alg: Algorithm, pem: &[u8]) -> Result<Self, KeyError> {
        if alg.family() == AlgorithmFamily::Hmac {
            return Err(KeyError(format!(
                "{} needs a secret (secret_env or secret_file), not a private key",
                algorithm::name(alg)
            )));
        }
        let signer = Signer::from_pem(alg, pem).map_err(|e| KeyError(e.0))?;
        // jsonwebtoken derives the public JWK (n/e, x/y or x) at load; it never signs here.
        let encoding = match alg.family() {
            AlgorithmFamily::Hmac | AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem),
        }
        .map_err(|e| {
            KeyError(format!(
                "not a PEM private key for {}: {e}",
                algorithm::name(alg)
            ))
        })?;
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).map_err(|e| {
            KeyError(format!(
                "the key does not fit {}: {e}",
                algorithm::name(alg)
            ))
        })?;
        jwk.common.key_id = Some(id.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let verification = signer
            .public_verifier()
            .ok_or_else(|| KeyError("cannot derive the public key".to_owned()))?;
        Self::checked(id, signer, verification, Some(jwk))
    }

    /// Signs a test message and verifies it, so that a key whose material does not fit its
    /// algorithm (an EC P-384 key declared ES256, say) fails at load, not at first use.
    fn checked(
        id: &str,
        signer: Signer,
        verification: Verifier,
        public_jwk: Option<Jwk>,
    ) -> Result<Self, KeyError> {
        let alg = signer.algorithm();
        let probe = b"baton key check";
        let signature = signer
            .sign(probe)
            .map_err(|e| KeyError(format!("the key cannot sign {}: {e}", algorithm::name(alg))))?;
        if !verification.verify(alg, probe, &b64url(&signature)) {
            return Err(KeyError(format!(
                "the key does not fit {}",
                algorithm::name(alg)
            )));
        }
        Ok(Self {
            id: id.to_owned(),
            algorithm: alg,
            signer,
            verification,
            public_jwk,
            retired: false,
        })
    }

    /// Marks the key retired: it no longer signs, but stays published and verifiable.
    pub fn retire(mut self) -> Self {
        self.retired = true;
        self
    }

    /// The key id (`kid` of the tokens it signs).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Whether the key is retired.
    pub fn is_retired(&self) -> bool {
        self.retired
    }

    /// The public JWK (`kid`, `use: sig`, `alg` set) of an asymmetric key; `None` for HMAC.
    pub fn public_jwk(&self) -> Option<&Jwk> {
        self.public_jwk.as_ref()
    }

    /// The key that verifies this key's signatures.
    pub fn verifier(&self) -> &Verifier {
        &self.verification
    }

    /// Signs `message`, returning the base64url signature.
    pub fn sign(&self, message: &[u8]) -> Result<String, KeyError> {
        self.signer
            .sign(message)
            .map(|signature| b64url(&signature))
            .map_err(|e| KeyError(format!("signing with key {} failed: {e}", self.id)))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}
