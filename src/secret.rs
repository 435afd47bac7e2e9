//! A secret value whose `Debug` never shows it.

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("sbsec_topsecretvalue");
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
