//! The request-path normalizer, `request_path::normalize`, on any path.
//!
//! What it gives is what routes match and what the app receives, so it must be the path in
//! its one reading: a fixed point (normalizing it again changes nothing), starting with `/`,
//! with no `//`, no `.` or `..` segment, no encoded `/` or `\`, no backslash, no control byte
//! (raw or encoded), and every escape `%XX` with upper-case hex digits.

#![no_main]

use baton::request_path::{MAX_PATH_BYTES, normalize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    let Ok(normal) = normalize(&path) else {
        return;
    };
    assert!(path.len() <= MAX_PATH_BYTES);
    assert_eq!(
        normalize(&normal).as_deref(),
        Ok(normal.as_ref()),
        "not a fixed point"
    );
    assert!(normal.starts_with('/'), "{normal:?} is not absolute");
    assert!(!normal.contains("//"), "{normal:?} holds //");
    assert!(!normal.contains('\\'), "{normal:?} holds a backslash");
    for segment in normal.split('/') {
        assert!(
            segment != "." && segment != "..",
            "{normal:?} holds a dot-segment"
        );
    }
    let bytes = normal.as_bytes();
    assert!(
        !bytes.iter().any(|b| *b < 0x20 || *b == 0x7f),
        "{normal:?} holds a control byte"
    );
    for (i, _) in normal.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3).expect("an escape has two digits");
        assert!(
            hex.iter()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
            "{normal:?} holds a malformed or lower-case escape"
        );
        let escaped = u8::from_str_radix(std::str::from_utf8(hex).expect("ASCII"), 16)
            .expect("two hex digits");
        assert!(
            !matches!(escaped, b'/' | b'\\') && escaped >= 0x20 && escaped != 0x7f,
            "{normal:?} holds an encoded separator or control byte"
        );
        assert!(
            !(escaped.is_ascii_alphanumeric() || b"-._~".contains(&escaped)),
            "{normal:?} holds an encoded unreserved character"
        );
    }
});
