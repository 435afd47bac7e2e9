use std::path::Path;

use serde_json::json;

use super::*;
use crate::clock::FixedClock;
use crate::token::b64url;

const NOW: u64 = 1_800_000_000;
const IDP_SECRET: &str = "idp-shared-secret";

fn config(ttl: &str, extra: &str) -> Config {
    let source = format!(
        r#"
[server]
issuer = "https://baton.test"

[[keys]]
id = "sbk_test"
algorithm = "HS256"
secret = "sbsec_test"

[[idps]]
name = "supabase"
audience = "authenticated"
algorithms = ["HS256"]
key_env = "IDP_SECRET"
mapping = {{ "sub.$" = "$.sub", "roles.$" = "$.app_metadata.roles[*]", provider = "supabase" }}

[[token_providers]]
service = "app"
key = "sbk_test"
ttl = "{ttl}"
mapping = {{ "user.$" = "$.sub", "roles.$" = "$.roles", "provider.$" = "$.provider" }}

[[token_providers]]
service = "api"
key = "sbk_test"
profile = "access_token"
audience = "https://api.test"
mapping = {{ "sub.$" = "$.sub", scope = "read" }}
{extra}
"#
    );
    Config::from_toml(&source, Path::new("."), &|name| {
        (name == "IDP_SECRET").then(|| IDP_SECRET.to_owned())
    })
    .unwrap()
}

fn exchanger(config: Config) -> Exchanger {
    Exchanger::new(
        config,
        ExchangerOptions {
            clock: Arc::new(FixedClock(NOW)),
            ..ExchangerOptions::default()
        },
    )
    .unwrap()
}

fn subject(sub: &str, exp: u64) -> String {
    let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({
        "aud": "authenticated", "sub": sub, "exp": exp, "iat": NOW - 10,
        "app_metadata": { "roles": ["admin", "dev"] }
    });
    let input = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
    let key = jsonwebtoken::EncodingKey::from_secret(IDP_SECRET.as_bytes());
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
    format!("{input}.{signature}")
}

fn decode(token: &str) -> (Value, Value) {
    let part = |i: usize| -> Value {
        let segment = token.split('.').nth(i).unwrap();
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, segment)
                .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    (part(0), part(1))
}

#[tokio::test]
async fn statebacked_profile_puts_mapped_claims_in_act() {
    let exchanger = exchanger(config("1h", ""));
    let exchanged = exchanger
        .exchange(&subject("user-1", NOW + 7200), "app")
        .await
        .unwrap();
    let (header, payload) = decode(exchanged.minted.token());
    assert_eq!(header, json!({ "alg": "HS256", "kid": "sbk_test" }));
    assert_eq!(
        payload,
        json!({
            "act": { "user": "user-1", "roles": ["admin", "dev"], "provider": "supabase" },
            "aud": "https://api.statebacked.dev/",
            "iss": "https://baton.test",
            "iat": NOW,
            "exp": NOW + 3600,
        })
    );
    assert!(!exchanged.cached);
    assert_eq!(&*exchanged.minted.idp, "supabase");
}

#[tokio::test]
async fn access_token_profile_is_rfc_9068() {
    let exchanger = exchanger(config("1h", ""));
    let minted = exchanger
        .exchange(&subject("user-1", NOW + 7200), "api")
        .await
        .unwrap()
        .minted;
    let (header, payload) = decode(minted.token());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(payload["sub"], "user-1");
    assert_eq!(payload["scope"], "read");
    assert_eq!(payload["aud"], "https://api.test");
    assert_eq!(payload["iss"], "https://baton.test");
    assert_eq!(payload["iat"], NOW);
    assert_eq!(payload["exp"], NOW + 3600);
    assert_eq!(payload["jti"].as_str().map(str::len), Some(22));
}

#[tokio::test]
async fn expiry_never_outlives_the_subject_token() {
    let exchanger = exchanger(config("1h", ""));
    let minted = exchanger
        .exchange(&subject("user-1", NOW + 120), "app")
        .await
        .unwrap()
        .minted;
    assert_eq!(minted.expires_at, NOW + 120);
    assert_eq!(decode(minted.token()).1["exp"], NOW + 120);
}

