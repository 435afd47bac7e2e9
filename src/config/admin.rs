//! `[admin]`: the admin listener, its token, the state file and its master key.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::keys::SecretFrom;
use super::spec::AdminSpec;
use super::{Loader, Place};
use crate::secret::{self, Secret};

/// The admin listener unless `[admin] listen` is set.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

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

impl Loader<'_> {
    pub(super) fn admin(&mut self, spec: AdminSpec) -> AdminConfig {
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
            .and_then(|(field, value)| match secret::master_key(value.expose()) {
                Ok(key) => Some(key),
                Err(e) => {
                    self.error(None, &format!("admin.{field}"), &e);
                    None
                }
            });
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
}
