//! Envoy's `ext_authz` over gRPC: `envoy.service.auth.v3.Authorization/Check` on the
//! forward-auth listener, with the messages of Envoy's published protos (`envoy-types`) and
//! tonic's server for the call.
//!
//! The `CheckRequest` carries the original request (`attributes.request.http`): its method,
//! its target and its headers become the request [`Gateway::decide`] decides on, as for an
//! HTTP check. The decision is always a `CheckResponse` in a successful call:
//!
//! - allowed: `status` `OK` and an `OkHttpResponse` whose `headers` Envoy sets on the request
//!   to the app, replacing the client's (`authorization`, the claim headers), and whose
//!   `headers_to_remove` it removes (the IdP token on a `skip` route, the claim headers the
//!   token did not produce);
//! - refused: `status` a gRPC code for the refusal ([`grpc::code_for_denial`]) and a
//!   `DeniedHttpResponse` with what an HTTP caller of the proxy would get: the status, the
//!   `WWW-Authenticate` challenge and the other headers, the JSON body.
//!
//! A refusal is never a failed call: Envoy answers a failed call by `failure_mode_allow`,
//! which may let the request through, and by `status_on_error`, which loses baton's status.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue as EnvoyHeader, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use tonic::codegen::Service;

use crate::config::Config;
use crate::errors::RequestRefused;
use crate::sts::Reply;

use super::decision::Verdict;
use super::{Gateway, ProxyBody, Refusal, RefusedWith, auth, grpc};

/// The path of the one gRPC method the forward-auth listener serves.
pub(super) const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The `Authorization` service of one call: the gateway, and the config in force when the
/// call arrived (the one the listener checked `[forward_auth]` in).
struct ExtAuthz {
    gateway: Arc<Gateway>,
    config: Arc<Config>,
}

// === impl Gateway ===

impl Gateway {
    /// Answers a gRPC call to [`CHECK_PATH`] with tonic's server for the `Authorization`
    /// service (which reads the message, up to tonic's default 4 MiB, and writes the answer
    /// and its trailers). The answer is marked with the HTTP status its decision stands for.
    pub(super) async fn ext_authz(
        self: &Arc<Self>,
        request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let mut server = AuthorizationServer::new(ExtAuthz {
            gateway: Arc::clone(self),
            config: self.exchanger.config(),
        });
        // The generated server is always ready; polled all the same, as `Service` asks.
        let ready =
            std::future::poll_fn(|cx| Service::<Request<Incoming>>::poll_ready(&mut server, cx))
                .await;
        let answer = match ready {
            Ok(()) => server.call(request).await,
            Err(never) => match never {},
        };
        let mut response = match answer {
            Ok(response) => response.map(|body| Either::Right(Either::Right(body))),
            Err(never) => match never {},
        };
        // A decision marks its own answer (allowed: nothing to mark). A gRPC status in the
        // head without a mark is tonic's refusal of a call no decision was made for: a
        // message that does not decode, a compression it does not take. Counted as the 400
        // it is, not as an allowed check.
        if response.extensions().get::<RefusedWith>().is_none()
            && response.headers().contains_key("grpc-status")
        {
            response.extensions_mut().insert(RefusedWith(400));
        }
        response
    }
}

// === impl ExtAuthz ===

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let original = request
            .into_inner()
            .attributes
            .and_then(|attributes| attributes.request)
            .and_then(|request| request.http)
            .ok_or(RequestRefused::NoOriginalRequest)
            .and_then(|http| original_request(&http));
        let decided = match original {
            Ok(original) => self.gateway.decide(&self.config, original).await,
            Err(refused) => Err(auth::refusal(&refused)),
        };
        let response = match decided {
            Ok(verdict) => tonic::Response::new(allowed(verdict)),
            Err(refusal) => {
                let status = refusal.http.status;
                let mut response = tonic::Response::new(denied(refusal));
                response.extensions_mut().insert(RefusedWith(status));
                response
            }
        };
        Ok(response)
    }
}

