//! Route conditions and claim headers end to end: `[[proxy.routes]] condition`, `[proxy]`
//! and per-route `headers`, `forward_token`, with the real binary in front of the recording
//! upstream. A refused request must never reach the upstream; a claim header must only ever
//! come from baton, encoded so that no claim value can split or add a header.

use super::*;

/// The `app` provider's tokens are `statebacked`: the mapped claims are under `act`
/// (`act.user` is the IdP's `sub`); `admin-svc`'s are `access_token`: `sub` at the top.
fn guarded_routes() -> String {
    r#"
[[proxy.routes]]
prefix = "/only-get"
service = "app"
condition = 'request.method == "GET" && request.path.startsWith("/only-get")'

[[proxy.routes]]
prefix = "/alice-ops"
service = "app"
condition = 'claims.act.user == "alice" && request.headers["x-team"] == "ops"'

[[proxy.routes]]
prefix = "/admin/alice"
service = "admin-svc"
condition = 'claims.sub == "alice" && claims.role == "admin"'
"#
    .to_owned()
}

/// A 403 of RFC 6750 §3.1 with `error="insufficient_scope"` and the fixed description.
fn assert_insufficient_scope(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 403, "{what}: {answer:?}");
    let challenge = answer
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate: {answer:?}"));
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"insufficient_scope\""),
        "{what}: {challenge}"
    );
    let body = answer.json();
    assert_eq!(body["error"], "insufficient_scope", "{what}: {body}");
    assert_eq!(
        body["error_description"], "the token does not allow this request",
        "{what}: {body}"
    );
}

