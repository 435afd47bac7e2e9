//! The running configuration and its two sources: the TOML file (reloaded on SIGHUP and when
//! it changes) and the admin API's state (changed by its writes).
//!
//! Every change — a file reload or an admin write — builds the whole configuration (file +
//! state) with the file's rules and swaps it in only when it is valid: a bad change is
//! refused and the running configuration keeps serving. Admin writes build on the file as it
//! was last loaded (an edit not reloaded yet is not applied by a write, and a broken file
//! does not block writes). An admin write is saved to the state file before it is served, so
//! what baton serves is what a restart would load.
//!
//! With `[store]` the entries live in PostgreSQL instead ([`crate::store`]): a write commits
//! the next revision there (validated against the latest one, under the store's lock)
//! before it is served, and revisions written through other batons are loaded as they come.
//!
//! The methods block (file I/O, fsync, DNS for the upstream, the store's round trips):
//! async callers run them with `tokio::task::spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::{ApiEntries, Config, ConfigError, ConfigErrors};
use crate::proxy::Gateway;
use crate::secret::Secret;
use crate::state::{AdminError, ApiState};
use crate::store::Store;

/// Owns configuration changes for one gateway.
#[derive(Debug)]
pub struct Control {
    gateway: Arc<Gateway>,
    config_path: PathBuf,
    /// Where admin writes go, as it was at start (it changes only at restart, like the
    /// listen addresses).
    backend: Backend,
    /// `[admin] master_key_env`'s key, as it was at start.
    master_key: Option<Secret>,
    /// What the running configuration was built from. The lock also orders changes; it is
    /// never held across the store's network round trips (readers take it on the runtime's
    /// threads, which drive those round trips).
    sources: Mutex<Sources>,
    /// Orders this baton's admin writes to the store (held across their round trips, on
    /// blocking threads only).
    store_writes: Mutex<()>,
}

/// Where admin writes are kept.
#[derive(Debug)]
enum Backend {
    /// Nowhere: the admin API is read-only.
    ReadOnly,
    /// `[admin] state_file`.
    File(PathBuf),
    /// `[store]`.
    Store(Arc<Store>),
}

/// What a configuration was built from.
#[derive(Debug)]
pub struct Sources {
    /// The config file's text, as last loaded.
    file: String,
    /// The admin API's entries (with a store, their revision set).
    state: ApiState,
}

/// A configuration loaded at start, and what it was built from.
#[derive(Debug)]
pub struct Loaded {
    /// The whole configuration.
    pub config: Config,
    /// For [`Control::new`].
    pub sources: Sources,
    /// `[store]`'s store, which the entries came from.
    pub store: Option<Arc<Store>>,
    /// What to log once logging is set up (the config decides its format).
    pub notes: Vec<String>,
}

// === impl Control ===

impl Control {
    /// Loads the config file at `path` with the admin API's state (from `[admin]
    /// state_file`) over it. A state file that cannot be read, does not match the master key,
    /// or whose entries no longer fit the file stops the start: serving without its entries
    /// would drop IdPs and providers that clients rely on.
    pub fn load(path: &Path) -> Result<Loaded, String> {
        let file = Config::read_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file_only = Config::from_file_text(path, &file, ApiEntries::default())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let admin = &file_only.admin;
        let mut notes = Vec::new();
        let (state, store, source) = match (&file_only.store, &admin.state_file, &admin.master_key)
        {
            // The config rules make a store come with a master key.
            (Some(store_config), _, Some(master_key)) => {
                let store = Store::new(store_config, master_key)?;
                let start = store.load_at_start()?;
                if let Some(reason) = &start.from_snapshot {
                    notes.push(format!(
                        "the store is unreachable ({reason}): starting from the snapshot file's \
                         revision {}",
                        start.state.revision().unwrap_or(0)
                    ));
                }
                store.status().served(start.state.revision().unwrap_or(0));
                let source = format!("store revision {}", start.state.revision().unwrap_or(0));
                (start.state, Some(Arc::new(store)), source)
            }
            (None, Some(state_file), Some(master_key)) => (
                ApiState::load(state_file, master_key).map_err(|e| e.to_string())?,
                None,
                state_file.display().to_string(),
            ),
            _ => (ApiState::empty(), None, "state".to_owned()),
        };
        let config = if state.is_empty() {
            file_only
        } else {
            build(path, &file, admin.master_key.as_ref(), &state)
                .map_err(|e| format!("{} with {source}: {e}", path.display()))?
        };
        if let Some(store) = &store {
            store.save_snapshot(&state);
        }
        Ok(Loaded {
            config,
            sources: Sources { file, state },
            store,
            notes,
        })
    }

