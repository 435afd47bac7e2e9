//! The forward-auth listener: baton as the auth service of a front proxy that already runs
//! (nginx `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`, Envoy `ext_authz`).
//!
//! A check request is answered, never forwarded. The request it asks about (the original)
//! is read from where `[forward_auth] original_request` says — headers set by the front
//! proxy, or the check request's own line — and then goes through exactly the proxy's
//! steps: the path normalized, the route found, the token exchanged or passed, the route's
//! condition and claim headers (`decision`, shared with Envoy's gRPC `ext_authz`). What the
//! proxy would have sent the app becomes the answer's headers, for the front proxy to copy
//! upstream; what the proxy would have answered instead is the answer itself, for the front
//! proxy to pass to the caller.
//!
//! `X-Forwarded-Uri` and `X-Original-URI` mean something only here: the proxy listener
//! never reads them.
//!
//! A gRPC call to Envoy's `envoy.service.auth.v3.Authorization/Check` on the same listener
//! (h2c, or HTTP/2 over the listener's TLS) carries the original request in its message and
//! is answered by [`ext_authz`](super::ext_authz), through the same [`Gateway::decide`].

use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderName;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::config::{Config, ForwardAuthConfig, OriginalRequest};
use crate::errors::RequestRefused;
use crate::published;
use crate::request_path;
use crate::sts::Reply;

use super::decision::Verdict;
use super::{
    Caller, Gateway, ProxyBody, Refusal, answered_status, auth, ext_authz, grpc, serve_document,
    whole,
};
use crate::traces::RequestSpan;

/// The header Envoy's HTTP `ext_authz` reads from an allowing answer: the request headers it
/// removes before the request goes upstream.
const ENVOY_HEADERS_TO_REMOVE: HeaderName =
    HeaderName::from_static("x-envoy-auth-headers-to-remove");

// === impl Gateway ===

impl Gateway {
    /// Answers one check request on the forward-auth listener (and counts the answer).
    pub async fn check(self: &Arc<Self>, request: Request<Incoming>) -> Response<ProxyBody> {
        let span = RequestSpan::start(
            "forward_auth",
            request.method().as_str(),
            request.uri().path(),
            request.headers(),
        );
        let response = match &span {
            None => self.answer_check(request).await,
            Some(span) => span.scope(|| self.answer_check(request)).await,
        };
        let status = answered_status(&response);
        self.metrics.forward_auth_checked(status);
        if let Some(span) = span {
            span.end(status);
        }
        response
    }

    /// Answers a check request the listener refuses before it is parsed any further (the
    /// connection's own checks on HTTP/1 heads), and counts it.
    pub fn refuse_check(&self, refused: &RequestRefused) -> Response<ProxyBody> {
        let response = auth::refusal(refused).answer(Caller::Http);
        self.metrics
            .forward_auth_checked(response.status().as_u16());
        response
    }

    async fn answer_check(self: &Arc<Self>, request: Request<Incoming>) -> Response<ProxyBody> {
        let config = self.exchanger.config();
        let caller = if grpc::is_grpc(request.headers()) {
            Caller::Grpc
        } else {
            Caller::Http
        };
        let Some(settings) = config.forward_auth.as_ref() else {
            // A reload removed `[forward_auth]`; the listener stays until a restart.
            let description = "forward-auth is not configured";
            let refusal = Refusal {
                http: Reply::oauth_error(404, "invalid_request", description),
                description,
            };
            return refusal.answer(caller);
        };
        if caller == Caller::Grpc {
            // A gRPC call is Envoy's ext_authz or nothing: never a document, never an
            // original request read from the check's own line or headers.
            return if request.uri().path() == ext_authz::CHECK_PATH {
                self.ext_authz(request).await
            } else {
                auth::refusal(&RequestRefused::UnknownGrpcMethod).answer(Caller::Grpc)
            };
        }
        let (parts, body) = request.into_parts();
        if serves_documents(&config, settings)
            && let Some(path) = document_path(&parts)
        {
            let path = Some(path.as_ref());
            if config.server.tokens_path.as_deref() == path {
                return Box::pin(self.serve_tokens(&parts, body)).await;
            }
            if config.server.jwks_path.as_deref() == path {
                return serve_document(&parts, &config, published::jwks(&config));
            }
            if config.server.metadata_path.as_deref() == path {
                return serve_document(&parts, &config, published::metadata(&config));
            }
        }
        // A check request's body (Envoy's `with_request_body`) is not read: nothing in a
        // decision depends on it.
        drop(body);
        let original = match original_request(parts, settings) {
            Ok(original) => original,
            Err(refused) => return auth::refusal(&refused).answer(Caller::Http),
        };
        match self.decide(&config, original).await {
            Ok(verdict) => allowed(verdict, settings.original_request),
            Err(refusal) => refusal.answer(Caller::Http),
        }
    }
}

