//! A client connection's memory of its last proxied exchange.
//!
//! A keep-alive client sends the same `Authorization` with request after request. The
//! connection remembers the credentials it last sent, their cache key and the minted token
//! it was served, so the next request with the same credentials is served that token again
//! without parsing them, hashing them (SHA-256 over a 700-byte token was 3% of a proxied
//! cache hit) or looking them up in the shared cache. Held per connection by the listener,
//! it only ever holds credentials that connection sent itself.

use std::sync::{Arc, Mutex};

use super::Minted;
use super::key::cache_key;

/// What one client connection last presented and was served. See the module docs.
#[derive(Default)]
pub struct LastExchange(Mutex<Remembered>);

/// Longer credentials are hashed every time rather than remembered: the memory is taken
/// before the token is verified, and an idle connection must not hold tens of kilobytes of
/// whatever its client sent. Most JWTs are well under this; one that carries many group
/// claims may not be, and is then only hashed as before.
const MAX_REMEMBERED_CREDENTIALS: usize = 4096;

#[derive(Default)]
struct Remembered {
    /// Whether the fields below describe a request (nothing is remembered before the first).
    known: bool,
    generation: u64,
    service: String,
    /// The `Authorization` value as the client sent it.
    credentials: Vec<u8>,
    key: [u8; 32],
    /// The token served for them, and until when (Unix seconds) it may be served.
    served: Option<(Arc<Minted>, u64)>,
}

// === impl LastExchange ===

impl LastExchange {
    /// The cache key of a proxied request (no client, no actor) for `token`, parsed from
    /// `credentials`, and `service` under configuration `generation`: the remembered one
    /// when it is the same request, else hashed and remembered (and nothing served yet).
    pub(super) fn key(
        &self,
        generation: u64,
        service: &str,
        credentials: &[u8],
        token: &str,
    ) -> [u8; 32] {
        if credentials.len() > MAX_REMEMBERED_CREDENTIALS {
            return cache_key(generation, service, None, None, token);
        }
        // Never waited for: when two HTTP/2 streams of one connection race, one hashes.
        let Ok(mut last) = self.0.try_lock() else {
            return cache_key(generation, service, None, None, token);
        };
        if last.is(generation, service, credentials) {
            return last.key;
        }
        let key = cache_key(generation, service, None, None, token);
        let last = &mut *last;
        last.known = true;
        last.generation = generation;
        // Reusing the buffers: a connection whose token changes allocates only to grow them.
        last.service.clear();
        last.service.push_str(service);
        last.credentials.clear();
        last.credentials.extend_from_slice(credentials);
        last.key = key;
        last.served = None;
        key
    }

    /// Remembers that the request whose cache key is `key` was served `minted`, which may
    /// be served until `serve_until`.
    pub(super) fn served(&self, key: &[u8; 32], minted: &Arc<Minted>, serve_until: u64) {
        let Ok(mut last) = self.0.try_lock() else {
            return;
        };
        // Only for the request remembered: another stream may have replaced it meanwhile.
        if last.known && last.key == *key {
            last.served = Some((Arc::clone(minted), serve_until));
        }
    }

    /// The token served for the same request last time, while it may still be served at
    /// `now`.
    pub(super) fn serve_again(
        &self,
        generation: u64,
        service: &str,
        credentials: &[u8],
        now: u64,
    ) -> Option<Arc<Minted>> {
        let last = self.0.try_lock().ok()?;
        let (minted, serve_until) = last.served.as_ref()?;
        (now < *serve_until && last.is(generation, service, credentials))
            .then(|| Arc::clone(minted))
    }
}

impl Remembered {
    fn is(&self, generation: u64, service: &str, credentials: &[u8]) -> bool {
        self.known
            && self.generation == generation
            && self.service == service
            && same_bytes(&self.credentials, credentials)
    }
}

impl std::fmt::Debug for LastExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("LastExchange").finish_non_exhaustive()
    }
}

/// Whether two byte strings are equal, without an early exit at the first difference (a
/// branch-free pass over every byte): how long a prefix another request's credentials share
/// with the remembered ones does not show in the time taken.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(last: &LastExchange, generation: u64, service: &str, token: &str) -> [u8; 32] {
        let credentials = format!("Bearer {token}");
        last.key(generation, service, credentials.as_bytes(), token)
    }

    #[test]
    fn the_remembered_key_is_the_key_of_its_request() {
        let last = LastExchange::default();
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
                key(&last, generation, service, token),
                cache_key(generation, service, None, None, token),
                "{generation} {service} {token}"
            );
        }
    }

    #[test]
    fn long_credentials_are_hashed_but_never_remembered() {
        let last = LastExchange::default();
        let long = "t".repeat(MAX_REMEMBERED_CREDENTIALS);
        assert_eq!(
            key(&last, 1, "app", &long),
            cache_key(1, "app", None, None, &long)
        );
        let remembered = last.0.lock().unwrap();
        assert!(!remembered.known);
        assert_eq!(remembered.credentials.capacity(), 0);
    }

    #[test]
    fn a_held_memory_hashes_instead_of_waiting() {
        let last = LastExchange::default();
        let _held = last.0.lock().unwrap();
        assert_eq!(
            key(&last, 1, "app", "t"),
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
    fn debug_never_shows_the_credentials() {
        let last = LastExchange::default();
        key(&last, 1, "app", "secret-token");
        assert!(!format!("{last:?}").contains("secret-token"));
    }
}
