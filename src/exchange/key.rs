//! Keys of the minted-token cache: a digest of everything a minted token depends on.

use sha2::{Digest, Sha256};

/// SHA-256 over (generation, service, client, actor token, token): never the raw token as a
/// key, a new configuration never finds an old entry, a token minted for one client is never
/// handed to another (nor one minted for no client to a client, or the reverse), and one
/// minted for one actor never to another (nor to no actor). Each variable-length part but
/// the last is length-prefixed and the optional ones tagged present or absent, so no two
/// different tuples hash the same input.
pub(super) fn cache_key(
    generation: u64,
    service: &str,
    client: Option<&str>,
    actor: Option<&str>,
    token: &str,
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(generation.to_le_bytes());
    hasher.update((service.len() as u64).to_le_bytes());
    hasher.update(service.as_bytes());
    for part in [client, actor] {
        match part {
            None => hasher.update([0]),
            Some(part) => {
                hasher.update([1]);
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part.as_bytes());
            }
        }
    }
    hasher.update(token.as_bytes());
    hasher.finalize().into()
}

/// Cache keys are SHA-256 digests, already uniformly distributed: hashing them again with
/// SipHash would cost time on every lookup for nothing. Their first eight bytes are the hash.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct DigestHasher;

#[derive(Default)]
pub(super) struct DigestHash(u64);

impl std::hash::BuildHasher for DigestHasher {
    type Hasher = DigestHash;

    fn build_hasher(&self) -> DigestHash {
        DigestHash::default()
    }
}

impl std::hash::Hasher for DigestHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its 32 bytes (no length prefix for arrays): take 8 of them.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
}
