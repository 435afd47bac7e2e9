//! `baton demo --port 0`, end to end: start the real binary, read the commands it prints
//! after `Try:` (below its first line, the page's address: `tests/demo_browser.rs` opens it),
//! run them exactly as printed in one `bash` script, and check what each one shows.

mod support;

use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use support::demo::Demo;

fn claims(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn jose_header(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn demo_commands_work_as_printed() {
    let demo = Demo::start();
    let mut commands = demo.try_lines.clone();

    // First the page (the demo IdP's origin: the one `TOKEN=…` fetches from), then commands.
    let page = demo.page_url();
    commands.remove(0);
    assert!(
        page.starts_with("http://127.0.0.1:") && page.ends_with('/'),
        "{page:?}"
    );
    assert!(
        commands[0].contains(&format!("'{page}token?user=alice'")),
        "the page is not the demo IdP's: {page:?}, {:?}",
        commands[0]
    );
    assert_eq!(commands.len(), 7, "{commands:#?}");

    // The printed lines, verbatim, each followed by a marker; then the IdP token, to check
    // that it never reaches the app or the caller.
    let mut script = String::from("set -e\n");
    for command in &commands {
        script.push_str(command);
        script.push_str("\necho ===\n");
    }
    script.push_str("printf '%s\\n' \"$TOKEN\"\n");
    let mut bash = Command::new("bash");
    bash.arg("-c").arg(&script);
    for proxy in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        bash.env_remove(proxy);
    }
    let output = bash.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the script failed ({}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // Bodies need not end with a newline: split on the markers, not on lines.
    let parts: Vec<&str> = stdout.split("===\n").collect();
    assert_eq!(parts.len(), commands.len() + 1, "{stdout}");
    let (idp_token, hello, tokens, no_token, jwks, providers, metrics) = (
        parts[7].trim(),
        parts[1],
        parts[2],
        parts[3],
        parts[4],
        parts[5],
        parts[6],
    );
    assert_eq!(parts[0], "", "TOKEN=… prints nothing");
    assert_eq!(
        idp_token.split('.').count(),
        3,
        "the IdP token: {idp_token:?}"
    );
    assert_eq!(claims(idp_token)["sub"], "user|alice");

    // The published key set: one ES256 key.
    let jwks: Value =
        serde_json::from_str(jwks).unwrap_or_else(|e| panic!("JWKS is not JSON ({e}): {jwks}"));
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let key = &keys[0];
    assert_eq!(key["kty"], "EC", "{key}");
    assert_eq!(key["crv"], "P-256", "{key}");
    if let Some(alg) = key.get("alg") {
        assert_eq!(alg, "ES256", "{key}");
    }
    assert!(key.get("d").is_none(), "private part published: {key}");
    let decoding =
        DecodingKey::from_jwk(&serde_json::from_value::<Jwk>(key.clone()).unwrap()).unwrap();
    let verify = |token: &str| {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&["https://api.statebacked.dev/"]);
        jsonwebtoken::decode::<Value>(token, &decoding, &validation)
            .unwrap_or_else(|e| panic!("a baton token does not verify with the published key: {e}"))
    };

    // The proxied /hello: the app got a baton token for alice, never the IdP token.
    assert!(
        !hello.contains(idp_token),
        "the IdP token reached the app:\n{hello}"
    );
    let hello: Value =
        serde_json::from_str(hello).unwrap_or_else(|e| panic!("/hello is not JSON ({e}): {hello}"));
    let authorization = hello["received"]["headers"]["authorization"]
        .as_str()
        .unwrap_or_default();
    let forwarded = authorization
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("no `authorization: Bearer ` at the app: {hello:#}"));
    assert_ne!(forwarded, idp_token);
    assert_eq!(hello["received"]["path"], "/hello");
    assert_eq!(
        hello["baton_token_claims"]["act"]["sub"], "user|alice",
        "{hello:#}"
    );
    assert_eq!(
        hello["baton_token_claims"]["act"]["email"], "alice@example.com",
        "{hello:#}"
    );
    assert_eq!(claims(forwarded), hello["baton_token_claims"]);
    assert_eq!(jose_header(forwarded)["kid"], key["kid"]);
    verify(forwarded);

    // POST /tokens: an access token for alice.
    assert!(
        !tokens.contains(idp_token),
        "/tokens echoed the IdP token:\n{tokens}"
    );
    let tokens: Value = serde_json::from_str(tokens)
        .unwrap_or_else(|e| panic!("/tokens is not JSON ({e}): {tokens}"));
    let access_token = tokens["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {tokens}"));
    assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
    assert_eq!(
        tokens["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(verify(access_token).claims["act"]["sub"], "user|alice");

    // No token: 401 with a Bearer challenge.
    let status_line = no_token.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.1 401"),
        "expected 401: {no_token}"
    );
    let challenge = no_token
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("www-authenticate")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no WWW-Authenticate: {no_token}"));
    assert!(challenge.starts_with("Bearer"), "{challenge}");

    // The admin API (its token read from the demo's file): the demo's provider, read-only.
    let providers: Value = serde_json::from_str(providers)
        .unwrap_or_else(|e| panic!("/token-providers is not JSON ({e}): {providers}"));
    assert_eq!(
        providers["tokenProviders"][0]["service"], "demo-app",
        "{providers}"
    );
    assert_eq!(
        providers["tokenProviders"][0]["readOnly"], true,
        "{providers}"
    );
    // Metrics counted the two exchanges above (the proxied /hello and POST /tokens).
    let counted: f64 = metrics
        .lines()
        .filter_map(|line| line.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    assert!(metrics.contains("outcome=\"ok\""), "{metrics}");
    assert_eq!(counted, 2.0, "{metrics}");
}
