use super::*;

fn normalized(path: &str) -> String {
    normalize(path)
        .unwrap_or_else(|e| panic!("{path:?} refused: {e}"))
        .into_owned()
}

#[test]
fn a_normal_path_is_borrowed_unchanged() {
    for path in [
        "/",
        "/api/users/42",
        "/api/users/",
        "/.well-known/jwks.json",
        "/a.b/..c/...",
        "/files/name;v=1",
        "/caf\u{e9}",
        "/a+b/c@d/e:f",
    ] {
        assert!(
            matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path),
            "{path:?}: {:?}",
            normalize(path)
        );
    }
}

#[test]
fn dot_segments_are_removed_as_rfc_3986_says() {
    // RFC 3986 §5.2.4 and its examples, plus the bypasses of the hardening issue.
    let cases = [
        ("/health/../api/x", "/api/x"),
        ("/health/./../api/x", "/api/x"),
        ("/health/%2e%2e/api/x", "/api/x"),
        ("/health/%2E%2E/api/x", "/api/x"),
        ("/health/.%2e/api/x", "/api/x"),
        ("/health/../tokens", "/tokens"),
        ("/a/b/c/./../../g", "/a/g"),
        ("/mid/content=5/../6", "/mid/6"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/%2e", "/a/b/"),
        ("/..", "/"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/.", "/"),
        ("/./a", "/a"),
    ];
    for (path, expected) in cases {
        assert_eq!(normalized(path), expected, "{path:?}");
    }
}

#[test]
fn repeated_slashes_are_merged() {
    let cases = [
        ("//", "/"),
        ("//api", "/api"),
        ("/api//x", "/api/x"),
        ("/api///x//", "/api/x/"),
        ("/health//..//api", "/api"),
    ];
    for (path, expected) in cases {
        assert_eq!(normalized(path), expected, "{path:?}");
    }
}

#[test]
fn unreserved_escapes_are_decoded_and_others_upper_cased() {
    let cases = [
        ("/%61pi/x", "/api/x"),
        ("/a%2Db%5fc%7E", "/a-b_c~"),
        ("/a%20b", "/a%20b"),
        ("/a%3bb", "/a%3Bb"),
        ("/q%3f", "/q%3F"),
        ("/%c3%a9", "/%C3%A9"),
        ("/100%25", "/100%25"),
    ];
    for (path, expected) in cases {
        assert_eq!(normalized(path), expected, "{path:?}");
    }
}

#[test]
fn ambiguous_paths_are_refused() {
    let cases = [
        ("/health/..%2fapi/x", PathRefused::EncodedSeparator),
        ("/health/..%2Fapi/x", PathRefused::EncodedSeparator),
        ("/a%5cb", PathRefused::EncodedSeparator),
        ("/health\\..\\api", PathRefused::Backslash),
        ("/health/..;/api/x", PathRefused::DotSegmentParameters),
        (
            "/health/..;jsessionid=1/api",
            PathRefused::DotSegmentParameters,
        ),
        ("/health/.;/api", PathRefused::DotSegmentParameters),
        ("/health/..%3b/api", PathRefused::DotSegmentParameters),
        ("/health/%2e%2e;/api", PathRefused::DotSegmentParameters),
        ("/a%00b", PathRefused::ControlByte),
        ("/a\0b", PathRefused::ControlByte),
        ("/a\tb", PathRefused::ControlByte),
        ("/a%0d%0aSet-Cookie:x", PathRefused::ControlByte),
        ("/a%7f", PathRefused::ControlByte),
        ("/a%", PathRefused::MalformedEscape),
        ("/a%4", PathRefused::MalformedEscape),
        ("/a%zz", PathRefused::MalformedEscape),
        ("api", PathRefused::NotAbsolute),
        ("", PathRefused::NotAbsolute),
        ("*", PathRefused::NotAbsolute),
    ];
    for (path, expected) in cases {
        assert_eq!(normalize(path), Err(expected), "{path:?}");
    }
}

#[test]
fn a_path_over_the_limit_is_refused() {
    let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
    assert_eq!(normalize(&long), Err(PathRefused::TooLong));
    let at_limit = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
    assert_eq!(normalized(&at_limit), at_limit);
}

proptest::proptest! {
    /// What normalize returns is normal: normalizing it again changes nothing, and it holds no
    /// empty or dot-segment and no escape of an unreserved character.
    #[test]
    fn normalizing_is_idempotent(path in "/[a-zA-Z0-9./%;~_-]{0,40}") {
        if let Ok(once) = normalize(&path) {
            let twice = normalize(&once).expect("a normalized path is accepted");
            proptest::prop_assert_eq!(&twice, &once);
            proptest::prop_assert!(matches!(twice, Cow::Borrowed(_)));
            proptest::prop_assert!(once.starts_with('/'));
            proptest::prop_assert!(!once.contains("//"));
            for segment in once.split('/') {
                proptest::prop_assert!(segment != "." && segment != "..", "{}", once);
            }
        }
    }
}
