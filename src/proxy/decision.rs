//! The decision a front proxy asks for, by HTTP (`forward_auth`) or Envoy's gRPC
//! (`ext_authz`): the proxy's own steps on the original request, and what the app must get
//! when it passes ([`Verdict`]).

use http::HeaderValue;
use http::header::{self, HeaderName};
use http::request::Parts;

use crate::config::Config;
use crate::telemetry::Surface;

use super::policy::{self, Admitted};
use super::{Gateway, Refusal, auth};

/// An allowed original request: what the app must get, as the front proxy applies it.
#[derive(Debug, Default)]
pub(super) struct Verdict {
    /// Headers to set on the request to the app, replacing the client's: `Authorization`
    /// (the token the app gets) and the claim headers the token produced.
    pub(super) set: Vec<(HeaderName, HeaderValue)>,
    /// Headers to remove from the request to the app: `authorization` when the app gets none
    /// (the IdP token, a bearer on a `skip` route), and every claim header name the token did
    /// not produce (a client's own `x-user` must not reach the app).
    pub(super) remove: Vec<HeaderName>,
}

// === impl Gateway ===

impl Gateway {
    /// The proxy's decision on `original`, as a [`Verdict`] or the answer instead.
    pub(super) async fn decide(
        &self,
        config: &Config,
        mut original: Parts,
    ) -> Result<Verdict, Refusal> {
        auth::normalize_target(&mut original).map_err(|refused| auth::refusal(&refused))?;
        let names = &config.proxy.claim_header_names;
        // As on the proxy listener: a condition never reads a client's own claim headers.
        policy::strip_claim_headers(&mut original.headers, names);
        let had_authorization = original.headers.contains_key(header::AUTHORIZATION);
        let admitted: Admitted = auth::authorize(
            &self.exchanger,
            &self.metrics,
            Surface::ForwardAuth,
            config,
            &mut original,
            None,
        )
        .await?;
        // The headers the proxy would send the app, of which the answer carries baton's own.
        let mut headers = original.headers;
        policy::apply(&mut headers, admitted);
        let mut verdict = Verdict::default();
        let authorizations = headers.get_all(header::AUTHORIZATION);
        if authorizations.iter().next().is_some() {
            for value in authorizations {
                verdict.set.push((header::AUTHORIZATION, value.clone()));
            }
        } else if had_authorization {
            verdict.remove.push(header::AUTHORIZATION);
        }
        for name in names {
            // The names were checked when the config loaded.
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            match headers.get(&name) {
                Some(value) => verdict.set.push((name, value.clone())),
                None => verdict.remove.push(name),
            }
        }
        Ok(verdict)
    }
}
