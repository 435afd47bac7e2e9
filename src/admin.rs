//! The admin listener (default `127.0.0.1:9901`): health, metrics and State Backed's admin API.
//!
//! - `/healthz`: the process is up (200).
//! - `/readyz`: a config is loaded, every IdP's keys are at hand, and baton is not draining
//!   (200, else 503), with the detail as JSON; with `[store]`, the store's connection and the
//!   revision served too (a store down does not make baton unready: it serves that revision).
//! - `/metrics`: Prometheus metrics, OpenMetrics text.
//! - `/idps`, `/token-providers`, `/keys` (State Backed's shapes, `reference/
//!   statebacked.openapi.v3.yaml`): list every entry, the config file's marked `readOnly`;
//!   write entries that persist in the state file or the store ([`crate::control`]). `/idps` and
//!   `/token-providers` bodies may also carry `condition` (baton's extension: a CEL condition,
//!   validated like the file's, listed back when set). They need
//!   `Authorization: Bearer <[admin] token_env's value>`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::control::Control;
use crate::idp::KeySource;
use crate::secret::Secret;
use crate::state::{AdminError, ApiState, IdpRequest, StoredProvider};

/// Largest admin API request body.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the admin endpoints read and change.
#[derive(Debug)]
pub struct AdminState {
    control: Arc<Control>,
    draining: AtomicBool,
    /// `createdAt` of the config file's keys (they have no other).
    started: SystemTime,
}

// === impl AdminState ===

impl AdminState {
    /// Admin state over `control`'s gateway.
    pub fn new(control: Arc<Control>) -> Self {
        Self {
            control,
            draining: AtomicBool::new(false),
            started: SystemTime::now(),
        }
    }

    /// Marks baton as draining: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, typically: back off instead of spinning.
                tracing::warn!(error = %e, "admin listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(&state, req).await) }
            });
            // A client that sends no complete request header in time (a slow or idle one)
            // is dropped rather than holding a connection open forever.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// How long the admin listener waits for a request's header (and an idle connection for the
/// next one).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

async fn answer(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "application/json",
                json!({ "error": "use GET" }).to_string(),
            );
        }
        return probe(state, &path).await;
    }
    let route = match path.as_str() {
        "/idps" => Route::Idps,
        "/token-providers" => Route::TokenProviders,
        "/keys" => Route::Keys,
        _ => match (
            path.strip_prefix("/token-providers/"),
            path.strip_prefix("/keys/"),
        ) {
            (Some(service), _) if !service.is_empty() => Route::TokenProvider(service.to_owned()),
            (_, Some(id)) if !id.is_empty() => Route::Key(id.to_owned()),
            _ => return api_error(StatusCode::NOT_FOUND, "not-found", "no such endpoint"),
        },
    };
    if let Err(response) = authorize(&state.control.gateway().exchanger().config(), &req) {
        return response;
    }
    let method = req.method().clone();
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let control = &state.control;
    let result = match (route, &method) {
        (Route::Idps, &Method::GET) => {
            let (config, api) = control.snapshot();
            Ok(list_idps(&config, &api))
        }
        (Route::Idps, &Method::POST) => match parse::<IdpRequest>(&body) {
            Ok(request) => write(control, move |s, config, master| {
                s.upsert_idp(config, master, request)
            })
            .await
            .map(|()| no_content()),
            Err(e) => Err(e),
        },
        (Route::Idps, &Method::DELETE) => match parse::<IdpName>(&body) {
            Ok(name) => write(control, move |s, config, _| {
                s.delete_idp(config, name.iss, name.aud)
            })
            .await
            .map(|()| no_content()),
            Err(e) => Err(e),
        },
        (Route::TokenProviders, &Method::GET) => {
            let (config, api) = control.snapshot();
            Ok(list_providers(&config, &api))
        }
        (Route::TokenProviders, &Method::POST) => match parse::<StoredProvider>(&body) {
            Ok(request) => write(control, move |s, config, _| {
                s.upsert_provider(config, request)
            })
            .await
            .map(|()| no_content()),
            Err(e) => Err(e),
        },
        (Route::TokenProvider(service), &Method::DELETE) => write(control, move |s, config, _| {
            s.delete_provider(config, &service)
        })
        .await
        .map(|()| no_content()),
        (Route::Keys, &Method::GET) => Ok(list_keys(state)),
        (Route::Keys, &Method::POST) => create_key(control, &body).await,
        (Route::Key(id), &Method::DELETE) => {
            write(control, move |s, config, _| s.delete_key(config, &id))
                .await
                .map(|()| no_content())
        }
        (route, _) => {
            let message = format!("use {}", route.allow());
            return api_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                &message,
            )
            .with_header("allow", route.allow());
        }
    };
    match result {
        Ok(response) => {
            if method != Method::GET {
                tracing::info!(%method, path = %path, "admin API change applied");
            }
            response
        }
        Err(e) => {
            if method != Method::GET {
                tracing::info!(%method, path = %path, error = %e, "admin API change refused");
            }
            admin_error(&e)
        }
    }
}

