use super::*;

#[test]
fn jwt_shape_is_three_base64url_segments() {
    assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
    assert!(looks_like_jwt("a.b."));
    assert!(!looks_like_jwt("opaque-token_123"));
    assert!(!looks_like_jwt("a.b"));
    assert!(!looks_like_jwt("a.b.c.d.e"));
    assert!(!looks_like_jwt("a.b+.c"));
    assert!(!looks_like_jwt("gho_abc.def.gh/i"));
}

#[test]
fn a_response_needs_a_boolean_active() {
    assert!(matches!(
        parse_response(br#"{"active": true, "sub": "u"}"#),
        Ok(Introspected::Active { .. })
    ));
    assert!(matches!(
        parse_response(br#"{"active": false}"#),
        Ok(Introspected::Inactive)
    ));
    for hostile in [
        &br#"{"active": "true"}"#[..],
        br#"{"active": 1}"#,
        br#"{"sub": "u"}"#,
        br#"[{"active": true}]"#,
        b"active=true",
        b"",
    ] {
        assert!(parse_response(hostile).is_err(), "{hostile:?}");
    }
}

#[test]
fn basic_credentials_are_form_encoded_first() {
    let credentials = ClientCredentials {
        id: "my client".to_owned(),
        secret: Secret::new("a:b+c"),
    };
    let header = basic(&credentials);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(header.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(decoded, b"my+client:a%3Ab%2Bc");
}

#[test]
fn discovery_gives_the_introspection_endpoint_of_the_configured_issuer() {
    let url = "https://idp.test/.well-known/openid-configuration";
    let doc = br#"{"issuer": "https://idp.test", "introspection_endpoint": "https://idp.test/i"}"#;
    assert_eq!(
        discovered_endpoint(url, "https://idp.test", doc),
        Ok("https://idp.test/i".to_owned())
    );
    assert!(discovered_endpoint(url, "https://other.test", doc).is_err());
    assert!(
        discovered_endpoint(
            url,
            "https://idp.test",
            br#"{"issuer": "https://idp.test"}"#
        )
        .is_err()
    );
}
