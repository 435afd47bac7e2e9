use super::*;

fn idp(name: &str, issuer: Option<&str>, audience: Option<&str>) -> Arc<IdentityProvider> {
    Arc::new(IdentityProvider {
        name: name.into(),
        issuer: issuer.map(str::to_owned),
        audience: audience.map(str::to_owned),
        algorithms: vec![Algorithm::RS256],
        keys: KeySource::Discovery,
        url_policy: UrlPolicy::default(),
        leeway: DEFAULT_LEEWAY,
        mapping: ClaimMapper::empty(),
        condition: None,
        introspection: None,
    })
}

#[test]
fn most_specific_match_wins_whatever_the_config_order() {
    let set = IdpSet::new(vec![
        idp("aud-only", None, Some("app")),
        idp("iss-only", Some("https://a"), None),
        idp("both", Some("https://a"), Some("app")),
    ]);
    let pick = |iss, aud: &[&str]| set.select(iss, aud).map(|i| i.name.clone());
    assert_eq!(pick(Some("https://a"), &["x", "app"]), Ok("both".into()));
    assert_eq!(pick(Some("https://a"), &["other"]), Ok("iss-only".into()));
    assert_eq!(pick(Some("https://b"), &["app"]), Ok("aud-only".into()));
    assert_eq!(pick(Some("https://b"), &["nope"]), Err(NoMatch::Unknown));
    assert_eq!(pick(None, &[]), Err(NoMatch::Unknown));
}

#[test]
fn issuer_is_compared_exactly() {
    let set = IdpSet::new(vec![idp("a", Some("https://a/"), None)]);
    assert!(set.select(Some("https://a/"), &[]).is_ok());
    assert!(set.select(Some("https://a"), &[]).is_err());
    assert!(set.select(Some("HTTPS://A/"), &[]).is_err());
}

#[test]
fn near_misses_are_named() {
    let set = IdpSet::new(vec![idp("a", Some("https://a"), Some("app"))]);
    assert_eq!(
        set.select(Some("https://a"), &["other"]).unwrap_err(),
        NoMatch::WrongAudience
    );
    assert_eq!(
        set.select(Some("https://evil"), &["app"]).unwrap_err(),
        NoMatch::WrongIssuer
    );
}
