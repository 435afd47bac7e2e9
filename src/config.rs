//! Configuration: the TOML file, parsed into [`spec`] structs, then validated into the
//! runtime types the pipeline uses.
//!
//! Every error in a file is reported at once, each with its line and column and its table
//! path (`idps[2].mapping."role.$"`), and with what was expected.

mod duration;
pub mod spec;

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use duration::parse_duration;
use spec::{
    AdminSpec, ClientSpec, DurationSpec, IdpSpec, KeySpec, PathSetting, ProxySpec, ServerSpec,
    TokenProviderSpec,
};

use crate::algorithm;
use crate::crypto::Verifier;
use crate::idp::url_policy::{self, UrlRefusal};
use crate::idp::{DEFAULT_LEEWAY, IdentityProvider, KeySource, UrlPolicy};
use crate::mapping::{ClaimMapper, quote_key};
use crate::mint::keys::SigningKey;
use crate::mint::{
    ClientCredential, DEFAULT_TTL, Profile, REGISTERED_CLAIMS, STATEBACKED_AUDIENCE, TokenProvider,
};
use crate::request_path;
use crate::secret::Secret;
use crate::tls::{CertificatePair, TlsFiles};

/// `audience_base` unless `[server]` sets it: State Backed's.
pub const DEFAULT_AUDIENCE_BASE: &str = "https://tokens.statebacked.dev";
/// `iss` of minted tokens unless `[server] issuer` is set.
pub const DEFAULT_ISSUER: &str = "baton";
/// The proxy listener unless `[proxy] listen` is set.
pub const DEFAULT_PROXY_LISTEN: &str = "0.0.0.0:8080";
/// The admin listener unless `[admin] listen` is set.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// The token-exchange endpoint unless `[server] tokens_path` is set.
pub const DEFAULT_TOKENS_PATH: &str = "/tokens";
/// The published JWKS unless `[server] jwks_path` is set.
pub const DEFAULT_JWKS_PATH: &str = "/.well-known/jwks.json";
/// RFC 8414 metadata unless `[server] metadata_path` is set.
pub const DEFAULT_METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
/// Upstream connect timeout unless `[proxy] connect_timeout` is set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upstream read timeout unless `[proxy] read_timeout` is set.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long SIGTERM waits for in-flight requests unless `[proxy] grace_period` is set.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// How long a client connection may stay open with no request in flight unless
/// `[proxy] idle_timeout` is set (Envoy's `idle_timeout` is 1 h; nginx's `keepalive_timeout` 75 s;
/// 90 s outlives the 60 s most clients and load balancers keep an idle connection for).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long an HTTP/1 request head may take from its first byte unless
/// `[proxy] header_timeout` is set (slowloris).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[proxy]`.
    pub proxy: ProxyConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[[keys]]`.
    pub keys: Vec<Arc<SigningKey>>,
    /// `[[idps]]`, in file order.
    pub idps: Vec<Arc<IdentityProvider>>,
    /// `[[token_providers]]`, in file order.
    pub token_providers: Vec<Arc<TokenProvider>>,
    /// Things that load but deserve a look (an inline secret, say).
    pub warnings: Vec<String>,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The org id of State Backed's audience form `{audience_base}/{org}/{service}`.
    pub org: Option<String>,
    /// The base of that audience form.
    pub audience_base: String,
    /// `iss` of minted tokens.
    pub issuer: String,
    /// Base URL of baton's endpoints in published metadata.
    pub public_url: String,
    /// `POST` token-exchange endpoint, or `None` when turned off.
    pub tokens_path: Option<String>,
    /// The published JWKS, or `None` when turned off.
    pub jwks_path: Option<String>,
    /// RFC 8414 metadata, or `None` when turned off.
    pub metadata_path: Option<String>,
    /// Origins allowed to call `/tokens` and the well-known documents from a browser.
    pub cors_origins: Vec<String>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Reload when the config file changes.
    pub watch_config: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: `2026-11-21T10:00:00Z  INFO exchange outcome=ok ...`.
    Human,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// What the proxy does with a request that has no bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    /// 401 with `WWW-Authenticate: Bearer realm="baton"` (the default).
    Reject,
    /// Pass it to the upstream untouched.
    Forward,
}

/// How baton speaks to `[proxy] upstream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default).
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (RFC 9113 §3.3), e.g. for a gRPC app.
    H2c,
}

/// A `[[proxy.routes]]` entry: requests under `prefix` use `service`, or pass untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// A path prefix, matched on segment boundaries (`/api` matches `/api` and `/api/x`).
    pub prefix: String,
    /// `Some(service)` to exchange with that provider, `None` to skip exchange.
    pub service: Option<String>,
}

