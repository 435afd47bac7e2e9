//! JWKS behaviour against a real HTTP server.
mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use baton::config::Config;
use baton::exchange::{ExchangeError, Exchanged, Exchanger, ExchangerOptions, Fault};
use baton::idp::UrlPolicy;
use baton::idp::jwks::{JwksError, JwksPolicy};
use baton::idp::verify::VerifyError;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use support::{JwksReply, JwksServer, TestKey, now, payload, sign_hmac};

// --- helpers --------------------------------------------------------------------------

/// The audience every IdP here requires.
const AUD: &str = "baton-tests";
/// The issuer of IdPs configured with a plain `jwks_url`.
const ISS: &str = "https://idp.example";

/// The part of every config that mints: an inline HMAC key and the `app` provider.
const MINTING: &str = r#"
[[keys]]
id = "sbk_test"
algorithm = "HS256"
secret = "a-test-secret-that-is-long-enough-0123456789"

[[token_providers]]
service = "app"
key = "sbk_test"
mapping = { "sub.$" = "$.sub" }
"#;

fn toml_list(algorithms: &[&str]) -> String {
    let quoted: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A config with one IdP whose keys are at `jwks_url`.
fn jwks_config(jwks_url: &str, algorithms: &[&str]) -> String {
    format!(
        r#"{MINTING}
[[idps]]
issuer = "{ISS}"
audience = "{AUD}"
jwks_url = "{jwks_url}"
algorithms = {algs}
mapping = {{ "sub.$" = "$.sub" }}
"#,
        algs = toml_list(algorithms),
    )
}

/// A config with one IdP found by OIDC discovery at `issuer`.
fn discovery_config(issuer: &str) -> String {
    format!(
        r#"{MINTING}
[[idps]]
issuer = "{issuer}"
audience = "{AUD}"
discovery = true
algorithms = ["RS256"]
mapping = {{ "sub.$" = "$.sub" }}
"#
    )
}

/// A policy like the default, with a request timeout short enough for tests.
fn policy() -> JwksPolicy {
    JwksPolicy {
        request_timeout: Duration::from_secs(2),
        ..JwksPolicy::default()
    }
}

fn exchanger(toml: &str, jwks: JwksPolicy) -> Arc<Exchanger> {
    let config = Config::from_toml(toml, Path::new("."), &|_| None)
        .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{toml}"));
    let options = ExchangerOptions {
        jwks,
        ..ExchangerOptions::default()
    };
    Arc::new(Exchanger::new(config, options).expect("exchanger"))
}

/// Claims for `sub`, from `iss`, for [`AUD`], expiring in ten minutes. Each call also
/// carries a fresh `jti`, so no two tokens are equal and the minted-token cache never answers.
fn claims_from(iss: &str, sub: &str) -> Value {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    json!({
        "iss": iss,
        "aud": AUD,
        "sub": sub,
        "exp": now() + 600,
        "jti": format!("t{}", SERIAL.fetch_add(1, Ordering::Relaxed)),
    })
}

fn claims(sub: &str) -> Value {
    claims_from(ISS, sub)
}

/// Exchanges `token` for `app`, insisting on success and on a freshly minted token.
async fn accepted(exchanger: &Exchanger, token: &str, sub: &str) -> Exchanged {
    let exchanged = exchanger
        .exchange(token, "app")
        .await
        .unwrap_or_else(|e| panic!("token for {sub} refused: {e:?}"));
    assert!(
        !exchanged.cached,
        "distinct tokens must not come from the minted-token cache"
    );
    assert_eq!(payload(exchanged.minted.token())["act"]["sub"], sub);
    exchanged
}

/// Exchanges `token` for `app`, insisting on failure.
async fn refused(exchanger: &Exchanger, token: &str) -> ExchangeError {
    match exchanger.exchange(token, "app").await {
        Ok(_) => panic!("token was accepted"),
        Err(e) => e,
    }
}

fn assert_unknown_key(error: &ExchangeError, want_kid: &str, want_alg: &str) {
    match error {
        ExchangeError::Token(VerifyError::UnknownKey { kid, alg }) => {
            assert_eq!(kid.as_deref(), Some(want_kid));
            assert_eq!(alg, want_alg);
        }
        other => panic!("expected UnknownKey({want_kid}, {want_alg}), got {other:?}"),
    }
    assert_eq!(error.fault(), Fault::Client);
}

/// The [`JwksError`] inside a `KeysUnavailable`, checking it is classed as upstream's fault.
fn keys_unavailable(error: &ExchangeError) -> &JwksError {
    assert_eq!(error.fault(), Fault::Upstream, "{error:?}");
    assert_eq!(error.stage(), "keys");
    match error {
        ExchangeError::Token(VerifyError::KeysUnavailable(inner)) => inner,
        other => panic!("expected KeysUnavailable, got {other:?}"),
    }
}

fn fetch_reason(error: &JwksError) -> &str {
    match error {
        JwksError::Fetch { reason, .. } => reason,
        other => panic!("expected JwksError::Fetch, got {other:?}"),
    }
}

/// Polls until the server has seen at least `count` JWKS requests, or `within` passes.
async fn wait_for_requests(server: &JwksServer, count: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    while server.jwks_requests() < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.jwks_requests()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// --- 1. rotation -------------------------------------------------------------------------

#[tokio::test]
async fn rotated_key_is_picked_up_with_exactly_one_refetch() {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let k2 = TestKey::generate(Algorithm::RS256, "k2");
    let server = JwksServer::start(vec![k1.jwk.clone()]).await;
    let exchanger = exchanger(&jwks_config(&server.jwks_url(), &["RS256"]), policy());

    accepted(&exchanger, &k1.sign(&claims("alice")), "alice").await;
    assert_eq!(server.jwks_requests(), 1);

    // Known kid, fresh set: no request.
    accepted(&exchanger, &k1.sign(&claims("alice")), "alice").await;
    assert_eq!(server.jwks_requests(), 1);

    // The IdP rotates: k2 is published next to k1.
    server.set_keys(vec![k1.jwk.clone(), k2.jwk.clone()]);
    accepted(&exchanger, &k2.sign(&claims("bob")), "bob").await;
    assert_eq!(server.jwks_requests(), 2, "k2 needs exactly one refetch");

    // Both keys are now known: neither costs another request.
    accepted(&exchanger, &k2.sign(&claims("bob")), "bob").await;
    accepted(&exchanger, &k1.sign(&claims("alice")), "alice").await;
    assert_eq!(server.jwks_requests(), 2);
}

// --- 2. unknown-kid flood ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn unknown_kid_flood_costs_one_fetch_then_none_within_the_interval() {
    let real = TestKey::generate(Algorithm::RS256, "real");
    let forger = TestKey::generate(Algorithm::RS256, "forger");
    let server = JwksServer::start(vec![real.jwk.clone()]).await;
    let exchanger = exchanger(&jwks_config(&server.jwks_url(), &["RS256"]), policy());

    accepted(&exchanger, &real.sign(&claims("alice")), "alice").await;
    assert_eq!(server.jwks_requests(), 1);

    let burst = |round: &'static str| {
        let exchanger = Arc::clone(&exchanger);
        let tokens: Vec<(String, String)> = (0..50)
            .map(|i| {
                let kid = format!("{round}-kid-{i}");
                let header = json!({ "alg": "RS256", "kid": kid, "typ": "JWT" });
                let token = forger.sign_raw(&header, &claims(&format!("mallory-{i}")));
                (kid, token)
            })
            .collect();
        async move {
            let barrier = Arc::new(tokio::sync::Barrier::new(tokens.len()));
            let tasks: Vec<_> = tokens
                .into_iter()
                .map(|(kid, token)| {
                    let exchanger = Arc::clone(&exchanger);
                    let barrier = Arc::clone(&barrier);
                    tokio::spawn(async move {
                        barrier.wait().await;
                        (kid, exchanger.exchange(&token, "app").await)
                    })
                })
                .collect();
            for task in tasks {
                let (kid, result) = task.await.expect("task");
                match result {
                    Ok(_) => panic!("a token with unknown kid {kid} was accepted"),
                    Err(e) => assert_unknown_key(&e, &kid, "RS256"),
                }
            }
        }
    };

    burst("first").await;
    assert_eq!(
        server.jwks_requests(),
        2,
        "50 unknown kids must cost exactly one refetch"
    );

    burst("second").await;
    assert_eq!(
        server.jwks_requests(),
        2,
        "unknown kids within the rate-limit window must cost no fetch"
    );

    // The real key is unaffected by the flood.
    accepted(&exchanger, &real.sign(&claims("alice")), "alice").await;
    assert_eq!(server.jwks_requests(), 2);
}

