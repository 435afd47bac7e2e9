use super::*;

#[test]
fn a_bearer_token_is_read_with_any_case_of_the_scheme() {
    for (value, token) in [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc.def.ghi", "abc.def.ghi"),
        ("BEARER abc", "abc"),
        ("Bearer   abc", "abc"),
        ("Bearer abc== ", "abc=="),
        ("Bearer a-b_c~d+e/f", "a-b_c~d+e/f"),
    ] {
        assert_eq!(
            Credentials::parse(value.as_bytes()),
            Credentials::Bearer(token),
            "{value:?}"
        );
    }
}

#[test]
fn a_bearer_scheme_without_a_well_formed_token_is_malformed_but_still_bearer() {
    for value in [
        "Bearer",
        "Bearer ",
        "Bearer\tabc",
        "Bearer \tabc",
        "Bearer abc def",
        "Bearer abc,def",
        "Bearer a=b",
        "Bearer \"abc\"",
        "Bearer=abc",
        "Bearer\u{a0}abc",
        "bEaReR abc\u{1}",
    ] {
        let credentials = Credentials::parse(value.as_bytes());
        assert_eq!(credentials, Credentials::MalformedBearer, "{value:?}");
        assert!(credentials.is_bearer(), "{value:?}");
    }
}

#[test]
fn other_schemes_and_garbage_are_told_apart() {
    for value in [
        "Basic dXNlcjpwYXNz",
        "Digest username=\"a\", realm=\"b\"",
        "Negotiate",
    ] {
        let credentials = Credentials::parse(value.as_bytes());
        assert_eq!(credentials, Credentials::OtherScheme, "{value:?}");
        assert!(!credentials.is_bearer(), "{value:?}");
    }
    for value in [
        "",
        "   ",
        "\"Bearer\" abc",
        "Basic\tdXNlcg==",
        "(Bearer) x",
        "\u{e9}t\u{e9}",
    ] {
        assert_eq!(
            Credentials::parse(value.as_bytes()),
            Credentials::Malformed,
            "{value:?}"
        );
    }
    // Bearer followed by more token characters is another scheme's name, not Bearer.
    assert_eq!(Credentials::parse(b"Bearerx abc"), Credentials::OtherScheme);
}
