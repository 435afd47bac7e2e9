use super::*;

fn seg(json: &str) -> String {
    b64url(json.as_bytes())
}

#[test]
fn parses_header_and_claims() {
    let token = format!(
        "{}.{}.c2ln",
        seg(r#"{"alg":"RS256","kid":"k1"}"#),
        seg(r#"{"iss":"https://idp","aud":["a","b"]}"#)
    );
    let parsed = UnverifiedToken::parse(&token).expect("parses");
    assert_eq!(parsed.header.alg, "RS256");
    assert_eq!(parsed.header.kid.as_deref(), Some("k1"));
    assert_eq!(parsed.issuer(), Some("https://idp"));
    assert_eq!(parsed.audiences(), vec!["a", "b"]);
    assert_eq!(parsed.signature, "c2ln");
}

#[test]
fn rejects_malformed_shapes() {
    let h = seg(r#"{"alg":"RS256"}"#);
    let p = seg(r#"{"sub":"x"}"#);
    let cases = [
        ("two.segments".to_owned(), MalformedToken::Segments),
        (format!("{h}.{p}.a.b.c"), MalformedToken::Encrypted),
        (format!("{h}.{p}.a.b"), MalformedToken::Segments),
        (format!("{h}.!!!.sig"), MalformedToken::BadBase64),
        (format!("{h}.{p}.s+g/"), MalformedToken::BadBase64),
        (format!("{}.{p}.sig", seg("[1]")), MalformedToken::BadHeader),
        (
            format!("{h}.{}.sig", seg("[1,2]")),
            MalformedToken::PayloadNotObject,
        ),
        (
            format!("{h}.{}.sig", seg("\"str\"")),
            MalformedToken::PayloadNotObject,
        ),
        (
            format!("{}.{p}.sig", seg(r#"{"alg":"RS256","crit":["exp"]}"#)),
            MalformedToken::CriticalHeader,
        ),
        ("a".repeat(MAX_TOKEN_BYTES + 1), MalformedToken::TooLarge),
    ];
    for (token, expected) in cases {
        assert_eq!(
            UnverifiedToken::parse(&token).map(|_| ()),
            Err(expected),
            "{}",
            &token[..token.len().min(60)]
        );
    }
}

#[test]
fn audience_of_other_types_is_empty() {
    let token = format!("{}.{}.c2ln", seg(r#"{"alg":"HS256"}"#), seg(r#"{"aud":5}"#));
    assert!(
        UnverifiedToken::parse(&token)
            .unwrap()
            .audiences()
            .is_empty()
    );
}