/// `[proxy]`.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The listener.
    pub listen: SocketAddr,
    /// `host:port` of the application.
    pub upstream: Option<String>,
    /// The service whose provider mints tokens for proxied requests (and `/tokens`' default).
    pub service: Option<String>,
    /// Requests without a bearer token.
    pub on_missing: OnMissing,
    /// Per-path services, first match wins.
    pub routes: Vec<Route>,
    /// Upstream TCP connect timeout.
    pub connect_timeout: Duration,
    /// Upstream read timeout (between reads, not total).
    pub read_timeout: Duration,
    /// HTTP/1.1 or h2c to the upstream.
    pub upstream_protocol: UpstreamProtocol,
    /// Worker threads (default: the CPUs this process may run on, `available_parallelism`).
    pub threads: Option<usize>,
    /// Whether a client's `X-Forwarded-*` headers come from a trusted proxy.
    pub trust_forwarded_headers: bool,
    /// How long SIGTERM waits for in-flight requests.
    pub grace_period: Duration,
    /// A client connection with no request in flight for this long is closed; `None` (set
    /// to 0) keeps it open.
    pub idle_timeout: Option<Duration>,
    /// An HTTP/1 request head not complete this long after its first byte gets 408 and the
    /// connection is closed; `None` (set to 0) waits for ever.
    pub header_timeout: Option<Duration>,
    /// TLS on the listener (`[proxy] tls`), or `None` for cleartext HTTP/1.1 and h2c.
    pub tls: Option<TlsFiles>,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The admin listener.
    pub listen: SocketAddr,
    /// The admin API's bearer token (from `token_env`); without one the API is off.
    pub token: Option<Secret>,
    /// Where entries written through the admin API are kept; without one the API is
    /// read-only.
    pub state_file: Option<PathBuf>,
    /// The AES-256-GCM key that seals the state file's secrets (from `master_key_env`).
    pub master_key: Option<Secret>,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// The table path (`idps[2].mapping."role.$"`), empty for the document.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Entries written through the admin API, their secrets unsealed, each with the name its
/// errors carry (`idps[iss=…]`). `Debug` shows the names only: the specs hold secrets.
#[derive(Default)]
pub struct ApiEntries {
    /// Signing keys.
    pub keys: Vec<(String, KeySpec)>,
    /// Identity providers.
    pub idps: Vec<(String, IdpSpec)>,
    /// Token providers.
    pub token_providers: Vec<(String, TokenProviderSpec)>,
}

struct Loader<'a> {
    source: &'a str,
    base_dir: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

/// Where an element sits: its table path and its span in the file (none for an entry
/// written through the admin API, which is no part of the file).
#[derive(Clone)]
struct Place {
    path: String,
    span: Option<Range<usize>>,
}

impl Place {
    /// An entry of the admin API's state, named by its identity (`idps[iss=…]`).
    fn api_entry<T>((path, spec): (String, T)) -> (T, Self) {
        (spec, Self { path, span: None })
    }

    /// Whether the entry comes from the admin API (its secrets are sealed in the state
    /// file, so "inline in the file" warnings do not apply).
    fn is_api(&self) -> bool {
        self.span.is_none()
    }
}

impl fmt::Debug for ApiEntries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn names<T>(entries: &[(String, T)]) -> Vec<&str> {
            entries.iter().map(|(name, _)| name.as_str()).collect()
        }
        f.debug_struct("ApiEntries")
            .field("keys", &names(&self.keys))
            .field("idps", &names(&self.idps))
            .field("token_providers", &names(&self.token_providers))
            .finish()
    }
}

// === impl Config ===

impl Config {
    /// Reads and validates the file at `path`. Relative `*_file` paths are resolved against
    /// the file's directory; `*_env` names are read from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        Self::from_file_text(path, &Self::read_file(path)?, ApiEntries::default())
    }

    /// The text of the config file at `path`.
    pub fn read_file(path: &Path) -> Result<String, ConfigErrors> {
        std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                position: None,
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })
    }

    /// Validates `source`, the text of the config file at `path` (its `*_file` paths are
    /// resolved against the file's directory, its `*_env` names read from the process
    /// environment), with the admin API's entries after the file's.
    pub fn from_file_text(
        path: &Path,
        source: &str,
        api: ApiEntries,
    ) -> Result<Self, ConfigErrors> {
        let base_dir = path.parent().unwrap_or(Path::new("."));
        Self::from_toml_with(source, base_dir, &|name| std::env::var(name).ok(), api)
    }

    /// Validates a config document. `env` looks up environment variables (injectable for tests).
    pub fn from_toml(
        source: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        Self::from_toml_with(source, base_dir, env, ApiEntries::default())
    }

    /// [`Config::from_toml`], with the admin API's entries validated after the file's (the
    /// same rules; an API entry that clashes with a file entry is an error).
    pub fn from_toml_with(
        source: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        api: ApiEntries,
    ) -> Result<Self, ConfigErrors> {
        let mut loader = Loader {
            source,
            base_dir,
            env,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let config = loader.load(api);
        if loader.errors.is_empty() {
            Ok(config)
        } else {
            loader
                .errors
                .sort_by_key(|e| (e.position.is_none(), e.position));
            Err(ConfigErrors(loader.errors))
        }
    }

    /// The token provider of `service`.
    pub fn provider(&self, service: &str) -> Option<&Arc<TokenProvider>> {
        self.token_providers.iter().find(|p| p.service == service)
    }
}

// === impl Loader ===