// --- 3. IdP down after the first fetch -------------------------------------------------------

#[tokio::test]
async fn known_keys_keep_verifying_when_the_jwks_server_goes_down() {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let server = JwksServer::start(vec![k1.jwk.clone()]).await;
    let exchanger = exchanger(&jwks_config(&server.jwks_url(), &["RS256"]), policy());

    accepted(&exchanger, &k1.sign(&claims("alice")), "alice").await;
    assert_eq!(server.jwks_requests(), 1);
    server.shut_down();

    for i in 0..5 {
        let sub = format!("user-{i}");
        accepted(&exchanger, &k1.sign(&claims(&sub)), &sub).await;
    }

    // An unknown kid tries a refetch, which fails: still an unknown key, not an outage,
    // and the known key keeps working after that failure.
    let stranger = TestKey::generate(Algorithm::RS256, "k9");
    let error = refused(&exchanger, &stranger.sign(&claims("mallory"))).await;
    assert_unknown_key(&error, "k9", "RS256");
    assert_eq!(exchanger.jwks().stats().failed.load(Ordering::Relaxed), 1);
    accepted(&exchanger, &k1.sign(&claims("carol")), "carol").await;
}

#[tokio::test]
async fn an_expired_key_set_is_served_stale_when_the_refetch_fails() {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let server = JwksServer::start(vec![]).await;
    server.set_reply(JwksReply::Keys {
        keys: vec![k1.jwk.clone()],
        cache_control: Some("max-age=1".to_owned()),
    });
    let jwks = JwksPolicy {
        min_ttl: Duration::from_secs(1),
        ..policy()
    };
    let exchanger = exchanger(&jwks_config(&server.jwks_url(), &["RS256"]), jwks);

    accepted(&exchanger, &k1.sign(&claims("alice")), "alice").await;
    assert_eq!(exchanger.jwks().stats().fetched.load(Ordering::Relaxed), 1);
    server.shut_down();

    // Past the set's freshness: the refetch fails, the last good set is served.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    accepted(&exchanger, &k1.sign(&claims("bob")), "bob").await;
    let failed = exchanger.jwks().stats().failed.load(Ordering::Relaxed);
    assert!(
        failed >= 1,
        "an expired set must have been refetched (failed fetches: {failed})"
    );
    accepted(&exchanger, &k1.sign(&claims("carol")), "carol").await;
}

