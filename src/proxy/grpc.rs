//! baton's own refusals, as a gRPC caller needs them.
//!
//! A gRPC client reads the outcome of a call from `grpc-status`, not from the HTTP status: a
//! 401 with a JSON body is, to it, a broken stream (grpc-core reports such an answer as
//! `UNAUTHENTICATED` only by guessing from the HTTP status, and loses baton's wording). So a
//! refusal of a gRPC request is answered as Envoy answers its local replies to gRPC callers:
//! HTTP 200, one `HEADERS` frame that ends the stream ("trailers-only", gRPC's
//! PROTOCOL-HTTP2.md), with `content-type: application/grpc`, `grpc-status` and
//! `grpc-message`.

use http::HeaderMap;
use http::header::CONTENT_TYPE;

use crate::sts::Reply;

/// gRPC status codes baton answers with (gRPC's `doc/statuscodes.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum GrpcCode {
    /// 2: an HTTP status no row of the mapping names.
    Unknown = 2,
    /// 3: an `ext_authz` check that names no request baton can read ([`code_for_denial`]).
    InvalidArgument = 3,
    /// 7: a 403.
    PermissionDenied = 7,
    /// 12: a 404.
    Unimplemented = 12,
    /// 13: a 400 (the request was malformed, which a well-behaved gRPC client never does).
    Internal = 13,
    /// 14: 429, 502, 503 and 504 (retryable: the IdP's keys or the upstream may come back).
    Unavailable = 14,
    /// 16: a 401.
    Unauthenticated = 16,
}

/// Whether a request is a gRPC call: its `content-type` is `application/grpc`, alone or
/// followed by `+<codec>` or `;<parameters>` (PROTOCOL-HTTP2.md). `application/grpc-web` is
/// not: grpc-web clients read their own framing, not trailers-only answers.
pub(super) fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let value = content_type.as_bytes();
    let prefix = b"application/grpc";
    // Media types compare case-insensitively (RFC 9110 §8.3.1).
    value.len() >= prefix.len()
        && value[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(value.get(prefix.len()), None | Some(b'+' | b';'))
}

/// The gRPC code for an HTTP status, as gRPC's `doc/http-grpc-status-mapping.md` maps it and
/// Envoy's `Grpc::Utility::httpToGrpcStatus` does for its local replies. Envoy's router sends
/// its upstream timeout as a local 504 with no gRPC status of its own, so a timeout is
/// `UNAVAILABLE` there too, not `DEADLINE_EXCEEDED` (which is the client's own deadline).
pub(super) fn code_for_status(status: u16) -> GrpcCode {
    match status {
        400 => GrpcCode::Internal,
        401 => GrpcCode::Unauthenticated,
        403 => GrpcCode::PermissionDenied,
        404 => GrpcCode::Unimplemented,
        429 | 502 | 503 | 504 => GrpcCode::Unavailable,
        _ => GrpcCode::Unknown,
    }
}

/// The code of an Envoy `ext_authz` denial (`CheckResponse.status`) whose answer to the
/// client has HTTP status `status`. Envoy reads only whether it is `OK` (any other code
/// denies, with the `DeniedHttpResponse` as the answer), so the code is for logs and other
/// clients: [`code_for_status`]'s, except that a 400 is `INVALID_ARGUMENT` — the check named
/// a request baton cannot read — where the gRPC mapping's `INTERNAL` would blame baton.
pub(super) fn code_for_denial(status: u16) -> GrpcCode {
    match status {
        400 => GrpcCode::InvalidArgument,
        _ => code_for_status(status),
    }
}

/// `message` as a `grpc-message` value: every byte outside 0x20–0x7E, and `%` itself, as
/// `%XX` of its UTF-8 bytes (PROTOCOL-HTTP2.md, "Percent-Encoded").
pub(super) fn percent_encode(message: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(message.len());
    for &byte in message.as_bytes() {
        if (0x20..=0x7E).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
    }
    encoded
}

/// The trailers-only gRPC answer to a refusal that an HTTP caller gets as `http`: status 200,
/// no body, `grpc-status` from `http`'s status and `grpc-message` from `description` (the
/// fixed, token-free wording of errors.rs). A `WWW-Authenticate` challenge is kept, as
/// gRPC clients may pass it on to their credentials; the JSON body and its caching headers
/// are not (nothing in a gRPC client reads them).
pub(super) fn trailers_only(http: &Reply, description: &str) -> Reply {
    let code = code_for_status(http.status) as u8;
    let mut headers = vec![
        // `respond` sets `Content-Type` only for a body: a trailers-only answer has none
        // and must still say it is gRPC.
        ("content-type", "application/grpc".to_owned()),
        ("grpc-status", code.to_string()),
        ("grpc-message", percent_encode(description)),
    ];
    headers.extend(
        http.headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("www-authenticate"))
            .cloned(),
    );
    Reply {
        status: 200,
        headers,
        content_type: "application/grpc",
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
