//! The one place where pipeline failures become HTTP answers.
//!
//! Descriptions are fixed strings per failure class: a response never echoes the token,
//! its claims, or any detail an attacker could probe with. Full detail goes to the logs.

use crate::exchange::{DelegationRefused, Denial, ExchangeError, Fault};
use crate::idp::verify::VerifyError;
use crate::request_path::PathRefused;

/// An HTTP rejection of a subject or bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status.
    pub status: u16,
    /// OAuth error code (RFC 6749 §5.2 for `/tokens`, RFC 6750 §3.1 for the proxy).
    pub error: &'static str,
    /// A fixed, generic description.
    pub description: &'static str,
}

/// Where a rejection is answered: the wording of errors differs by RFC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// `POST /tokens` (RFC 8693 §2.2.2: an invalid subject token is `invalid_request`).
    TokenEndpoint,
    /// A proxied request (RFC 6750: an invalid bearer token is `invalid_token`, 401).
    Proxy,
}

/// The rejection for a failed exchange.
pub fn rejection(error: &ExchangeError, surface: Surface) -> Rejection {
    let (status, error_code) = match (error.fault(), surface) {
        (Fault::Upstream, _) => (503, "temporarily_unavailable"),
        (Fault::Internal, _) => (500, "server_error"),
        (Fault::Client, Surface::TokenEndpoint) => match error {
            ExchangeError::UnknownService(_) => (400, "invalid_target"),
            // RFC 8693 §2.2.2: a subject token not acceptable is `invalid_request`; a token
            // refused for the target, `invalid_target`; RFC 6749 §5.2 for the client.
            ExchangeError::Denied(denied) => match denied.denial {
                Denial::IdpCondition | Denial::ActorIdpCondition => (400, "invalid_request"),
                Denial::ProviderCondition | Denial::RouteCondition => (400, "invalid_target"),
                Denial::ClientNotAllowed => (400, "unauthorized_client"),
            },
            _ => (400, "invalid_request"),
        },
        // A valid token that policy refuses is not an invalid one (RFC 6750 §3.1).
        (Fault::Client, Surface::Proxy) if matches!(error, ExchangeError::Denied(_)) => {
            (403, "insufficient_scope")
        }
        (Fault::Client, Surface::Proxy) => (401, "invalid_token"),
    };
    Rejection {
        status,
        error: error_code,
        description: describe(error, surface),
    }
}

fn describe(error: &ExchangeError, surface: Surface) -> &'static str {
    let subject = match surface {
        Surface::TokenEndpoint => true,
        Surface::Proxy => false,
    };
    let pick = |sts: &'static str, proxy: &'static str| if subject { sts } else { proxy };
    match error {
        ExchangeError::Mapping(_) => pick(
            "subject_token's claims are too large to map",
            "the token's claims are too large to map",
        ),
        ExchangeError::Mint(_) => "the token could not be issued",
        ExchangeError::Delegation(refused) => match refused {
            DelegationRefused::NotEnabled => pick(
                "delegation (actor_token) is not enabled for this service",
                "delegation is not enabled for this service",
            ),
            DelegationRefused::MayActMismatch => {
                "subject_token's may_act does not allow this actor"
            }
            DelegationRefused::ActorWithoutSubject => "actor_token has no sub claim",
        },
        ExchangeError::Actor(e) => describe_actor(e),
        ExchangeError::UnknownService(_) => "the requested audience or resource is not known",
        ExchangeError::Denied(denied) => match denied.denial {
            Denial::IdpCondition => pick(
                "subject_token is not acceptable to this identity provider's policy",
                "the token is not acceptable to this identity provider's policy",
            ),
            Denial::ProviderCondition => pick(
                "subject_token may not be exchanged for this audience or resource",
                "the token may not be exchanged for this service",
            ),
            Denial::ActorIdpCondition => {
                "actor_token is not acceptable to its identity provider's policy"
            }
            Denial::ClientNotAllowed => "the client may not exchange tokens of this issuer",
            Denial::RouteCondition => "the token does not allow this request",
        },
        ExchangeError::Token(e) => match e {
            VerifyError::Malformed(_) => pick(
                "subject_token is not a well-formed signed JWT",
                "the token is not a well-formed signed JWT",
            ),
            VerifyError::NoMatchingIdp | VerifyError::WrongAudience | VerifyError::WrongIssuer => {
                pick(
                    "subject_token is not from a trusted issuer and audience",
                    "the token is not from a trusted issuer and audience",
                )
            }
            VerifyError::AlgorithmNotAllowed { .. } | VerifyError::UnsupportedAlgorithm(_) => pick(
                "subject_token's signing algorithm is not accepted",
                "the token's signing algorithm is not accepted",
            ),
            VerifyError::UnknownKey { .. } | VerifyError::BadSignature => pick(
                "subject_token's signature does not verify",
                "the token's signature does not verify",
            ),
            VerifyError::Expired { .. } => {
                pick("subject_token has expired", "the token has expired")
            }
            VerifyError::NotYetValid { .. } | VerifyError::IssuedInFuture { .. } => pick(
                "subject_token is not valid yet",
                "the token is not valid yet",
            ),
            VerifyError::MissingExpiry | VerifyError::InvalidTimeClaim(_) => pick(
                "subject_token has no valid expiry",
                "the token has no valid expiry",
            ),
            VerifyError::KeysUnavailable(_) => {
                "the identity provider's keys are unavailable; try again later"
            }
            VerifyError::Inactive => pick("subject_token is not active", "the token is not active"),
            VerifyError::IntrospectionUnavailable(_) => {
                "the identity provider's introspection endpoint is unavailable; try again later"
            }
        },
    }
}

