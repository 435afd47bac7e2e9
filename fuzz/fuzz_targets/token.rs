//! The subject-token front: `UnverifiedToken::parse` (segments, base64url, JSON) and its
//! accessors, then the whole pipeline (IdP selection, algorithm checks, signature, time
//! claims, both mappings, minting) against the fixture's static-key IdPs.
//!
//! Input: the token itself. An input that starts with `{` is also read as a JOSE header and a
//! payload, split at the first newline, which the target encodes and signs with the `hmac`
//! IdP's secret, so that fuzzed claims get past the signature to the mappings and the minter.

#![no_main]

use baton::exchange::{Authorized, LastExchange, Remember};
use baton::token::{MAX_TOKEN_BYTES, UnverifiedToken};
use baton_fuzz::{NOW, assert_no_secret, fixture, sign_hs256, token_views};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The `app` provider's `ttl` in the fixture config.
const APP_TTL_SECONDS: u64 = 15 * 60;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    check_parse(&raw);
    exchange(&raw, "app", None);

    if data.first() == Some(&b'{')
        && let Some(split) = data.iter().position(|b| *b == b'\n')
    {
        let signed = sign_hs256(&data[..split], &data[split + 1..]);
        check_parse(&signed);
        let signature = signed.rsplit_once('.').map(|(_, s)| s.to_owned());
        exchange(&signed, "app", signature.as_deref());
        exchange(&signed, "api", signature.as_deref());
    }
});

/// The parser's guarantees: a parsed token is at most [`MAX_TOKEN_BYTES`], is exactly
/// `signing_input.signature` with one dot in the signing input, and its accessors read the
/// claims it holds.
fn check_parse(token: &str) {
    let Ok(parsed) = UnverifiedToken::parse(token) else {
        return;
    };
    assert!(token.len() <= MAX_TOKEN_BYTES);
    assert_eq!(
        format!("{}.{}", parsed.signing_input, parsed.signature),
        token
    );
    assert_eq!(parsed.signing_input.matches('.').count(), 1);
    assert!(
        parsed
            .signature
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(
        parsed.issuer(),
        parsed.claims.get("iss").and_then(Value::as_str)
    );
    let audiences = parsed.audiences();
    match parsed.claims.get("aud") {
        Some(Value::String(aud)) => assert_eq!(audiences, [aud.as_str()]),
        Some(Value::Array(_)) => {}
        _ => assert!(audiences.is_empty()),
    }
}

/// Runs `token` through the uncached pipeline (`explain`) and the proxy's `authorize`, and
/// checks that they agree, that nothing they say holds a secret (or `signature`, the
/// signature of a token this target signed), and that a minted token is sound.
fn exchange(token: &str, service: &str, signature: Option<&str>) {
    let fixture = fixture();
    let exchanger = fixture.exchanger();
    let (explained, trace) = fixture.block_on(exchanger.explain(token, service, None));
    let views = token_views(token);
    for step in trace.steps() {
        assert_no_secret("a trace step", &step.detail, &views);
        if let Some(signature) = signature {
            assert!(
                !step.detail.contains(signature),
                "a trace step holds the signature: {}",
                step.detail
            );
        }
    }
    if let Err(e) = &explained {
        let text = e.to_string();
        assert_no_secret("an exchange error", &text, &views);
        if let Some(signature) = signature {
            assert!(
                !text.contains(signature),
                "an error holds the signature: {text}"
            );
        }
    }

    // As the proxy calls it: with a connection's memory of its last exchange, asked twice
    // (the second answer comes through the remembered key and must be the first's), then
    // served again from that memory, which only ever serves what was exchanged.
    let last = LastExchange::default();
    let credentials = format!("Bearer {token}");
    let remember = Remember {
        last: &last,
        credentials: credentials.as_bytes(),
    };
    let authorized = fixture.block_on(exchanger.authorize(token, service, Some(remember)));
    let again = fixture.block_on(exchanger.authorize(token, service, Some(remember)));
    assert_eq!(
        again.is_ok(),
        authorized.is_ok(),
        "the remembered key answered otherwise"
    );
    let served_again = exchanger.serve_again(&last, credentials.as_bytes(), service);
    match (&authorized, &served_again) {
        (Ok(Authorized::Exchanged(exchanged)), Some(served)) => {
            assert_eq!(served.minted.token(), exchanged.minted.token());
        }
        (Ok(Authorized::Exchanged(_)), None) => {} // no longer servable (or too long to keep)
        (_, Some(_)) => panic!("served again what was never exchanged"),
        (_, None) => {}
    }
    match (&explained, &authorized) {
        (Ok(minted), Ok(Authorized::Exchanged(exchanged))) => {
            let subject = UnverifiedToken::parse(token).expect("an exchanged token parses");
            let subject_exp = subject.claims.get("exp").and_then(numeric_date);
            check_minted(minted.token(), minted.expires_at, service, subject_exp);
            assert_eq!(minted.expires_at, exchanged.minted.expires_at);
            // A token minted from this input would be served from the cache next time.
            fixture.forget_minted();
        }
        (Err(_), Err(_) | Ok(Authorized::Own(_))) => {}
        (Ok(_), Err(e)) => panic!("explain minted a token that authorize refused: {e}"),
        (Err(e), Ok(Authorized::Exchanged(_))) => {
            panic!("authorize exchanged a token that explain refused: {e}")
        }
        (Ok(_), Ok(Authorized::Own(_))) => panic!("a subject token was taken for baton's own"),
    }
}

/// A minted token expires when its provider's `ttl` or the subject token's `exp` says,
/// whichever is earlier, carries baton's issuer, and (when it has not expired yet) is
/// accepted by the proxy as baton's own.
///
/// It may be expired already: a subject token up to the IdP's `leeway` past its `exp` is
/// accepted, and the minted token's `exp` is capped at the subject's (reported with this
/// target; whether to mint then is the pipeline's decision, not this check's).
fn check_minted(token: &str, expires_at: u64, service: &str, subject_exp: Option<u64>) {
    let ttl = match service {
        "app" => APP_TTL_SECONDS,
        _ => baton::mint::DEFAULT_TTL.as_secs(),
    };
    let subject_exp = subject_exp.expect("an exchanged token has an exp");
    assert_eq!(expires_at, (NOW + ttl).min(subject_exp), "the minted exp");
    let parsed = UnverifiedToken::parse(token).expect("a minted token parses");
    assert_eq!(parsed.issuer(), Some("https://baton.fuzz"));
    assert_eq!(
        parsed.claims.get("exp").and_then(Value::as_u64),
        Some(expires_at)
    );
    if expires_at > NOW {
        let fixture = fixture();
        let own = fixture.block_on(fixture.exchanger().authorize(token, service, None));
        assert!(
            matches!(own, Ok(Authorized::Own(_))),
            "a minted token is not accepted as baton's own: {own:?}"
        );
    }
}

/// A NumericDate (RFC 7519 §2) in whole seconds, as the verifier reads it.
fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let seconds = value.as_f64()?;
        // Truncation is the intent, as in the verifier.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (seconds.is_finite() && seconds >= 0.0).then_some(seconds as u64)
    })
}