impl Loader<'_> {
    fn load(&mut self, api: ApiEntries) -> Config {
        let (root, syntax_errors) = DeTable::parse_recoverable(self.source);
        for e in syntax_errors {
            self.error_at(e.span(), String::new(), e.message().to_owned());
        }
        let mut server = ServerSpec::default();
        let mut proxy = ProxySpec::default();
        let mut admin = AdminSpec::default();
        let (mut keys, mut idps, mut providers) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in root.into_inner() {
            let name = key.get_ref().to_string();
            match name.as_str() {
                "server" => server = self.section(value, &name).unwrap_or_default(),
                "proxy" => proxy = self.section(value, &name).unwrap_or_default(),
                "admin" => admin = self.section(value, &name).unwrap_or_default(),
                "keys" => keys = self.array::<KeySpec>(value, &name),
                "idps" => idps = self.array::<IdpSpec>(value, &name),
                "token_providers" => providers = self.array::<TokenProviderSpec>(value, &name),
                _ => self.error_at(
                    Some(key.span()),
                    name.clone(),
                    "unknown section; expected server, proxy, admin, keys, idps or token_providers"
                        .to_owned(),
                ),
            }
        }

        keys.extend(api.keys.into_iter().map(Place::api_entry));
        idps.extend(api.idps.into_iter().map(Place::api_entry));
        providers.extend(api.token_providers.into_iter().map(Place::api_entry));

        let server = self.server(server);
        let keys: Vec<Arc<SigningKey>> = keys
            .into_iter()
            .filter_map(|(spec, place)| self.key(spec, &place))
            .map(Arc::new)
            .collect();
        self.duplicates(keys.iter().map(|k| k.id().to_owned()), "keys", "key id");
        let idps: Vec<(Arc<IdentityProvider>, Place)> = idps
            .into_iter()
            .filter_map(|(spec, place)| self.idp(spec, &place).map(|idp| (Arc::new(idp), place)))
            .collect();
        self.duplicate_idps(&idps);
        let providers: Vec<Arc<TokenProvider>> = providers
            .into_iter()
            .filter_map(|(spec, place)| self.provider(spec, &place, &keys, &server))
            .map(Arc::new)
            .collect();
        self.duplicates(
            providers.iter().map(|p| p.service.clone()),
            "token_providers",
            "service",
        );
        let proxy = self.proxy(proxy, &providers);
        let admin = self.admin(admin);
        Config {
            server,
            proxy,
            admin,
            keys,
            idps: idps.into_iter().map(|(idp, _)| idp).collect(),
            token_providers: providers,
            warnings: std::mem::take(&mut self.warnings),
        }
    }

    fn section<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        path: &str,
    ) -> Option<T> {
        let span = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(spec) => Some(spec),
            Err(e) => {
                self.error_at(
                    e.span().or(Some(span)),
                    path.to_owned(),
                    e.message().to_owned(),
                );
                None
            }
        }
    }

    fn array<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        name: &str,
    ) -> Vec<(T, Place)> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.error_at(
                Some(span),
                name.to_owned(),
                format!("expected an array of tables ([[{name}]])"),
            );
            return Vec::new();
        };
        items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let place = Place {
                    path: format!("{name}[{i}]"),
                    span: Some(item.span()),
                };
                self.section(item, &place.path).map(|spec| (spec, place))
            })
            .collect()
    }

    fn server(&mut self, spec: ServerSpec) -> ServerConfig {
        if let Some(org) = &spec.org
            && (org.is_empty() || org.contains('/'))
        {
            self.error(None, "server.org", "an org id, non-empty and without `/`");
        }
        let issuer = spec.issuer.unwrap_or_else(|| DEFAULT_ISSUER.to_owned());
        let public_url = spec
            .public_url
            .unwrap_or_else(|| issuer.clone())
            .trim_end_matches('/')
            .to_owned();
        let log_format = match spec.log_format.as_deref() {
            None | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => {
                self.error(
                    None,
                    "server.log_format",
                    &format!("unknown format {other:?}; expected \"human\" or \"json\""),
                );
                LogFormat::Human
            }
        };
        let cors_origins = spec.cors_origins.unwrap_or_default();
        for (i, origin) in cors_origins.iter().enumerate() {
            if origin == "*" {
                self.error(
                    None,
                    &format!("server.cors_origins[{i}]"),
                    "list origins explicitly; `*` would let any site exchange its users' tokens",
                );
            } else if url::Url::parse(origin)
                .map_or(true, |u| u.origin().ascii_serialization() != *origin)
            {
                self.error(
                    None,
                    &format!("server.cors_origins[{i}]"),
                    &format!("{origin:?} is not an origin like \"https://app.example.com\""),
                );
            }
        }
        ServerConfig {
            org: spec.org,
            audience_base: spec.audience_base.map_or_else(
                || DEFAULT_AUDIENCE_BASE.to_owned(),
                |b| b.trim_end_matches('/').to_owned(),
            ),
            tokens_path: self.path_setting(
                spec.tokens_path,
                DEFAULT_TOKENS_PATH,
                "server.tokens_path",
            ),
            jwks_path: self.path_setting(spec.jwks_path, DEFAULT_JWKS_PATH, "server.jwks_path"),
            metadata_path: self.path_setting(
                spec.metadata_path,
                DEFAULT_METADATA_PATH,
                "server.metadata_path",
            ),
            issuer,
            public_url,
            cors_origins,
            log_format,
            watch_config: spec.watch_config.unwrap_or(true),
        }
    }

    fn path_setting(
        &mut self,
        setting: Option<PathSetting>,
        default: &str,
        path: &str,
    ) -> Option<String> {
        match setting {
            None | Some(PathSetting::Enabled(true)) => Some(default.to_owned()),
            Some(PathSetting::Enabled(false)) => None,
            Some(PathSetting::Path(p)) if p.starts_with('/') => Some(p),
            Some(PathSetting::Path(p)) => {
                self.error(
                    None,
                    path,
                    &format!("{p:?} must start with `/` (or be false to turn it off)"),
                );
                None
            }
        }
    }

    fn proxy(&mut self, spec: ProxySpec, providers: &[Arc<TokenProvider>]) -> ProxyConfig {
        let check_service = |loader: &mut Self, service: &str, path: &str| {
            if !providers.iter().any(|p| p.service == service) {
                loader.error(
                    None,
                    path,
                    &format!("no [[token_providers]] entry has service {service:?}"),
                );
            }
        };
        if let Some(service) = &spec.service {
            check_service(self, service, "proxy.service");
        }
        let on_missing = match spec.on_missing.as_deref() {
            None | Some("reject") => OnMissing::Reject,
            Some("forward") => OnMissing::Forward,
            Some(other) => {
                self.error(
                    None,
                    "proxy.on_missing",
                    &format!("unknown value {other:?}; expected \"reject\" or \"forward\""),
                );
                OnMissing::Reject
            }
        };
        let mut routes = Vec::new();
        for (i, route) in spec.routes.into_iter().enumerate() {
            let path = format!("proxy.routes[{i}]");
            if !route.prefix.starts_with('/') {
                self.error(
                    None,
                    &format!("{path}.prefix"),
                    "a path prefix starting with `/`",
                );
            } else if request_path::normalize(&route.prefix)
                .map_or(true, |normal| normal != route.prefix.as_str())
            {
                // Routes match the normalized request path: a prefix that is not normal itself
                // (`/a/../b`, `/a//b`, `/%61`) could never match, or not what it says.
                self.error(
                    None,
                    &format!("{path}.prefix"),
                    "a normalized path (no `.` or `..` segments, no `//`, no escaped unreserved characters)",
                );
            }
            match (&route.service, route.skip) {
                (Some(service), false) => check_service(self, service, &format!("{path}.service")),
                (None, true) => {}
                _ => self.error(None, &path, "set either service = \"...\" or skip = true"),
            }
            routes.push(Route {
                prefix: route.prefix.trim_end_matches('/').to_owned(),
                service: route.service.filter(|_| !route.skip),
            });
        }
        let place = Place {
            path: "proxy".to_owned(),
            span: Some(0..0),
        };
        let connect_timeout = self.duration(
            spec.connect_timeout.as_ref(),
            DEFAULT_CONNECT_TIMEOUT,
            &place,
            "connect_timeout",
        );
        let read_timeout = self.duration(
            spec.read_timeout.as_ref(),
            DEFAULT_READ_TIMEOUT,
            &place,
            "read_timeout",
        );
        let grace_period = self.duration(
            spec.grace_period.as_ref(),
            DEFAULT_GRACE_PERIOD,
            &place,
            "grace_period",
        );
        // 0 turns either off, as in Envoy.
        let idle_timeout = Some(self.duration(
            spec.idle_timeout.as_ref(),
            DEFAULT_IDLE_TIMEOUT,
            &place,
            "idle_timeout",
        ))
        .filter(|timeout| !timeout.is_zero());
        let header_timeout = Some(self.duration(
            spec.header_timeout.as_ref(),
            DEFAULT_HEADER_TIMEOUT,
            &place,
            "header_timeout",
        ))
        .filter(|timeout| !timeout.is_zero());
        if spec.threads == Some(0) {
            self.error(None, "proxy.threads", "at least one thread");
        }
        let upstream_protocol = match spec.upstream_protocol.as_deref() {
            None | Some("http1") => UpstreamProtocol::Http1,
            Some("h2c") => UpstreamProtocol::H2c,
            Some(other) => {
                self.error(
                    None,
                    "proxy.upstream_protocol",
                    &format!("unknown value {other:?}; expected \"http1\" or \"h2c\""),
                );
                UpstreamProtocol::Http1
            }
        };
        let tls = spec.tls.map(|tls| TlsFiles {
            cert_file: self.resolve(&tls.cert_file),
            key_file: self.resolve(&tls.key_file),
        });
        if let Some(files) = &tls {
            // Loaded here so that `baton check`, the start and a reload all refuse a pair that
            // could not be served, with its place; the listener loads it again when it starts.
            if let Err(e) = CertificatePair::load(files) {
                self.error(
                    None,
                    &format!("proxy.tls.{}", e.file().config_field()),
                    &e.to_string(),
                );
            }
        }
        ProxyConfig {
            listen: self.socket_addr(spec.listen.as_deref(), DEFAULT_PROXY_LISTEN, "proxy.listen"),
            upstream: spec.upstream,
            service: spec.service,
            on_missing,
            routes,
            connect_timeout,
            read_timeout,
            upstream_protocol,
            threads: spec.threads,
            trust_forwarded_headers: spec.trust_forwarded_headers,
            grace_period,
            idle_timeout,
            header_timeout,
            tls,
        }
    }

    fn admin(&mut self, spec: AdminSpec) -> AdminConfig {
        let listen = self.socket_addr(spec.listen.as_deref(), DEFAULT_ADMIN_LISTEN, "admin.listen");
        let place = Place {
            path: "admin".to_owned(),
            span: None,
        };
        let token = self
            .optional_secret(
                &place,
                &[
                    ("token_env", spec.token_env.as_deref(), SecretFrom::Env),
                    ("token_file", spec.token_file.as_deref(), SecretFrom::File),
                ],
            )
            .map(|(_, token)| token);
        let master_key = self
            .optional_secret(
                &place,
                &[
                    (
                        "master_key_env",
                        spec.master_key_env.as_deref(),
                        SecretFrom::Env,
                    ),
                    (
                        "master_key_file",
                        spec.master_key_file.as_deref(),
                        SecretFrom::File,
                    ),
                ],
            )
            .and_then(
                |(field, value)| match crate::state::master_key(value.expose()) {
                    Ok(key) => Some(key),
                    Err(e) => {
                        self.error(None, &format!("admin.{field}"), &e);
                        None
                    }
                },
            );
        let state_file = spec.state_file.as_deref().map(|file| self.resolve(file));
        if state_file.is_some() {
            if spec.master_key_env.is_none() && spec.master_key_file.is_none() {
                self.error(
                    None,
                    "admin.state_file",
                    "a state file needs master_key_env or master_key_file (its secrets are sealed with that key)",
                );
            }
            if spec.token_env.is_none() && spec.token_file.is_none() {
                self.error(
                    None,
                    "admin.state_file",
                    "a state file is written through the admin API, which needs token_env or token_file",
                );
            }
        }
        AdminConfig {
            listen,
            token,
            state_file,
            master_key,
        }
    }

    fn socket_addr(&mut self, text: Option<&str>, default: &str, path: &str) -> SocketAddr {
        let text = text.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.error(
                None,
                path,
                &format!("`{text}` is not an address like 127.0.0.1:8080"),
            );
            // Never served: the config is rejected with the error above.
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    fn key(&mut self, spec: KeySpec, place: &Place) -> Option<SigningKey> {
        let at = Some(place);
        if spec.id.is_empty() {
            self.error(
                at,
                &format!("{}.id", place.path),
                "a non-empty key id, e.g. \"sbk_main\"",
            );
        }
        let alg = match algorithm::parse(&spec.algorithm) {
            Ok(alg) => alg,
            Err(e) => {
                self.error(at, &format!("{}.algorithm", place.path), &e);
                return None;
            }
        };
        let secret = self.one_secret(
            place,
            &[
                ("secret_env", spec.secret_env.as_deref(), SecretFrom::Env),
                ("secret_file", spec.secret_file.as_deref(), SecretFrom::File),
                ("secret", spec.secret.as_deref(), SecretFrom::Inline),
                (
                    "private_key_env",
                    spec.private_key_env.as_deref(),
                    SecretFrom::Env,
                ),
                (
                    "private_key_file",
                    spec.private_key_file.as_deref(),
                    SecretFrom::File,
                ),
            ],
        )?;
        let (field, material) = secret;
        let is_secret_field = field.starts_with("secret");
        let loaded = match (algorithm::is_hmac(alg), is_secret_field) {
            (true, true) => SigningKey::hmac(&spec.id, alg, &material),
            (false, false) => SigningKey::from_private_pem(&spec.id, alg, material.expose()),
            (true, false) => {
                self.error(
                    at,
                    &format!("{}.{field}", place.path),
                    &format!(
                        "{} is HMAC: give secret_env or secret_file, not a private key",
                        spec.algorithm
                    ),
                );
                return None;
            }
            (false, true) => {
                self.error(
                    at,
                    &format!("{}.{field}", place.path),
                    &format!(
                        "{} needs a private key: give private_key_file or private_key_env",
                        spec.algorithm
                    ),
                );
                return None;
            }
        };
        if field == "secret" && !place.is_api() {
            self.warnings.push(format!(
                "{}: the secret is inline in the file; use secret_env or secret_file outside demos",
                place.path
            ));
        }
        match loaded {
            Ok(key) => Some(if spec.retired { key.retire() } else { key }),
            Err(e) => {
                self.error(at, &format!("{}.{field}", place.path), &e.0);
                None
            }
        }
    }

    /// Reads the one secret among `sources` that is set, when one is (none is no error; an
    /// empty one is).
    fn optional_secret(
        &mut self,
        place: &Place,
        sources: &[(&'static str, Option<&str>, SecretFrom)],
    ) -> Option<(&'static str, Secret)> {
        if sources.iter().all(|(_, value, _)| value.is_none()) {
            return None;
        }
        let (field, secret) = self.one_secret(place, sources)?;
        if secret.expose().is_empty() {
            self.error(Some(place), &format!("{}.{field}", place.path), "is empty");
            return None;
        }
        Some((field, secret))
    }

    /// Reads the one secret among `sources` that is set. Errors when none or several are.
    fn one_secret(
        &mut self,
        place: &Place,
        sources: &[(&'static str, Option<&str>, SecretFrom)],
    ) -> Option<(&'static str, Secret)> {
        let set: Vec<_> = sources.iter().filter(|(_, v, _)| v.is_some()).collect();
        let names: Vec<&str> = sources.iter().map(|(n, _, _)| *n).collect();
        match set.as_slice() {
            [] => {
                self.error(
                    Some(place),
                    &place.path,
                    &format!("no key material: set one of {}", names.join(", ")),
                );
                None
            }
            [(field, Some(value), from)] => {
                let path = format!("{}.{field}", place.path);
                let read = match from {
                    SecretFrom::Env => (self.env)(value)
                        .map(|v| Secret::new(v.into_bytes()))
                        .ok_or_else(|| format!("environment variable {value} is not set")),
                    SecretFrom::File => {
                        let file = self.resolve(value);
                        std::fs::read(&file)
                            .map(|bytes| Secret::new(trim_trailing_newline(bytes)))
                            .map_err(|e| format!("cannot read {}: {e}", file.display()))
                    }
                    SecretFrom::Inline => Ok(Secret::new(value.as_bytes())),
                };
                match read {
                    Ok(secret) => Some((field, secret)),
                    Err(e) => {
                        self.error(Some(place), &path, &e);
                        None
                    }
                }
            }
            several => {
                let given: Vec<&str> = several.iter().map(|(n, _, _)| *n).collect();
                self.error(
                    Some(place),
                    &place.path,
                    &format!(
                        "several key sources ({}); set exactly one",
                        given.join(", ")
                    ),
                );
                None
            }
        }
    }

    fn idp(&mut self, spec: IdpSpec, place: &Place) -> Option<IdentityProvider> {
        let at = Some(place);
        let path = &place.path;
        let errors_before = self.errors.len();
        if spec.issuer.is_none() && spec.audience.is_none() {
            self.error(at, path, "an IdP needs an issuer, an audience, or both");
        }
        let algorithms: Vec<Algorithm> = match &spec.algorithms {
            None => vec![Algorithm::RS256],
            Some(names) if names.is_empty() => {
                self.error(at, &format!("{path}.algorithms"), "at least one algorithm");
                Vec::new()
            }
            Some(names) => names
                .iter()
                .enumerate()
                .filter_map(|(i, name)| {
                    algorithm::parse(name)
                        .map_err(|e| self.error(at, &format!("{path}.algorithms[{i}]"), &e))
                        .ok()
                })
                .collect(),
        };
        let keys = self.idp_key_source(&spec, place, &algorithms);
        let url_policy = idp_url_policy(&spec);
        let leeway = self.duration(spec.leeway.as_ref(), DEFAULT_LEEWAY, place, "leeway");
        let mapping = self.mapping(&spec.mapping, place);
        if self.errors.len() > errors_before {
            return None;
        }
        let name = spec
            .name
            .or_else(|| spec.issuer.clone())
            .or_else(|| spec.audience.clone())
            .unwrap_or_default();
        Some(IdentityProvider {
            name: name.into(),
            issuer: spec.issuer,
            audience: spec.audience,
            algorithms,
            keys: keys?,
            url_policy,
            leeway,
            mapping: mapping?,
        })
    }

    fn idp_key_source(
        &mut self,
        spec: &IdpSpec,
        place: &Place,
        algorithms: &[Algorithm],
    ) -> Option<KeySource> {
        let at = Some(place);
        let path = &place.path;
        let mut sources = Vec::new();
        if spec.jwks_url.is_some() {
            sources.push("jwks_url");
        }
        if spec.discovery {
            sources.push("discovery");
        }
        for (name, set) in [
            ("key", spec.key.is_some()),
            ("key_env", spec.key_env.is_some()),
            ("key_file", spec.key_file.is_some()),
        ] {
            if set {
                sources.push(name);
            }
        }
        if sources.len() != 1 {
            let problem = if sources.is_empty() {
                "no key source".to_owned()
            } else {
                format!("several key sources ({})", sources.join(", "))
            };
            self.error(
                at,
                path,
                &format!("{problem}; set exactly one of jwks_url, discovery = true, key, key_env, key_file"),
            );
            return None;
        }
        let hmac_algs: Vec<&str> = algorithms
            .iter()
            .filter(|a| algorithm::is_hmac(**a))
            .map(|a| algorithm::name(*a))
            .collect();
        let refuse_hmac_with = |loader: &mut Self, what: &str| {
            loader.error(
                at,
                &format!("{path}.algorithms"),
                &format!(
                    "{} with {what}: HMAC needs a shared secret (key, key_env or key_file), \
                     never a published key",
                    hmac_algs.join(", ")
                ),
            );
        };
        if spec.allow_http && !place.is_api() {
            self.warnings.push(format!(
                "{path}: allow_http = true: its keys may come over plain http from any host, where \
                 anyone on the network path can swap them; use it on a trusted network only"
            ));
        }
        if let Some(url) = &spec.jwks_url {
            if !hmac_algs.is_empty() {
                refuse_hmac_with(self, "a JWKS");
            }
            match url::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    match url_policy::check_url(&parsed, idp_url_policy(spec)) {
                        Ok(()) => return Some(KeySource::JwksUrl(url.clone())),
                        Err(refusal) => self.error(
                            at,
                            &format!("{path}.jwks_url"),
                            &refusal_message(&refusal, place),
                        ),
                    }
                }
                _ => self.error(
                    at,
                    &format!("{path}.jwks_url"),
                    &format!("`{url}` is not an http(s) URL"),
                ),
            }
            return None;
        }
        if spec.discovery {
            if !hmac_algs.is_empty() {
                refuse_hmac_with(self, "OIDC discovery");
            }
            let Some(issuer) = &spec.issuer else {
                self.error(
                    at,
                    &format!("{path}.discovery"),
                    "discovery needs an issuer",
                );
                return Some(KeySource::Discovery);
            };
            // Discovery fetches a URL made of the issuer: the issuer obeys the URL rule.
            let discovery_url = crate::idp::jwks::discovery_url(issuer);
            match url::Url::parse(&discovery_url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    if let Err(refusal) = url_policy::check_url(&parsed, idp_url_policy(spec)) {
                        self.error(
                            at,
                            &format!("{path}.issuer"),
                            &format!(
                                "{} (discovery fetches {discovery_url})",
                                refusal_message(&refusal, place)
                            ),
                        );
                    }
                }
                _ => self.error(
                    at,
                    &format!("{path}.issuer"),
                    &format!(
                        "`{issuer}` is not an http(s) URL, which discovery needs \
                         ({{issuer}}/.well-known/openid-configuration)"
                    ),
                ),
            }
            return Some(KeySource::Discovery);
        }
        if spec.allow_http {
            self.error(
                at,
                &format!("{path}.allow_http"),
                "allow_http applies to jwks_url and discovery only; this IdP's key is given here",
            );
        }
        let (field, material) = self.one_secret(
            place,
            &[
                ("key", spec.key.as_deref(), SecretFrom::Inline),
                ("key_env", spec.key_env.as_deref(), SecretFrom::Env),
                ("key_file", spec.key_file.as_deref(), SecretFrom::File),
            ],
        )?;
        let bytes = if field == "key" {
            // State Backed's `key` field: the key's bytes, base64url.
            match base64::engine::general_purpose::GeneralPurpose::new(
                &base64::alphabet::URL_SAFE,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            )
            .decode(material.expose())
            {
                Ok(bytes) => Secret::new(bytes),
                Err(_) => {
                    self.error(
                        at,
                        &format!("{path}.key"),
                        "`key` is the key's bytes in base64url (State Backed's format)",
                    );
                    return None;
                }
            }
        } else {
            material
        };
        let key = match static_key(bytes.expose(), algorithms) {
            Ok(key) => key,
            Err(e) => {
                self.error(at, &format!("{path}.{field}"), &e);
                return None;
            }
        };
        for alg in algorithms {
            if alg.family() != key.family() {
                let message = if key.family() == AlgorithmFamily::Hmac {
                    format!(
                        "{} needs a public key, but this key is an HMAC secret",
                        algorithm::name(*alg)
                    )
                } else if algorithm::is_hmac(*alg) {
                    format!(
                        "{} (HMAC) is never verified with a public key",
                        algorithm::name(*alg)
                    )
                } else {
                    format!(
                        "{} does not fit this {:?} key",
                        algorithm::name(*alg),
                        key.family()
                    )
                };
                self.error(at, &format!("{path}.algorithms"), &message);
            }
        }
        if field == "key" && key.family() == AlgorithmFamily::Hmac && !place.is_api() {
            self.warnings.push(format!(
                "{path}: the HMAC secret is inline in the file; use key_env or key_file outside demos"
            ));
        }
        Some(KeySource::Static(Box::new(key)))
    }

    fn provider(
        &mut self,
        spec: TokenProviderSpec,
        place: &Place,
        keys: &[Arc<SigningKey>],
        server: &ServerConfig,
    ) -> Option<TokenProvider> {
        let at = Some(place);
        let path = &place.path;
        let errors_before = self.errors.len();
        if !valid_service(&spec.service) {
            self.error(
                at,
                &format!("{path}.service"),
                &format!("{:?} must match ^[a-zA-Z0-9_-]{{1,128}}$", spec.service),
            );
        }
        let key = keys.iter().find(|k| k.id() == spec.key);
        match key {
            None => self.error(
                at,
                &format!("{path}.key"),
                &format!("no [[keys]] entry has id {:?}", spec.key),
            ),
            Some(k) if k.is_retired() => self.error(
                at,
                &format!("{path}.key"),
                &format!("key {:?} is retired and no longer signs", spec.key),
            ),
            Some(_) => {}
        }
        let profile = match spec.profile.as_deref() {
            None | Some("statebacked") => Profile::StateBacked,
            Some("access_token") => Profile::AccessToken,
            Some(other) => {
                self.error(
                    at,
                    &format!("{path}.profile"),
                    &format!(
                        "unknown profile {other:?}; expected \"statebacked\" or \"access_token\""
                    ),
                );
                Profile::StateBacked
            }
        };
        let ttl = self.duration(spec.ttl.as_ref(), DEFAULT_TTL, place, "ttl");
        if ttl.as_secs() == 0 {
            self.error(
                at,
                &format!("{path}.ttl"),
                "a lifetime of at least one second",
            );
        }
        let mapping = self.mapping(&spec.mapping, place);
        if profile == Profile::AccessToken {
            for key in spec.mapping.keys() {
                let output = key.strip_suffix(crate::mapping::PATH_SUFFIX).unwrap_or(key);
                if REGISTERED_CLAIMS.contains(&output) {
                    self.error(
                        at,
                        &format!("{path}.mapping.{}", quote_key(key)),
                        &format!(
                            "`{output}` is set by baton on access tokens; the mapping may not produce it"
                        ),
                    );
                }
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        let clients = self.clients(&spec.clients, place);
        let audience = spec.audience.unwrap_or_else(|| match profile {
            Profile::StateBacked => STATEBACKED_AUDIENCE.to_owned(),
            Profile::AccessToken => spec.service.clone(),
        });
        let mut provider = TokenProvider::new(
            spec.service,
            Arc::clone(key?),
            mapping?,
            ttl,
            profile,
            audience,
            server.issuer.clone(),
        );
        provider.clients = clients?;
        Some(provider)
    }

    fn clients(&mut self, specs: &[ClientSpec], place: &Place) -> Option<Vec<ClientCredential>> {
        let mut clients = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let client_place = Place {
                path: format!("{}.clients[{i}]", place.path),
                span: place.span.clone(),
            };
            if spec.id.is_empty() || spec.id.contains(':') {
                self.error(
                    Some(&client_place),
                    &format!("{}.id", client_place.path),
                    "a non-empty client id without `:`",
                );
            }
            let (field, secret) = self.one_secret(
                &client_place,
                &[
                    ("secret_env", spec.secret_env.as_deref(), SecretFrom::Env),
                    ("secret_file", spec.secret_file.as_deref(), SecretFrom::File),
                    ("secret", spec.secret.as_deref(), SecretFrom::Inline),
                ],
            )?;
            if field == "secret" {
                self.warnings.push(format!(
                    "{}: the client secret is inline in the file; use secret_env or secret_file outside demos",
                    client_place.path
                ));
            }
            clients.push(ClientCredential {
                id: spec.id.clone(),
                secret,
            });
        }
        self.duplicates(
            clients.iter().map(|c| c.id.clone()),
            &format!("{}.clients", place.path),
            "client id",
        );
        Some(clients)
    }

    fn mapping(
        &mut self,
        mapping: &serde_json::Map<String, serde_json::Value>,
        place: &Place,
    ) -> Option<ClaimMapper> {
        match ClaimMapper::compile(mapping) {
            Ok(mapper) => Some(mapper),
            Err(errors) => {
                for e in errors {
                    let mut key = format!("{}.mapping", place.path);
                    if !e.key_path.is_empty() {
                        key = format!("{key}.{}", e.key_path.join("."));
                    }
                    self.error(Some(place), &key, &e.reason);
                }
                None
            }
        }
    }

    fn duration(
        &mut self,
        spec: Option<&DurationSpec>,
        default: Duration,
        place: &Place,
        field: &str,
    ) -> Duration {
        match spec {
            None => default,
            Some(DurationSpec::Seconds(s)) => Duration::from_secs(*s),
            Some(DurationSpec::Text(text)) => parse_duration(text).unwrap_or_else(|e| {
                self.error(Some(place), &format!("{}.{field}", place.path), &e);
                default
            }),
        }
    }

    fn duplicates(&mut self, names: impl Iterator<Item = String>, section: &str, what: &str) {
        let mut seen = std::collections::HashSet::new();
        for name in names {
            if !seen.insert(name.clone()) {
                self.error(
                    None,
                    section,
                    &format!("two entries have the {what} {name:?}"),
                );
            }
        }
    }

    fn duplicate_idps(&mut self, idps: &[(Arc<IdentityProvider>, Place)]) {
        for (i, (idp, place)) in idps.iter().enumerate() {
            if let Some((_, first)) = idps[..i]
                .iter()
                .find(|(other, _)| other.issuer == idp.issuer && other.audience == idp.audience)
            {
                self.error(
                    Some(place),
                    &place.path,
                    &format!(
                        "same issuer and audience as {}: a token could not tell them apart",
                        first.path
                    ),
                );
            }
        }
    }

    fn resolve(&self, file: &str) -> PathBuf {
        let file = Path::new(file);
        if file.is_absolute() {
            file.to_owned()
        } else {
            self.base_dir.join(file)
        }
    }

    fn error(&mut self, place: Option<&Place>, path: &str, message: &str) {
        self.error_at(
            place.and_then(|p| p.span.clone()),
            path.to_owned(),
            message.to_owned(),
        );
    }

    fn error_at(&mut self, span: Option<Range<usize>>, path: String, message: String) {
        let position = span.map(|span| line_column(self.source, span.start));
        self.errors.push(ConfigError {
            position,
            path,
            message,
        });
    }
}

enum SecretFrom {
    Env,
    File,
    Inline,
}

/// Reads a static IdP key: a PEM public key, a JWK, or else an HMAC secret's bytes.
fn static_key(bytes: &[u8], algorithms: &[Algorithm]) -> Result<Verifier, String> {
    let trimmed = bytes.trim_ascii();
    if trimmed.starts_with(b"-----BEGIN") {
        if trimmed.windows(11).any(|w| w == b"PRIVATE KEY") {
            return Err("this is a private key; give the IdP's public key".to_owned());
        }
        let family = algorithms
            .iter()
            .map(|a| a.family())
            .find(|f| *f != AlgorithmFamily::Hmac)
            .ok_or("an HMAC algorithm is never verified with a public key")?;
        return Verifier::from_public_pem(family, trimmed).map_err(|e| e.0);
    }
    if trimmed.starts_with(b"{") {
        let jwk: Jwk = serde_json::from_slice(trimmed).map_err(|e| format!("not a JWK: {e}"))?;
        return Verifier::from_jwk(&jwk).map_err(|e| format!("unusable JWK: {e}"));
    }
    if bytes.is_empty() {
        return Err("the key is empty".to_owned());
    }
    Ok(Verifier::hmac(bytes))
}

/// The URL rule of an IdP's key fetches: `allow_http` relaxes it.
fn idp_url_policy(spec: &IdpSpec) -> UrlPolicy {
    if spec.allow_http {
        UrlPolicy::InsecureHttpAllowed
    } else {
        UrlPolicy::HttpsOrLoopback
    }
}

/// What a refused IdP URL's error says. Entries of the admin API have no `allow_http` (State
/// Backed's API has no such field, and a weaker check takes access to the config file).
fn refusal_message(refusal: &UrlRefusal, place: &Place) -> String {
    match refusal {
        UrlRefusal::PlainHttp if place.is_api() => "must be https (or a loopback address); \
             allow_http is for [[idps]] entries of the config file only"
            .to_owned(),
        other => other.to_string(),
    }
}

/// Whether `service` matches `^[a-zA-Z0-9_-]{1,128}$`.
pub fn valid_service(service: &str) -> bool {
    (1..=128).contains(&service.len())
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn trim_trailing_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    bytes
}

fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.position {
            write!(f, "{line}:{column}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "{count} error{} in the configuration:",
            if count == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