    /// Takes charge of `gateway`, whose configuration was built from `sources`.
    pub fn new(
        gateway: Arc<Gateway>,
        config_path: PathBuf,
        sources: Sources,
        store: Option<Arc<Store>>,
    ) -> Self {
        let admin = gateway.exchanger().config().admin.clone();
        let backend = match (store, admin.state_file) {
            (Some(store), _) => Backend::Store(store),
            (None, Some(file)) => Backend::File(file),
            (None, None) => Backend::ReadOnly,
        };
        Self {
            gateway,
            config_path,
            backend,
            master_key: admin.master_key,
            sources: Mutex::new(sources),
            store_writes: Mutex::new(()),
        }
    }

    /// The store, with `[store]`.
    pub fn store(&self) -> Option<&Arc<Store>> {
        match &self.backend {
            Backend::Store(store) => Some(store),
            _ => None,
        }
    }

    /// The gateway.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The running configuration and the admin API's entries in it, read together.
    pub fn snapshot(&self) -> (Arc<Config>, ApiState) {
        let sources = self.sources.lock();
        (self.gateway.exchanger().config(), sources.state.clone())
    }

    /// Reloads the config file (with the admin API's entries over it). A bad file is logged
    /// and the running configuration kept. Blocks.
    pub fn reload_file(&self) -> bool {
        let applied = self.try_reload_file();
        self.gateway.metrics().config_reload("file", applied);
        applied
    }

    fn try_reload_file(&self) -> bool {
        let mut sources = self.sources.lock();
        let file = match Config::read_file(&self.config_path) {
            Ok(file) => file,
            Err(errors) => return rejected(&errors),
        };
        let config = match build(
            &self.config_path,
            &file,
            self.master_key.as_ref(),
            &sources.state,
        ) {
            Ok(config) => config,
            Err(errors) => return rejected(&errors),
        };
        let old = self.gateway.exchanger().config();
        let forward_auth_listen = |config: &Config| config.forward_auth.as_ref().map(|f| f.listen);
        if (old.proxy.listen, old.admin.listen, old.proxy.threads)
            != (
                config.proxy.listen,
                config.admin.listen,
                config.proxy.threads,
            )
            || forward_auth_listen(&old) != forward_auth_listen(&config)
            || old.telemetry != config.telemetry
            || old.admin.state_file != config.admin.state_file
            || old.admin.master_key != config.admin.master_key
            || old.store != config.store
        {
            tracing::warn!(
                "listen addresses, threads, [telemetry], the state file, the store and the master \
                 key change only at restart"
            );
        }
        let forward_auth_tls = |config: &Config| {
            config
                .forward_auth
                .as_ref()
                .is_some_and(|f| f.tls.is_some())
        };
        if old.proxy.tls.is_some() != config.proxy.tls.is_some()
            || forward_auth_tls(&old) != forward_auth_tls(&config)
        {
            // The listener speaks TLS or cleartext from its start; new certificate paths are
            // followed without a restart (`tls::ServerTls::watch`), turning TLS on or off is not.
            tracing::warn!(
                "turning [proxy] or [forward_auth] tls on or off changes only at restart; a \
                 listener keeps speaking what it spoke at start"
            );
        }
        let upstream = match Gateway::prepare(&config) {
            Ok(upstream) => upstream,
            Err(e) => {
                tracing::error!(error = %e, "configuration rejected; the old one keeps serving");
                return false;
            }
        };
        self.install(config, upstream);
        sources.file = file;
        true
    }

    /// Applies an admin API change: `change` edits a copy of the state (seeing the running
    /// configuration and the master key), the whole configuration is rebuilt and validated,
    /// its upstream resolved, the state file written (the point of no return), and the new
    /// configuration served. A failure before the write changes nothing. Blocks.
    pub fn change<T>(
        &self,
        change: impl FnOnce(&mut ApiState, &Config, &Secret) -> Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        let result = self.try_change(change);
        self.gateway
            .metrics()
            .config_reload("admin", result.is_ok());
        result
    }

    fn try_change<T>(
        &self,
        change: impl FnOnce(&mut ApiState, &Config, &Secret) -> Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        let (state_file, master_key) = match (&self.backend, &self.master_key) {
            (Backend::Store(store), Some(master_key)) => {
                return self.change_store(store, master_key, change);
            }
            (Backend::File(state_file), Some(master_key)) => (state_file, master_key),
            _ => {
                return Err(AdminError::Conflict(
                    "the admin API is read-only: set [admin] state_file (or [store]) and \
                     master_key_env to write"
                        .to_owned(),
                ));
            }
        };
        let mut sources = self.sources.lock();
        let mut candidate = sources.state.clone();
        let answer = change(
            &mut candidate,
            &self.gateway.exchanger().config(),
            master_key,
        )?;
        let config = build(
            &self.config_path,
            &sources.file,
            Some(master_key),
            &candidate,
        )
        .map_err(invalid)?;
        let upstream = Gateway::prepare(&config)
            .map_err(|e| AdminError::Storage(format!("the configuration cannot be served: {e}")))?;
        candidate.save(state_file, master_key)?;
        self.install(config, upstream);
        sources.state = candidate;
        Ok(answer)
    }