/// Whether `/tokens` and the well-known documents are answered on the forward-auth listener:
/// when no proxy listener answers them, and unless every check path is an app's (Envoy's
/// HTTP `ext_authz` without `path_prefix` sends the app's own paths as they are).
fn serves_documents(config: &Config, settings: &ForwardAuthConfig) -> bool {
    config.proxy.listen.is_none()
        && !(settings.original_request == OriginalRequest::RequestLine
            && settings.path_prefix.is_none())
}

/// The check request's path normalized, to match the documents' paths against; `None` for a
/// target that is not a path (it is refused as an original request, or decided on headers).
/// The check request itself is left as it came: in `request-line` mode its path is
/// `path_prefix` joined to the original path, so the prefix comes off the raw path and only
/// the rest is normalized, as with a proxy listener beside (normalizing the whole first let
/// the original's dot-segments climb out of the prefix and back in: `/authz/../authz/health`
/// was judged as the skip route `/health`, while the app resolves `/../authz/health` to
/// `/authz/health`).
fn document_path(parts: &Parts) -> Option<std::borrow::Cow<'_, str>> {
    let uri = &parts.uri;
    if parts.method == Method::CONNECT || auth::is_absolute_form(parts) {
        return None;
    }
    request_path::normalize(uri.path()).ok()
}

/// The request a check request asks about: method, target and the check request's headers
/// (the front proxies pass the client's), as an HTTP/1.1 request, so that an absolute-form
/// target is refused as on the proxy listener.
fn original_request(check: Parts, settings: &ForwardAuthConfig) -> Result<Parts, RequestRefused> {
    let (method, target) = match settings.original_request {
        OriginalRequest::ForwardedHeaders => (
            header_value(&check.headers, "x-forwarded-method")?,
            header_value(&check.headers, "x-forwarded-uri")?,
        ),
        OriginalRequest::OriginalHeaders => (
            header_value(&check.headers, "x-original-method")?,
            header_value(&check.headers, "x-original-uri")?,
        ),
        OriginalRequest::RequestLine => {
            // The check request is the original: an absolute-form target (`GET
            // http://host/…`) is refused as on the proxy listener, not decided without its
            // authority.
            if auth::is_absolute_form(&check) {
                return Err(RequestRefused::NotOriginForm);
            }
            let target = check
                .uri
                .path_and_query()
                .map_or("/", |path_and_query| path_and_query.as_str());
            let target = match &settings.path_prefix {
                None => target.to_owned(),
                Some(prefix) => strip_path_prefix(target, prefix)?,
            };
            (check.method.as_str().to_owned(), target)
        }
    };
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| RequestRefused::NoOriginalRequest)?;
    let uri = Uri::try_from(target).map_err(|_| RequestRefused::NoOriginalRequest)?;
    let mut original = Request::new(()).into_parts().0;
    original.method = method;
    original.uri = uri;
    original.version = Version::HTTP_11;
    original.headers = check.headers;
    Ok(original)
}

/// The one value of `name`: missing, repeated or not visible ASCII is a refusal (the front
/// proxy sets it; anything else is a misconfiguration or a client's).
fn header_value(headers: &HeaderMap, name: &'static str) -> Result<String, RequestRefused> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(RequestRefused::NoOriginalRequest)?;
    if values.next().is_some() {
        return Err(RequestRefused::SeveralOriginalRequests);
    }
    value
        .to_str()
        .map(str::to_owned)
        .map_err(|_| RequestRefused::NoOriginalRequest)
}

/// `target` without `prefix`, which it must start with on a segment boundary: `/authz/api?q`
/// is `/api?q`, `/authz` is `/`, `/authzx` is refused.
fn strip_path_prefix(target: &str, prefix: &str) -> Result<String, RequestRefused> {
    let rest = target
        .strip_prefix(prefix)
        .ok_or(RequestRefused::OutsidePathPrefix)?;
    match rest.as_bytes().first() {
        None => Ok("/".to_owned()),
        Some(b'/') => Ok(rest.to_owned()),
        Some(b'?') => Ok(format!("/{rest}")),
        Some(_) => Err(RequestRefused::OutsidePathPrefix),
    }
}

