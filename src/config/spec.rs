//! The TOML file as written: plain structs, unknown keys rejected.
//!
//! These are parsed by serde and then validated into the runtime types of
//! [`crate::config`]. Nothing here is trusted yet.

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

/// A secret written inline (a demo config's, or one the admin API unsealed): `Debug` never
/// shows it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct InlineSecret(pub String);

impl std::ops::Deref for InlineSecret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for InlineSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub org: Option<String>,
    pub audience_base: Option<String>,
    pub issuer: Option<String>,
    /// Base URL of baton's own endpoints in published metadata (default: `issuer`).
    pub public_url: Option<String>,
    pub tokens_path: Option<PathSetting>,
    pub jwks_path: Option<PathSetting>,
    pub metadata_path: Option<PathSetting>,
    pub cors_origins: Option<Vec<String>>,
    pub log_format: Option<String>,
    /// Reload when the config file changes (default true); SIGHUP always reloads.
    pub watch_config: Option<bool>,
}

/// `[proxy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub service: Option<String>,
    pub on_missing: Option<String>,
    pub connect_timeout: Option<DurationSpec>,
    pub read_timeout: Option<DurationSpec>,
    pub upstream_protocol: Option<String>,
    pub threads: Option<usize>,
    #[serde(default)]
    pub trust_forwarded_headers: bool,
    pub grace_period: Option<DurationSpec>,
    pub idle_timeout: Option<DurationSpec>,
    pub header_timeout: Option<DurationSpec>,
    /// Terminate TLS on the listener with this certificate and key.
    pub tls: Option<TlsSpec>,
    /// Claim headers sent with every exchanged request (mapping syntax).
    pub headers: Option<Map<String, Value>>,
    /// Whether the upstream gets the token in `Authorization` (default true).
    pub forward_token: Option<bool>,
    /// Browser origins whose CORS preflights baton answers for proxied paths.
    pub cors_origins: Option<Vec<String>>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
}

/// `[telemetry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySpec {
    /// The OTLP/HTTP collector's base URL.
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
    pub export_interval: Option<DurationSpec>,
    pub sample_ratio: Option<f64>,
}

/// `[forward_auth]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthSpec {
    pub listen: Option<String>,
    /// `x-forwarded`, `x-original` or `request-line`.
    pub original_request: Option<String>,
    pub path_prefix: Option<String>,
    pub tls: Option<TlsSpec>,
}

/// `[proxy] tls` or `[forward_auth] tls`: PEM files, relative to the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// The certificate chain, leaf first.
    pub cert_file: String,
    /// The leaf's private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: String,
}

/// One `[[proxy.routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub prefix: String,
    pub service: Option<String>,
    #[serde(default)]
    pub skip: bool,
    /// A CEL condition over `claims` and `request`.
    pub condition: Option<String>,
    /// Claim headers for this route, instead of `[proxy] headers`.
    pub headers: Option<Map<String, Value>>,
}

/// A path that can be changed or turned off: `"/tokens"`, `true` (the default path) or `false`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PathSetting {
    Enabled(bool),
    Path(String),
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    pub listen: Option<String>,
    /// The environment variable holding the admin API's bearer token.
    pub token_env: Option<String>,
    /// Or a file holding it.
    pub token_file: Option<String>,
    /// Where entries written through the admin API persist (relative to the config file).
    pub state_file: Option<String>,
    /// The environment variable holding the state file's master key (32 bytes, base64).
    pub master_key_env: Option<String>,
    /// Or a file holding it.
    pub master_key_file: Option<String>,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// The environment variable holding the store's `postgres://` URL.
    pub url_env: Option<String>,
    /// Or a file holding it.
    pub url_file: Option<String>,
    /// Where the last loaded revision is kept, sealed, for a start while the store is down.
    pub snapshot_file: Option<String>,
    /// Create or migrate the schema at start (default false: `baton store migrate`).
    #[serde(default)]
    pub migrate: bool,
    /// PEM roots that verify the database's certificate (default: the system's roots).
    pub ca_file: Option<String>,
}

/// One `[[keys]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub id: String,
    pub algorithm: String,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    /// Inline HMAC secret: only for demo configs (`baton check` warns).
    pub secret: Option<InlineSecret>,
    pub private_key_file: Option<String>,
    pub private_key_env: Option<String>,
    /// Retired keys no longer sign, but their public halves stay published.
    #[serde(default)]
    pub retired: bool,
}

/// One `[[idps]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpSpec {
    pub name: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub jwks_url: Option<String>,
    #[serde(default)]
    pub discovery: bool,
    /// Fetch `jwks_url` or discovery over plain http from any host, not only loopback
    /// (unsafe outside a trusted network; `baton check` warns).
    #[serde(default)]
    pub allow_http: bool,
    pub key: Option<InlineSecret>,
    pub key_env: Option<String>,
    pub key_file: Option<String>,
    pub leeway: Option<DurationSpec>,
    pub mapping: Map<String, Value>,
    /// A CEL condition over the verified token's `claims` (compiled at load).
    pub condition: Option<String>,
    /// RFC 7662 introspection: `true` (the endpoint from discovery) or a table.
    pub introspection: Option<IntrospectionSpec>,
    /// Opaque tokens starting with this go to this IdP's introspection endpoint.
    pub token_prefix: Option<String>,
    /// Upper bound on how long an introspection answer is reused (default 60 s).
    pub introspection_cache_ttl: Option<DurationSpec>,
}

/// `[[idps]] introspection`: `true`, or `{ url, client_id, client_secret_env | _file }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum IntrospectionSpec {
    /// `true`: the discovery document's endpoint, no client authentication.
    Enabled(bool),
    /// A table.
    Endpoint(IntrospectionEndpointSpec),
}

/// The table form of `introspection`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionEndpointSpec {
    /// Absent with `discovery = true`: the discovery document's `introspection_endpoint`.
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<String>,
}

impl IdpSpec {
    /// The name logs, metrics and `clients[].idps` know it by: `name`, else the issuer,
    /// else the audience.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.issuer.clone())
            .or_else(|| self.audience.clone())
            .unwrap_or_default()
    }
}

/// One `[[token_providers]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenProviderSpec {
    pub service: String,
    pub key: String,
    pub mapping: Map<String, Value>,
    pub ttl: Option<DurationSpec>,
    pub profile: Option<String>,
    pub audience: Option<String>,
    /// When set, `/tokens` requires client authentication for this provider.
    #[serde(default)]
    pub clients: Vec<ClientSpec>,
    /// A CEL condition over the intermediate `claims`, `idp`, `client` and `actor`.
    pub condition: Option<String>,
    /// Whether `/tokens` accepts an `actor_token` (RFC 8693 delegation) for this service.
    /// Defaults to `false`.
    pub delegation: Option<bool>,
}

/// A client allowed to call `/tokens` for a provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    pub id: String,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    /// Inline secret: only for demo configs (`baton check` warns).
    pub secret: Option<InlineSecret>,
    /// The IdPs (by name) whose tokens this client may exchange; absent = any.
    pub idps: Option<Vec<String>>,
}

/// A duration: `"15m"`, `"1h30m"`, `"90s"`, `"250ms"`, or a number of seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationSpec {
    Seconds(u64),
    Text(String),
}