/// The description for an actor token that failed verification (only `/tokens` takes one).
fn describe_actor(error: &VerifyError) -> &'static str {
    match error {
        VerifyError::Malformed(_) => "actor_token is not a well-formed signed JWT",
        VerifyError::NoMatchingIdp | VerifyError::WrongAudience | VerifyError::WrongIssuer => {
            "actor_token is not from a trusted issuer and audience"
        }
        VerifyError::AlgorithmNotAllowed { .. } | VerifyError::UnsupportedAlgorithm(_) => {
            "actor_token's signing algorithm is not accepted"
        }
        VerifyError::UnknownKey { .. } | VerifyError::BadSignature => {
            "actor_token's signature does not verify"
        }
        VerifyError::Expired { .. } => "actor_token has expired",
        VerifyError::NotYetValid { .. } | VerifyError::IssuedInFuture { .. } => {
            "actor_token is not valid yet"
        }
        VerifyError::KeysUnavailable(_) => {
            "the identity provider's keys are unavailable; try again later"
        }
        _ => "actor_token has no valid expiry",
    }
}

/// Why the proxy refuses a request before any token is looked at, or a request's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestRefused {
    /// The request target is not a path (absolute-form `http://host/…`, authority-form,
    /// asterisk-form): a sidecar is no forward proxy.
    #[error("the request target is not a path")]
    NotOriginForm,
    /// The path could be read more than one way ([`PathRefused`]).
    #[error("{0}")]
    Path(#[from] PathRefused),
    /// More than one `Authorization` line: only one could be checked.
    #[error("several Authorization headers")]
    SeveralAuthorizations,
    /// An `Authorization` that is not a well-formed bearer token, on a route that exchanges.
    #[error("an Authorization header that is not a well-formed bearer token")]
    NotBearer,
    /// No `Authorization` and `on_missing = "reject"`.
    #[error("no bearer token")]
    MissingToken,
    /// A bearer token on a path no token provider serves.
    #[error("no token provider serves this path")]
    NoService,
    /// Both `Transfer-Encoding` and `Content-Length` (request smuggling).
    #[error("both Transfer-Encoding and Content-Length")]
    AmbiguousLength,
    /// A request head line ended by LF alone (request smuggling).
    #[error("a request head line ended by a bare LF")]
    BareLineFeed,
    /// The request body broke off or was malformed (a bad chunk) on its way to the upstream.
    #[error("the request body could not be read")]
    BrokenBody,
    /// An HTTP/1 request head over 64 KiB.
    #[error("the request head is too large")]
    HeadTooLarge,
    /// An HTTP/1 request head still incomplete `[proxy] header_timeout` after its first byte.
    #[error("the request head took too long")]
    HeadTimedOut,
    /// A forward-auth check request without the original request's method and URI where
    /// `[forward_auth] original_request` says they are, or with ones that do not parse.
    #[error("the check request names no valid original request")]
    NoOriginalRequest,
    /// A forward-auth check request naming its original method or URI more than once.
    #[error("the check request names its original request more than once")]
    SeveralOriginalRequests,
    /// A forward-auth check request (`request-line`) whose path is not under `path_prefix`.
    #[error("the check request's path is not under forward_auth.path_prefix")]
    OutsidePathPrefix,
    /// A gRPC call on the forward-auth listener to a method other than Envoy's
    /// `envoy.service.auth.v3.Authorization/Check`.
    #[error("a gRPC method the forward-auth listener does not serve")]
    UnknownGrpcMethod,
}

