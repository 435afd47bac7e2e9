//! What a request may carry to the app: its target must be a path (normalized), and its
//! `Authorization` is baton's — exchanged, passed when baton minted it, dropped on a `skip`
//! route, refused otherwise.

use std::borrow::Cow;
use std::time::Instant;

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Version, header};

use crate::authorization::Credentials;
use crate::config::{Config, OnMissing};
use crate::errors::{RequestRefused, Surface, rejection, request_rejection};
use crate::exchange::{Authorized, Exchanger};
use crate::metrics::Metrics;
use crate::request_path;
use crate::sts::Reply;
use crate::telemetry;

use super::Refusal;

/// Refuses a request target that is not origin-form, and replaces the path with its
/// normalized form (the query untouched) when normalizing changed it.
pub(super) fn normalize_target(parts: &mut Parts) -> Result<(), RequestRefused> {
    // An HTTP/1 origin-form target is a path; hyper gives an absolute-form target
    // (`GET http://host/…`) a scheme and an authority, and CONNECT's authority-form one an
    // authority only. HTTP/2 requests always carry `:scheme` and `:authority`
    // (RFC 9113 §8.3.1), and CONNECT there is the same refusal.
    let http1 = parts.version < Version::HTTP_2;
    let uri = &parts.uri;
    if parts.method == Method::CONNECT
        || (http1 && (uri.scheme().is_some() || uri.authority().is_some()))
        || !uri.path().starts_with('/')
    {
        return Err(RequestRefused::NotOriginForm);
    }
    let normalized = match request_path::normalize(uri.path())? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(path) => path,
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{normalized}?{query}"),
        None => normalized,
    };
    let mut rebuilt = http::uri::Parts::from(uri.clone());
    // The normalized path only holds bytes of the original target, so it parses.
    rebuilt.path_and_query = Some(
        path_and_query
            .try_into()
            .map_err(|_| RequestRefused::NotOriginForm)?,
    );
    parts.uri = http::Uri::from_parts(rebuilt).map_err(|_| RequestRefused::NotOriginForm)?;
    Ok(())
}

/// Applies the route's policy to the request's `Authorization`: `Ok(Some(value))` is the
/// `Authorization` the upstream gets instead of the client's (an exchanged token), `Ok(None)`
/// sends the request on as it is now (a `skip` route, its bearer credentials dropped; baton's
/// own token; no token with `on_missing = "forward"`), and `Err` is the answer instead.
pub(super) async fn authorize(
    exchanger: &Exchanger,
    metrics: &Metrics,
    config: &Config,
    parts: &mut Parts,
) -> Result<Option<HeaderValue>, Refusal> {
    let Some(service) = route(config, parts.uri.path()) else {
        // A `skip = true` route: passed on, but never with a bearer credential.
        drop_bearer_credentials(&mut parts.headers);
        return Ok(None);
    };
    let token = match bearer_credential(&parts.headers) {
        Ok(Some(token)) => token,
        Ok(None) if config.proxy.on_missing == OnMissing::Forward => return Ok(None),
        Ok(None) => return Err(refusal(&RequestRefused::MissingToken)),
        Err(refused) => return Err(refusal(&refused)),
    };
    let Some(service) = service else {
        return Err(refusal(&RequestRefused::NoService));
    };
    let started = Instant::now();
    match exchanger.authorize(token, service).await {
        Ok(Authorized::Own) => Ok(None),
        Ok(Authorized::Exchanged(exchanged)) => {
            telemetry::exchange_ok(
                metrics,
                telemetry::Surface::Proxy,
                &exchanged.minted.idp,
                service,
                exchanged.cached,
                started.elapsed(),
            );
            // `Bearer <token>` was built when the token was minted; this shares its bytes.
            HeaderValue::from_maybe_shared(exchanged.minted.bearer().clone())
                .map(Some)
                .map_err(|_| {
                    let description = "the token could not be issued";
                    Refusal {
                        http: Reply::oauth_error(500, "server_error", description),
                        description,
                    }
                })
        }
        Err(e) => {
            telemetry::exchange_refused(
                metrics,
                telemetry::Surface::Proxy,
                &e,
                service,
                started.elapsed(),
            );
            let r = rejection(&e, Surface::Proxy);
            let http = if r.status == 401 || r.status == 403 {
                bearer_challenge(r.status, r.error, r.description)
            } else {
                Reply::oauth_error(r.status, r.error, r.description)
            };
            Err(Refusal {
                http,
                description: r.description,
            })
        }
    }
}

