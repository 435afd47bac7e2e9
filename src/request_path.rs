//! The request path as the app will see it.
//!
//! Routes must match the path the app serves, not the bytes a client chose to send: an app (or
//! its framework) that resolves `/health/../api` to `/api` would otherwise serve an exchange
//! route's content on a `skip` route. So baton normalizes the path once, before anything
//! matches on it, and forwards exactly what it matched. The model is Envoy's
//! `normalize_path` + `merge_slashes` + `path_with_escaped_slashes_action: REJECT_REQUEST`:
//!
//! 1. percent-encoded unreserved characters (RFC 3986 §2.3: `A–Z a–z 0–9 - . _ ~`) are
//!    decoded, other escapes keep their meaning and get upper-case hex (§6.2.2.1);
//! 2. dot-segments are removed (§5.2.4), whether written `.`/`..` or `%2e`/`%2E`;
//! 3. repeated slashes are merged (`//` → `/`).
//!
//! A path the app could read in more than one way is refused rather than guessed at: an encoded
//! `/` or `\` (`%2F`, `%5C`: the app may decode them into separators), a raw backslash (some
//! servers treat it as `/`), a NUL or other control byte (raw or encoded), a malformed escape,
//! and a dot-segment carrying `;` parameters (`..;/`: Tomcat strips the parameter and then
//! resolves the `..`). The query is not part of the path and is never touched.

use std::borrow::Cow;

/// The longest path baton accepts, in bytes (before normalization). Browsers and servers
/// commonly cap URLs at 8 KiB; the path alone rarely passes a few hundred bytes.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Why a path was refused. Each is a 400: the client sent something no app should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathRefused {
    /// A raw backslash, which some servers read as a separator.
    #[error("the path holds a backslash")]
    Backslash,
    /// A NUL or other control byte, raw or percent-encoded.
    #[error("the path holds a control character")]
    ControlByte,
    /// A `.` or `..` segment with `;` parameters (`..;`), which some servers resolve.
    #[error("the path holds a dot-segment with parameters")]
    DotSegmentParameters,
    /// `%2F` or `%5C`: a separator the app may decode.
    #[error("the path holds an encoded slash or backslash")]
    EncodedSeparator,
    /// A `%` not followed by two hex digits.
    #[error("the path holds a malformed percent-encoding")]
    MalformedEscape,
    /// Not an origin-form path: it does not start with `/`.
    #[error("the path does not start with /")]
    NotAbsolute,
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("the path is too long")]
    TooLong,
}

/// `path` normalized (see the module docs), borrowed when it already was.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathRefused> {
    let bytes = path.as_bytes();
    if bytes.len() > MAX_PATH_BYTES {
        return Err(PathRefused::TooLong);
    }
    if bytes.first() != Some(&b'/') {
        return Err(PathRefused::NotAbsolute);
    }
    if is_normal(bytes)? {
        return Ok(Cow::Borrowed(path));
    }
    rebuild(bytes).map(Cow::Owned)
}