// --- 4. unusable replies with nothing cached ----------------------------------------------------

/// Exchanges a valid token against a server answering `reply`, with nothing cached.
/// Returns the error, the server's request count, and the time the exchange took.
async fn first_exchange_against(
    reply: JwksReply,
    jwks: JwksPolicy,
) -> (ExchangeError, usize, Duration) {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let server = JwksServer::start(vec![k1.jwk.clone()]).await;
    server.set_reply(reply);
    let exchanger = exchanger(&jwks_config(&server.jwks_url(), &["RS256"]), jwks);

    let started = Instant::now();
    let error = refused(&exchanger, &k1.sign(&claims("alice"))).await;
    let took = started.elapsed();
    let requests = server.jwks_requests();

    // Control: once the IdP answers properly, the same token key and config work, so the
    // failure above was the reply's.
    server.set_keys(vec![k1.jwk.clone()]);
    accepted(&exchanger, &k1.sign(&claims("alice")), "alice").await;
    (error, requests, took)
}

#[tokio::test]
async fn garbage_jwks_is_keys_unavailable() {
    let (error, requests, _) = first_exchange_against(JwksReply::Garbage, policy()).await;
    assert_eq!(requests, 1);
    let reason = fetch_reason(keys_unavailable(&error));
    assert!(reason.contains("not a JWKS document"), "{reason}");
}

#[tokio::test]
async fn server_error_jwks_is_keys_unavailable() {
    for status in [500, 503] {
        let (error, requests, _) =
            first_exchange_against(JwksReply::Status(status), policy()).await;
        assert_eq!(requests, 1);
        let reason = fetch_reason(keys_unavailable(&error));
        assert!(reason.contains(&status.to_string()), "{reason}");
    }
}

