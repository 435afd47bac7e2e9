//! The same rows for each front proxy: what the app receives when baton allows, what the
//! client gets when it refuses, and that a client cannot choose the request baton judges.
//! Each row is one function over [`Front`], run by one test per front proxy.

use super::*;

/// The challenge baton sends with a 401 for a missing token.
const MISSING_TOKEN_CHALLENGE: &str = "Bearer realm=\"baton\"";

/// A valid IdP token: the app receives `Authorization: Bearer <baton token>` (baton's key,
/// baton's issuer, the IdP's subject) and never the IdP token; `X-User` is baton's value
/// from the token's email, whatever the client sent, and absent when the token has no
/// email even though the client sent one.
async fn allowed(front: Front) {
    let stack = Stack::start(front).await;
    let alice = stack.idp.token("alice", Some("alice@example.com"));
    let answer = stack
        .request(
            "GET",
            "/api/items?page=2",
            Some(&alice),
            &[("x-user", "mallory")],
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.text(), "app", "the app's own answer");
    let seen = stack.app.last();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("GET", "/api/items?page=2")
    );
    let claims = baton_token_claims(seen.header("authorization"), "alice");
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["email"], "alice@example.com", "{claims}");
    assert_eq!(seen.all("x-user"), ["alice@example.com"], "{seen:?}");

    // No email in the token: no X-User at all, not the client's.
    let bob = stack.idp.token("bob", None);
    let answer = stack
        .request(
            "POST",
            "/api/items",
            Some(&bob),
            &[("x-user", "alice@example.com")],
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = stack.app.last();
    assert_eq!(seen.method, "POST");
    let claims = baton_token_claims(seen.header("authorization"), "bob");
    assert_eq!(claims["sub"], "bob", "{claims}");
    assert!(
        seen.all("x-user").is_empty(),
        "a client's X-User arrived: {seen:?}"
    );
    assert_eq!(stack.app.received(), 2);

    // Counted as forward-auth checks and forward-auth exchanges.
    let metrics = stack.metrics().await;
    let checks = sample(
        &metrics,
        "baton_forward_auth_requests_total",
        &[("status", "200")],
    );
    assert_eq!(checks, Some(2.0), "{metrics}");
    let exchanges = sample(
        &metrics,
        "baton_exchanges_total",
        &[("surface", "forward_auth"), ("service", AUD)],
    );
    assert!(exchanges.is_some_and(|n| n >= 2.0), "{metrics}");
    let log = stack.baton.log();
    assert!(
        !log.contains(&alice) && !log.contains(&bob),
        "a token was logged"
    );
}

/// A refused token (expired; signed by a key the IdP does not publish): the client gets 401
/// with baton's `invalid_token` challenge (through Caddy, baton's JSON body too); nothing
/// reaches the app.
async fn refused_token(front: Front) {
    let stack = Stack::start(front).await;
    let forged = TestKey::generate(Algorithm::RS256, "idp-k1").sign(&json!({
        "iss": IDP_ISS, "aud": AUD, "sub": "mallory", "iat": now(), "exp": now() + 600,
    }));
    IDP_TOKENS.lock().push(forged.clone());
    for (what, token) in [
        ("expired", stack.idp.expired_token("carol")),
        ("forged", forged),
    ] {
        let answer = stack.request("GET", "/api/items", Some(&token), &[]).await;
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        let challenge = answer
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate: {answer:?}"));
        assert!(
            challenge.starts_with(
                "Bearer realm=\"baton\", error=\"invalid_token\", error_description=\""
            ),
            "{what}: {challenge}"
        );
        if front == Front::Caddy {
            let body = answer.json();
            assert_eq!(body["error"], "invalid_token", "{what}: {body}");
            assert!(body["error_description"].is_string(), "{what}: {body}");
        }
    }
    assert_eq!(stack.app.received(), 0, "a refused request reached the app");
    assert_eq!(stack.app.connections.load(Ordering::SeqCst), 0);
}

/// No token on a route that needs one: 401 with exactly `WWW-Authenticate: Bearer
/// realm="baton"`; nothing reaches the app.
async fn no_token(front: Front) {
    let stack = Stack::start(front).await;
    let answer = stack.request("GET", "/api/items", None, &[]).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    let challenges: Vec<&str> = answer
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(challenges, [MISSING_TOKEN_CHALLENGE], "{answer:?}");
    if front == Front::Caddy {
        assert_eq!(answer.json()["error"], "invalid_request", "{answer:?}");
    }
    assert_eq!(stack.app.received(), 0, "a refused request reached the app");
}

