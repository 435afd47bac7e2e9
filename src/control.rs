//! The running configuration and its two sources: the TOML file (reloaded on SIGHUP and when
//! it changes) and the admin API's state (changed by its writes).
//!
//! Every change — a file reload or an admin write — builds the whole configuration (file +
//! state) with the file's rules, and swaps it in only when it is valid: a bad change is
//! refused and the running configuration keeps serving. An admin write is saved to the state
//! file before it is served, so what baton serves is always what a restart would load.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::{Config, ConfigErrors};
use crate::proxy::Gateway;
use crate::secret::Secret;
use crate::state::{AdminError, ApiState};

/// Owns configuration changes for one gateway.
#[derive(Debug)]
pub struct Control {
    gateway: Arc<Gateway>,
    config_path: PathBuf,
    /// `[admin] state_file` and `master_key_env` as they were at start (they change only at
    /// restart, like the listen addresses).
    state_file: Option<PathBuf>,
    master_key: Option<Secret>,
    /// The admin API's entries. The lock also orders changes one after another.
    state: Mutex<ApiState>,
}

/// A configuration with the admin API's state over it, as loaded at start.
#[derive(Debug)]
pub struct Loaded {
    /// The whole configuration.
    pub config: Config,
    /// The admin API's entries in it.
    pub state: ApiState,
}

// === impl Control ===

impl Control {
    /// Reads the state file named by `file_config` (the config file alone) and loads the
    /// configuration with it. A state file that cannot be read or unsealed, or whose entries
    /// no longer fit the file, stops the start: serving without them would drop IdPs and
    /// providers that clients rely on.
    pub fn load(config_path: &std::path::Path, file_config: Config) -> Result<Loaded, String> {
        let Some(state_file) = &file_config.admin.state_file else {
            return Ok(Loaded {
                config: file_config,
                state: ApiState::empty(),
            });
        };
        let state = ApiState::load(state_file).map_err(|e| e.to_string())?;
        if state == ApiState::empty() {
            return Ok(Loaded {
                config: file_config,
                state,
            });
        }
        let config = build(config_path, file_config.admin.master_key.as_ref(), &state)
            .map_err(|e| format!("{}: {e}", state_file.display()))?;
        Ok(Loaded { config, state })
    }

    /// Takes charge of `gateway`, whose configuration came from [`Control::load`].
    pub fn new(gateway: Arc<Gateway>, config_path: PathBuf, state: ApiState) -> Self {
        let admin = gateway.exchanger().config().admin.clone();
        Self {
            gateway,
            config_path,
            state_file: admin.state_file,
            master_key: admin.master_key,
            state: Mutex::new(state),
        }
    }

    /// The gateway.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The config file.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// The running configuration.
    pub fn config(&self) -> Arc<Config> {
        self.gateway.exchanger().config()
    }

    /// A copy of the admin API's entries.
    pub fn state(&self) -> ApiState {
        self.state.lock().clone()
    }

    /// Reloads the config file (with the admin API's entries over it). A bad file is logged
    /// and the running configuration kept.
    pub fn reload_file(&self) -> bool {
        let state = self.state.lock();
        match build(&self.config_path, self.master_key.as_ref(), &state) {
            Ok(config) => {
                let old = self.config();
                if (old.proxy.listen, old.admin.listen, old.proxy.threads)
                    != (
                        config.proxy.listen,
                        config.admin.listen,
                        config.proxy.threads,
                    )
                    || old.admin.state_file != config.admin.state_file
                {
                    tracing::warn!(
                        "listen addresses, threads and the state file change only at restart"
                    );
                }
                crate::server::apply(&self.gateway, config)
            }
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(error = %e, "configuration rejected; the old one keeps serving");
                }
                false
            }
        }
    }

    /// Applies an admin API change: `change` edits a copy of the state (seeing the running
    /// configuration), the whole configuration is rebuilt and validated, the state file is
    /// written, and the new configuration served. Any failure leaves everything as it was.
    pub fn change<T>(
        &self,
        change: impl FnOnce(&mut ApiState, &Config, &Secret) -> Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        let (Some(state_file), Some(master_key)) = (&self.state_file, &self.master_key) else {
            return Err(AdminError::Conflict(
                "the admin API is read-only: set [admin] state_file and master_key_env to write"
                    .to_owned(),
            ));
        };
        let mut state = self.state.lock();
        let mut candidate = state.clone();
        let answer = change(&mut candidate, &self.config(), master_key)?;
        let config = build(&self.config_path, Some(master_key), &candidate).map_err(|errors| {
            AdminError::Invalid(
                errors
                    .0
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        candidate.save(state_file)?;
        if !crate::server::apply(&self.gateway, config) {
            // Only an unresolvable upstream fails here, and the file's upstream was resolved
            // by the running configuration; restore the file so restarts match what serves.
            state.save(state_file)?;
            return Err(AdminError::Storage(
                "the new configuration could not be applied; nothing changed".to_owned(),
            ));
        }
        *state = candidate;
        Ok(answer)
    }
}

/// The configuration of the file at `path` with `state`'s entries over it.
fn build(
    path: &std::path::Path,
    master_key: Option<&Secret>,
    state: &ApiState,
) -> Result<Config, ConfigErrors> {
    let storage_error = |message: String| {
        ConfigErrors(vec![crate::config::ConfigError {
            position: None,
            path: "admin.state_file".to_owned(),
            message,
        }])
    };
    let entries = if *state == ApiState::empty() {
        Default::default()
    } else {
        let master_key = master_key.ok_or_else(|| {
            storage_error("the state file has entries but no master_key_env opens them".to_owned())
        })?;
        state
            .entries(master_key)
            .map_err(|e| storage_error(e.to_string()))?
    };
    Config::load_with(path, entries)
}