#[tokio::test]
async fn oversized_jwks_is_keys_unavailable() {
    let jwks = JwksPolicy {
        max_body_bytes: 16 * 1024,
        ..policy()
    };
    let (error, requests, _) = first_exchange_against(JwksReply::Huge(64 * 1024), jwks).await;
    assert_eq!(requests, 1);
    let reason = fetch_reason(keys_unavailable(&error));
    assert!(reason.contains("larger than"), "{reason}");
}

#[tokio::test]
async fn slow_jwks_is_keys_unavailable_after_the_request_timeout() {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let jwks = JwksPolicy {
        request_timeout: Duration::from_millis(300),
        ..policy()
    };
    let reply = JwksReply::Slow(Duration::from_secs(2), vec![k1.jwk.clone()]);
    let (error, requests, took) = first_exchange_against(reply, jwks).await;
    assert_eq!(requests, 1);
    let reason = fetch_reason(keys_unavailable(&error));
    assert!(reason.contains("timed out"), "{reason}");
    assert!(
        took < Duration::from_millis(1500),
        "the exchange took {took:?}"
    );
}

// --- 4b. failed fetches under concurrency (these expose a library bug, see the report) -------

/// Concurrent exchanges of valid `key` tokens; returns each one's error (if any) and the
/// time the whole burst took.
async fn concurrent_exchanges(
    exchanger: &Arc<Exchanger>,
    key: &TestKey,
    n: usize,
) -> (Vec<Option<ExchangeError>>, Duration) {
    let tokens: Vec<String> = (0..n)
        .map(|i| key.sign(&claims(&format!("user-{i}"))))
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let started = Instant::now();
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let exchanger = Arc::clone(exchanger);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                exchanger.exchange(&token, "app").await.err()
            })
        })
        .collect();
    let mut errors = Vec::new();
    for task in tasks {
        errors.push(task.await.expect("task"));
    }
    (errors, started.elapsed())
}

/// A hanging IdP with nothing cached: concurrent requests queued behind the one fetch in
/// flight must share its failure, not each try again one after another (which multiplies
/// both the requests to the IdP and the latency: the last caller waits n × timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_one_failed_initial_fetch() {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let server = JwksServer::start(vec![]).await;
    server.set_reply(JwksReply::Slow(
        Duration::from_secs(2),
        vec![k1.jwk.clone()],
    ));
    let jwks = JwksPolicy {
        request_timeout: Duration::from_millis(300),
        ..policy()
    };
    let exchanger = exchanger(&jwks_config(&server.jwks_url(), &["RS256"]), jwks);

    let (errors, took) = concurrent_exchanges(&exchanger, &k1, 10).await;
    for error in &errors {
        let error = error.as_ref().expect("no keys can be had");
        keys_unavailable(error);
    }
    assert_eq!(
        server.jwks_requests(),
        1,
        "one fetch in flight at a time, its failure shared (took {took:?})"
    );
    assert!(
        took < Duration::from_millis(1500),
        "10 callers took {took:?}"
    );
}

