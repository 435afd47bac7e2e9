//! `[proxy] cors_origins`: a page at a listed origin calls the app through baton. Its
//! preflight (no credentials, by the Fetch standard) is answered by baton and never reaches
//! the app; every answer to it, the app's or baton's refusal, lets the page read it; any
//! other origin gets no CORS headers from baton, and its preflight is refused like any
//! request without a token.

use super::*;

const PAGE: &str = "https://spa.example.com";

fn cors_opts() -> Opts {
    Opts {
        proxy_extra: format!("cors_origins = [\"{PAGE}\"]\n"),
        ..Opts::default()
    }
}

#[tokio::test]
async fn a_listed_origin_s_preflight_is_answered_by_baton_and_never_reaches_the_app() {
    let h = Harness::start(cors_opts()).await;
    let seen_before = h.upstream.seen().len();
    let preflight = h
        .request(
            "OPTIONS",
            "/api/items",
            None,
            &[
                ("origin", PAGE),
                ("access-control-request-method", "PUT"),
                (
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
            ],
        )
        .await;
    assert_eq!(preflight.status, 204, "{preflight:?}");
    assert_eq!(preflight.header("access-control-allow-origin"), Some(PAGE));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("PUT")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(preflight.header("vary"), Some("Origin"));
    assert_eq!(
        h.upstream.seen().len(),
        seen_before,
        "the preflight reached the app"
    );

    // Another origin's preflight is a request without a token.
    let other = h
        .request(
            "OPTIONS",
            "/api/items",
            None,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "PUT"),
            ],
        )
        .await;
    assert_eq!(other.status, 401, "{other:?}");
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(h.upstream.seen().len(), seen_before);
}

#[tokio::test]
async fn a_listed_origin_reads_the_app_s_answer_and_baton_s_refusals() {
    let h = Harness::start(cors_opts()).await;
    let token = h.idp_token("cors-user");
    let allowed = h
        .request("GET", "/api/items", Some(&token), &[("origin", PAGE)])
        .await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.header("access-control-allow-origin"), Some(PAGE));
    let forwarded = h.last_seen();
    assert!(
        forwarded
            .header("authorization")
            .is_some_and(|a| a != format!("Bearer {token}")),
        "the app got the IdP token"
    );

    let refused = h
        .request(
            "GET",
            "/api/items",
            Some("not.a.token"),
            &[("origin", PAGE)],
        )
        .await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(refused.header("access-control-allow-origin"), Some(PAGE));
    assert_eq!(
        refused.header("access-control-expose-headers"),
        Some("www-authenticate")
    );

    // An origin not listed: baton adds nothing.
    let other = h
        .request(
            "GET",
            "/api/items",
            Some(&token),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn without_cors_origins_a_preflight_is_an_unauthenticated_request() {
    let h = Harness::start(Opts::default()).await;
    let preflight = h
        .request(
            "OPTIONS",
            "/api/items",
            None,
            &[("origin", PAGE), ("access-control-request-method", "GET")],
        )
        .await;
    assert_eq!(preflight.status, 401, "{preflight:?}");
    assert_eq!(preflight.header("access-control-allow-origin"), None);
}