/// The original request of a check: an HTTP/1.1 request with the check's method, target
/// (`path`, the query included) and headers, so that it goes through exactly what a check
/// request's original goes through (an absolute-form target is refused in `decide`).
///
/// The headers are `header_map`'s when Envoy sends it (`encode_raw_headers`: each line as
/// it came, repeated names kept apart), else the `headers` map's (lower-case names, repeated
/// lines joined with `,`, so two `Authorization` lines are one that is no bearer token).
/// Pseudo-headers (`:authority`, `:path`…) are left out, and `host` is the original's
/// `Host`/`:authority` when no header gives it, as on an HTTP/1.1 request. A name or value
/// that is no valid header refuses the check: dropping it could hide a credential.
fn original_request(http: &HttpRequest) -> Result<Parts, RequestRefused> {
    let method = Method::from_bytes(http.method.as_bytes())
        .map_err(|_| RequestRefused::NoOriginalRequest)?;
    let uri = Uri::try_from(http.path.as_str()).map_err(|_| RequestRefused::NoOriginalRequest)?;
    let mut headers = HeaderMap::new();
    match http
        .header_map
        .as_ref()
        .filter(|map| !map.headers.is_empty())
    {
        Some(map) => {
            for line in &map.headers {
                // `raw_value` is what `encode_raw_headers` fills; `value` is read otherwise.
                let value = if line.raw_value.is_empty() {
                    line.value.as_bytes()
                } else {
                    &line.raw_value
                };
                append_header(&mut headers, &line.key, value)?;
            }
        }
        None => {
            for (name, value) in &http.headers {
                append_header(&mut headers, name, value.as_bytes())?;
            }
        }
    }
    if !http.host.is_empty() && !headers.contains_key(header::HOST) {
        let host =
            HeaderValue::from_str(&http.host).map_err(|_| RequestRefused::NoOriginalRequest)?;
        headers.insert(header::HOST, host);
    }
    let mut original = Request::new(()).into_parts().0;
    original.method = method;
    original.uri = uri;
    original.version = Version::HTTP_11;
    original.headers = headers;
    Ok(original)
}

/// Appends one header line of the original request, leaving pseudo-headers out.
fn append_header(headers: &mut HeaderMap, name: &str, value: &[u8]) -> Result<(), RequestRefused> {
    if name.starts_with(':') {
        return Ok(());
    }
    let name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| RequestRefused::NoOriginalRequest)?;
    let value = HeaderValue::from_bytes(value).map_err(|_| RequestRefused::NoOriginalRequest)?;
    headers.append(name, value);
    Ok(())
}

/// The answer that lets the original request pass, with what the app must (not) get.
fn allowed(verdict: Verdict) -> CheckResponse {
    let Verdict { set, remove } = verdict;
    CheckResponse {
        status: Some(RpcStatus {
            code: 0,
            ..RpcStatus::default()
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: set
                .iter()
                .map(|(name, value)| overwrite(name.as_str(), value.as_bytes()))
                .collect(),
            headers_to_remove: remove.iter().map(|name| name.as_str().to_owned()).collect(),
            ..OkHttpResponse::default()
        })),
        dynamic_metadata: None,
    }
}

/// The answer that refuses the original request: what the proxy would have answered.
fn denied(refusal: Refusal) -> CheckResponse {
    let Refusal { http, description } = refusal;
    let Reply {
        status,
        headers,
        content_type,
        body,
    } = http;
    let mut lines: Vec<HeaderValueOption> = headers
        .iter()
        .map(|(name, value)| overwrite(name, value.as_bytes()))
        .collect();
    if !body.is_empty() {
        lines.push(overwrite(
            header::CONTENT_TYPE.as_str(),
            content_type.as_bytes(),
        ));
    }
    CheckResponse {
        status: Some(RpcStatus {
            code: i32::from(grpc::code_for_denial(status) as u8),
            message: description.to_owned(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(status),
            }),
            headers: lines,
            // baton's refusals are JSON, so UTF-8.
            body: String::from_utf8_lossy(&body).into_owned(),
        })),
        dynamic_metadata: None,
    }
}

/// A header line that replaces any line of its name: `append_action` for the Envoys that
/// read it, and the deprecated `append = false` for the older ones that read only that.
#[allow(deprecated)] // `append`: the field older Envoys read instead of `append_action`.
fn overwrite(name: &str, value: &[u8]) -> HeaderValueOption {
    // baton's header values are visible ASCII (token, claim headers, its own replies); one
    // that is not goes as `raw_value`, which a string field cannot carry.
    let (value, raw_value) = match std::str::from_utf8(value) {
        Ok(text) => (text.to_owned(), Vec::new()),
        Err(_) => (String::new(), value.to_vec()),
    };
    HeaderValueOption {
        header: Some(EnvoyHeader {
            key: name.to_owned(),
            value,
            raw_value,
        }),
        append: Some(BoolValue { value: false }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

#[cfg(test)]
mod tests;