#[tokio::test]
async fn the_same_token_and_service_hit_the_cache() {
    let exchanger = exchanger(config("1h", ""));
    let token = subject("user-1", NOW + 7200);
    let first = exchanger.exchange(&token, "app").await.unwrap();
    let second = exchanger.exchange(&token, "app").await.unwrap();
    assert!(!first.cached && second.cached);
    assert_eq!(first.minted.token(), second.minted.token());
    let other_service = exchanger.exchange(&token, "api").await.unwrap();
    assert!(!other_service.cached);
    assert_eq!(exchanger.cache_stats().hits.load(Ordering::Relaxed), 1);
    assert_eq!(exchanger.cache_stats().misses.load(Ordering::Relaxed), 2);
}

/// A clock the test moves forward.
#[derive(Debug)]
struct SteppedClock(AtomicU64);

impl crate::clock::Clock for SteppedClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// An exchanger whose providers mint for `ttl`, on a clock the test moves.
fn stepped_exchanger(ttl: &str) -> (Exchanger, Arc<SteppedClock>) {
    let clock = Arc::new(SteppedClock(AtomicU64::new(NOW)));
    let exchanger = Exchanger::new(
        config(ttl, ""),
        ExchangerOptions {
            clock: Arc::clone(&clock) as SharedClock,
            ..ExchangerOptions::default()
        },
    )
    .unwrap();
    (exchanger, clock)
}

#[tokio::test]
async fn a_cached_token_is_served_for_the_first_four_fifths_of_its_life_only() {
    let (exchanger, clock) = stepped_exchanger("100s");
    let token = subject("user-1", NOW + 7200);
    let first = exchanger.exchange(&token, "app").await.unwrap();
    assert_eq!(first.minted.expires_at, NOW + 100);

    clock.0.store(NOW + 79, Ordering::Relaxed);
    let still = exchanger.exchange(&token, "app").await.unwrap();
    assert!(
        still.cached,
        "79 s into a 100 s life: served from the cache"
    );
    assert_eq!(still.minted.token(), first.minted.token());

    clock.0.store(NOW + 80, Ordering::Relaxed);
    let renewed = exchanger.exchange(&token, "app").await.unwrap();
    assert!(!renewed.cached, "80 s in: the caller gets a fresh token");
    assert_eq!(renewed.minted.issued_at, NOW + 80);
    assert_eq!(renewed.minted.expires_at, NOW + 180);

    clock.0.store(NOW + 81, Ordering::Relaxed);
    let again = exchanger.exchange(&token, "app").await.unwrap();
    assert!(
        again.cached,
        "the fresh token replaced the stale one in the cache"
    );
    assert_eq!(again.minted.token(), renewed.minted.token());
}

#[tokio::test]
async fn a_reload_never_serves_a_token_minted_under_the_old_config() {
    let exchanger = exchanger(config("1h", ""));
    let token = subject("user-1", NOW + 7200);
    let before = exchanger.exchange(&token, "app").await.unwrap().minted;
    exchanger.reload(config("30m", ""));
    assert_eq!(exchanger.generation(), 2);
    let after = exchanger.exchange(&token, "app").await.unwrap();
    assert!(!after.cached);
    assert_ne!(after.minted.token(), before.token());
    assert_eq!(after.minted.expires_at, NOW + 1800);
}

#[tokio::test]
async fn unknown_services_and_bad_tokens_name_their_stage() {
    let exchanger = exchanger(config("1h", ""));
    let token = subject("user-1", NOW + 7200);
    let unknown = exchanger.exchange(&token, "nope").await.unwrap_err();
    assert_eq!(unknown, ExchangeError::UnknownService("nope".to_owned()));
    assert_eq!(
        (unknown.stage(), unknown.fault()),
        ("service", Fault::Client)
    );

    let expired = exchanger
        .exchange(&subject("u", NOW - 61), "app")
        .await
        .unwrap_err();
    assert!(
        matches!(expired, ExchangeError::Token(VerifyError::Expired { .. })),
        "{expired:?}"
    );
    assert_eq!(expired.stage(), "time claims");
    // Within the 60 s default leeway.
    assert!(
        exchanger
            .exchange(&subject("u", NOW - 59), "app")
            .await
            .is_ok()
    );

    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let bad = exchanger.exchange(&tampered, "app").await.unwrap_err();
    assert_eq!(bad, ExchangeError::Token(VerifyError::BadSignature));
    assert_eq!(bad.stage(), "signature");
}