/// The answer to a refused request (errors.rs decides status and wording).
pub(super) fn refusal(refused: &RequestRefused) -> Refusal {
    let r = request_rejection(refused);
    let http = match refused {
        RequestRefused::MissingToken => Reply::oauth_error(r.status, r.error, r.description)
            .with_header("www-authenticate", "Bearer realm=\"baton\""),
        _ if r.status == 401 => bearer_challenge(r.status, r.error, r.description),
        RequestRefused::SeveralAuthorizations => {
            Reply::oauth_error(r.status, r.error, r.description).with_header(
                "www-authenticate",
                "Bearer realm=\"baton\", error=\"invalid_request\"",
            )
        }
        // The rest of the connection cannot be read the same way by everyone (§6.1).
        RequestRefused::AmbiguousLength
        | RequestRefused::BareLineFeed
        | RequestRefused::HeadTooLarge => {
            Reply::oauth_error(r.status, r.error, r.description).with_header("connection", "close")
        }
        _ => Reply::oauth_error(r.status, r.error, r.description),
    };
    Refusal {
        http,
        description: r.description,
    }
}

/// The service for `path`: the first matching route's, else `[proxy] service`.
/// `None` means a `skip` route (pass untouched); `Some(None)`, that no service applies.
fn route<'c>(config: &'c Config, path: &str) -> Option<Option<&'c str>> {
    for route in &config.proxy.routes {
        let matches = path
            .strip_prefix(route.prefix.as_str())
            .is_some_and(|rest| {
                route.prefix.is_empty() || rest.is_empty() || rest.starts_with('/')
            });
        if matches {
            return route.service.as_deref().map(Some);
        }
    }
    Some(config.proxy.service.as_deref())
}

/// The bearer token of the request's one `Authorization` header, `None` when it has none.
/// Anything else on a route that exchanges is refused: several lines (only one could be
/// checked, and another could carry an IdP token to the app, cf. RFC 6750 §3.1), a malformed
/// value, another scheme.
fn bearer_credential(headers: &HeaderMap) -> Result<Option<&str>, RequestRefused> {
    let mut lines = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = lines.next() else {
        return Ok(None);
    };
    if lines.next().is_some() {
        return Err(RequestRefused::SeveralAuthorizations);
    }
    match Credentials::parse(value.as_bytes()) {
        Credentials::Bearer(token) => Ok(Some(token)),
        _ => Err(RequestRefused::NotBearer),
    }
}

/// Removes every `Authorization` line that holds a bearer credential, well-formed or not
/// (a `skip` route passes other schemes, e.g. `Basic`, to the app).
fn drop_bearer_credentials(headers: &mut HeaderMap) {
    let lines = headers.get_all(header::AUTHORIZATION);
    if !lines
        .iter()
        .any(|value| Credentials::parse(value.as_bytes()).is_bearer())
    {
        return;
    }
    let kept: Vec<HeaderValue> = lines
        .iter()
        .filter(|value| !Credentials::parse(value.as_bytes()).is_bearer())
        .cloned()
        .collect();
    headers.remove(header::AUTHORIZATION);
    for value in kept {
        headers.append(header::AUTHORIZATION, value);
    }
}

/// 401 or 403 with `WWW-Authenticate: Bearer error="…", error_description="…"` (RFC 6750 §3:
/// `invalid_token` is 401, `insufficient_scope` 403).
pub(super) fn bearer_challenge(status: u16, error: &str, description: &str) -> Reply {
    Reply::oauth_error(status, error, description).with_header(
        "www-authenticate",
        format!("Bearer realm=\"baton\", error=\"{error}\", error_description=\"{description}\""),
    )
}
