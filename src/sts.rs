//! `POST /tokens`: RFC 8693 token exchange, wire-compatible with State Backed's endpoint.
//!
//! This module turns a request (method, a few headers, the body) into a [`Reply`]; the
//! proxy module moves bytes to and from hyper. Every reply carries
//! `Cache-Control: no-store` and `Pragma: no-cache`, and no reply ever contains the
//! subject token.

use std::time::Instant;

use base64::Engine as _;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::config::{Config, valid_service};
use crate::errors::{Surface, rejection};
use crate::exchange::Exchanger;
use crate::metrics::Metrics;
use crate::mint::{Profile, TokenProvider};
use crate::telemetry;
use crate::token::MAX_TOKEN_BYTES;

/// The largest request body read, in bytes; larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The grant type of RFC 8693.
pub const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type baton issues.
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The JWT token type (RFC 8693 §3), which an `access_token`-profile provider may be asked
/// for (its tokens are JWTs).
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The types a subject or actor token may be said to have.
const SUBJECT_TOKEN_TYPES: [&str; 3] = [
    TOKEN_TYPE_JWT,
    TOKEN_TYPE_ACCESS_TOKEN,
    "urn:ietf:params:oauth:token-type:id_token",
];
/// Parameters that may be given more than once (RFC 8693 §2.1).
const REPEATABLE: [&str; 2] = ["audience", "resource"];

/// What the endpoint needs of an HTTP request.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// The method.
    pub method: &'a str,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// `Authorization` (client_secret_basic).
    pub authorization: Option<&'a str>,
    /// `Origin` (CORS).
    pub origin: Option<&'a str>,
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: &'a [u8],
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers beyond `Content-Type`/`Content-Length`.
    pub headers: Vec<(&'static str, String)>,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

/// The parameters of a token-exchange request.
#[derive(Debug, Default)]
struct Params {
    pairs: Vec<(String, String)>,
}

// === impl Reply ===

impl Reply {
    /// A JSON reply with the no-store headers every token-endpoint answer carries.
    pub fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            headers: vec![
                ("cache-control", "no-store".to_owned()),
                ("pragma", "no-cache".to_owned()),
            ],
            content_type: "application/json",
            body: body.to_string().into_bytes(),
        }
    }

    /// An OAuth error reply (RFC 6749 §5.2).
    pub fn oauth_error(status: u16, error: &str, description: &str) -> Self {
        Self::json(
            status,
            &json!({ "error": error, "error_description": description }),
        )
    }

    /// 413 for a body over [`MAX_BODY_BYTES`].
    pub fn body_too_large() -> Self {
        Self::oauth_error(
            413,
            "invalid_request",
            "the request body is larger than 64 KiB",
        )
    }

    /// 204 to a CORS preflight for an endpoint that takes `methods`.
    pub fn preflight(methods: &str) -> Self {
        Self {
            status: 204,
            headers: vec![
                ("access-control-allow-methods", methods.to_owned()),
                (
                    "access-control-allow-headers",
                    "authorization, content-type".to_owned(),
                ),
                ("access-control-max-age", "600".to_owned()),
                ("cache-control", "no-store".to_owned()),
                ("pragma", "no-cache".to_owned()),
            ],
            content_type: "text/plain",
            body: Vec::new(),
        }
    }

    /// Lets a browser at `origin` (one `[server] cors_origins` lists) read this reply.
    #[must_use]
    pub fn allow_origin(mut self, origin: Option<&str>) -> Self {
        if let Some(origin) = origin {
            self.headers
                .push(("access-control-allow-origin", origin.to_owned()));
            self.headers.push(("vary", "Origin".to_owned()));
        }
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Answers a request to the token endpoint.
pub async fn handle(exchanger: &Exchanger, metrics: &Metrics, request: &TokenRequest<'_>) -> Reply {
    let config = exchanger.config();
    let cors = cors_origin(&config, request.origin);
    let reply = match request.method {
        "POST" => exchange(exchanger, metrics, &config, request).await,
        "OPTIONS" if cors.is_some() => Reply::preflight("POST"),
        _ => Reply::oauth_error(
            405,
            "invalid_request",
            "the token endpoint accepts POST only",
        )
        .with_header("allow", "POST"),
    };
    reply.allow_origin(cors)
}

/// The request's `Origin` when `[server] cors_origins` lists it.
pub fn cors_origin<'a>(config: &Config, origin: Option<&'a str>) -> Option<&'a str> {
    origin.filter(|o| {
        config
            .server
            .cors_origins
            .iter()
            .any(|allowed| allowed == o)
    })
}