/// The answer to a refused request: status, OAuth error code (RFC 6750 §3.1), fixed wording.
pub fn request_rejection(refused: &RequestRefused) -> Rejection {
    let (status, error, description) = match refused {
        RequestRefused::NotOriginForm => (
            400,
            "invalid_request",
            "the request target must be a path (origin-form)",
        ),
        RequestRefused::Path(reason) => (400, "invalid_request", describe_path(*reason)),
        RequestRefused::SeveralAuthorizations => {
            (400, "invalid_request", "send one Authorization header")
        }
        RequestRefused::NotBearer => (
            401,
            "invalid_request",
            "the Authorization header must be a bearer token",
        ),
        RequestRefused::MissingToken => (401, "invalid_request", "a bearer token is required"),
        RequestRefused::NoService => (401, "invalid_token", "no token provider serves this path"),
        RequestRefused::AmbiguousLength => (
            400,
            "invalid_request",
            "send either Content-Length or Transfer-Encoding, not both",
        ),
        RequestRefused::BareLineFeed => (
            400,
            "invalid_request",
            "end every request head line with CRLF",
        ),
        RequestRefused::BrokenBody => {
            (400, "invalid_request", "the request body could not be read")
        }
        RequestRefused::HeadTooLarge => (431, "invalid_request", "the request head is too large"),
        RequestRefused::HeadTimedOut => (
            408,
            "invalid_request",
            "the request head did not arrive in time",
        ),
        RequestRefused::NoOriginalRequest => (
            400,
            "invalid_request",
            "the check request names no valid original method and URI",
        ),
        RequestRefused::SeveralOriginalRequests => (
            400,
            "invalid_request",
            "the check request names its original method or URI more than once",
        ),
        RequestRefused::OutsidePathPrefix => (
            400,
            "invalid_request",
            "the check request's path is not under the configured prefix",
        ),
        // 404 is gRPC's UNIMPLEMENTED (the only form this refusal is answered in).
        RequestRefused::UnknownGrpcMethod => (
            404,
            "invalid_request",
            "the only gRPC method here is envoy.service.auth.v3.Authorization/Check",
        ),
    };
    Rejection {
        status,
        error,
        description,
    }
}

/// Why a request could not be proxied: the upstream side failed, not the client nor baton.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamFailure {
    /// The upstream answered with something baton cannot pass on (a `101` nobody asked for).
    InvalidAnswer,
    /// No `[proxy] upstream` is configured.
    NotConfigured,
    /// The connection or the response head took longer than `[proxy] connect_timeout` or
    /// `read_timeout`.
    TimedOut,
    /// The upstream refused the connection, closed it or broke the protocol.
    Unavailable,
}

/// The answer when the upstream failed: 502, or 504 for a timeout (RFC 9110 §15.6.3, §15.6.5).
pub fn upstream_rejection(failure: UpstreamFailure) -> Rejection {
    match failure {
        UpstreamFailure::TimedOut => Rejection {
            status: 504,
            error: "gateway_timeout",
            description: "the upstream timed out",
        },
        UpstreamFailure::InvalidAnswer
        | UpstreamFailure::NotConfigured
        | UpstreamFailure::Unavailable => Rejection {
            status: 502,
            error: "bad_gateway",
            description: "the upstream is unavailable",
        },
    }
}

fn describe_path(reason: PathRefused) -> &'static str {
    match reason {
        PathRefused::Backslash => "the request path must not hold a backslash",
        PathRefused::ControlByte => "the request path must not hold control characters",
        PathRefused::DotSegmentParameters => {
            "the request path must not hold a dot-segment with parameters"
        }
        PathRefused::EncodedSeparator => {
            "the request path must not hold an encoded slash or backslash"
        }
        PathRefused::MalformedEscape => "the request path holds a malformed percent-encoding",
        PathRefused::NotAbsolute => "the request target must be a path (origin-form)",
        PathRefused::TooLong => "the request path is too long",
    }
}
