//! `[server]`: the issuer, the audience form, baton's own endpoints, CORS and logging.

use super::Loader;
use super::spec::{PathSetting, ServerSpec};

/// `audience_base` unless `[server]` sets it: State Backed's.
pub const DEFAULT_AUDIENCE_BASE: &str = "https://tokens.statebacked.dev";
/// `iss` of minted tokens unless `[server] issuer` is set.
pub const DEFAULT_ISSUER: &str = "baton";
/// The token-exchange endpoint unless `[server] tokens_path` is set.
pub const DEFAULT_TOKENS_PATH: &str = "/tokens";
/// The published JWKS unless `[server] jwks_path` is set.
pub const DEFAULT_JWKS_PATH: &str = "/.well-known/jwks.json";
/// RFC 8414 metadata unless `[server] metadata_path` is set.
pub const DEFAULT_METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

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

impl Loader<'_> {
    pub(super) fn server(&mut self, spec: ServerSpec) -> ServerConfig {
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
        let cors_origins = self.cors_origins(spec.cors_origins, "server.cors_origins");
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
}

impl Loader<'_> {
    /// A list of browser origins (`[server] cors_origins`, `[proxy] cors_origins`), each
    /// checked to be an origin and not `*`; errors placed under `path`.
    pub(super) fn cors_origins(&mut self, origins: Option<Vec<String>>, path: &str) -> Vec<String> {
        let origins = origins.unwrap_or_default();
        for (i, origin) in origins.iter().enumerate() {
            if origin == "*" {
                self.error(
                    None,
                    &format!("{path}[{i}]"),
                    "list origins explicitly; `*` would let any site use its users' tokens",
                );
            } else if url::Url::parse(origin)
                .map_or(true, |u| u.origin().ascii_serialization() != *origin)
            {
                self.error(
                    None,
                    &format!("{path}[{i}]"),
                    &format!("{origin:?} is not an origin like \"https://app.example.com\""),
                );
            }
        }
        origins
    }
}
