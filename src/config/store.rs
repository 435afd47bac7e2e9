//! `[store]`: the admin API's entries in PostgreSQL, shared by every baton of a fleet
//! ([`crate::store`]), instead of one process's `[admin] state_file`.

use std::fmt;
use std::path::PathBuf;

use super::keys::SecretFrom;
use super::spec::StoreSpec;
use super::{AdminConfig, Loader, Place};
use crate::secret::Secret;

/// `[store]`.
#[derive(Clone)]
pub struct StoreConfig {
    /// The URL as given (compared by reloads; never logged).
    pub url: Secret,
    /// The connection settings parsed from the URL (its password included: `Debug` of this
    /// type shows the host and database only).
    pub postgres: tokio_postgres::Config,
    /// Whether the URL asks for TLS (`sslmode=require`, `verify-ca` or `verify-full`): then
    /// baton never falls back to cleartext. With TLS, baton always verifies the database's
    /// certificate and name (rustls has no unverified mode), whichever of them was asked.
    pub tls_required: bool,
    /// PEM roots that verify the database's certificate; the system's roots without one.
    pub ca_file: Option<PathBuf>,
    /// The last loaded revision, sealed like a state file, for a start while the store is
    /// unreachable.
    pub snapshot_file: Option<PathBuf>,
    /// Create or migrate the schema at start.
    pub migrate: bool,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("hosts", &self.postgres.get_hosts())
            .field("dbname", &self.postgres.get_dbname())
            .field("tls_required", &self.tls_required)
            .field("snapshot_file", &self.snapshot_file)
            .field("migrate", &self.migrate)
            .finish_non_exhaustive()
    }
}

impl PartialEq for StoreConfig {
    /// Whether two configs name the same store the same way (a reload's "changes only at
    /// restart" warning compares them).
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
            && (
                self.tls_required,
                &self.ca_file,
                &self.snapshot_file,
                self.migrate,
            ) == (
                other.tls_required,
                &other.ca_file,
                &other.snapshot_file,
                other.migrate,
            )
    }
}

impl Loader<'_> {
    pub(super) fn store(&mut self, spec: StoreSpec, admin: &AdminConfig) -> Option<StoreConfig> {
        let place = Place {
            path: "store".to_owned(),
            span: None,
        };
        if admin.state_file.is_some() {
            self.error(
                None,
                "store",
                "[store] and [admin] state_file are exclusive: the admin API's entries live in \
                 one of them (the state file for a single baton, the store for a fleet)",
            );
        }
        if admin.master_key.is_none() {
            self.error(
                None,
                "store",
                "a store needs [admin] master_key_env or master_key_file (its secrets are sealed \
                 and its revisions MAC'd with that key)",
            );
        }
        if admin.token.is_none() {
            self.error(
                None,
                "store",
                "a store is written through the admin API, which needs [admin] token_env or \
                 token_file",
            );
        }
        let url = self.one_secret(
            &place,
            &[
                ("url_env", spec.url_env.as_deref(), SecretFrom::Env),
                ("url_file", spec.url_file.as_deref(), SecretFrom::File),
            ],
        );
        let snapshot_file = spec.snapshot_file.as_deref().map(|f| self.resolve(f));
        let ca_file = spec.ca_file.as_deref().map(|f| self.resolve(f));
        let (field, url) = url?;
        let url = String::from_utf8_lossy(url.expose()).trim().to_owned();
        match parse_url(&url) {
            Ok((postgres, tls_required)) => Some(StoreConfig {
                url: Secret::new(url),
                postgres,
                tls_required,
                ca_file,
                snapshot_file,
                migrate: spec.migrate,
            }),
            Err(message) => {
                self.error(None, &format!("store.{field}"), &message);
                None
            }
        }
    }
}

/// The connection settings of a `postgres://` URL, and whether it asks for TLS. The error
/// never repeats the URL (it may hold a password).
fn parse_url(url: &str) -> Result<(tokio_postgres::Config, bool), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("is not a postgres:// or postgresql:// URL".to_owned());
    }
    // libpq's verifying modes; tokio-postgres knows only `require`, which with rustls
    // verifies as much (the certificate chain and the host name).
    let url = ["verify-full", "verify-ca"]
        .iter()
        .fold(url.to_owned(), |url, mode| {
            url.replace(&format!("sslmode={mode}"), "sslmode=require")
        });
    let postgres: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("is not a URL baton can connect with: {e}"))?;
    let tls_required = postgres.get_ssl_mode() == tokio_postgres::config::SslMode::Require;
    Ok((postgres, tls_required))
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls_ask_for_tls_with_sslmode() {
        let (_, tls) = parse_url("postgres://baton:pw@db.internal/baton").unwrap();
        assert!(!tls);
        for mode in ["require", "verify-ca", "verify-full"] {
            let (config, tls) = parse_url(&format!(
                "postgresql://baton@db.internal/baton?sslmode={mode}"
            ))
            .unwrap();
            assert!(tls, "{mode}");
            assert_eq!(config.get_dbname(), Some("baton"));
        }
    }

    #[test]
    fn errors_never_repeat_the_url() {
        for url in [
            "mysql://root:hunter2@db/x",
            "postgres://root:hunter2@db/x?sslmode=bogus",
        ] {
            let e = parse_url(url).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
