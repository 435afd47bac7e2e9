//! Configuration: the TOML file, parsed into [`spec`] structs, then validated into the
//! runtime types the pipeline uses.
//!
//! Every error in a file is reported at once, each with its line and column and its table
//! path (`idps[2].mapping."role.$"`), and with what was expected.

mod admin;
mod conditions;
mod duration;
mod forward_auth;
mod idps;
mod keys;
mod providers;
mod proxy;
mod server;
pub mod spec;
mod store;
mod telemetry;

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use admin::{AdminConfig, DEFAULT_ADMIN_LISTEN};
pub use duration::parse_duration;
pub use forward_auth::{DEFAULT_FORWARD_AUTH_LISTEN, ForwardAuthConfig, OriginalRequest};
pub use providers::valid_service;
pub use proxy::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_GRACE_PERIOD, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_PROXY_LISTEN, DEFAULT_READ_TIMEOUT, OnMissing, ProxyConfig, Route, UpstreamProtocol,
};
pub use server::{
    DEFAULT_AUDIENCE_BASE, DEFAULT_ISSUER, DEFAULT_JWKS_PATH, DEFAULT_METADATA_PATH,
    DEFAULT_TOKENS_PATH, LogFormat, ServerConfig,
};
use spec::{
    AdminSpec, DurationSpec, ForwardAuthSpec, IdpSpec, KeySpec, ProxySpec, ServerSpec, StoreSpec,
    TelemetrySpec, TokenProviderSpec,
};
pub use store::StoreConfig;
pub use telemetry::{DEFAULT_EXPORT_INTERVAL, TelemetryConfig};

use crate::idp::IdentityProvider;
use crate::mapping::ClaimMapper;
use crate::mint::TokenProvider;
use crate::mint::keys::SigningKey;

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[proxy]`.
    pub proxy: ProxyConfig,
    /// `[forward_auth]`, when set.
    pub forward_auth: Option<ForwardAuthConfig>,
    /// `[telemetry]`.
    pub telemetry: TelemetryConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[store]`, when the admin API's entries live in PostgreSQL instead of a state file.
    pub store: Option<StoreConfig>,
    /// `[[keys]]`.
    pub keys: Vec<Arc<SigningKey>>,
    /// `[[idps]]`, in file order.
    pub idps: Vec<Arc<IdentityProvider>>,
    /// `[[token_providers]]`, in file order.
    pub token_providers: Vec<Arc<TokenProvider>>,
    /// Things that load but deserve a look (an inline secret, say).
    pub warnings: Vec<String>,
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
        let mut forward_auth: Option<ForwardAuthSpec> = None;
        let mut telemetry = TelemetrySpec::default();
        let mut admin = AdminSpec::default();
        let mut store: Option<StoreSpec> = None;
        let (mut keys, mut idps, mut providers) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in root.into_inner() {
            let name = key.get_ref().to_string();
            match name.as_str() {
                "server" => server = self.section(value, &name).unwrap_or_default(),
                "proxy" => proxy = self.section(value, &name).unwrap_or_default(),
                "telemetry" => telemetry = self.section(value, &name).unwrap_or_default(),
                "forward_auth" => {
                    forward_auth = Some(self.section(value, &name).unwrap_or_default());
                }
                "admin" => admin = self.section(value, &name).unwrap_or_default(),
                "store" => store = Some(self.section(value, &name).unwrap_or_default()),
                "keys" => keys = self.array::<KeySpec>(value, &name),
                "idps" => idps = self.array::<IdpSpec>(value, &name),
                "token_providers" => providers = self.array::<TokenProviderSpec>(value, &name),
                _ => self.error_at(
                    Some(key.span()),
                    name.clone(),
                    "unknown section; expected server, proxy, forward_auth, admin, store, telemetry, \
                     keys, idps or token_providers"
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
        // Every entry's name, also of those with errors: a client's `idps` naming one of
        // them is not a second error.
        let idp_names: Vec<String> = idps.iter().map(|(spec, _)| spec.name()).collect();
        let idps: Vec<(Arc<IdentityProvider>, Place)> = idps
            .into_iter()
            .filter_map(|(spec, place)| self.idp(spec, &place).map(|idp| (Arc::new(idp), place)))
            .collect();
        self.duplicate_idps(&idps);
        self.introspection_selection(&idps);
        let providers: Vec<Arc<TokenProvider>> = providers
            .into_iter()
            .filter_map(|(spec, place)| self.provider(spec, &place, &keys, &server, &idp_names))
            .map(Arc::new)
            .collect();
        self.duplicates(
            providers.iter().map(|p| p.service.clone()),
            "token_providers",
            "service",
        );
        let forward_auth = forward_auth.map(|spec| self.forward_auth(spec));
        let proxy = self.proxy(proxy, &providers, forward_auth.is_some());
        let admin = self.admin(admin);
        let store = store.map(|spec| self.store(spec, &admin));
        let telemetry = self.telemetry(telemetry);
        Config {
            server,
            proxy,
            forward_auth,
            telemetry,
            admin,
            store: store.flatten(),
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
