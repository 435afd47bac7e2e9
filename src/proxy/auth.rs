//! What a request may carry to the app: its target must be a path (normalized), and its
//! `Authorization` is baton's — exchanged, passed when baton minted it, dropped on a `skip`
//! route, refused otherwise.

use std::borrow::Cow;
use std::time::Instant;

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Version, header};

use crate::authorization::Credentials;
use crate::config::{Config, OnMissing, Route};
use crate::errors::{RequestRefused, Surface, rejection, request_rejection};
use crate::exchange::{
    Authorized, Denial, Denied, ExchangeError, Exchanger, LastExchange, Remember,
};
use crate::metrics::Metrics;
use crate::request_path;
use crate::sts::Reply;
use crate::telemetry;

use super::Refusal;
use super::policy::{self, Admitted};

/// Refuses a request target that is not origin-form, and replaces the path with its
/// normalized form (the query untouched) when normalizing changed it.
pub(super) fn normalize_target(parts: &mut Parts) -> Result<(), RequestRefused> {
    // An HTTP/1 origin-form target is a path; hyper gives an absolute-form target
    // (`GET http://host/…`) a scheme and an authority, and CONNECT's authority-form one an
    // authority only. HTTP/2 requests always carry `:scheme` and `:authority`
    // (RFC 9113 §8.3.1), and CONNECT there is the same refusal.
    let uri = &parts.uri;
    if parts.method == Method::CONNECT || is_absolute_form(parts) || !uri.path().starts_with('/') {
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

/// Whether an HTTP/1 request's target names a scheme or an authority (absolute-form
/// `GET http://host/…`, or CONNECT's authority-form): no target of an origin server's. An
/// HTTP/2 request always carries both as pseudo-headers, so only HTTP/1 is judged.
pub(super) fn is_absolute_form(parts: &Parts) -> bool {
    parts.version < Version::HTTP_2
        && (parts.uri.scheme().is_some() || parts.uri.authority().is_some())
}

/// Applies the route's policy to the request: its `Authorization` (exchanged, passed when
/// baton minted it, dropped on a `skip` route), its condition, and the claim headers the app
/// gets. `Ok` says what the upstream request gets besides the client's headers (nothing on
/// a `skip` route, whose bearer credentials are dropped here, or for a request without a
/// token under `on_missing = "forward"`); `Err` is the answer instead.
pub(super) async fn authorize(
    exchanger: &Exchanger,
    metrics: &Metrics,
    surface: telemetry::Surface,
    config: &Config,
    parts: &mut Parts,
    last: Option<&LastExchange>,
) -> Result<Admitted, Refusal> {
    let route = route(config, parts.uri.path());
    let Some(service) = route.service(config) else {
        // A `skip = true` route: passed on, but never with a bearer credential.
        drop_bearer_credentials(&mut parts.headers);
        return Ok(Admitted::default());
    };
    let condition = route.0.and_then(|route| route.condition.as_ref());
    let started = Instant::now();
    let line = authorization_line(&parts.headers);
    let (service, authorized) = match served_again(exchanger, last, &line, service) {
        Some(served) => served,
        None => {
            let credentials = match line {
                Ok(Some(value)) => value.as_bytes(),
                Ok(None) if config.proxy.on_missing == OnMissing::Forward => {
                    // No token, no claims: the route's condition still decides, over
                    // `claims = null` (a condition that reads claims refuses, one on the
                    // request alone may pass).
                    if let Some(condition) = condition
                        && let Err(denied) = policy::check_condition(condition, None, parts)
                    {
                        return Err(denial(
                            metrics,
                            surface,
                            denied,
                            service.unwrap_or("-"),
                            started,
                        ));
                    }
                    return Ok(Admitted::default());
                }
                Ok(None) => return Err(refusal(&RequestRefused::MissingToken)),
                Err(refused) => return Err(refusal(&refused)),
            };
            let token = bearer_token(credentials).map_err(|refused| refusal(&refused))?;
            let Some(service) = service else {
                return Err(refusal(&RequestRefused::NoService));
            };
            let remember = last.map(|last| Remember { last, credentials });
            // Boxed: a connection's requests after its first are served again (above), and
            // the exchange's future (1.1 KiB) would make every request's future larger.
            match Box::pin(exchanger.authorize(token, service, remember)).await {
                Ok(authorized) => (service, authorized),
                Err(e) => {
                    telemetry::exchange_refused(metrics, surface, &e, service, started.elapsed());
                    return Err(exchange_refusal(&e));
                }
            }
        }
    };
    let table = route
        .0
        .and_then(|route| route.headers.as_ref())
        .or(config.proxy.headers.as_ref());
    // Decoded (once per minted token) only when a condition or a table reads it: a config
    // without either keeps no payload in the cache.
    let payload = match &authorized {
        _ if condition.is_none() && table.is_none() => None,
        Authorized::Exchanged(exchanged) => exchanged.minted.payload().map(AsRef::as_ref),
        Authorized::Own(payload) => Some(payload.as_ref()),
    };
    if let Some(condition) = condition {
        // The token's payload only fails to decode if baton minted garbage: refused.
        let checked = match payload {
            Some(payload) => policy::check_condition(condition, Some(payload), parts),
            None => Err(Denied {
                denial: Denial::RouteCondition,
                undecided: Some("the token's payload could not be read".into()),
            }),
        };
        if let Err(denied) = checked {
            return Err(denial(metrics, surface, denied, service, started));
        }
    }
    let claim_headers = table.zip(payload).map(|(table, payload)| {
        payload.headers(table, |name| {
            tracing::warn!(
                header = name,
                service,
                "a claim header's value is too long once encoded; it is not sent"
            );
        })
    });
    let forward_token = config.proxy.forward_token;
    match authorized {
        Authorized::Own(_) => Ok(Admitted {
            authorization: None,
            drop_authorization: !forward_token,
            claim_headers,
        }),
        Authorized::Exchanged(exchanged) => {
            telemetry::exchange_ok(
                metrics,
                surface,
                &exchanged.minted.idp,
                service,
                exchanged.cached,
                started.elapsed(),
            );
            if !forward_token {
                return Ok(Admitted {
                    authorization: None,
                    drop_authorization: true,
                    claim_headers,
                });
            }
            // `Bearer <token>` was built when the token was minted; this shares its bytes.
            let authorization = HeaderValue::from_maybe_shared(exchanged.minted.bearer().clone())
                .map_err(|_| {
                let description = "the token could not be issued";
                Refusal {
                    http: Reply::oauth_error(500, "server_error", description),
                    description,
                }
            })?;
            Ok(Admitted {
                authorization: Some(authorization),
                drop_authorization: false,
                claim_headers,
            })
        }
    }
}

/// A route condition's refusal: counted and logged as `denied` with its stage, answered 403.
fn denial(
    metrics: &Metrics,
    surface: telemetry::Surface,
    denied: Denied,
    service: &str,
    started: Instant,
) -> Refusal {
    let error = ExchangeError::Denied(denied);
    telemetry::exchange_refused(metrics, surface, &error, service, started.elapsed());
    exchange_refusal(&error)
}

/// The answer to a failed exchange or a denial (errors.rs decides status and wording).
fn exchange_refusal(error: &ExchangeError) -> Refusal {
    let r = rejection(error, Surface::Proxy);
    let http = if r.status == 401 || r.status == 403 {
        bearer_challenge(r.status, r.error, r.description)
    } else {
        Reply::oauth_error(r.status, r.error, r.description)
    };
    Refusal {
        http,
        description: r.description,
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

/// The first route matching a path, `None` when none does.
#[derive(Clone, Copy)]
struct Matched<'c>(Option<&'c Route>);

/// The first `[[proxy.routes]]` entry that matches `path`.
fn route<'c>(config: &'c Config, path: &str) -> Matched<'c> {
    Matched(config.proxy.routes.iter().find(|route| {
        path.strip_prefix(route.prefix.as_str())
            .is_some_and(|rest| route.prefix.is_empty() || rest.is_empty() || rest.starts_with('/'))
    }))
}

impl<'c> Matched<'c> {
    /// The service: the route's, else `[proxy] service`. `None` means a `skip` route (pass
    /// untouched); `Some(None)`, that no service applies.
    fn service(self, config: &'c Config) -> Option<Option<&'c str>> {
        match self.0 {
            Some(route) => route.service.as_deref().map(Some),
            None => Some(config.proxy.service.as_deref()),
        }
    }
}

/// The request's one `Authorization` line, `None` when it has none. Several lines are
/// refused on a route that exchanges: only one could be checked, and another could carry an
/// IdP token to the app (cf. RFC 6750 §3.1).
fn authorization_line(headers: &HeaderMap) -> Result<Option<&HeaderValue>, RequestRefused> {
    let mut lines = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = lines.next() else {
        return Ok(None);
    };
    if lines.next().is_some() {
        return Err(RequestRefused::SeveralAuthorizations);
    }
    Ok(Some(value))
}

/// The bearer token of an `Authorization` value; a malformed value or another scheme is
/// refused.
fn bearer_token(credentials: &[u8]) -> Result<&str, RequestRefused> {
    match Credentials::parse(credentials) {
        Credentials::Bearer(token) => Ok(token),
        _ => Err(RequestRefused::NotBearer),
    }
}

/// What the connection's last exchange served, when this request's one `Authorization` line
/// is the same, for the same service, and that may still be served: the credentials parsed
/// and the token exchanged (or found in the cache) then stand for this request too.
fn served_again<'a>(
    exchanger: &Exchanger,
    last: Option<&LastExchange>,
    line: &Result<Option<&HeaderValue>, RequestRefused>,
    service: Option<&'a str>,
) -> Option<(&'a str, Authorized)> {
    let (last, service, Ok(Some(credentials))) = (last?, service?, line) else {
        return None;
    };
    let exchanged = exchanger.serve_again(last, credentials.as_bytes(), service)?;
    Some((service, Authorized::Exchanged(exchanged)))
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