#[tokio::test]
async fn explain_records_each_step_and_the_claims() {
    let exchanger = exchanger(config("1h", ""));
    let token = subject("user-1", NOW + 7200);
    let (result, trace) = exchanger.explain(&token, "app", None).await;
    assert!(result.is_ok());
    let names: Vec<&str> = trace.steps().iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "service",
            "parse",
            "select IdP",
            "algorithm",
            "signature",
            "time claims",
            "mint"
        ]
    );
    assert!(trace.steps().iter().all(|s| s.passed));
    let labels: Vec<&str> = trace.claims().iter().map(|(l, _)| *l).collect();
    assert_eq!(labels.len(), 3);
    assert_eq!(trace.claims()[1].1["provider"], "supabase");
    let shown = trace.to_string();
    assert!(
        !shown.contains(&token),
        "the trace must never show the token"
    );
    assert!(!shown.contains(IDP_SECRET) && !shown.contains("sbsec_test"));

    let (failed, trace) = exchanger
        .explain(&subject("u", NOW - 3600), "app", None)
        .await;
    assert!(failed.is_err());
    let last = trace.steps().last().unwrap();
    assert_eq!((last.name, last.passed), ("time claims", false));
}

/// The test IdP and an `app` provider with these conditions (`''` for none) and clients
/// `web` (limited to `web_idps`) and `cli` (any IdP).
fn policy_config(idp_condition: &str, provider_condition: &str, web_idps: &str) -> Config {
    let line = |key: &str, value: &str| {
        if value.is_empty() {
            String::new()
        } else {
            format!("{key} = {value}\n")
        }
    };
    let source = format!(
        r#"
[[keys]]
id = "sbk_test"
algorithm = "HS256"
secret = "sbsec_test"

[[idps]]
name = "supabase"
audience = "authenticated"
algorithms = ["HS256"]
key_env = "IDP_SECRET"
mapping = {{ "sub.$" = "$.sub", "roles.$" = "$.app_metadata.roles[*]" }}
{}
[[idps]]
name = "other"
issuer = "https://other.test"
algorithms = ["HS256"]
key_env = "IDP_SECRET"
mapping = {{}}

[[token_providers]]
service = "app"
key = "sbk_test"
mapping = {{ "user.$" = "$.sub" }}
{}
[[token_providers.clients]]
id = "web"
secret = "web-secret"
{}
[[token_providers.clients]]
id = "cli"
secret = "cli-secret"
"#,
        line("condition", idp_condition),
        line("condition", provider_condition),
        line("idps", web_idps),
    );
    Config::from_toml(&source, Path::new("."), &|name| {
        (name == "IDP_SECRET").then(|| IDP_SECRET.to_owned())
    })
    .unwrap()
}

