//! Requests an attacker sends to slip past a route, an `Authorization` check or the upstream
//! address: each is answered by baton, and what reaches the app is exactly what baton
//! matched. Bytes are sent as written (`raw`): an HTTP client would clean the paths up first.

use super::*;

/// `GET <target>` with the given extra header lines, the connection closed after it.
fn get(target: &str, headers: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: app.example.test\r\n{headers}Connection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_and_escapes_cannot_leave_a_skip_route() {
    let h = Harness::start(Opts::default()).await;
    // Each resolves, as an app would resolve it, to an exchange route; with no token, baton
    // must answer 401 itself (on_missing = "reject") and the app must never see it.
    for target in [
        "/public/../users/x",
        "/public/./../users/x",
        "/public/%2e%2e/users/x",
        "/public/%2E%2e/users/x",
        "/public/.%2e/users/x",
        "/public//../users/x",
        "/public/a/../../admin/x",
        "/%70ublic/../users/x",
    ] {
        let answer = raw(h.baton.addr, &get(target, "")).await;
        assert_eq!(answer.status, 401, "{target}: {answer:?}");
        assert_eq!(answer.json()["error"], "invalid_request", "{target}");
    }
    // Forms an app may read as a separator or a dot-segment are refused outright.
    for target in [
        "/public/..%2fusers/x",
        "/public/..%2Fusers/x",
        "/public/..%5cusers/x",
        "/public/..;/users/x",
        "/public/..;jsessionid=1/users/x",
        "/public/.;/users/x",
        "/public/..%3b/users/x",
        "/public/%00/x",
        "/public/x%0d%0aX-Injected:%20yes",
        "/public/%zz",
    ] {
        let answer = raw(h.baton.addr, &get(target, "")).await;
        assert_eq!(answer.status, 400, "{target}: {answer:?}");
        assert_eq!(answer.json()["error"], "invalid_request", "{target}");
    }
    // `/public/../tokens` is baton's own endpoint, not the app's.
    let answer = raw(h.baton.addr, &get("/public/../tokens", "")).await;
    assert_eq!(answer.status, 405, "{answer:?}");
    assert_eq!(h.upstream.arrived(), 0, "{:#?}", h.upstream.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raw_backslash_in_the_path_never_reaches_the_app() {
    let h = Harness::start(Opts::default()).await;
    let answer = raw(h.baton.addr, &get("/public\\..\\users", "")).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(h.upstream.arrived(), 0, "{:#?}", h.upstream.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_receives_the_normalized_path_with_the_query_untouched() {
    let h = Harness::start(Opts::default()).await;
    let token = h.idp_token("grace");
    let bearer = format!("Authorization: Bearer {token}\r\n");
    // A skip route: normalized, no token needed.
    let answer = raw(
        h.baton.addr,
        &get("/public/./a//b/%7Ec?q=%2e%2e/x&r=//", ""),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // Out of the skip route into `/admin`: exchanged for admin-svc's token, as `/admin/x` is.
    let answer = raw(h.baton.addr, &get("/public/..//admin/x", &bearer)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = h.upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(seen[0].target, "/public/a/b/~c?q=%2e%2e/x&r=//");
    assert_eq!(seen[1].target, "/admin/x");
    let minted = seen[1].bearer().expect("a baton token");
    assert_eq!(
        header(minted)["typ"],
        "at+jwt",
        "the admin route's provider"
    );
    h.verify_minted(minted, KEY_A, "admin-api");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_skip_route_drops_bearer_credentials_and_keeps_other_schemes() {
    let h = Harness::start(Opts::default()).await;
    let token = h.idp_token("heidi");
    let cases = [
        format!("Authorization: Bearer {token}\r\n"),
        format!("Authorization: bearer {token}\r\n"),
        format!("Authorization: Bearer\t{token}\r\n"),
        format!("Authorization: BEARER  {token} \r\n"),
        format!("Authorization: Bearer {token}\r\nAuthorization: bearer {token}\r\n"),
    ];
    for lines in &cases {
        let answer = raw(h.baton.addr, &get("/public/info", lines)).await;
        assert_eq!(answer.status, 200, "{lines:?}: {answer:?}");
    }
    let answer = raw(
        h.baton.addr,
        &get(
            "/public/info",
            &format!("Authorization: Bearer {token}\r\nAuthorization: Basic dXNlcjpwYXNz\r\n"),
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = h.upstream.seen();
    assert_eq!(seen.len(), cases.len() + 1);
    for request in &seen[..cases.len()] {
        assert_eq!(
            request.all("authorization"),
            Vec::<&str>::new(),
            "{request:?}"
        );
    }
    assert_eq!(
        seen[cases.len()].all("authorization"),
        vec!["Basic dXNlcjpwYXNz"]
    );
    // The Upstream's drop checks no IdP token ever arrived, in any header.
}

#[tokio::test(flavor = "multi_thread")]
async fn an_authorization_that_is_not_a_well_formed_bearer_token_is_401_invalid_request() {
    // With on_missing = "forward", only a request with no Authorization at all is forwarded.
    let h = Harness::start(Opts {
        on_missing: Some("forward"),
        ..Opts::default()
    })
    .await;
    let token = h.idp_token("ivan");
    for value in [
        format!("Bearer\t{token}"),
        format!("Bearer {token} extra"),
        format!("Bearer \"{token}\""),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Basic dXNlcjpwYXNz".to_owned(),
        format!("Token {token}"),
        token.clone(),
    ] {
        let answer = raw(
            h.baton.addr,
            &get("/users", &format!("Authorization: {value}\r\n")),
        )
        .await;
        assert_eq!(answer.status, 401, "{value:?}: {answer:?}");
        let challenge = answer.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_request\""),
            "{value:?}: {challenge}"
        );
        assert_eq!(answer.json()["error"], "invalid_request", "{value:?}");
        assert!(!answer.text().contains(&token), "the token is echoed");
    }
    assert_eq!(h.upstream.arrived(), 0, "{:#?}", h.upstream.seen());
    // Any case of the scheme and several spaces are RFC 9110's syntax: exchanged.
    let answer = raw(
        h.baton.addr,
        &get("/users", &format!("Authorization: bEaReR   {token}\r\n")),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // And no Authorization at all is forwarded, as configured.
    let answer = raw(h.baton.addr, &get("/users", "")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = h.upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    h.verify_minted(seen[0].bearer().unwrap(), KEY_A, STATEBACKED_AUD);
    assert_eq!(seen[1].header("authorization"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_that_are_not_paths_are_refused() {
    let h = Harness::start(Opts::default()).await;
    let token = h.idp_token("judy");
    let upstream = h.upstream.addr;
    let cases = [
        format!(
            "GET http://evil.example/users HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "GET http://{upstream}/public HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n\r\n"
        ),
        "GET https://evil.example:443/public/x HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n".to_owned(),
        "OPTIONS * HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n".to_owned(),
    ];
    for request in &cases {
        let answer = raw(h.baton.addr, request).await;
        assert_eq!(answer.status, 400, "{request:?}: {answer:?}");
        // pingora refuses some of these itself, with an empty body, before baton sees them.
        if !answer.body.is_empty() {
            assert_eq!(answer.json()["error"], "invalid_request", "{request:?}");
        }
    }
    // CONNECT (authority-form): baton is no forward proxy.
    let answer = raw(
        h.baton.addr,
        &format!("CONNECT {upstream} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(
        answer.status == 400 || answer.status == 405,
        "CONNECT: {answer:?}"
    );
    assert_eq!(h.upstream.arrived(), 0, "{:#?}", h.upstream.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_1_0_request_without_host_gets_the_upstream_authority() {
    let h = Harness::start(Opts::default()).await;
    let answer = raw(h.baton.addr, "GET /public/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = h.upstream.seen();
    assert_eq!(seen.len(), 1);
    let upstream = h.upstream.addr.to_string();
    assert_eq!(seen[0].header("host"), Some(upstream.as_str()));
    assert_eq!(seen[0].header("x-forwarded-host"), None, "{:?}", seen[0]);
}