async fn exchange(
    exchanger: &Exchanger,
    metrics: &Metrics,
    config: &Config,
    request: &TokenRequest<'_>,
) -> Reply {
    let params = match Params::parse(request.content_type, request.body) {
        Ok(params) => params,
        Err(reply) => return reply,
    };
    if let Some(name) = params.repeated() {
        return invalid_request(&format!("the {name} parameter is repeated"));
    }
    let Some(grant_type) = params.get("grant_type") else {
        return invalid_request("grant_type is missing");
    };
    if grant_type != GRANT_TYPE_TOKEN_EXCHANGE {
        return Reply::oauth_error(
            400,
            "unsupported_grant_type",
            "only urn:ietf:params:oauth:grant-type:token-exchange is supported",
        );
    }
    let Some(subject_token) = params.get("subject_token") else {
        return invalid_request("subject_token is missing");
    };
    if subject_token.len() > MAX_TOKEN_BYTES {
        return invalid_request("subject_token is longer than 16 KiB");
    }
    if let Some(kind) = params.get("subject_token_type")
        && !SUBJECT_TOKEN_TYPES.contains(&kind)
    {
        return invalid_request("subject_token_type must be a JWT, access token or ID token URI");
    }
    let requested: Vec<&str> = ["requested_token_type", "requested_token-type"]
        .into_iter()
        .filter_map(|name| params.get(name))
        .collect();
    if requested
        .iter()
        .any(|t| *t != TOKEN_TYPE_ACCESS_TOKEN && *t != TOKEN_TYPE_JWT)
    {
        return invalid_request(
            "requested_token_type must be urn:ietf:params:oauth:token-type:access_token, or \
             urn:ietf:params:oauth:token-type:jwt for a service with the access_token profile",
        );
    }
    // RFC 8693 §2.1: actor_token_type is required with actor_token and must not be sent
    // without it.
    let actor_token = match (params.get("actor_token"), params.get("actor_token_type")) {
        (None, None) => None,
        (Some(_), None) => return invalid_request("actor_token_type is missing"),
        (None, Some(_)) => return invalid_request("actor_token_type is sent without actor_token"),
        (Some(token), Some(kind)) => {
            if !SUBJECT_TOKEN_TYPES.contains(&kind) {
                return invalid_request(
                    "actor_token_type must be a JWT, access token or ID token URI",
                );
            }
            if token.len() > MAX_TOKEN_BYTES {
                return invalid_request("actor_token is longer than 16 KiB");
            }
            Some(token)
        }
    };
    let service = match target_service(config, &params) {
        Ok(service) => service,
        Err(reply) => return reply,
    };
    let Some(provider) = config.provider(&service) else {
        return Reply::oauth_error(
            400,
            "invalid_target",
            "the requested audience or resource is not known",
        );
    };
    // The JWT type only for access_token-profile providers: a statebacked token is a JWT
    // too, but its payload is State Backed's shape, not a general-purpose JWT's claims.
    let issued_token_type = if requested.contains(&TOKEN_TYPE_JWT) {
        if provider.profile != Profile::AccessToken {
            return invalid_request(
                "requested_token_type must be urn:ietf:params:oauth:token-type:access_token \
                 for this service",
            );
        }
        TOKEN_TYPE_JWT
    } else {
        TOKEN_TYPE_ACCESS_TOKEN
    };
    let client = match authenticate_client(provider, request.authorization, &params) {
        Ok(client) => client,
        Err(reply) => return reply,
    };

    let started = Instant::now();
    let result = exchanger
        .exchange_delegated(subject_token, actor_token, &service, client.as_deref())
        .await;
    let latency = started.elapsed();
    match result {
        Ok(exchanged) => {
            telemetry::exchange_ok(
                metrics,
                telemetry::Surface::Tokens,
                &exchanged.minted.idp,
                &service,
                exchanged.cached,
                latency,
            );
            let now = exchanger.now_unix();
            Reply::json(
                200,
                &json!({
                    "access_token": exchanged.minted.token(),
                    "issued_token_type": issued_token_type,
                    "token_type": "Bearer",
                    "expires_in": exchanged.minted.expires_in(now),
                }),
            )
        }
        Err(e) => {
            telemetry::exchange_refused(metrics, telemetry::Surface::Tokens, &e, &service, latency);
            let r = rejection(&e, Surface::TokenEndpoint);
            Reply::oauth_error(r.status, r.error, r.description)
        }
    }
}

fn invalid_request(description: &str) -> Reply {
    Reply::oauth_error(400, "invalid_request", description)
}