fn denial(error: &ExchangeError) -> (Denial, bool) {
    match error {
        ExchangeError::Denied(denied) => (denied.denial, denied.undecided.is_some()),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn the_idp_condition_reads_the_verified_claims() {
    let token = subject("user-1", NOW + 7200);
    let holds = exchanger(policy_config(
        r#"'"admin" in claims.app_metadata.roles'"#,
        "",
        "",
    ));
    assert!(holds.exchange(&token, "app").await.is_ok());
    let fails = exchanger(policy_config(r#"'claims.sub == "someone-else"'"#, "", ""));
    let error = fails.exchange(&token, "app").await.unwrap_err();
    assert_eq!(denial(&error), (Denial::IdpCondition, false));
    assert_eq!(error.stage(), "idp condition");
    // A missing claim cannot decide: refused, never passed.
    let missing = exchanger(policy_config("'claims.email_verified == true'", "", ""));
    let error = missing.exchange(&token, "app").await.unwrap_err();
    assert_eq!(denial(&error), (Denial::IdpCondition, true));
}

#[tokio::test]
async fn the_provider_condition_reads_the_intermediate_claims_idp_and_client() {
    let token = subject("user-1", NOW + 7200);
    // `roles` exists only after the IdP mapping; `app_metadata` only before it.
    let condition =
        r#"'"dev" in claims.roles && idp == "supabase" && client == "web" && actor == null'"#;
    let exchanger = exchanger(policy_config("", condition, ""));
    assert!(
        exchanger
            .exchange_for_client(&token, "app", Some("web"))
            .await
            .is_ok()
    );
    let error = exchanger
        .exchange_for_client(&token, "app", Some("cli"))
        .await
        .unwrap_err();
    assert_eq!(denial(&error), (Denial::ProviderCondition, false));
    // Through the proxy there is no client: `client` is null.
    let error = exchanger.exchange(&token, "app").await.unwrap_err();
    assert_eq!(denial(&error), (Denial::ProviderCondition, false));
    let before_mapping = self::exchanger(policy_config(
        "",
        "'claims.app_metadata.roles.size() > 0'",
        "",
    ));
    let error = before_mapping.exchange(&token, "app").await.unwrap_err();
    assert_eq!(denial(&error), (Denial::ProviderCondition, true));
}

#[tokio::test]
async fn a_client_limited_to_other_idps_is_refused_and_an_unknown_client_too() {
    let token = subject("user-1", NOW + 7200);
    let limited = exchanger(policy_config("", "", r#"["other"]"#));
    let error = limited
        .exchange_for_client(&token, "app", Some("web"))
        .await
        .unwrap_err();
    assert_eq!(denial(&error), (Denial::ClientNotAllowed, false));
    assert_eq!(error.stage(), "client");
    assert!(
        limited
            .exchange_for_client(&token, "app", Some("cli"))
            .await
            .is_ok()
    );
    // A client the provider does not know (a reload removed it mid-request): refused.
    let error = limited
        .exchange_for_client(&token, "app", Some("gone"))
        .await
        .unwrap_err();
    assert_eq!(denial(&error), (Denial::ClientNotAllowed, false));
    let allowed = exchanger(policy_config("", "", r#"["supabase", "other"]"#));
    assert!(
        allowed
            .exchange_for_client(&token, "app", Some("web"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_cache_never_hands_one_clients_token_to_another() {
    let token = subject("user-1", NOW + 7200);
    let exchanger = exchanger(policy_config("", "", r#"["other"]"#));
    let for_cli = exchanger
        .exchange_for_client(&token, "app", Some("cli"))
        .await
        .unwrap();
    let again = exchanger
        .exchange_for_client(&token, "app", Some("cli"))
        .await
        .unwrap();
    assert!(!for_cli.cached && again.cached);
    // `web` may not use this IdP: the token cached for `cli` does not change that.
    let error = exchanger
        .exchange_for_client(&token, "app", Some("web"))
        .await
        .unwrap_err();
    assert_eq!(denial(&error), (Denial::ClientNotAllowed, false));
    // No client (the proxy) is a key of its own too.
    let proxied = exchanger.exchange(&token, "app").await.unwrap();
    assert!(!proxied.cached);
}

#[test]
fn cache_keys_differ_by_client_and_cannot_collide_across_parts() {
    let keys = [
        cache_key(1, "app", None, None, "t"),
        cache_key(1, "app", Some("web"), None, "t"),
        cache_key(1, "app", Some("cli"), None, "t"),
        cache_key(1, "app", Some(""), None, "t"),
        // The client's bytes moved into the token: a different key.
        cache_key(1, "app", Some("w"), None, "ebt"),
        cache_key(2, "app", Some("web"), None, "t"),
    ];
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len());
}

#[tokio::test]
async fn explain_shows_each_condition_with_its_source_and_result() {
    let token = subject("user-1", NOW + 7200);
    let exchanger = exchanger(policy_config(
        r#"'"admin" in claims.app_metadata.roles'"#,
        "'client == \"web\"'",
        r#"["supabase"]"#,
    ));
    let (result, trace) = exchanger.explain(&token, "app", Some("web")).await;
    assert!(result.is_ok(), "{result:?}");
    let step = |name: &str| {
        trace
            .steps()
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap()
    };
    let idp = step("idp condition");
    assert!(idp.passed);
    assert!(
        idp.detail
            .contains(r#"`"admin" in claims.app_metadata.roles`"#),
        "{}",
        idp.detail
    );
    assert!(
        idp.detail
            .ends_with(r#"-> true (read: claims.app_metadata.roles = ["admin","dev"])"#),
        "{}",
        idp.detail
    );
    let provider = step("provider condition");
    assert!(
        provider.detail.contains(r#"client = "web""#),
        "{}",
        provider.detail
    );
    assert!(step("client").passed);

    let (result, trace) = exchanger.explain(&token, "app", Some("cli")).await;
    assert!(result.is_err());
    let last = trace.steps().last().unwrap();
    assert_eq!((last.name, last.passed), ("provider condition", false));
    assert!(
        last.detail
            .ends_with(r#"-> false (read: idp = "supabase", client = "cli", actor = null)"#),
        "{}",
        last.detail
    );

    let missing = self::exchanger(policy_config("'claims.hd == \"example.com\"'", "", ""));
    let (_, trace) = missing.explain(&token, "app", None).await;
    let last = trace.steps().last().unwrap();
    assert_eq!(last.name, "idp condition");
    assert!(
        last.detail.contains("undecided (no field `hd`)"),
        "{}",
        last.detail
    );
    assert!(!trace.to_string().contains(&token));
}

#[test]
fn cache_keys_differ_by_actor() {
    let keys = [
        cache_key(1, "api", None, None, "t"),
        cache_key(1, "api", None, Some("a1"), "t"),
        cache_key(1, "api", None, Some("a2"), "t"),
        cache_key(1, "api", None, Some(""), "t"),
        // The actor's bytes moved into the client, or into the token: different keys.
        cache_key(1, "api", Some("a1"), None, "t"),
        cache_key(1, "api", None, Some("a"), "1t"),
    ];
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len());
}

fn vouched(claims: Value, rfc_act: bool) -> Vouched {
    let Value::Object(claims) = claims else {
        panic!("an object")
    };
    Vouched {
        idp: Arc::from("idp"),
        intermediate: Value::Object(claims.clone()),
        claims,
        expires_at: NOW + 60,
        cache_until: None,
        rfc_act,
    }
}

#[test]
fn may_act_names_the_actor_by_sub_and_iss() {
    let actor = vouched(json!({"sub": "svc", "iss": "https://w"}), true);
    let with = |allowed: Value| {
        let Value::Object(subject) = json!({ "sub": "u", "may_act": allowed }) else {
            panic!("an object")
        };
        may_act(&subject, &actor)
    };
    assert_eq!(may_act(&Map::new(), &actor), Ok(()));
    assert_eq!(with(json!({"sub": "svc"})), Ok(()));
    assert_eq!(with(json!({"sub": "svc", "iss": "https://w"})), Ok(()));
    for refused in [
        json!({"sub": "other"}),
        json!({"sub": "svc", "iss": "https://elsewhere"}),
        json!({"iss": "https://w"}),
        json!("svc"),
        json!({"sub": "svc", "iss": 7}),
    ] {
        assert_eq!(
            with(refused.clone()),
            Err(DelegationRefused::MayActMismatch),
            "{refused}"
        );
    }
    let anonymous = vouched(json!({"iss": "https://w"}), true);
    let Value::Object(subject) = json!({"may_act": {"sub": "svc"}}) else {
        panic!("an object")
    };
    assert_eq!(
        may_act(&subject, &anonymous),
        Err(DelegationRefused::ActorWithoutSubject)
    );
}

#[test]
fn act_nests_the_subject_tokens_rfc_act_only() {
    let actor = vouched(json!({"sub": "svc2", "iss": "https://w"}), true);
    let chained = vouched(json!({"sub": "u", "act": {"sub": "svc1"}}), true);
    assert_eq!(
        act_claim(&chained, &actor),
        Ok(json!({"sub": "svc2", "iss": "https://w", "act": {"sub": "svc1"}}))
    );
    // A statebacked token's `act` is its auth context, not a prior actor.
    let statebacked = vouched(json!({"act": {"user": "u"}}), false);
    assert_eq!(
        act_claim(&statebacked, &actor),
        Ok(json!({"sub": "svc2", "iss": "https://w"}))
    );
    let anonymous = vouched(json!({"iss": "https://w"}), true);
    assert_eq!(
        act_claim(&chained, &anonymous),
        Err(DelegationRefused::ActorWithoutSubject)
    );
}

#[test]
fn the_mapping_input_gains_actor_only_with_one() {
    let input = mapping_input(
        &json!({"sub": "u", "actor": "shadowed"}),
        &json!({"sub": "svc"}),
    );
    assert_eq!(input, json!({"sub": "u", "actor": {"sub": "svc"}}));
}

#[tokio::test]
async fn delegation_needs_delegation_true_and_explain_shows_the_actor() {
    let extra = r#"
[[token_providers]]
service = "delegated"
key = "sbk_test"
profile = "access_token"
delegation = true
mapping = { "sub.$" = "$.sub", "actor_sub.$" = "$.actor.sub" }
condition = 'actor.sub == "svc"'
"#;
    let exchanger = exchanger(config("1h", extra));
    let user = subject("u", NOW + 3600);
    let actor = subject("svc", NOW + 600);
    let refused = exchanger
        .exchange_delegated(&user, Some(&actor), "api", None)
        .await;
    assert_eq!(
        refused.unwrap_err(),
        ExchangeError::Delegation(DelegationRefused::NotEnabled)
    );
    let minted = exchanger
        .exchange_delegated(&user, Some(&actor), "delegated", None)
        .await
        .unwrap();
    let (_, claims) = decode(minted.minted.token());
    assert_eq!(claims["sub"], "u");
    assert_eq!(claims["actor_sub"], "svc");
    assert_eq!(claims["act"], json!({"sub": "svc"}));
    // The actor token's exp caps the minted token's.
    assert_eq!(minted.minted.expires_at, NOW + 600);

    let (result, trace) = exchanger
        .explain_delegated(&user, Some(&actor), "delegated", None)
        .await;
    assert!(result.is_ok());
    let names: Vec<_> = trace.steps().iter().map(|s| s.name).collect();
    assert!(names.contains(&"delegation"), "{names:?}");
    assert!(names.contains(&"actor"), "{names:?}");
    assert!(names.contains(&"may_act"), "{names:?}");
    let shown = trace.to_string();
    assert!(shown.contains(r#"actor = {"#), "{shown}");

    // The actor alone is refused by the provider's condition when it is someone else.
    let other = subject("other", NOW + 600);
    let refused = exchanger
        .exchange_delegated(&user, Some(&other), "delegated", None)
        .await
        .unwrap_err();
    assert_eq!(refused.stage(), "provider condition");
}

#[tokio::test]
async fn a_connection_is_served_its_last_token_again_for_the_same_credentials_and_service_only() {
    let exchanger = exchanger(config("1h", ""));
    let token = subject("user-1", NOW + 7200);
    let credentials = format!("Bearer {token}");
    let last = LastExchange::default();
    assert!(
        exchanger
            .serve_again(&last, credentials.as_bytes(), "app")
            .is_none(),
        "nothing served yet"
    );
    let remember = Remember {
        last: &last,
        credentials: credentials.as_bytes(),
    };
    let Ok(Authorized::Exchanged(first)) = exchanger.authorize(&token, "app", Some(remember)).await
    else {
        panic!("the token is exchanged");
    };
    assert!(!first.cached);
    let again = exchanger
        .serve_again(&last, credentials.as_bytes(), "app")
        .expect("served again");
    assert!(again.cached);
    assert_eq!(again.minted.token(), first.minted.token());
    assert_eq!(exchanger.cache_stats().hits.load(Ordering::Relaxed), 1);

    let other = format!("Bearer {}", subject("user-2", NOW + 7200));
    assert!(
        exchanger
            .serve_again(&last, other.as_bytes(), "app")
            .is_none()
    );
    let spelled_otherwise = format!("bearer {token}");
    assert!(
        exchanger
            .serve_again(&last, spelled_otherwise.as_bytes(), "app")
            .is_none(),
        "the same token in other bytes is parsed again"
    );
    assert!(
        exchanger
            .serve_again(&last, credentials.as_bytes(), "api")
            .is_none()
    );
}

#[tokio::test]
async fn a_remembered_token_is_served_again_only_while_the_cache_would_serve_it() {
    let (exchanger, clock) = stepped_exchanger("100s");
    let token = subject("user-1", NOW + 7200);
    let credentials = format!("Bearer {token}");
    let last = LastExchange::default();
    let remember = Some(Remember {
        last: &last,
        credentials: credentials.as_bytes(),
    });
    exchanger.authorize(&token, "app", remember).await.unwrap();

    clock.0.store(NOW + 79, Ordering::Relaxed);
    assert!(
        exchanger
            .serve_again(&last, credentials.as_bytes(), "app")
            .is_some()
    );
    clock.0.store(NOW + 80, Ordering::Relaxed);
    assert!(
        exchanger
            .serve_again(&last, credentials.as_bytes(), "app")
            .is_none(),
        "80 s into a 100 s life: minted anew, as the cache would"
    );
    let Ok(Authorized::Exchanged(renewed)) = exchanger.authorize(&token, "app", remember).await
    else {
        panic!("the token is exchanged");
    };
    assert_eq!(renewed.minted.issued_at, NOW + 80);
    let again = exchanger
        .serve_again(&last, credentials.as_bytes(), "app")
        .expect("the renewed token is remembered");
    assert_eq!(again.minted.token(), renewed.minted.token());

    exchanger.reload(config("100s", ""));
    assert!(
        exchanger
            .serve_again(&last, credentials.as_bytes(), "app")
            .is_none(),
        "never a token minted under the old config"
    );
}