/// Bytes the fast path must look at: everything else is copied as it is.
const SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[0x7f] = true;
    table[b'%' as usize] = true;
    table[b'/' as usize] = true;
    table[b'.' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Whether `bytes` needs no change: no escape to rewrite, no empty segment, no dot-segment.
/// Fails on a byte that is refused wherever it stands.
fn is_normal(bytes: &[u8]) -> Result<bool, PathRefused> {
    let mut normal = true;
    let mut i = 0;
    while let Some(offset) = bytes[i..].iter().position(|&b| SPECIAL[usize::from(b)]) {
        i += offset;
        match bytes[i] {
            b'\\' => return Err(PathRefused::Backslash),
            b'%' => {
                // An escape that decoding keeps as it is (upper-case hex of a reserved or
                // non-ASCII byte) leaves the path normal; any other needs the slow path, which
                // decodes it or refuses it.
                let kept = matches!(
                    (bytes.get(i + 1), bytes.get(i + 2)),
                    (Some(&high), Some(&low))
                        if !high.is_ascii_lowercase() && !low.is_ascii_lowercase()
                            && escape(high, low) == Ok(Escape::Keep)
                );
                normal &= kept;
            }
            b'/' => {
                // An empty segment (`//`), or a segment that is (or may decode to, or carries
                // parameters after) `.` or `..`, needs the slow path.
                let rest = &bytes[i + 1..];
                let dots = rest.iter().take(2).take_while(|&&b| b == b'.').count();
                if rest.first() == Some(&b'/')
                    || (dots > 0 && matches!(rest.get(dots), None | Some(b'/' | b';' | b'%')))
                {
                    normal = false;
                }
            }
            b'.' => {}
            _ => return Err(PathRefused::ControlByte),
        }
        i += 1;
    }
    Ok(normal)
}

/// The slow path: decodes each segment, drops dot-segments and empty ones, joins the rest.
fn rebuild(bytes: &[u8]) -> Result<String, PathRefused> {
    let mut out = Vec::with_capacity(bytes.len());
    // The input starts with `/`, so the first split piece is empty and skipped.
    let mut pieces = bytes[1..].split(|&b| b == b'/').peekable();
    let mut trailing_slash = false;
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        let start = out.len();
        out.push(b'/');
        decode_segment(piece, &mut out)?;
        let segment = &out[start + 1..];
        trailing_slash = last;
        match dot_segment(segment)? {
            Some(DotSegment::Current) => out.truncate(start),
            Some(DotSegment::Parent) => {
                let parent = out[..start].iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(parent);
            }
            None if segment.is_empty() => out.truncate(start),
            None => trailing_slash = false,
        }
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    // Decoding only ever turns `%XX` of an ASCII unreserved character into that character, and
    // every other byte is copied from a `&str`: the result is UTF-8.
    String::from_utf8(out).map_err(|_| PathRefused::MalformedEscape)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DotSegment {
    Current,
    Parent,
}

/// Whether a decoded segment is `.` or `..`; refuses one with parameters (`..;x`, `.;`),
/// whether its `;` was raw or encoded (`%3B` stays encoded after decoding).
fn dot_segment(segment: &[u8]) -> Result<Option<DotSegment>, PathRefused> {
    let (dots, rest) = match segment {
        [b'.', b'.', rest @ ..] => (DotSegment::Parent, rest),
        [b'.', rest @ ..] => (DotSegment::Current, rest),
        _ => return Ok(None),
    };
    if rest.is_empty() {
        return Ok(Some(dots));
    }
    if rest.first() == Some(&b';')
        || rest
            .get(..3)
            .is_some_and(|r| r.eq_ignore_ascii_case(b"%3b"))
    {
        return Err(PathRefused::DotSegmentParameters);
    }
    Ok(None)
}

/// Appends `piece` to `out` with unreserved escapes decoded and the others upper-cased.
fn decode_segment(piece: &[u8], out: &mut Vec<u8>) -> Result<(), PathRefused> {
    let mut i = 0;
    while i < piece.len() {
        let byte = piece[i];
        match byte {
            b'\\' => return Err(PathRefused::Backslash),
            0..=0x1f | 0x7f => return Err(PathRefused::ControlByte),
            b'%' => {
                let (Some(&high), Some(&low)) = (piece.get(i + 1), piece.get(i + 2)) else {
                    return Err(PathRefused::MalformedEscape);
                };
                match escape(high, low)? {
                    Escape::Decode(decoded) => out.push(decoded),
                    Escape::Keep => {
                        out.push(b'%');
                        out.push(high.to_ascii_uppercase());
                        out.push(low.to_ascii_uppercase());
                    }
                }
                i += 3;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Ok(())
}

/// What becomes of the escape `%<high><low>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    /// An unreserved character: decoded (RFC 3986 §6.2.2.2).
    Decode(u8),
    /// Anything else that may stand in a path: kept encoded.
    Keep,
}

fn escape(high: u8, low: u8) -> Result<Escape, PathRefused> {
    let (Some(high), Some(low)) = (hex_value(high), hex_value(low)) else {
        return Err(PathRefused::MalformedEscape);
    };
    match high << 4 | low {
        b'/' | b'\\' => Err(PathRefused::EncodedSeparator),
        0..=0x1f | 0x7f => Err(PathRefused::ControlByte),
        decoded @ (b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~') => {
            Ok(Escape::Decode(decoded))
        }
        _ => Ok(Escape::Keep),
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