/// Runs an admin API change on a blocking thread (it writes and fsyncs the state file and
/// rebuilds the configuration; the proxy's runtime may have only one thread).
async fn write<T: Send + 'static>(
    control: &Arc<Control>,
    change: impl FnOnce(&mut ApiState, &Config, &Secret) -> Result<T, AdminError> + Send + 'static,
) -> Result<T, AdminError> {
    let control = Arc::clone(control);
    tokio::task::spawn_blocking(move || control.change(change))
        .await
        .map_err(|e| AdminError::Storage(format!("the change did not finish: {e}")))?
}

/// `POST /keys`: 200 with the new key's id and secret.
async fn create_key(
    control: &Arc<Control>,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, AdminError> {
    let request = parse::<KeyRequest>(body)?;
    let scopes = request.scopes()?;
    let (id, secret) = write(control, move |s, _, master| {
        s.create_key(master, request.name, scopes, SystemTime::now())
    })
    .await?;
    tracing::info!(key = %id, "admin API: key created");
    // The one time the secret leaves baton: the caller asked for a new key.
    let key = String::from_utf8_lossy(secret.expose()).into_owned();
    Ok(json_reply(StatusCode::OK, &json!({ "id": id, "key": key })))
}

/// The admin API's endpoints.
enum Route {
    Idps,
    TokenProviders,
    TokenProvider(String),
    Keys,
    Key(String),
}

impl Route {
    fn allow(&self) -> &'static str {
        match self {
            Self::Idps => "GET, POST, DELETE",
            Self::TokenProviders | Self::Keys => "GET, POST",
            Self::TokenProvider(_) | Self::Key(_) => "DELETE",
        }
    }
}

/// `DELETE /idps`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdpName {
    iss: Option<String>,
    aud: Option<String>,
}

/// `POST /keys`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    name: String,
    scopes: Option<Vec<String>>,
    #[serde(rename = "use")]
    intended_use: Option<String>,
}

/// State Backed's key scopes.
const SCOPES: [&str; 18] = [
    "events.write",
    "events.read",
    "state.read",
    "instances.read",
    "instances.write",
    "instances.admin",
    "machines.read",
    "machines.write",
    "machines.admin",
    "machine-versions.read",
    "machine-versions.write",
    "analytics.read",
    "org.read",
    "org.write",
    "org.keys.write",
    "org-members.write",
    "logs.read",
    "tokens.admin",
];

impl KeyRequest {
    /// The scopes given, or those of `use` (`production`: every scope but the org's own
    /// management; `ci`: machines and their versions).
    fn scopes(&self) -> Result<Vec<String>, AdminError> {
        if self.name.trim().is_empty() {
            return Err(AdminError::Invalid("a key needs a name".to_owned()));
        }
        let scopes: Vec<&str> = match (&self.scopes, self.intended_use.as_deref()) {
            (Some(scopes), None) => scopes.iter().map(String::as_str).collect(),
            (None, Some("production")) => SCOPES
                .into_iter()
                .filter(|s| !s.starts_with("org"))
                .collect(),
            (None, Some("ci")) => SCOPES
                .into_iter()
                .filter(|s| s.starts_with("machine"))
                .collect(),
            (None, Some(other)) => {
                return Err(AdminError::Invalid(format!(
                    "use is \"production\" or \"ci\", not {other:?}"
                )));
            }
            _ => {
                return Err(AdminError::Invalid("give either scopes or use".to_owned()));
            }
        };
        if let Some(unknown) = scopes.iter().find(|s| !SCOPES.contains(s)) {
            return Err(AdminError::Invalid(format!("unknown scope {unknown:?}")));
        }
        Ok(scopes.into_iter().map(str::to_owned).collect())
    }
}

/// Checks `Authorization: Bearer <admin token>` (constant-time).
#[allow(clippy::result_large_err)]
fn authorize(config: &Config, req: &Request<Incoming>) -> Result<(), Response<Full<Bytes>>> {
    let Some(expected) = &config.admin.token else {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "admin-api-off",
            "the admin API is off: set [admin] token_env",
        ));
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().as_bytes());
    // Digests first: comparing the tokens themselves would end early on a length mismatch.
    let digest = |bytes: &[u8]| <sha2::Sha256 as sha2::Digest>::digest(bytes);
    let valid = given.is_some_and(|given| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            digest(given).as_slice(),
            digest(expected.expose()).as_slice(),
        ))
    });
    if valid {
        Ok(())
    } else {
        Err(api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API needs Authorization: Bearer <admin token>",
        )
        .with_header("www-authenticate", "Bearer realm=\"baton-admin\""))
    }
}

#[allow(clippy::result_large_err)]
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid-request",
            "the body is larger than 64 KiB",
        )),
        Err(_) => Err(api_error(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "the body could not be read",
        )),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        // serde quotes the offending value in these (`invalid type: string "…"`): never
        // repeat what was sent, which may be a secret in the wrong field.
        let message = if ["invalid type", "invalid value", "invalid length"]
            .iter()
            .any(|kind| message.starts_with(kind))
        {
            format!(
                "a value has the wrong type or form at line {}, column {}",
                e.line(),
                e.column()
            )
        } else {
            message
        };
        AdminError::Invalid(format!("invalid JSON body: {message}"))
    })
}