/// The answer that lets the original request pass: 200 with the headers the app must get.
/// Envoy's HTTP `ext_authz` also reads which to remove; the other front proxies are set up
/// to replace each copied header with the answer's, or drop it when the answer has none.
fn allowed(verdict: Verdict, original_request: OriginalRequest) -> Response<ProxyBody> {
    let mut response = Response::new(whole(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    for (name, value) in verdict.set {
        headers.append(name, value);
    }
    if original_request == OriginalRequest::RequestLine && !verdict.remove.is_empty() {
        let names: Vec<&str> = verdict.remove.iter().map(HeaderName::as_str).collect();
        // Header names are visible ASCII, so the list is a valid value.
        if let Ok(value) = HeaderValue::try_from(names.join(",")) {
            headers.insert(ENVOY_HEADERS_TO_REMOVE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_prefix_is_stripped_on_a_segment_boundary() {
        assert_eq!(
            strip_path_prefix("/authz/api/x?q=1", "/authz").unwrap(),
            "/api/x?q=1"
        );
        assert_eq!(strip_path_prefix("/authz", "/authz").unwrap(), "/");
        assert_eq!(strip_path_prefix("/authz?q", "/authz").unwrap(), "/?q");
        for outside in ["/authzx/api", "/api", "/", "/auth"] {
            assert_eq!(
                strip_path_prefix(outside, "/authz"),
                Err(RequestRefused::OutsidePathPrefix),
                "{outside}"
            );
        }
    }

    fn check(headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::get("/_baton").body(()).unwrap();
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        request.into_parts().0
    }

    fn settings(original_request: OriginalRequest) -> ForwardAuthConfig {
        ForwardAuthConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            original_request,
            path_prefix: None,
            tls: None,
        }
    }

    #[test]
    fn only_the_configured_convention_is_read() {
        let headers = [
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/api/x?y=1"),
            ("x-original-method", "GET"),
            ("x-original-uri", "/health"),
        ];
        let forwarded = original_request(
            check(&headers),
            &settings(OriginalRequest::ForwardedHeaders),
        )
        .unwrap();
        assert_eq!(
            (
                forwarded.method.as_str(),
                forwarded.uri.to_string().as_str()
            ),
            ("POST", "/api/x?y=1")
        );
        let original =
            original_request(check(&headers), &settings(OriginalRequest::OriginalHeaders)).unwrap();
        assert_eq!(
            (original.method.as_str(), original.uri.path()),
            ("GET", "/health")
        );
        let line =
            original_request(check(&headers), &settings(OriginalRequest::RequestLine)).unwrap();
        assert_eq!(line.uri.path(), "/_baton");
    }

    #[test]
    fn a_missing_or_repeated_original_is_refused() {
        let only_uri = [("x-original-uri", "/api")];
        assert_eq!(
            original_request(
                check(&only_uri),
                &settings(OriginalRequest::OriginalHeaders)
            )
            .unwrap_err(),
            RequestRefused::NoOriginalRequest
        );
        // The other convention's headers do not stand in for the configured one's.
        let other = [("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api")];
        assert_eq!(
            original_request(check(&other), &settings(OriginalRequest::OriginalHeaders))
                .unwrap_err(),
            RequestRefused::NoOriginalRequest
        );
        let twice = [
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/health"),
            ("x-forwarded-uri", "/api"),
        ];
        assert_eq!(
            original_request(check(&twice), &settings(OriginalRequest::ForwardedHeaders))
                .unwrap_err(),
            RequestRefused::SeveralOriginalRequests
        );
        let bad_method = [("x-forwarded-method", "G T"), ("x-forwarded-uri", "/api")];
        assert_eq!(
            original_request(
                check(&bad_method),
                &settings(OriginalRequest::ForwardedHeaders)
            )
            .unwrap_err(),
            RequestRefused::NoOriginalRequest
        );
    }

    #[test]
    fn an_absolute_original_target_is_refused_as_on_the_proxy() {
        let absolute = [
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "http://evil.example/api"),
        ];
        let mut original = original_request(
            check(&absolute),
            &settings(OriginalRequest::ForwardedHeaders),
        )
        .unwrap();
        assert_eq!(
            auth::normalize_target(&mut original),
            Err(RequestRefused::NotOriginForm)
        );
    }
}