/// A `skip = true` route passes without a token, and with one: the app sees the request
/// with no bearer credential (the IdP token is dropped) and no client X-User.
async fn skip_route(front: Front) {
    let stack = Stack::start(front).await;
    let answer = stack.request("GET", "/health", None, &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = stack.app.last();
    assert_eq!(seen.target, "/health");
    assert_eq!(seen.header("authorization"), None, "{seen:?}");

    let token = stack.idp.token("dave", Some("dave@example.com"));
    let answer = stack
        .request("GET", "/health/live", Some(&token), &[("x-user", "root")])
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = stack.app.last();
    assert_eq!(seen.target, "/health/live");
    assert_eq!(
        seen.header("authorization"),
        None,
        "the IdP token passed: {seen:?}"
    );
    assert!(
        seen.all("x-user").is_empty(),
        "a client's X-User arrived: {seen:?}"
    );
    assert_eq!(stack.app.received(), 2);
}

/// The `/api/read` route's condition (`request.method in ["GET", "HEAD"]`) is judged on the
/// original request's method and path: a GET passes, a POST is a 403 with baton's
/// `insufficient_scope` challenge and never reaches the app; a POST elsewhere passes.
async fn route_condition(front: Front) {
    let stack = Stack::start(front).await;
    let token = stack.idp.token("erin", Some("erin@example.com"));
    let answer = stack
        .request("GET", "/api/read/report", Some(&token), &[])
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(stack.app.last().target, "/api/read/report");

    let answer = stack
        .request("POST", "/api/read/report", Some(&token), &[])
        .await;
    assert_eq!(answer.status, 403, "{answer:?}");
    let challenge = answer.header("www-authenticate").unwrap_or_default();
    assert_eq!(
        challenge,
        "Bearer realm=\"baton\", error=\"insufficient_scope\", \
         error_description=\"the token does not allow this request\"",
        "{answer:?}"
    );
    assert_eq!(answer.json()["error"], "insufficient_scope", "{answer:?}");
    if front == Front::Caddy {
        assert_eq!(
            answer.json()["error_description"],
            "the token does not allow this request"
        );
    }
    assert_eq!(stack.app.received(), 1, "the refused POST reached the app");

    let answer = stack.request("POST", "/api/write", Some(&token), &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(stack.app.last().method, "POST");
}

/// The IdP's keys unavailable (its JWKS answers 500 from baton's start): the client gets a
/// 503 (nginx: through the example's `error_page 500` handling, as nginx turns any status of
/// baton but 2xx/401/403 into a 500); nothing reaches the app.
async fn keys_down(front: Front) {
    let stack = Stack::start_keys_down(front).await;
    let token = stack.idp.token("frank", Some("frank@example.com"));
    let answer = stack.request("GET", "/api/items", Some(&token), &[]).await;
    assert_eq!(answer.status, 503, "{answer:?}\n{}", stack.baton.log());
    assert_eq!(
        answer.json()["error"],
        "temporarily_unavailable",
        "{answer:?}"
    );
    assert_eq!(stack.app.received(), 0, "a refused request reached the app");
}

/// A client sends the other convention's headers (and its own of the front proxy's
/// convention) claiming `/health`, a skip route, to reach `/api` without a token: the front
/// proxy replaces its own convention's headers and baton ignores the other's, so it is
/// refused.
async fn spoofed_original_request(front: Front) {
    let stack = Stack::start(front).await;
    let spoofed = [
        ("x-original-uri", "/health"),
        ("x-original-method", "GET"),
        ("x-forwarded-uri", "/health"),
        ("x-forwarded-method", "GET"),
    ];
    let answer = stack.request("GET", "/api/items", None, &spoofed).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    // And the method: a POST that claims to be a GET is judged as a POST.
    let token = stack.idp.token("gina", Some("gina@example.com"));
    let answer = stack
        .request("POST", "/api/read/x", Some(&token), &spoofed)
        .await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(stack.app.received(), 0, "a refused request reached the app");
}

/// A path a client writes to reach an exchanging route through a skip route's prefix
/// (`/health/%2e%2e/api/items`, which an app resolves to `/api/items`) is judged as the
/// path baton normalizes it to, so a token is needed; a path baton refuses to normalize
/// (`%2F`, an encoded slash) is a 400, not a 503 (nginx: the example maps baton's 400).
async fn paths_are_normalized(front: Front) {
    let stack = Stack::start(front).await;
    let host = format!("Host: {}\r\n", stack.front.addr);
    let (status, _, body) = raw_request(
        stack.front.addr,
        &format!("GET /health/%2e%2e/api/items HTTP/1.1\r\n{host}"),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let token = stack.idp.token("hal", Some("hal@example.com"));
    let (status, _, body) = raw_request(
        stack.front.addr,
        &format!("GET /api/a%2Fb HTTP/1.1\r\n{host}Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(status, 400, "{body}\n{}", stack.baton.log());
    assert_eq!(stack.app.received(), 0, "a refused request reached the app");
}

macro_rules! rows {
    ($($front:ident: $($row:ident => $test:ident),+ $(,)?);+ $(;)?) => {$($(
        #[tokio::test(flavor = "multi_thread")]
        async fn $test() {
            $row(Front::$front).await;
        }
    )+)+};
}

rows! {
    Nginx:
        allowed => nginx_a_valid_token_reaches_the_app_as_a_baton_token_with_baton_s_claim_headers_only,
        refused_token => nginx_a_refused_token_is_a_401_with_baton_s_challenge_and_reaches_nothing,
        no_token => nginx_no_token_is_a_401_with_the_realm_challenge,
        skip_route => nginx_a_skip_route_passes_without_any_bearer_credential,
        route_condition => nginx_a_route_condition_judges_the_original_method_and_path,
        keys_down => nginx_unavailable_idp_keys_are_a_503_to_the_client,
        spoofed_original_request => nginx_a_client_cannot_choose_the_request_baton_judges,
        paths_are_normalized => nginx_the_original_path_is_judged_normalized;
    Caddy:
        allowed => caddy_a_valid_token_reaches_the_app_as_a_baton_token_with_baton_s_claim_headers_only,
        refused_token => caddy_a_refused_token_is_a_401_with_baton_s_challenge_and_body_and_reaches_nothing,
        no_token => caddy_no_token_is_a_401_with_the_realm_challenge,
        skip_route => caddy_a_skip_route_passes_without_any_bearer_credential,
        route_condition => caddy_a_route_condition_judges_the_original_method_and_path,
        keys_down => caddy_unavailable_idp_keys_are_a_503_to_the_client,
        spoofed_original_request => caddy_a_client_cannot_choose_the_request_baton_judges,
        paths_are_normalized => caddy_the_original_path_is_judged_normalized;
}