fn list_idps(config: &Config, state: &ApiState) -> Response<Full<Bytes>> {
    let idps: Vec<Value> = config
        .idps
        .iter()
        .map(|idp| {
            let mut entry = Map::new();
            if let Some(iss) = &idp.issuer {
                entry.insert("iss".into(), json!(iss));
            }
            if let Some(aud) = &idp.audience {
                entry.insert("aud".into(), json!(aud));
            }
            let algs: Vec<&str> = idp
                .algorithms
                .iter()
                .map(|a| crate::algorithm::name(*a))
                .collect();
            entry.insert("algs".into(), json!(algs));
            if let KeySource::JwksUrl(url) = &idp.keys {
                entry.insert("jwksUrl".into(), json!(url));
            }
            entry.insert("mapping".into(), Value::Object(idp.mapping.to_json()));
            if let Some(condition) = &idp.condition {
                entry.insert("condition".into(), json!(condition.source()));
            }
            let from_api = state.has_idp(idp.issuer.as_deref(), idp.audience.as_deref());
            entry.insert("readOnly".into(), json!(!from_api));
            Value::Object(entry)
        })
        .collect();
    json_reply(StatusCode::OK, &json!({ "idps": idps }))
}

fn list_providers(config: &Config, state: &ApiState) -> Response<Full<Bytes>> {
    let providers: Vec<Value> = config
        .token_providers
        .iter()
        .map(|p| {
            let mut entry = json!({
                "service": p.service,
                "keyId": p.key.id(),
                "mapping": p.mapping.to_json(),
                "readOnly": !state.has_provider(&p.service),
            });
            if let (Some(condition), Value::Object(entry)) = (&p.condition, &mut entry) {
                entry.insert("condition".into(), json!(condition.source()));
            }
            entry
        })
        .collect();
    json_reply(StatusCode::OK, &json!({ "tokenProviders": providers }))
}

fn list_keys(admin: &AdminState) -> Response<Full<Bytes>> {
    let (config, state) = admin.control.snapshot();
    let started = humantime::format_rfc3339_seconds(admin.started).to_string();
    let keys: Vec<Value> = config
        .keys
        .iter()
        .map(|key| match state.key(key.id()) {
            Some(stored) => json!({
                "id": stored.id,
                "name": stored.name,
                "scopes": stored.scopes,
                "createdAt": stored.created_at,
                "readOnly": false,
            }),
            None => json!({
                "id": key.id(),
                "name": key.id(),
                "scopes": [],
                "createdAt": started,
                "readOnly": true,
            }),
        })
        .collect();
    json_reply(StatusCode::OK, &json!({ "keys": keys }))
}

fn admin_error(e: &AdminError) -> Response<Full<Bytes>> {
    let (status, code) = match e {
        AdminError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid-request"),
        AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
        AdminError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        AdminError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
        AdminError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable"),
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "admin API: the state could not be saved");
    }
    api_error(status, code, &e.to_string())
}

/// An error as State Backed's API (and its client) shape it: `{"error", "code"}`.
fn api_error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json_reply(status, &json!({ "error": message, "code": code }))
}

fn json_reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", body.to_string())
}

fn no_content() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// Adds a header to a reply.
trait WithHeader {
    fn with_header(self, name: &'static str, value: &'static str) -> Self;
}

impl WithHeader for Response<Full<Bytes>> {
    fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers_mut()
            .insert(name, hyper::header::HeaderValue::from_static(value));
        self
    }
}

async fn probe(state: &AdminState, path: &str) -> Response<Full<Bytes>> {
    let gateway = state.control.gateway();
    match path {
        "/healthz" => reply(
            StatusCode::OK,
            "application/json",
            json!({ "status": "ok" }).to_string(),
        ),
        "/readyz" => {
            let exchanger = gateway.exchanger();
            let idps = exchanger.keys_ready().await;
            let draining = state.draining.load(Ordering::Acquire);
            let ready = !draining && idps.iter().all(|(_, ready)| *ready);
            let mut body = json!({
                "ready": ready,
                "draining": draining,
                "config_generation": exchanger.generation(),
                "idps": idps.into_iter().map(|(name, ready)| (name, serde_json::Value::Bool(ready))).collect::<serde_json::Map<_, _>>(),
            });
            // Readiness does not depend on the store: a revision is loaded (baton does not
            // start without one) and keeps serving while the store is down.
            if let (Some(store), Value::Object(body)) = (state.control.store(), &mut body) {
                let status = store.status();
                body.insert(
                    "store".into(),
                    json!({ "connected": status.connected(), "revision": status.revision() }),
                );
            }
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", body.to_string())
        }
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            gateway.metrics().encode(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "application/json",
            json!({ "error": "not found" }).to_string(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
