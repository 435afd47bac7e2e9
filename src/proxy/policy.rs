//! A route's policy on a request: its `condition` (who may reach the app) and the claim
//! headers the app gets (`headers`, `forward_token`). The decisions are the pure modules'
//! (`policy`, `claim_headers`); this one reads them off and writes them onto hyper's types.

use std::collections::BTreeMap;

use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue};

use crate::claim_headers::Rendered;
use crate::exchange::{Denial, Denied, Payload};
use crate::policy::{Condition, Inputs, RequestFacts};

/// What the upstream request gets besides the client's own headers.
#[derive(Debug, Default)]
pub(super) struct Admitted {
    /// The `Authorization` sent instead of the client's (an exchanged token).
    pub(super) authorization: Option<HeaderValue>,
    /// Whether the client's `Authorization` goes (`forward_token = false`).
    pub(super) drop_authorization: bool,
    /// The claim headers, already encoded.
    pub(super) claim_headers: Option<Rendered>,
}

/// Removes every claim header name from the client's request: whatever mode the request is
/// in (exchanged, baton's own token, no token, a `skip` route), the app only ever gets those
/// names from baton.
pub(super) fn strip_claim_headers(headers: &mut HeaderMap, names: &[String]) {
    for name in names {
        // `remove` takes the name as text without building a `HeaderName`.
        headers.remove(name.as_str());
    }
}

/// Evaluates `condition` for this request over `payload` (`None`: the request carries no
/// token, and `claims` is `null`). An evaluation error is a refusal, never a pass.
pub(super) fn check_condition(
    condition: &Condition,
    payload: Option<&Payload>,
    parts: &Parts,
) -> Result<(), Denied> {
    let claims = match payload.map(Payload::claims) {
        None => None,
        Some(Ok(claims)) => Some(claims),
        Some(Err(undecided)) => return Denied::check(Denial::RouteCondition, Err(undecided)),
    };
    let facts = RequestFacts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        headers: if condition.reads_headers() {
            request_headers(&parts.headers)
        } else {
            BTreeMap::new()
        },
    };
    let inputs = Inputs {
        claims,
        request: Some(&facts),
        ..Inputs::default()
    };
    Denied::check(Denial::RouteCondition, condition.evaluate(&inputs))
}

/// Sets the claim headers (after the hop-by-hop fields went: a client's `Connection` cannot
/// name them away) and the `Authorization` the app gets.
pub(super) fn apply(headers: &mut HeaderMap, admitted: Admitted) {
    if admitted.drop_authorization {
        headers.remove(header::AUTHORIZATION);
    } else if let Some(authorization) = admitted.authorization {
        headers.insert(header::AUTHORIZATION, authorization);
    }
    let Some(claim_headers) = admitted.claim_headers else {
        return;
    };
    for (name, value) in claim_headers.iter() {
        // Both were checked: names when the config loaded, values are encoded to visible
        // ASCII. Should either still not convert, the header is left out, never sent broken.
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(value.clone()),
        ) else {
            continue;
        };
        headers.insert(name, value);
    }
}

/// The request's headers as a route condition reads them: lower-case names (hyper keeps
/// them so), repeated fields joined with `,` (RFC 9110 §5.3), without `authorization`
/// (baton's own). A value that is not UTF-8 is read lossily.
fn request_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        if name == header::AUTHORIZATION {
            continue;
        }
        let text = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&text);
            })
            .or_insert_with(|| text.into_owned());
    }
    map
}