/// The service named by `audience`/`resource`, else `[proxy] service`.
fn target_service(config: &Config, params: &Params) -> Result<String, Reply> {
    let mut service: Option<String> = None;
    for target in params.all("audience").chain(params.all("resource")) {
        let named = service_of_target(config, target).ok_or_else(|| {
            Reply::oauth_error(
                400,
                "invalid_target",
                "the requested audience or resource is not known",
            )
        })?;
        match &service {
            Some(existing) if *existing != named => {
                return Err(Reply::oauth_error(
                    400,
                    "invalid_target",
                    "the audience and resource parameters name different services",
                ));
            }
            _ => service = Some(named),
        }
    }
    service
        .or_else(|| config.proxy.service.clone())
        .ok_or_else(|| invalid_request("audience is missing"))
}

/// `{audience_base}/{org}/{service}` (State Backed) or a bare service name.
fn service_of_target(config: &Config, target: &str) -> Option<String> {
    if valid_service(target) {
        return Some(target.to_owned());
    }
    let rest = target
        .strip_prefix(config.server.audience_base.as_str())?
        .strip_prefix('/')?;
    let (org, service) = rest.trim_end_matches('/').split_once('/')?;
    let org_ok = config.server.org.as_deref().is_none_or(|ours| ours == org);
    (org_ok && valid_service(service)).then(|| service.to_owned())
}

/// Client authentication, when the provider requires it (RFC 6749 §2.3.1): the id of the
/// client authenticated, `None` for a public provider (whose `client_id`, if sent, proves
/// nothing and is not used).
fn authenticate_client(
    provider: &TokenProvider,
    authorization: Option<&str>,
    params: &Params,
) -> Result<Option<String>, Reply> {
    let basic = authorization.and_then(|value| {
        value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
    });
    let post = params.get("client_secret");
    if basic.is_some() && post.is_some() {
        return Err(invalid_request(
            "use one client authentication method, not two",
        ));
    }
    if provider.clients.is_empty() {
        return Ok(None);
    }
    let unauthorized = || {
        Reply::oauth_error(401, "invalid_client", "client authentication failed")
            .with_header("www-authenticate", "Basic realm=\"baton\"")
    };
    let (id, secret) = match (basic, post) {
        (Some(encoded), None) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| unauthorized())?;
            let decoded = String::from_utf8(decoded).map_err(|_| unauthorized())?;
            let (id, secret) = decoded.split_once(':').ok_or_else(unauthorized)?;
            // client_secret_basic form-encodes id and secret before base64 (RFC 6749 §2.3.1).
            (form_decode(id), form_decode(secret))
        }
        (None, Some(secret)) => {
            let id = params.get("client_id").ok_or_else(unauthorized)?;
            (id.to_owned(), secret.to_owned())
        }
        _ => return Err(unauthorized()),
    };
    // Compare every client's secret, so timing does not reveal which ids exist.
    let mut matched = false;
    for client in &provider.clients {
        let id_ok = client.id.as_bytes().ct_eq(id.as_bytes());
        let secret_ok = client.secret.expose().ct_eq(secret.as_bytes());
        matched |= bool::from(id_ok & secret_ok);
    }
    if matched {
        Ok(Some(id))
    } else {
        Err(unauthorized())
    }
}

fn form_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

// === impl Params ===

impl Params {
    /// Parses a form or JSON body. Anything else is 415.
    fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self, Reply> {
        let media_type = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|ct| ct.trim().to_ascii_lowercase());
        match media_type.as_deref() {
            Some("application/x-www-form-urlencoded") => Ok(Self {
                pairs: form_urlencoded::parse(body).into_owned().collect(),
            }),
            Some("application/json") => {
                let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
                    return Err(invalid_request("the body is not a JSON object"));
                };
                let mut pairs = Vec::with_capacity(object.len());
                for (name, value) in object {
                    match value {
                        Value::String(v) => pairs.push((name, v)),
                        Value::Array(items) if REPEATABLE.contains(&name.as_str()) => {
                            for item in items {
                                let Value::String(v) = item else {
                                    return Err(invalid_request(&format!(
                                        "{name} must be strings"
                                    )));
                                };
                                pairs.push((name.clone(), v));
                            }
                        }
                        Value::Null => {}
                        _ => return Err(invalid_request(&format!("{name} must be a string"))),
                    }
                }
                Ok(Self { pairs })
            }
            _ => Err(Reply::oauth_error(
                415,
                "invalid_request",
                "send application/x-www-form-urlencoded or application/json",
            )),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first parameter given twice that may not be.
    fn repeated(&self) -> Option<&str> {
        self.pairs.iter().enumerate().find_map(|(i, (name, _))| {
            let again = self.pairs[..i].iter().any(|(n, _)| n == name);
            (again && !REPEATABLE.contains(&name.as_str())).then_some(name.as_str())
        })
    }
}

#[cfg(test)]
mod tests;