impl Harness {
    pub(super) async fn request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Answer::read(request.send().await.unwrap_or_else(|e| {
            panic!("{path}: {e}\n{}", self.baton.log());
        }))
        .await
    }

    /// The last request the upstream saw.
    pub(super) fn last_seen(&self) -> Seen {
        self.upstream
            .seen()
            .last()
            .cloned()
            .expect("the upstream saw a request")
    }

    async fn exchanges_denied(&self, service: &str) -> f64 {
        let metrics = self.admin_get("/metrics").await.text();
        sample(
            &metrics,
            "baton_exchanges_total",
            &[
                ("outcome", "denied"),
                ("surface", "proxy"),
                ("service", service),
            ],
        )
        .unwrap_or(0.0)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_condition_on_the_method_refuses_post_even_on_a_cache_hit_and_the_upstream_sees_nothing()
 {
    let h = Harness::start(Opts {
        routes_extra: guarded_routes(),
        ..Opts::default()
    })
    .await;
    let token = h.idp_token("carol");
    // The first GET mints, the second is a cache hit: both pass.
    for _ in 0..2 {
        let answer = h.request("GET", "/only-get/x", Some(&token), &[]).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let arrived = h.upstream.arrived();
    // Same token, so the minted token comes from the cache: the condition still decides.
    let answer = h.request("POST", "/only-get/x", Some(&token), &[]).await;
    assert_insufficient_scope(&answer, "POST on a GET-only route");
    assert!(!answer.text().contains("GET"), "the expression was echoed");
    let answer = h.request("DELETE", "/only-get", Some(&token), &[]).await;
    assert_insufficient_scope(&answer, "DELETE on a GET-only route");
    assert_eq!(
        h.upstream.arrived(),
        arrived,
        "a refused request reached the upstream"
    );
    // Counted as denied, logged with the stage.
    assert_eq!(h.exchanges_denied("app").await, 2.0);
    h.wait_for_log("route condition").await;
    let log = h.baton.log();
    assert!(log.contains("denied"), "{log}");
    assert!(!log.contains(&token), "the token was logged");
    // Routes without a condition are untouched by it.
    let answer = h.request("POST", "/anything", Some(&token), &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_condition_reads_the_minted_claims_and_the_request_headers() {
    let h = Harness::start(Opts {
        routes_extra: guarded_routes(),
        ..Opts::default()
    })
    .await;
    let alice = h.idp_token("alice");
    let bob = h.idp_token("bob");
    let ops = [("x-team", "ops")];
    let answer = h.request("GET", "/alice-ops", Some(&alice), &ops).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(h.last_seen().header("x-team"), Some("ops"));
    let arrived = h.upstream.arrived();
    // The wrong user; the header missing (an evaluation error: refused, never passed);
    // the wrong value.
    for (token, headers, what) in [
        (&bob, &ops[..], "bob"),
        (&alice, &[][..], "no x-team"),
        (&alice, &[("x-team", "dev")][..], "x-team dev"),
    ] {
        let answer = h.request("GET", "/alice-ops", Some(token), headers).await;
        assert_insufficient_scope(&answer, what);
        assert!(!answer.text().contains("alice"), "a claim was echoed");
    }
    // An access_token-profile route reads `claims.sub`, not `claims.act.sub`.
    let answer = h.request("GET", "/admin/alice", Some(&alice), &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = h.request("GET", "/admin/alice", Some(&bob), &[]).await;
    assert_insufficient_scope(&answer, "bob on /admin/alice");
    // baton's own token, forwarded untouched: the condition reads its verified payload.
    let own_alice = h.own_token(&alice, "app").await;
    let own_bob = h.own_token(&bob, "app").await;
    let answer = h.request("GET", "/alice-ops", Some(&own_alice), &ops).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(h.last_seen().bearer(), Some(own_alice.as_str()));
    let before = h.upstream.arrived();
    let answer = h.request("GET", "/alice-ops", Some(&own_bob), &ops).await;
    assert_insufficient_scope(&answer, "bob's own token");
    assert_eq!(h.upstream.arrived(), before);
    assert_eq!(h.upstream.arrived(), arrived + 2);
    assert_eq!(h.exchanges_denied("app").await, 4.0);
    assert_eq!(h.exchanges_denied("admin-svc").await, 1.0);
}

/// The claim headers of the injection tests: the user, the mail and the groups.
const CLAIM_HEADERS: &str = r#"headers = { "x-user-id.$" = "$.act.user", "x-mail.$" = "$.act.mail", "x-groups.$" = "$.act.groups", "x-tenant" = "acme" }"#;

#[tokio::test(flavor = "multi_thread")]
async fn claim_values_that_try_to_inject_arrive_percent_encoded_or_not_at_all() {
    let h = Harness::start(Opts {
        proxy_extra: CLAIM_HEADERS.to_owned(),
        ..Opts::default()
    })
    .await;
    let sub = "eve\r\nx-injected: 1\r\n\r\nGET /smuggled HTTP/1.1";
    let mail = "eve\u{0}@exämple.com %41";
    let long = "g".repeat(9 * 1024);
    let token = h.idp_token_with(json!({
        "iss": ISS, "aud": AUD, "sub": sub, "email": mail,
        "groups": [long, "ops"], "iat": now(), "exp": now() + 600,
    }));
    let answer = h.get("/x", Some(&token)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = h.last_seen();
    assert_eq!(h.upstream.seen().len(), 1, "a request was smuggled");
    let user = seen.header("x-user-id").expect("x-user-id");
    assert_eq!(
        user,
        "eve%0D%0Ax-injected: 1%0D%0A%0D%0AGET /smuggled HTTP/1.1"
    );
    assert_eq!(
        baton::claim_headers::decode(user).unwrap(),
        sub.as_bytes(),
        "the encoding does not round-trip"
    );
    let mail_header = seen.header("x-mail").expect("x-mail");
    assert_eq!(mail_header, "eve%00@ex%C3%A4mple.com %2541");
    assert_eq!(
        baton::claim_headers::decode(mail_header).unwrap(),
        mail.as_bytes()
    );
    assert_eq!(seen.header("x-injected"), None);
    // Longer than 8 KiB once encoded: not sent, and said so in the log (without the value).
    assert_eq!(seen.header("x-groups"), None);
    assert_eq!(seen.header("x-tenant"), Some("acme"));
    h.wait_for_log("too long").await;
    assert!(!h.baton.log().contains("gggggggg"), "the value was logged");
    // Arrays are joined with `,`; numbers and booleans as JSON text.
    let token = h.idp_token_with(json!({
        "iss": ISS, "aud": AUD, "sub": "zed", "email": 42,
        "groups": ["a b", 7, true], "iat": now(), "exp": now() + 600,
    }));
    assert_eq!(h.get("/x", Some(&token)).await.status, 200);
    let seen = h.last_seen();
    assert_eq!(seen.header("x-groups"), Some("a b,7,true"));
    assert_eq!(seen.header("x-mail"), Some("42"));
    assert_eq!(seen.header("x-user-id"), Some("zed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_sent_claim_header_is_stripped_in_every_mode() {
    let h = Harness::start(Opts {
        on_missing: Some("forward"),
        proxy_extra: r#"headers = { "x-user-id.$" = "$.act.user" }"#.to_owned(),
        routes_extra: r#"
[[proxy.routes]]
prefix = "/admin/ids"
service = "admin-svc"
headers = { "x-admin-id.$" = "$.sub" }

[[proxy.routes]]
prefix = "/anonymous-get"
service = "app"
condition = 'request.method == "GET"'

[[proxy.routes]]
prefix = "/anonymous-claims"
service = "app"
condition = 'claims.act.user == "alice"'
"#
        .to_owned(),
        ..Opts::default()
    })
    .await;
    let alice = h.idp_token("alice");
    let own = h.own_token(&alice, "app").await;
    let forged = [
        ("x-user-id", "root"),
        ("X-User-Id", "root2"),
        ("x-admin-id", "root3"),
        ("connection", "x-user-id"),
    ];
    // Exchanged: baton's value only, one line.
    assert_eq!(
        h.request("GET", "/x", Some(&alice), &forged).await.status,
        200
    );
    let seen = h.last_seen();
    assert_eq!(seen.all("x-user-id"), ["alice"], "exchanged: {seen:?}");
    assert_eq!(
        seen.all("x-admin-id"),
        Vec::<&str>::new(),
        "exchanged: {seen:?}"
    );
    // baton's own token: the same, from its payload.
    assert_eq!(
        h.request("GET", "/x", Some(&own), &forged).await.status,
        200
    );
    let seen = h.last_seen();
    assert_eq!(seen.all("x-user-id"), ["alice"], "own token: {seen:?}");
    assert_eq!(seen.bearer(), Some(own.as_str()));
    // No token with on_missing = "forward": none at all.
    assert_eq!(h.request("GET", "/x", None, &forged).await.status, 200);
    let seen = h.last_seen();
    assert!(seen.all("x-user-id").is_empty(), "no token: {seen:?}");
    assert!(seen.all("x-admin-id").is_empty(), "no token: {seen:?}");
    // A `skip` route: none at all, with or without a token.
    for bearer in [None, Some(alice.as_str())] {
        assert_eq!(
            h.request("GET", "/public/x", bearer, &forged).await.status,
            200
        );
        let seen = h.last_seen();
        assert!(seen.all("x-user-id").is_empty(), "skip route: {seen:?}");
        assert!(seen.all("x-admin-id").is_empty(), "skip route: {seen:?}");
    }
    // A route's own table replaces the default: its names only, the default's stripped.
    assert_eq!(
        h.request("GET", "/admin/ids", Some(&alice), &forged)
            .await
            .status,
        200
    );
    let seen = h.last_seen();
    assert_eq!(seen.all("x-admin-id"), ["alice"], "route table: {seen:?}");
    assert!(seen.all("x-user-id").is_empty(), "route table: {seen:?}");
    // Without a token a condition still decides, over `claims = null`: one on the request
    // alone passes, one that reads claims refuses.
    assert_eq!(
        h.request("GET", "/anonymous-get", None, &[]).await.status,
        200
    );
    let arrived = h.upstream.arrived();
    let answer = h.request("POST", "/anonymous-get", None, &[]).await;
    assert_insufficient_scope(&answer, "anonymous POST");
    let answer = h.request("GET", "/anonymous-claims", None, &[]).await;
    assert_insufficient_scope(&answer, "anonymous on a claims condition");
    assert_eq!(h.upstream.arrived(), arrived);
    let answer = h
        .request("GET", "/anonymous-claims", Some(&alice), &[])
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_token_false_sends_the_claim_headers_without_authorization() {
    let h = Harness::start(Opts {
        proxy_extra: format!("{CLAIM_HEADERS}\nforward_token = false"),
        ..Opts::default()
    })
    .await;
    let alice = h.idp_token("alice");
    let own = h.own_token(&alice, "app").await;
    for (token, what) in [
        (&alice, "exchanged"),
        (&alice, "cached"),
        (&own, "own token"),
    ] {
        let answer = h.get("/x", Some(token)).await;
        assert_eq!(answer.status, 200, "{what}: {answer:?}");
        let seen = h.last_seen();
        assert_eq!(seen.header("authorization"), None, "{what}: {seen:?}");
        assert_eq!(seen.header("x-user-id"), Some("alice"), "{what}");
        assert_eq!(seen.header("x-mail"), Some("alice@example.com"), "{what}");
        assert_eq!(seen.header("x-groups"), Some("staff,ops"), "{what}");
        assert_eq!(seen.header("x-tenant"), Some("acme"), "{what}");
    }
}
