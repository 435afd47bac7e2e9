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

fn token_with(header: &[u8], payload: &[u8]) -> String {
    format!("{}.{}.c2ln", b64url(header), b64url(payload))
}

#[test]
fn a_header_or_payload_that_is_not_utf8_is_refused() {
    // RFC 7515 §5.2: the header is UTF-8 JSON. A member baton ignores is still checked.
    let header = b"{\"alg\":\"RS256\",\"x\":\"\xff\xfe\"}";
    let payload = br#"{"sub":"x"}"#;
    assert_eq!(
        UnverifiedToken::parse(&token_with(header, payload)).map(|_| ()),
        Err(MalformedToken::BadHeader)
    );
    let header = b"{\"alg\":\"RS256\",\"\xc3\":1}";
    assert_eq!(
        UnverifiedToken::parse(&token_with(header, payload)).map(|_| ()),
        Err(MalformedToken::BadHeader)
    );
    let payload = b"{\"sub\":\"x\",\"n\":\"\xed\xa0\x80\"}";
    assert_eq!(
        UnverifiedToken::parse(&token_with(br#"{"alg":"RS256"}"#, payload)).map(|_| ()),
        Err(MalformedToken::PayloadNotObject)
    );
    // Non-ASCII that is valid UTF-8 is fine.
    let header = "{\"alg\":\"RS256\",\"x\":\"héllo\"}".as_bytes();
    let payload = "{\"name\":\"Zoë\"}".as_bytes();
    assert!(UnverifiedToken::parse(&token_with(header, payload)).is_ok());
}

/// Claims `{"c": [[…[0]…]]}` whose deepest array sits at `depth` (the claims object is 1).
fn nested_claims(depth: usize) -> String {
    let arrays = depth - 1;
    format!(r#"{{"c":{}0{}}}"#, "[".repeat(arrays), "]".repeat(arrays))
}

#[test]
fn claims_deeper_than_the_bound_are_refused() {
    let header = br#"{"alg":"RS256"}"#;
    let at_bound = nested_claims(MAX_CLAIMS_DEPTH);
    assert!(UnverifiedToken::parse(&token_with(header, at_bound.as_bytes())).is_ok());
    let past = nested_claims(MAX_CLAIMS_DEPTH + 1);
    assert_eq!(
        UnverifiedToken::parse(&token_with(header, past.as_bytes())).map(|_| ()),
        Err(MalformedToken::ClaimsTooDeep)
    );
    let objects = format!(
        "{}1{}",
        r#"{"o":"#.repeat(MAX_CLAIMS_DEPTH + 1),
        "}".repeat(MAX_CLAIMS_DEPTH + 1)
    );
    assert_eq!(
        UnverifiedToken::parse(&token_with(header, objects.as_bytes())).map(|_| ()),
        Err(MalformedToken::ClaimsTooDeep)
    );
}

#[test]
fn claims_with_more_values_than_the_bound_are_refused() {
    let header = br#"{"alg":"RS256"}"#;
    // The object, the array, and its elements.
    let zeros = |n: usize| format!(r#"{{"a":[{}]}}"#, vec!["0"; n].join(","));
    let at_bound = zeros(MAX_CLAIM_VALUES - 2);
    assert!(UnverifiedToken::parse(&token_with(header, at_bound.as_bytes())).is_ok());
    let past = zeros(MAX_CLAIM_VALUES - 1);
    assert_eq!(
        UnverifiedToken::parse(&token_with(header, past.as_bytes())).map(|_| ()),
        Err(MalformedToken::TooManyClaimValues)
    );
}
