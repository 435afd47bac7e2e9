//! CORS for proxied paths (`[proxy] cors_origins`): a single-page app at a listed origin
//! calls the app through baton with its IdP token.
//!
//! A browser's preflight (`OPTIONS` with `Access-Control-Request-Method`) never carries
//! credentials (Fetch standard, "CORS-preflight request"), so it could never pass the
//! exchange: baton answers it itself, as Envoy's `cors` filter does ahead of `ext_authz`,
//! and it never reaches the app. Every other answer to a listed origin — the app's, or
//! baton's refusal — lets the page read it. An origin not listed gets nothing from baton:
//! its preflight goes the way of any request without a token.

use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::config::Config;

/// The `Origin` of a request when `[proxy] cors_origins` lists it.
pub(super) fn listed_origin(config: &Config, headers: &HeaderMap) -> Option<HeaderValue> {
    if config.proxy.cors_origins.is_empty() {
        // The common case costs no header lookup.
        return None;
    }
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    config
        .proxy
        .cors_origins
        .iter()
        .any(|allowed| allowed == text)
        .then(|| origin.clone())
}

/// Whether the request is a CORS preflight.
pub(super) fn is_preflight(parts: &Parts) -> bool {
    parts.method == Method::OPTIONS
        && parts
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a listed origin's preflight: the method and headers it asked for are
/// allowed (the exchange, not CORS, decides who gets through), cached for 10 minutes.
pub(super) fn preflight<B>(parts: &Parts, origin: HeaderValue, empty: B) -> Response<B> {
    let mut response = Response::new(empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    for (asked, allowed) in [
        (
            header::ACCESS_CONTROL_REQUEST_METHOD,
            header::ACCESS_CONTROL_ALLOW_METHODS,
        ),
        (
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
        ),
    ] {
        if let Some(value) = parts.headers.get(&asked) {
            headers.insert(allowed, value.clone());
        }
    }
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Lets the page at `origin` read `response` (and, on baton's own refusals, their
/// `WWW-Authenticate` challenge).
pub(super) fn allow<B>(response: &mut Response<B>, origin: HeaderValue, refused: bool) {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if refused {
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("www-authenticate"),
        );
    }
}

/// The CORS response headers an app might send itself, removed from its answer to a listed
/// origin so that the page sees baton's one set (two `Access-Control-Allow-Origin` values
/// fail the browser's check).
pub(super) const APP_CORS_HEADERS: [HeaderName; 2] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
];