    /// An admin write with `[store]`: the change is applied to the store's latest revision
    /// (which may be newer than the one served here) and validated with this baton's file,
    /// within the store's transaction; once committed, the new revision is served here.
    fn change_store<T>(
        &self,
        store: &Store,
        master_key: &Secret,
        change: impl FnOnce(&mut ApiState, &Config, &Secret) -> Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        let _ordered = self.store_writes.lock();
        let (file, served) = {
            let sources = self.sources.lock();
            (sources.file.clone(), sources.state.revision())
        };
        let running = self.gateway.exchanger().config();
        let prepare = |latest: ApiState| {
            // The checks of `change` (read-only entries, keys in use) look at the whole
            // configuration of the latest revision, not at the one served here.
            let base = if latest.revision() == served {
                Arc::clone(&running)
            } else {
                Arc::new(
                    build(&self.config_path, &file, Some(master_key), &latest).map_err(|e| {
                        AdminError::Conflict(format!(
                            "the store's latest revision does not build with this baton's \
                             config file: {}",
                            describe(&e)
                        ))
                    })?,
                )
            };
            let mut candidate = latest;
            let answer = change(&mut candidate, &base, master_key)?;
            let config =
                build(&self.config_path, &file, Some(master_key), &candidate).map_err(invalid)?;
            let upstream = Gateway::prepare(&config).map_err(|e| {
                AdminError::Storage(format!("the configuration cannot be served: {e}"))
            })?;
            Ok((candidate, (answer, config, upstream)))
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| AdminError::Storage("a store write needs the runtime".to_owned()))?;
        let (committed, (answer, config, upstream)) = runtime.block_on(store.commit(prepare))?;
        let mut sources = self.sources.lock();
        // The follower may have loaded this revision (or a newer one) first.
        if committed.revision() > sources.state.revision() {
            self.install(config, upstream);
            store.status().served(committed.revision().unwrap_or(0));
            store.save_snapshot(&committed);
            sources.state = committed;
        }
        Ok(answer)
    }

    /// Serves `state`, a revision the store's follower loaded, built with the config file
    /// as last loaded; an older revision than the one served is skipped. The error says why
    /// it cannot be served (the served one keeps serving). Blocks.
    pub fn apply_revision(&self, state: ApiState) -> Result<(), String> {
        let applied = self.try_apply_revision(state);
        self.gateway
            .metrics()
            .config_reload("store", applied.is_ok());
        applied
    }

    fn try_apply_revision(&self, state: ApiState) -> Result<(), String> {
        let Some(store) = self.store() else {
            return Err("no store".to_owned());
        };
        let mut sources = self.sources.lock();
        if state.revision() <= sources.state.revision() {
            return Ok(());
        }
        let config = build(
            &self.config_path,
            &sources.file,
            self.master_key.as_ref(),
            &state,
        )
        .map_err(|e| {
            format!(
                "it does not build with this baton's config file: {}",
                describe(&e)
            )
        })?;
        let upstream = Gateway::prepare(&config)
            .map_err(|e| format!("the configuration cannot be served: {e}"))?;
        self.install(config, upstream);
        let revision = state.revision().unwrap_or(0);
        store.status().served(revision);
        store.save_snapshot(&state);
        sources.state = state;
        tracing::info!(revision, "loaded a store revision");
        Ok(())
    }

    /// Serves `config`, then fetches its IdPs' keys in the background.
    fn install(&self, config: Config, upstream: crate::proxy::PreparedUpstream) {
        self.gateway.install(config, upstream);
        let exchanger = Arc::clone(self.gateway.exchanger());
        tracing::info!(
            generation = exchanger.generation(),
            "configuration reloaded"
        );
        // Called on a blocking thread of the runtime, or within it: either has a handle.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { exchanger.prefetch_keys().await });
        }
    }
}

/// A configuration error's message, every problem on one line.
fn describe(errors: &ConfigErrors) -> String {
    errors
        .0
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn invalid(errors: ConfigErrors) -> AdminError {
    AdminError::Invalid(describe(&errors))
}

fn rejected(errors: &ConfigErrors) -> bool {
    for e in &errors.0 {
        tracing::error!(error = %e, "configuration rejected; the old one keeps serving");
    }
    false
}

/// The configuration of `file` (the text of the config file at `path`) with `state`'s
/// entries over it.
fn build(
    path: &Path,
    file: &str,
    master_key: Option<&Secret>,
    state: &ApiState,
) -> Result<Config, ConfigErrors> {
    let storage_error = |message: String| {
        ConfigErrors(vec![ConfigError {
            position: None,
            path: "admin.state_file".to_owned(),
            message,
        }])
    };
    let entries = if state.is_empty() {
        ApiEntries::default()
    } else {
        let master_key = master_key.ok_or_else(|| {
            storage_error("the state file has entries but no master_key_env opens them".to_owned())
        })?;
        state
            .entries(master_key)
            .map_err(|e| storage_error(e.to_string()))?
    };
    Config::from_file_text(path, file, entries)
}
