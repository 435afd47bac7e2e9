//! A secret value whose `Debug` never shows it, and the reading of the state file's master
//! key (below both the config, which loads it, and the state file, which it seals).

use std::fmt;

use base64::Engine as _;

/// Secret bytes (a signing key, an HMAC secret, a client secret).
///
/// `Debug` prints `Secret([redacted])`; there is no `Display`. Read the value with
/// [`Secret::expose`], and only where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

// === impl Secret ===

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The secret bytes. Call this only at the point of use.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The AES-256-GCM master key in `value`: 32 bytes, base64 (standard or URL-safe alphabet).
pub fn master_key(value: &[u8]) -> Result<Secret, String> {
    let text = value.trim_ascii();
    let decoded = [
        &base64::engine::general_purpose::STANDARD,
        &LENIENT_URL_SAFE,
    ]
    .iter()
    .find_map(|engine| engine.decode(text).ok())
    .ok_or("not base64 (make one with `openssl rand -base64 32`)")?;
    if decoded.len() != 32 {
        return Err(format!(
            "{} bytes; the master key is 32 bytes (AES-256), base64",
            decoded.len()
        ));
    }
    Ok(Secret::new(decoded))
}

/// Base64 with the URL-safe alphabet, padded or not.
pub const LENIENT_URL_SAFE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

#[cfg(test)]
mod tests {
    use super::{Secret, master_key};
    use crate::token::b64url;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("sbsec_topsecretvalue");
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn master_keys_are_32_bytes_of_base64() {
        let master = master_key(b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        assert_eq!(master.expose().len(), 32);
        let url_safe = b64url(&[7u8; 32]);
        assert!(master_key(url_safe.as_bytes()).is_ok());
        assert!(master_key(b"c2hvcnQ=").unwrap_err().contains("5 bytes"));
        assert!(
            master_key(b"not base64 at all!")
                .unwrap_err()
                .contains("not base64")
        );
    }
}
