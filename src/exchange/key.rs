//! Keys of the minted-token cache: a digest of everything a minted token depends on, and a
//! connection's memory of the last one it used.

use std::sync::Mutex;

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

/// The cache key of the last token one client connection presented. A keep-alive client
/// sends the same token with request after request; comparing it with the last one costs a
/// small fraction of hashing it again (SHA-256 over a 700-byte token was 3% of a proxied
/// cache hit). Held per connection by the listener, so it only ever holds a token that
/// connection sent itself.
#[derive(Default)]
pub struct LastKey(Mutex<Remembered>);

/// Longer tokens are hashed every time rather than remembered: the memory is taken before the
/// token is verified, and an idle connection must not hold tens of kilobytes of whatever its
/// client sent. Most JWTs are well under this; one that carries many group claims may not be,
/// and is then only hashed as before.
const MAX_REMEMBERED_TOKEN: usize = 4096;

#[derive(Default)]
struct Remembered {
    /// Whether the fields below describe a key (nothing is remembered before the first).
    known: bool,
    generation: u64,
    service: String,
    token: String,
    key: [u8; 32],
}

// === impl LastKey ===

impl LastKey {
    /// The key of a proxied request (no client, no actor) for `token` and `service` under
    /// configuration `generation`: the remembered one when it is the same request, else
    /// hashed and remembered.
    pub(super) fn key(&self, generation: u64, service: &str, token: &str) -> [u8; 32] {
        if token.len() > MAX_REMEMBERED_TOKEN {
            return cache_key(generation, service, None, None, token);
        }
        // Never waited for: when two HTTP/2 streams of one connection race, one hashes.
        let Ok(mut last) = self.0.try_lock() else {
            return cache_key(generation, service, None, None, token);
        };
        if last.known
            && last.generation == generation
            && last.service == service
            && same_bytes(last.token.as_bytes(), token.as_bytes())
        {
            return last.key;
        }
        let key = cache_key(generation, service, None, None, token);
        let last = &mut *last;
        last.known = true;
        last.generation = generation;
        // Reusing the buffers: a connection whose token changes allocates only to grow them.
        last.service.clear();
        last.service.push_str(service);
        last.token.clear();
        last.token.push_str(token);
        last.key = key;
        key
    }
}

impl std::fmt::Debug for LastKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("LastKey").finish_non_exhaustive()
    }
}

/// Whether two byte strings are equal, without an early exit at the first difference (a
/// branch-free pass that vectorizes): how long a prefix another request's token shares with
/// the remembered one does not show in the time taken.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_key_is_the_key_of_its_request() {
        let last = LastKey::default();
        for (generation, service, token) in [
            (1, "app", "token-a"),
            (1, "app", "token-a"),
            (1, "app", "token-b"),
            (1, "other", "token-b"),
            (2, "other", "token-b"),
            (2, "other", "token-bb"),
            (2, "other", "token-b"),
            (2, "other", ""),
        ] {
            assert_eq!(
                last.key(generation, service, token),
                cache_key(generation, service, None, None, token),
                "{generation} {service} {token}"
            );
        }
    }

    #[test]
    fn a_long_token_is_hashed_but_never_remembered() {
        let last = LastKey::default();
        let long = "t".repeat(MAX_REMEMBERED_TOKEN + 1);
        assert_eq!(
            last.key(1, "app", &long),
            cache_key(1, "app", None, None, &long)
        );
        let remembered = last.0.lock().unwrap();
        assert!(!remembered.known);
        assert_eq!(remembered.token.capacity(), 0);
    }

    #[test]
    fn a_held_memory_hashes_instead_of_waiting() {
        let last = LastKey::default();
        let _held = last.0.lock().unwrap();
        assert_eq!(
            last.key(1, "app", "t"),
            cache_key(1, "app", None, None, "t")
        );
    }

    #[test]
    fn same_bytes_compares_every_byte_and_the_length() {
        assert!(same_bytes(b"", b""));
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"xbc"));
        assert!(!same_bytes(b"abc", b"abcd"));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let last = LastKey::default();
        last.key(1, "app", "secret-token");
        assert!(!format!("{last:?}").contains("secret-token"));
    }
}