/// The same with an expired set: stale-if-error must answer the queued requests at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_one_failed_refresh_and_get_the_stale_set() {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let server = JwksServer::start(vec![]).await;
    server.set_reply(JwksReply::Keys {
        keys: vec![k1.jwk.clone()],
        cache_control: Some("max-age=1".to_owned()),
    });
    let jwks = JwksPolicy {
        request_timeout: Duration::from_millis(300),
        min_ttl: Duration::from_secs(1),
        ..policy()
    };
    let exchanger = exchanger(&jwks_config(&server.jwks_url(), &["RS256"]), jwks);
    accepted(&exchanger, &k1.sign(&claims("alice")), "alice").await;
    assert_eq!(server.jwks_requests(), 1);

    server.set_reply(JwksReply::Slow(
        Duration::from_secs(2),
        vec![k1.jwk.clone()],
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (errors, took) = concurrent_exchanges(&exchanger, &k1, 10).await;
    if let Some(error) = errors.into_iter().flatten().next() {
        panic!("the stale set must answer: {error:?}");
    }
    assert_eq!(
        server.jwks_requests(),
        2,
        "one refresh attempt, its failure shared (took {took:?})"
    );
    assert!(
        took < Duration::from_millis(1500),
        "10 callers took {took:?}"
    );
}

// --- 5. discovery ----------------------------------------------------------------------------

#[tokio::test]
async fn discovery_finds_the_jwks() {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let server = JwksServer::start(vec![k1.jwk.clone()]).await;
    let issuer = server.base_url();
    let exchanger = exchanger(&discovery_config(&issuer), policy());

    accepted(
        &exchanger,
        &k1.sign(&claims_from(&issuer, "alice")),
        "alice",
    )
    .await;
    assert_eq!(server.jwks_requests(), 1);
    accepted(&exchanger, &k1.sign(&claims_from(&issuer, "bob")), "bob").await;
    assert_eq!(server.jwks_requests(), 1);
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_rejected() {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let server = JwksServer::start(vec![k1.jwk.clone()]).await;
    server.set_discovery_issuer("https://evil.example");
    let issuer = server.base_url();
    let exchanger = exchanger(&discovery_config(&issuer), policy());

    let error = refused(&exchanger, &k1.sign(&claims_from(&issuer, "alice"))).await;
    match keys_unavailable(&error) {
        JwksError::DiscoveryIssuerMismatch {
            url,
            expected,
            found,
        } => {
            assert_eq!(url, &format!("{issuer}/.well-known/openid-configuration"));
            assert_eq!(expected, &issuer);
            assert_eq!(found, "https://evil.example");
        }
        other => panic!("expected DiscoveryIssuerMismatch, got {other:?}"),
    }
    assert_eq!(
        server.jwks_requests(),
        0,
        "the JWKS of a mismatched discovery is never fetched"
    );
}

// --- 6. unusable keys are skipped ----------------------------------------------------------------

#[tokio::test]
async fn unusable_keys_are_skipped_not_fatal() {
    let real = TestKey::generate(Algorithm::RS256, "real");
    let encryption = TestKey::generate(Algorithm::RS256, "enc");
    let mut enc_jwk = encryption.jwk.clone();
    enc_jwk["use"] = json!("enc");
    enc_jwk.as_object_mut().unwrap().remove("alg");
    let hmac_secret = b"the-oct-key-published-in-the-jwks";
    let keys = vec![
        json!({ "kty": "RSA", "kid": "garbage", "n": "%%% not base64 %%%", "e": "AQAB" }),
        enc_jwk,
        json!({ "kty": "oct", "kid": "hmac", "k": b64(hmac_secret) }),
        real.jwk.clone(),
    ];
    let server = JwksServer::start(keys).await;
    let exchanger = exchanger(&jwks_config(&server.jwks_url(), &["RS256"]), policy());

    accepted(&exchanger, &real.sign(&claims("alice")), "alice").await;

    let set = exchanger
        .jwks()
        .key_set(
            &server.jwks_url(),
            UrlPolicy::default(),
            Some("real"),
            Algorithm::RS256,
        )
        .await
        .expect("key set");
    assert_eq!((set.len(), set.skipped()), (1, 3));

    // The encryption key is not a verification key.
    let error = refused(&exchanger, &encryption.sign(&claims("mallory"))).await;
    assert_unknown_key(&error, "enc", "RS256");

    // An HS256 token signed with the published `oct` key's bytes is refused.
    let header = json!({ "alg": "HS256", "kid": "hmac", "typ": "JWT" });
    let forged = sign_hmac(hmac_secret, Algorithm::HS256, &header, &claims("mallory"));
    let error = refused(&exchanger, &forged).await;
    assert!(
        matches!(error, ExchangeError::Token(VerifyError::AlgorithmNotAllowed { ref alg, .. }) if alg == "HS256"),
        "{error:?}"
    );
    // Claiming RS256 for the `oct` key's kid finds no key either.
    let header = json!({ "alg": "RS256", "kid": "hmac", "typ": "JWT" });
    let error = refused(&exchanger, &real.sign_raw(&header, &claims("mallory"))).await;
    assert_unknown_key(&error, "hmac", "RS256");
}

// --- 7. kty / alg / curve fit ------------------------------------------------------------------

#[tokio::test]
async fn a_key_restricted_to_another_alg_does_not_verify() {
    let key = TestKey::generate(Algorithm::RS256, "k1");
    let mut rs384_jwk = key.jwk.clone();
    rs384_jwk["alg"] = json!("RS384");
    let server = JwksServer::start(vec![rs384_jwk]).await;
    let restricted = exchanger(&jwks_config(&server.jwks_url(), &["RS256"]), policy());

    let error = refused(&restricted, &key.sign(&claims("alice"))).await;
    assert_unknown_key(&error, "k1", "RS256");

    // Control: the same key published with alg RS256 verifies the same kind of token
    // (a new exchanger, so nothing is cached).
    server.set_keys(vec![key.jwk.clone()]);
    let control = exchanger(&jwks_config(&server.jwks_url(), &["RS256"]), policy());
    accepted(&control, &key.sign(&claims("alice")), "alice").await;
}

#[tokio::test]
async fn an_es256_idp_does_not_accept_a_p384_key() {
    let p256 = TestKey::generate(Algorithm::ES256, "p256");
    let p384 = TestKey::generate(Algorithm::ES384, "p384");
    // Without `alg`, only the curve tells the P-384 key is not for ES256.
    let mut p384_jwk = p384.jwk.clone();
    p384_jwk.as_object_mut().unwrap().remove("alg");
    assert_eq!(p384_jwk["crv"], "P-384");
    let server = JwksServer::start(vec![p256.jwk.clone(), p384_jwk]).await;
    let exchanger = exchanger(&jwks_config(&server.jwks_url(), &["ES256"]), policy());

    accepted(&exchanger, &p256.sign(&claims("alice")), "alice").await;

    // A token claiming ES256 with the P-384 key's kid.
    let header = json!({ "alg": "ES256", "kid": "p384", "typ": "JWT" });
    let error = refused(&exchanger, &p256.sign_raw(&header, &claims("mallory"))).await;
    assert_unknown_key(&error, "p384", "ES256");
}

// --- 8. Cache-Control ---------------------------------------------------------------------------

/// Serves `k1` with `Cache-Control: {cache_control}`, exchanges one token, waits `wait`,
/// exchanges another, and returns the request count after a further grace period for
/// a background refresh.
async fn requests_after(cache_control: &str, jwks: JwksPolicy, wait: Duration) -> usize {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let server = JwksServer::start(vec![]).await;
    server.set_reply(JwksReply::Keys {
        keys: vec![k1.jwk.clone()],
        cache_control: Some(cache_control.to_owned()),
    });
    let exchanger = exchanger(&jwks_config(&server.jwks_url(), &["RS256"]), jwks);

    accepted(&exchanger, &k1.sign(&claims("alice")), "alice").await;
    assert_eq!(server.jwks_requests(), 1);
    tokio::time::sleep(wait).await;
    accepted(&exchanger, &k1.sign(&claims("bob")), "bob").await;
    wait_for_requests(&server, 2, Duration::from_millis(500)).await
}

fn short_ttls(min_ttl: Duration, max_ttl: Duration) -> JwksPolicy {
    JwksPolicy {
        min_ttl,
        max_ttl,
        ..policy()
    }
}

#[tokio::test]
async fn short_max_age_triggers_a_refetch() {
    let jwks = short_ttls(Duration::from_secs(1), Duration::from_secs(3600));
    let requests = requests_after("public, max-age=1", jwks, Duration::from_millis(1100)).await;
    assert_eq!(requests, 2);
}

#[tokio::test]
async fn long_max_age_is_honoured() {
    let jwks = short_ttls(Duration::from_secs(1), Duration::from_secs(3600));
    let requests = requests_after("public, max-age=3600", jwks, Duration::from_millis(1100)).await;
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn max_age_is_clamped_up_to_min_ttl() {
    // max-age=1 but min_ttl=3s: fresh at 1.1 s (refresh is due only at 80% = 2.4 s).
    let jwks = short_ttls(Duration::from_secs(3), Duration::from_secs(3600));
    let requests = requests_after("max-age=1", jwks, Duration::from_millis(1100)).await;
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn max_age_is_clamped_down_to_max_ttl() {
    let jwks = short_ttls(Duration::from_millis(500), Duration::from_secs(1));
    let requests = requests_after("max-age=3600", jwks, Duration::from_millis(1100)).await;
    assert_eq!(requests, 2);
}

#[tokio::test]
async fn no_store_counts_as_zero_then_min_ttl() {
    let jwks = short_ttls(Duration::from_secs(1), Duration::from_secs(3600));
    let requests = requests_after("no-store", jwks, Duration::from_millis(1100)).await;
    assert_eq!(requests, 2);
}

// --- 9. URL rules: https or loopback, redirects (the real binary) -------------------------

/// What a [`RouteServer`] path answers.
#[derive(Clone)]
enum Route {
    /// 302 to this location.
    Redirect(String),
    /// 200 with this JSON.
    Json(Value),
}

/// A loopback HTTP server answering fixed routes (redirects, a discovery document), counting
/// the requests each path gets.
struct RouteServer {
    addr: std::net::SocketAddr,
    hits: Arc<parking_lot::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RouteServer {
    /// Starts on 127.0.0.1:0; `routes` gets the server's base URL and names the routes.
    async fn start(routes: impl FnOnce(&str) -> Vec<(String, Route)>) -> Self {
        use http_body_util::Full;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Vec<(String, Route)>> = Arc::new(routes(&format!("http://{addr}")));
        let hits = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let seen = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (routes, seen) = (Arc::clone(&routes), Arc::clone(&seen));
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                        let path = req.uri().path().to_owned();
                        seen.lock().push(path.clone());
                        let route = routes.iter().find(|(p, _)| *p == path).map(|(_, r)| r);
                        let response = match route {
                            Some(Route::Redirect(location)) => hyper::Response::builder()
                                .status(302)
                                .header("location", location.as_str())
                                .body(Full::new(bytes::Bytes::new())),
                            Some(Route::Json(body)) => hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(bytes::Bytes::from(body.to_string()))),
                            None => hyper::Response::builder()
                                .status(404)
                                .body(Full::new(bytes::Bytes::new())),
                        };
                        async move { response }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, hits, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The paths requested so far, in order.
    fn hits(&self) -> Vec<String> {
        self.hits.lock().clone()
    }
}

impl Drop for RouteServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `/hop/{n}` redirects to `/hop/{n-1}`, and `/hop/1` to `target`: fetching `/hop/{n}`
/// takes `n` redirects.
fn hops(base: &str, target: &str, most: usize) -> Vec<(String, Route)> {
    (1..=most)
        .map(|n| {
            let location = if n == 1 {
                target.to_owned()
            } else {
                format!("{base}/hop/{}", n - 1)
            };
            (format!("/hop/{n}"), Route::Redirect(location))
        })
        .collect()
}

/// `baton serve` with [`MINTING`] and `idp` (an `[[idps]]` entry's lines).
async fn serve_with_idp(dir: &Path, idp: &str) -> support::baton::Baton {
    let addr = support::baton::reserve_addr();
    let config = format!(
        r#"
[proxy]
listen = "{addr}"
upstream = "127.0.0.1:{upstream}"
service = "app"
threads = 1

[admin]
listen = "127.0.0.1:{admin}"
{MINTING}
[[idps]]
audience = "{AUD}"
algorithms = ["RS256"]
mapping = {{ "sub.$" = "$.sub" }}
{idp}
"#,
        upstream = support::baton::reserve_port(),
        admin = support::baton::reserve_port(),
    );
    support::baton::Baton::launch(dir, addr, &config)
        .start()
        .await
}

/// `POST /tokens` for `app`: the status and the JSON body.
async fn exchange_on(baton: &support::baton::Baton, subject_token: &str) -> (u16, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        )
        .append_pair("subject_token", subject_token)
        .append_pair("audience", "app")
        .finish();
    let response = reqwest::Client::new()
        .post(baton.url("/tokens"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The log lines of refused exchanges: each logs its outcome (`unavailable` when the IdP's
/// keys cannot be had, `refused` for a bad token, `denied` by policy, `error` for baton's own).
fn refusals(log: &str) -> Vec<&str> {
    const OUTCOMES: [&str; 4] = ["refused", "unavailable", "denied", "error"];
    log.lines()
        .filter(|line| {
            OUTCOMES.iter().any(|outcome| {
                line.contains(&format!("outcome=\"{outcome}\""))
                    || line.contains(&format!("outcome={outcome} "))
            })
        })
        .collect()
}

#[tokio::test]
async fn three_redirects_are_followed_and_a_fourth_is_refused() {
    let key = TestKey::generate(Algorithm::RS256, "k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()]).await;
    let redirects = RouteServer::start(|base| hops(base, &jwks.jwks_url(), 4)).await;
    let dir = tempfile::tempdir().unwrap();

    // Three: followed to the keys.
    let three = serve_with_idp(
        dir.path(),
        &format!("jwks_url = \"{}\"", redirects.url("/hop/3")),
    )
    .await;
    let token = key.sign(&json!({ "aud": AUD, "sub": "alice", "exp": now() + 600 }));
    let (status, body) = exchange_on(&three, &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(jwks.jwks_requests() >= 1);
    drop(three);

    // Four: refused at the fourth, which is never requested, and neither are the keys.
    let requests_before = jwks.jwks_requests();
    let hits_before = redirects.hits().len();
    let four = serve_with_idp(
        dir.path(),
        &format!("jwks_url = \"{}\"", redirects.url("/hop/4")),
    )
    .await;
    let token = key.sign(&json!({ "aud": AUD, "sub": "bob", "exp": now() + 600 }));
    let (status, body) = exchange_on(&four, &token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    assert!(!body.to_string().contains(&token));
    assert_eq!(
        jwks.jwks_requests(),
        requests_before,
        "the keys were fetched"
    );
    let hits: Vec<String> = redirects.hits()[hits_before..].to_vec();
    assert!(
        hits.iter().all(|path| path != "/hop/0") && hits.contains(&"/hop/1".to_owned()),
        "{hits:?}"
    );
    let log = four.log();
    let refused = refusals(&log);
    assert!(
        refused.iter().any(|line| line.contains(&format!(
            "redirect to {} refused: more than 3 redirects",
            jwks.jwks_url()
        ))),
        "{log}"
    );
    assert!(!log.contains(&token));
    // Still serving.
    assert_eq!(exchange_on(&four, &token).await.0, 503);
}

#[tokio::test]
async fn a_redirect_to_plain_http_beyond_loopback_is_refused_without_connecting() {
    let key = TestKey::generate(Algorithm::RS256, "k1");
    // TEST-NET-1 (RFC 5737): nothing answers there; a connection attempt would time out or
    // fail, and the log would say so.
    let redirects = RouteServer::start(|base| {
        let mut routes = hops(base, "http://192.0.2.1/jwks.json", 1);
        routes.push((
            "/relative".to_owned(),
            Route::Redirect("//192.0.2.1:80/jwks.json".to_owned()),
        ));
        routes
    })
    .await;
    for start in ["/hop/1", "/relative"] {
        let dir = tempfile::tempdir().unwrap();
        let baton = serve_with_idp(
            dir.path(),
            &format!("jwks_url = \"{}\"", redirects.url(start)),
        )
        .await;
        let token = key.sign(&json!({ "aud": AUD, "sub": "alice", "exp": now() + 600 }));
        let (status, body) = exchange_on(&baton, &token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("temporarily_unavailable")),
            "{body}"
        );
        let log = baton.log();
        let reason = "redirect to http://192.0.2.1/jwks.json refused: must be https \
                      (or a loopback address) unless allow_http = true";
        assert!(
            refusals(&log).iter().any(|line| line.contains(reason)),
            "{start}: {log}"
        );
        assert!(
            !log.contains("timed out") && !log.contains("connection failed"),
            "{start}: {log}"
        );
    }
}

#[tokio::test]
async fn a_discovery_document_with_an_http_jwks_uri_beyond_loopback_is_refused() {
    let key = TestKey::generate(Algorithm::RS256, "k1");
    let discovery = RouteServer::start(|base| {
        vec![(
            "/.well-known/openid-configuration".to_owned(),
            Route::Json(json!({ "issuer": base, "jwks_uri": "http://192.0.2.1/jwks.json" })),
        )]
    })
    .await;
    let issuer = format!("http://{}", discovery.addr);
    let dir = tempfile::tempdir().unwrap();
    let baton = serve_with_idp(
        dir.path(),
        &format!("issuer = \"{issuer}\"\ndiscovery = true"),
    )
    .await;
    let token = key.sign(&json!({ "iss": issuer, "aud": AUD, "sub": "alice", "exp": now() + 600 }));
    let (status, body) = exchange_on(&baton, &token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    assert!(
        discovery
            .hits()
            .iter()
            .all(|path| path == "/.well-known/openid-configuration")
    );
    let log = baton.log();
    let reason = format!(
        "refused to fetch http://192.0.2.1/jwks.json (the jwks_uri of \
         {issuer}/.well-known/openid-configuration): must be https (or a loopback address) \
         unless allow_http = true"
    );
    assert!(
        refusals(&log).iter().any(|line| line.contains(&reason)),
        "{log}"
    );
    assert!(
        !log.contains("timed out") && !log.contains("connection failed"),
        "{log}"
    );
}
