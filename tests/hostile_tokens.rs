//! Hostile subject tokens: every one must be refused, at the right stage, with the right
//! `VerifyError`, and no error message may echo the token.
mod support;

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use baton::ExchangeError;
use baton::config::Config;
use baton::exchange::{Exchanger, ExchangerOptions};
use baton::idp::verify::VerifyError;
use baton::token::{MAX_TOKEN_BYTES, MalformedToken};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use support::{JwksServer, TestKey, b64, now, payload, sign_hmac};

const ISSUER: &str = "https://idp.example.com";
const AUDIENCE: &str = "baton-test";
const SERVICE: &str = "svc";

/// A matcher for the error a row must produce, with its pattern as text for messages.
type Expect = (fn(&VerifyError) -> bool, &'static str);

macro_rules! expect {
    ($pat:pat $(if $guard:expr)?) => {
        (
            (|e: &VerifyError| matches!(e, $pat $(if $guard)?)) as fn(&VerifyError) -> bool,
            stringify!($pat $(if $guard)?),
        )
    };
}

/// A provider that mints `statebacked` tokens with an HMAC key; the IdPs vary per test.
fn config_with_idps(idps: &str, base_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Config {
    let source = format!(
        r#"
[[keys]]
id = "sbk_hostile"
algorithm = "HS256"
secret = "sbsec_hostile_test_secret_0123456789abcdef"

{idps}

[[token_providers]]
service = "{SERVICE}"
key = "sbk_hostile"
mapping = {{ "sub.$" = "$.sub" }}
"#
    );
    Config::from_toml(&source, base_dir, env).unwrap_or_else(|e| panic!("config refused: {e}"))
}

fn jwks_idp(jwks_url: &str) -> String {
    format!(
        r#"
[[idps]]
name = "main"
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["RS256"]
jwks_url = "{jwks_url}"
mapping = {{ "sub.$" = "$.sub" }}
"#
    )
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn claims() -> Value {
    let now = now();
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 600 })
}

/// `claims()` with `changes` applied; a `null` removes the claim.
fn claims_with(changes: Value) -> Value {
    let mut claims = claims();
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

fn segments(token: &str) -> Vec<&str> {
    token.split('.').collect()
}

/// Runs every row; collects every failure so one run shows them all.
async fn run_rows(exchanger: &Exchanger, rows: Vec<(&str, String, Expect)>) {
    let mut failures = Vec::new();
    for (name, token, (matches, pattern)) in rows {
        match exchanger.exchange(&token, SERVICE).await {
            Ok(_) => failures.push(format!("{name}: ACCEPTED, expected {pattern}")),
            Err(ExchangeError::Token(e)) if matches(&e) => {
                // The error, shown or debugged, must never carry the token or a sizeable
                // piece of it.
                let shown = format!("{}", ExchangeError::Token(e.clone()));
                let debugged = format!("{e:?}");
                for text in [&shown, &debugged] {
                    if text.contains(&token) {
                        failures.push(format!("{name}: error text contains the token: {text}"));
                    }
                    for segment in segments(&token).into_iter().filter(|s| s.len() >= 16) {
                        if text.contains(segment) {
                            failures.push(format!(
                                "{name}: error text contains a token segment: {text}"
                            ));
                        }
                    }
                }
            }
            Err(other) => failures.push(format!("{name}: got {other:?}, expected {pattern}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} row(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn hostile_tokens_are_rejected_with_the_right_error() {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let idp = JwksServer::start(vec![k1.jwk.clone()]).await;
    // The attacker's own key, served by the attacker's own JWKS server.
    let attacker = TestKey::generate(Algorithm::RS256, "attacker");
    let attacker_server = JwksServer::start(vec![attacker.jwk.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_idps(&jwks_idp(&idp.jwks_url()), dir.path(), &no_env);
    let exchanger = Exchanger::new(config, ExchangerOptions::default()).unwrap();

    // Control: the same exchanger accepts a good token, so the rows below do not pass
    // vacuously (a broken JWKS setup would make everything fail).
    let good = k1.sign(&claims());
    let minted = exchanger
        .exchange(&good, SERVICE)
        .await
        .expect("a valid token passes");
    assert_eq!(payload(minted.minted.token())["act"]["sub"], "user-1");

    let now = now();
    let rs_header = |extra: Value| {
        let mut header = json!({ "alg": "RS256", "typ": "JWT" });
        for (k, v) in extra.as_object().unwrap() {
            header[k] = v.clone();
        }
        header
    };
    let good_sig = segments(&good)[2].to_owned();
    let unsigned = |alg: &str| {
        format!(
            "{}.{}",
            b64(&json!({ "alg": alg, "kid": "k1", "typ": "JWT" })),
            b64(&claims())
        )
    };
    let public_pem = k1.public_pem();
    let jwks_json = json!({ "keys": [k1.jwk.clone()] }).to_string();
    let tampered = {
        let parts = segments(&good);
        let forged = claims_with(json!({ "sub": "admin" }));
        format!("{}.{}.{}", parts[0], b64(&forged), parts[2])
    };
    let truncated = good[..good.len() - 10].to_owned();
    let jwe = format!(
        "{}.{}.{}.{}.{}",
        b64(&json!({ "alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "k1" })),
        URL_SAFE_NO_PAD.encode([7u8; 256]),
        URL_SAFE_NO_PAD.encode([1u8; 12]),
        URL_SAFE_NO_PAD.encode(b"ciphertext bytes here"),
        URL_SAFE_NO_PAD.encode([2u8; 16]),
    );

    let rows: Vec<(&str, String, Expect)> = vec![
        (
            "alg none with a junk signature",
            format!("{}.{good_sig}", unsigned("none")),
            expect!(VerifyError::UnsupportedAlgorithm(alg) if alg == "none"),
        ),
        (
            "alg None (capitalised)",
            format!("{}.{good_sig}", unsigned("None")),
            expect!(VerifyError::UnsupportedAlgorithm(_)),
        ),
        (
            "alg nOnE (mixed case)",
            format!("{}.{good_sig}", unsigned("nOnE")),
            expect!(VerifyError::UnsupportedAlgorithm(_)),
        ),
        (
            // RFC 7515's unsecured form: the third segment is empty.
            "alg none, unsecured (empty signature)",
            format!("{}.", unsigned("none")),
            expect!(VerifyError::UnsupportedAlgorithm(_)),
        ),
        (
            "HS256 keyed with the RSA public key's PEM (algorithm confusion)",
            sign_hmac(
                public_pem.as_bytes(),
                Algorithm::HS256,
                &json!({ "alg": "HS256", "kid": "k1", "typ": "JWT" }),
                &claims(),
            ),
            expect!(VerifyError::AlgorithmNotAllowed { alg, .. } if alg == "HS256"),
        ),
        (
            "HS256 keyed with the PEM without its trailing newline",
            sign_hmac(
                public_pem.trim_end().as_bytes(),
                Algorithm::HS256,
                &json!({ "alg": "HS256", "kid": "k1" }),
                &claims(),
            ),
            expect!(VerifyError::AlgorithmNotAllowed { .. }),
        ),
        (
            "HS256 keyed with the JWKS document",
            sign_hmac(
                jwks_json.as_bytes(),
                Algorithm::HS256,
                &json!({ "alg": "HS256", "kid": "k1" }),
                &claims(),
            ),
            expect!(VerifyError::AlgorithmNotAllowed { .. }),
        ),
        (
            "RS384 with the right key, not in the allow-list",
            {
                let header = json!({ "alg": "RS384", "kid": "k1" });
                let input = format!("{}.{}", b64(&header), b64(&claims()));
                let sig =
                    jsonwebtoken::crypto::sign(input.as_bytes(), &k1.encoding, Algorithm::RS384)
                        .unwrap();
                format!("{input}.{sig}")
            },
            expect!(VerifyError::AlgorithmNotAllowed { alg, .. } if alg == "RS384"),
        ),
        (
            "a kid not in the set",
            attacker.sign_raw(&rs_header(json!({ "kid": "not-in-the-set" })), &claims()),
            expect!(VerifyError::UnknownKey { kid: Some(kid), .. } if kid == "not-in-the-set"),
        ),
        (
            "expired beyond the leeway",
            k1.sign(&claims_with(json!({ "iat": now - 7200, "exp": now - 120 }))),
            expect!(VerifyError::Expired { .. }),
        ),
        (
            "nbf in the future",
            k1.sign(&claims_with(json!({ "nbf": now + 3600 }))),
            expect!(VerifyError::NotYetValid { .. }),
        ),
        (
            "iat in the future",
            k1.sign(&claims_with(
                json!({ "iat": now + 3600, "exp": now + 7200 }),
            )),
            expect!(VerifyError::IssuedInFuture { .. }),
        ),
        (
            // The audience is the IdP's, the issuer is not: the IdP is named as a near miss.
            "wrong iss (our audience)",
            k1.sign(&claims_with(json!({ "iss": "https://evil.example.com" }))),
            expect!(VerifyError::WrongIssuer),
        ),
        (
            "wrong iss and wrong aud",
            k1.sign(&claims_with(
                json!({ "iss": "https://evil.example.com", "aud": "other" }),
            )),
            expect!(VerifyError::NoMatchingIdp),
        ),
        (
            "issuer differing only by a trailing slash",
            k1.sign(&claims_with(json!({ "iss": format!("{ISSUER}/") }))),
            expect!(VerifyError::WrongIssuer),
        ),
        (
            "no iss at all",
            k1.sign(&claims_with(json!({ "iss": null }))),
            expect!(VerifyError::WrongIssuer),
        ),
        (
            "wrong aud",
            k1.sign(&claims_with(json!({ "aud": "someone-else" }))),
            expect!(VerifyError::WrongAudience),
        ),
        (
            "aud array without ours",
            k1.sign(&claims_with(json!({ "aud": ["a", "b", "baton-test-2"] }))),
            expect!(VerifyError::WrongAudience),
        ),
        (
            "aud array holding ours only as a non-string",
            k1.sign(&claims_with(
                json!({ "aud": [["baton-test"], { "aud": "baton-test" }] }),
            )),
            expect!(VerifyError::WrongAudience),
        ),
        (
            "no exp",
            k1.sign(&claims_with(json!({ "exp": null }))),
            expect!(VerifyError::MissingExpiry),
        ),
        (
            "exp as a string",
            k1.sign(&claims_with(json!({ "exp": (now + 600).to_string() }))),
            expect!(VerifyError::InvalidTimeClaim("exp")),
        ),
        (
            "bad base64 in the header",
            format!("eyJhbGciOi!!!.{}.{good_sig}", b64(&claims())),
            expect!(VerifyError::Malformed(MalformedToken::BadBase64)),
        ),
        (
            "bad base64 in the payload",
            format!("{}.eyJz*dWIi.{good_sig}", segments(&good)[0]),
            expect!(VerifyError::Malformed(MalformedToken::BadBase64)),
        ),
        (
            "standard (not url-safe) base64 in the signature",
            format!("{}.{}.ab+/cd==", segments(&good)[0], segments(&good)[1]),
            expect!(VerifyError::Malformed(MalformedToken::BadBase64)),
        ),
        (
            "a payload that is a JSON array",
            k1.sign(&json!([ISSUER, AUDIENCE, now + 600])),
            expect!(VerifyError::Malformed(MalformedToken::PayloadNotObject)),
        ),
        (
            "a payload that is a JSON string",
            k1.sign(&json!("{\"iss\":\"https://idp.example.com\"}")),
            expect!(VerifyError::Malformed(MalformedToken::PayloadNotObject)),
        ),
        (
            "five segments (JWE)",
            jwe,
            expect!(VerifyError::Malformed(MalformedToken::Encrypted)),
        ),
        (
            "a crit header",
            k1.sign_raw(
                &rs_header(json!({ "kid": "k1", "crit": ["exp"], "exp": 1 })),
                &claims(),
            ),
            expect!(VerifyError::Malformed(MalformedToken::CriticalHeader)),
        ),
        (
            "larger than the limit",
            k1.sign(&claims_with(json!({ "pad": "x".repeat(MAX_TOKEN_BYTES) }))),
            expect!(VerifyError::Malformed(MalformedToken::TooLarge)),
        ),
        (
            "a truncated signature",
            truncated,
            expect!(VerifyError::BadSignature),
        ),
        (
            "a signature with one character dropped",
            good[..good.len() - 1].to_owned(),
            expect!(VerifyError::BadSignature),
        ),
        (
            "a tampered payload with the original signature",
            tampered,
            expect!(VerifyError::BadSignature),
        ),
        (
            "the signature of another token",
            {
                let other = k1.sign(&claims_with(json!({ "sub": "user-2" })));
                format!("{}.{}", segments(&good)[..2].join("."), segments(&other)[2])
            },
            expect!(VerifyError::BadSignature),
        ),
        (
            "embedded jwk (attacker's key), attacker's kid",
            attacker.sign_raw(
                &rs_header(json!({ "kid": "attacker", "jwk": attacker.jwk.clone() })),
                &claims(),
            ),
            expect!(VerifyError::UnknownKey { .. }),
        ),
        (
            "embedded jwk (attacker's key), kid k1",
            attacker.sign_raw(
                &rs_header(json!({ "kid": "k1", "jwk": attacker.jwk.clone() })),
                &claims(),
            ),
            expect!(VerifyError::BadSignature),
        ),
        (
            "embedded jwk (attacker's key), no kid",
            attacker.sign_raw(
                &rs_header(json!({ "jwk": attacker.jwk.clone() })),
                &claims(),
            ),
            expect!(VerifyError::BadSignature),
        ),
        (
            "jku at the attacker's JWKS, attacker's kid",
            attacker.sign_raw(
                &rs_header(json!({ "kid": "attacker", "jku": attacker_server.jwks_url() })),
                &claims(),
            ),
            expect!(VerifyError::UnknownKey { .. }),
        ),
        (
            "jku at the attacker's JWKS, kid k1",
            attacker.sign_raw(
                &rs_header(json!({ "kid": "k1", "jku": attacker_server.jwks_url() })),
                &claims(),
            ),
            expect!(VerifyError::BadSignature),
        ),
        (
            "x5u at the attacker's server, attacker's kid",
            attacker.sign_raw(
                &rs_header(json!({ "kid": "attacker", "x5u": attacker_server.jwks_url() })),
                &claims(),
            ),
            expect!(VerifyError::UnknownKey { .. }),
        ),
        (
            "x5u at the attacker's server, kid k1",
            attacker.sign_raw(
                &rs_header(json!({ "kid": "k1", "x5u": attacker_server.jwks_url() })),
                &claims(),
            ),
            expect!(VerifyError::BadSignature),
        ),
        (
            "x5c chain, kid k1",
            attacker.sign_raw(
                &rs_header(json!({ "kid": "k1", "x5c": [URL_SAFE_NO_PAD.encode([0x30u8; 64])] })),
                &claims(),
            ),
            expect!(VerifyError::BadSignature),
        ),
    ];
    run_rows(&exchanger, rows).await;

    // Nothing in a header is ever fetched.
    assert_eq!(
        attacker_server.jwks_requests(),
        0,
        "baton fetched the attacker's jku/x5u"
    );
    assert!(idp.jwks_requests() >= 1, "the IdP's JWKS was used");

    // Header hints are ignored, not obeyed, on a genuine token too: it verifies with k1
    // and the attacker's server still sees nothing.
    let genuine_with_jku = k1.sign_raw(
        &rs_header(json!({ "kid": "k1", "jku": attacker_server.jwks_url(), "x5u": attacker_server.jwks_url() })),
        &claims(),
    );
    exchanger
        .exchange(&genuine_with_jku, SERVICE)
        .await
        .expect("a genuine k1 token passes whatever jku/x5u say");
    assert_eq!(attacker_server.jwks_requests(), 0);
}

#[tokio::test]
async fn a_valid_token_passes() {
    let k1 = TestKey::generate(Algorithm::RS256, "k1");
    let idp = JwksServer::start(vec![k1.jwk.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_idps(&jwks_idp(&idp.jwks_url()), dir.path(), &no_env);
    let exchanger = Exchanger::new(config, ExchangerOptions::default()).unwrap();

    let good = k1.sign(&claims());
    let first = exchanger
        .exchange(&good, SERVICE)
        .await
        .expect("valid token");
    assert!(!first.cached);
    let minted = &first.minted;
    assert_eq!(minted.idp.as_ref(), "main");
    let claims = payload(minted.token());
    assert_eq!(claims["act"], json!({ "sub": "user-1" }));
    let second = exchanger
        .exchange(&good, SERVICE)
        .await
        .expect("valid token again");
    assert!(second.cached);

    // Within the leeway (60 s) an expired token still passes.
    let now = now();
    let just_expired = k1.sign(&claims_with(json!({ "exp": now - 10 })));
    exchanger
        .exchange(&just_expired, SERVICE)
        .await
        .expect("expired 10 s ago, inside the 60 s leeway");
}

#[tokio::test]
async fn static_hmac_idp_from_key_env() {
    const SECRET: &str = "idp-shared-secret-0123456789-abcdefghijklmnop";
    let dir = tempfile::tempdir().unwrap();
    let idps = format!(
        r#"
[[idps]]
name = "hmac"
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["HS256"]
key_env = "IDP_HMAC_SECRET"
mapping = {{ "sub.$" = "$.sub" }}
"#
    );
    let env = |name: &str| (name == "IDP_HMAC_SECRET").then(|| SECRET.to_owned());
    let config = config_with_idps(&idps, dir.path(), &env);
    let exchanger = Exchanger::new(config, ExchangerOptions::default()).unwrap();
    let header = json!({ "alg": "HS256", "typ": "JWT" });

    let good = sign_hmac(SECRET.as_bytes(), Algorithm::HS256, &header, &claims());
    let minted = exchanger
        .exchange(&good, SERVICE)
        .await
        .expect("signed with the shared secret");
    assert_eq!(payload(minted.minted.token())["act"]["sub"], "user-1");

    let rsa = TestKey::generate(Algorithm::RS256, "k1");
    let rows: Vec<(&str, String, Expect)> = vec![
        (
            "HS256 signed with another secret",
            sign_hmac(
                b"some-other-secret-0123456789-abcdefghijklmno",
                Algorithm::HS256,
                &header,
                &claims(),
            ),
            expect!(VerifyError::BadSignature),
        ),
        (
            "HS256 signed with the secret plus a newline",
            sign_hmac(
                format!("{SECRET}\n").as_bytes(),
                Algorithm::HS256,
                &header,
                &claims(),
            ),
            expect!(VerifyError::BadSignature),
        ),
        (
            "HS384 with the right secret, not in the allow-list",
            sign_hmac(
                SECRET.as_bytes(),
                Algorithm::HS384,
                &json!({ "alg": "HS384" }),
                &claims(),
            ),
            expect!(VerifyError::AlgorithmNotAllowed { .. }),
        ),
        (
            "RS256 against an HMAC IdP",
            rsa.sign(&claims()),
            expect!(VerifyError::AlgorithmNotAllowed { .. }),
        ),
        (
            "alg none",
            format!("{}.{}.AAAA", b64(&json!({ "alg": "none" })), b64(&claims())),
            expect!(VerifyError::UnsupportedAlgorithm(_)),
        ),
        (
            "expired",
            sign_hmac(
                SECRET.as_bytes(),
                Algorithm::HS256,
                &header,
                &claims_with(json!({ "exp": now() - 3600 })),
            ),
            expect!(VerifyError::Expired { .. }),
        ),
    ];
    run_rows(&exchanger, rows).await;
}

#[tokio::test]
async fn static_pem_idp_from_key_file() {
    let key = TestKey::generate(Algorithm::RS256, "pem-key");
    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("idp_public.pem");
    let public_pem = key.public_pem();
    std::fs::write(&pem_path, &public_pem).unwrap();
    let idps = format!(
        r#"
[[idps]]
name = "pem"
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["RS256"]
key_file = "{}"
mapping = {{ "sub.$" = "$.sub" }}
"#,
        pem_path.display()
    );
    let config = config_with_idps(&idps, dir.path(), &no_env);
    let exchanger = Exchanger::new(config, ExchangerOptions::default()).unwrap();

    let good = key.sign(&claims());
    let minted = exchanger
        .exchange(&good, SERVICE)
        .await
        .expect("RS256 with the PEM's key");
    assert_eq!(payload(minted.minted.token())["act"]["sub"], "user-1");
    // A static key ignores `kid`: any kid (or none) verifies with the one key.
    let no_kid = key.sign_raw(&json!({ "alg": "RS256" }), &claims());
    exchanger
        .exchange(&no_kid, SERVICE)
        .await
        .expect("RS256 without a kid");

    let file_bytes = std::fs::read(&pem_path).unwrap();
    let der = pem::parse(&public_pem).unwrap().into_contents();
    let other = TestKey::generate(Algorithm::RS256, "pem-key");
    let hs = json!({ "alg": "HS256", "typ": "JWT" });
    let rows: Vec<(&str, String, Expect)> = vec![
        (
            "HS256 keyed with the PEM file's bytes",
            sign_hmac(&file_bytes, Algorithm::HS256, &hs, &claims()),
            expect!(VerifyError::AlgorithmNotAllowed { alg, .. } if alg == "HS256"),
        ),
        (
            "HS256 keyed with the trimmed PEM",
            sign_hmac(
                public_pem.trim().as_bytes(),
                Algorithm::HS256,
                &hs,
                &claims(),
            ),
            expect!(VerifyError::AlgorithmNotAllowed { .. }),
        ),
        (
            "HS256 keyed with the DER",
            sign_hmac(&der, Algorithm::HS256, &hs, &claims()),
            expect!(VerifyError::AlgorithmNotAllowed { .. }),
        ),
        (
            "HS512 keyed with the PEM file's bytes",
            sign_hmac(
                &file_bytes,
                Algorithm::HS512,
                &json!({ "alg": "HS512" }),
                &claims(),
            ),
            expect!(VerifyError::AlgorithmNotAllowed { .. }),
        ),
        (
            "RS256 signed by another key with the same kid",
            other.sign(&claims()),
            expect!(VerifyError::BadSignature),
        ),
        (
            "RS256 with an embedded jwk of another key",
            other.sign_raw(
                &json!({ "alg": "RS256", "kid": "pem-key", "jwk": other.jwk.clone() }),
                &claims(),
            ),
            expect!(VerifyError::BadSignature),
        ),
    ];
    run_rows(&exchanger, rows).await;
}

#[test]
fn hmac_is_refused_at_load_next_to_a_public_key_or_a_jwks() {
    let key = TestKey::generate(Algorithm::RS256, "k1");
    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("idp_public.pem");
    std::fs::write(&pem_path, key.public_pem()).unwrap();
    for source in [
        format!("key_file = \"{}\"", pem_path.display()),
        "jwks_url = \"http://127.0.0.1:1/jwks.json\"".to_owned(),
        "discovery = true".to_owned(),
    ] {
        let toml = format!(
            r#"
[[idps]]
issuer = "{ISSUER}"
algorithms = ["RS256", "HS256"]
{source}
mapping = {{}}
"#
        );
        let errors = Config::from_toml(&toml, dir.path(), &no_env)
            .expect_err("HS256 must not be allowed with a published key");
        let text = errors.to_string();
        assert!(text.contains("algorithms"), "{source}: {text}");
    }
}
