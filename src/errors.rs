//! The one place where pipeline failures become HTTP answers.
//!
//! Descriptions are fixed strings per failure class: a response never echoes the token,
//! its claims, or any detail an attacker could probe with. Full detail goes to the logs.

use crate::exchange::{ExchangeError, Fault};
use crate::idp::verify::VerifyError;

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
            _ => (400, "invalid_request"),
        },
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
        ExchangeError::UnknownService(_) => "the requested audience or resource is not known",
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
        },
    }
}
