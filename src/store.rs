//! `[store]`: the admin API's entries in PostgreSQL, shared by a fleet of batons.
//!
//! The store keeps the same sealed, MAC'd document a state file holds ([`ApiState`]), as an
//! append-only table of revisions (`baton_revisions`). The MAC also covers the revision's
//! number, so a row edited outside baton, or a document copied into another revision, is
//! refused with the reason: by a write (nothing is written) and by every baton loading it
//! (it keeps serving what it has). A dump without the master key holds no secret.
//!
//! A write is one transaction under an advisory lock: read the latest revision and verify
//! it, apply the change, build and validate the whole configuration (this baton's file +
//! the new entries), insert the next revision, prune old ones, `NOTIFY`, commit. Two writes
//! through two batons at once are thus applied one after the other, the second validated
//! against the first's result. Only after the commit does the writing baton serve it.
//!
//! Each baton follows the store ([`Store::follow`]): a `LISTEN` connection wakes it on each
//! commit, and the latest revision is also polled every [`POLL_INTERVAL`], so a lost
//! notification or a reconnect never leaves it behind. With the store down it keeps
//! serving the last revision it loaded (fail static), reconnects with backoff, and admin
//! writes answer 503. Each loaded revision is written to `[store] snapshot_file` (sealed
//! like a state file), from which a baton can start while the store is unreachable.
//!
//! The schema is versioned (`baton_schema`) and created or migrated by baton only
//! (`baton store migrate`, or `[store] migrate = true` at start). Every statement with a
//! value is parameterized.

pub mod status;
mod tls;

pub use status::StoreStatus;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, GenericClient};

use crate::config::StoreConfig;
use crate::secret::Secret;
use crate::state::{AdminError, ApiState};
use tls::MakeRustls;

/// The schema version this baton reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// How often a baton checks the latest revision besides the notifications.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How many revisions the store keeps (older ones are pruned by each write).
pub const KEEP_REVISIONS: i64 = 100;

/// The migrations, in order: migration `i` brings the schema from version `i` to `i + 1`.
/// Only constant DDL here (no values).
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = ["CREATE TABLE baton_revisions (
         revision bigint PRIMARY KEY CHECK (revision > 0),
         document text NOT NULL,
         written_at timestamptz NOT NULL DEFAULT now(),
         written_by text NOT NULL
     );
     CREATE SEQUENCE baton_revision_seq AS bigint;"];

/// The advisory lock every write and migration holds ("baton" and 1).
const LOCK: i64 = 0x6261_746f_6e00_0001;

/// The channel of the change notifications (its payload: the new revision).
const CHANNEL: &str = "baton_revision";

/// How long a connection attempt, and a statement, may take before the store counts as
/// unreachable (a host that drops packets would otherwise hold a write or the follower).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a transaction of baton's may sit idle before the server ends it (and frees the
/// write lock): far longer than any write's own work between two statements.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(30);

/// The follower's reconnect backoff: doubles from the first to the cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

const NOT_MIGRATED: &str = "the store has no baton schema yet: run `baton store migrate --config \
                            <file>` (or set [store] migrate = true)";

/// The store of one baton: its settings, its write connection, its follower's status.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    master_key: Secret,
    tls: MakeRustls,
    /// The connection writes use, opened on the first write and again after a failure. The
    /// lock also orders this baton's writes.
    writer: tokio::sync::Mutex<Option<Client>>,
    status: Arc<StoreStatus>,
    /// `written_by` of this baton's revisions: host and process.
    written_by: String,
}

/// Serves a revision the follower loaded (the control plane's `apply_revision`); the error
/// says why it cannot be served. Blocks: the follower runs it on a blocking thread.
pub type ApplyRevision = Arc<dyn Fn(ApiState) -> Result<(), String> + Send + Sync>;

/// The revision a baton starts with.
#[derive(Debug)]
pub struct Start {
    /// The entries, their revision set.
    pub state: ApiState,
    /// Why it came from the snapshot file rather than the store, when it did.
    pub from_snapshot: Option<String>,
}

/// What `baton store migrate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// The schema was at this version (0: none) and is now at [`SCHEMA_VERSION`].
    Migrated {
        /// The version before.
        from: i32,
    },
    /// The schema was already at [`SCHEMA_VERSION`].
    UpToDate,
}

// === impl Store ===

impl Store {
    /// The store of `config`, its secrets sealed with `master_key`. Connects to nothing yet.
    pub fn new(config: &StoreConfig, master_key: &Secret) -> Result<Self, String> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        Ok(Self {
            config: config.clone(),
            master_key: master_key.clone(),
            tls: MakeRustls::new(config.ca_file.as_deref())?,
            writer: tokio::sync::Mutex::new(None),
            status: Arc::new(StoreStatus::default()),
            written_by: format!("{host} pid {}", std::process::id()),
        })
    }

    /// The follower's status.
    pub fn status(&self) -> &Arc<StoreStatus> {
        &self.status
    }

    /// `[store] snapshot_file`.
    pub fn snapshot_file(&self) -> Option<&Path> {
        self.config.snapshot_file.as_deref()
    }

    /// Writes `state` (a revision served) to `[store] snapshot_file`, when set, sealed and
    /// atomically replaced like a state file. A failure is logged: serving goes on, only a
    /// start without the store would miss it.
    pub fn save_snapshot(&self, state: &ApiState) {
        let Some(file) = self.snapshot_file() else {
            return;
        };
        if let Err(e) = state.save(file, &self.master_key) {
            tracing::warn!(error = %e, "cannot write the store's snapshot file");
        }
    }

    /// Creates the schema, or migrates it to [`SCHEMA_VERSION`], under the write lock (two
    /// batons migrating at once do it once).
    pub async fn migrate(&self) -> Result<Migration, AdminError> {
        let mut client = self.connect().await?;
        let transaction = timed(client.transaction()).await?;
        timed(transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])).await?;
        timed(
            transaction.batch_execute(
                "CREATE TABLE IF NOT EXISTS baton_schema (version integer NOT NULL)",
            ),
        )
        .await?;
        let from = schema_version(&transaction).await?.unwrap_or(0);
        if from == SCHEMA_VERSION {
            return Ok(Migration::UpToDate);
        }
        newer_schema(from)?;
        for migration in &MIGRATIONS[usize::try_from(from).unwrap_or(0)..] {
            timed(transaction.batch_execute(migration)).await?;
        }
        timed(transaction.execute("DELETE FROM baton_schema", &[])).await?;
        timed(transaction.execute(
            "INSERT INTO baton_schema (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        ))
        .await?;
        timed(transaction.commit()).await?;
        Ok(Migration::Migrated { from })
    }

    /// The revision to start with, read on a runtime of its own (the serving one does not
    /// run yet): the store's latest (migrating first with `[store] migrate`), or, when the
    /// store is unreachable, the snapshot file's. An unmigrated or newer schema, or a
    /// latest revision that does not verify, stops the start with the reason.
    pub fn load_at_start(&self) -> Result<Start, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime to read the store: {e}"))?;
        let from_store = runtime.block_on(async {
            if self.config.migrate {
                self.migrate().await?;
            }
            let client = self.connect().await?;
            check_schema(&client).await?;
            latest(&client, &self.master_key).await
        });
        match from_store {
            Ok(state) => Ok(Start {
                state,
                from_snapshot: None,
            }),
            Err(AdminError::Unavailable(reason)) => {
                let Some(file) = self.snapshot_file().filter(|f| f.exists()) else {
                    return Err(format!(
                        "the store is unreachable ({reason}) and there is no snapshot file \
                         ([store] snapshot_file) to start from"
                    ));
                };
                let state = ApiState::load(file, &self.master_key).map_err(|e| e.to_string())?;
                if state.revision().is_none() {
                    return Err(format!(
                        "the snapshot file {} holds no store revision (a state file?)",
                        file.display()
                    ));
                }
                Ok(Start {
                    state,
                    from_snapshot: Some(reason),
                })
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Commits a change as the next revision: under the store's lock, `prepare` gets the
    /// latest revision's entries (verified) and returns the new entries once the whole
    /// configuration built from them is valid; they are inserted as the next revision and
    /// announced. Returns the new entries (their revision set) and `prepare`'s answer. An
    /// error changes nothing in the store; [`AdminError::Unavailable`] when it cannot be
    /// reached (a failure during the commit itself may have committed: the follower then
    /// loads it).
    pub async fn commit<T>(
        &self,
        prepare: impl FnOnce(ApiState) -> Result<(ApiState, T), AdminError>,
    ) -> Result<(ApiState, T), AdminError> {
        let mut writer = self.writer.lock().await;
        if writer.as_ref().is_none_or(Client::is_closed) {
            *writer = Some(self.connect().await?);
        }
        let Some(client) = writer.as_mut() else {
            // Set just above.
            return Err(AdminError::Unavailable("no store connection".to_owned()));
        };
        let result = self.commit_on(client, &self.master_key, prepare).await;
        if matches!(result, Err(AdminError::Unavailable(_))) {
            // A broken or timed-out connection: the next write opens another.
            *writer = None;
        }
        result
    }

    /// Seals every secret of the latest revision, which opens with `old` (the master key
    /// before a rotation), with this store's master key instead, and commits that as the next
    /// revision. Batons still on `old` refuse it and keep serving what they have until they
    /// restart with the new key. Returns the new revision.
    pub async fn reseal(&self, old: &Secret) -> Result<i64, AdminError> {
        let mut client = self.connect().await?;
        check_schema(&client).await?;
        let (state, ()) = self
            .commit_on(&mut client, old, |latest| {
                Ok((latest.reseal(old, &self.master_key)?, ()))
            })
            .await?;
        Ok(state.revision().unwrap_or(0))
    }

    /// [`Store::commit`] on `client`; the latest revision is verified with `read_key`.
    async fn commit_on<T>(
        &self,
        client: &mut Client,
        read_key: &Secret,
        prepare: impl FnOnce(ApiState) -> Result<(ApiState, T), AdminError>,
    ) -> Result<(ApiState, T), AdminError> {
        let transaction = timed(client.transaction()).await?;
        timed(transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])).await?;
        // Read after the lock: this statement sees every write that held it before.
        let current = latest(&transaction, read_key).await?;
        // Dropping the transaction on an error rolls it back.
        let (next, answer) = prepare(current)?;
        let row = timed(transaction.query_one("SELECT nextval('baton_revision_seq')", &[])).await?;
        let revision: i64 = row.try_get(0).map_err(failure)?;
        let next = next.with_revision(revision);
        let document = String::from_utf8(next.to_document(&self.master_key)?)
            .map_err(|_| AdminError::Storage("the document is not UTF-8".to_owned()))?;
        timed(transaction.execute(
            "INSERT INTO baton_revisions (revision, document, written_by) VALUES ($1, $2, $3)",
            &[&revision, &document, &self.written_by],
        ))
        .await?;
        timed(transaction.execute(
            "DELETE FROM baton_revisions WHERE revision <= $1",
            &[&(revision - KEEP_REVISIONS)],
        ))
        .await?;
        // Delivered at commit, to every baton listening.
        timed(transaction.execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &revision.to_string()],
        ))
        .await?;
        timed(transaction.commit()).await?;
        Ok((next, answer))
    }

    /// Follows the store: loads each new revision (woken by `NOTIFY`, and polled every
    /// [`POLL_INTERVAL`]) and hands it to `apply`, reconnecting with backoff. Runs until
    /// dropped.
    pub async fn follow(self: Arc<Self>, apply: ApplyRevision) {
        let mut backoff = BACKOFF_FIRST;
        // Whether a connection was lost or an attempt failed before: the next connection is
        // then a reconnect (the first one is not).
        let mut reconnecting = false;
        let mut refused = None;
        loop {
            match self.listen().await {
                Ok((client, mut notified)) => {
                    if reconnecting {
                        self.status.reconnects.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            revision = self.status.revision(),
                            "reconnected to the store"
                        );
                    }
                    self.status.connected.store(true, Ordering::Release);
                    backoff = BACKOFF_FIRST;
                    let lost = loop {
                        if let Err(e) = self.catch_up(&client, &apply, &mut refused).await {
                            break e;
                        }
                        tokio::select! {
                            note = notified.recv() => {
                                if note.is_none() {
                                    break AdminError::Unavailable("the connection closed".to_owned());
                                }
                                // Several commits, one load of the latest.
                                while notified.try_recv().is_ok() {}
                            }
                            () = tokio::time::sleep(POLL_INTERVAL) => {}
                        }
                    };
                    reconnecting = true;
                    self.status.connected.store(false, Ordering::Release);
                    tracing::warn!(
                        error = %lost,
                        revision = self.status.revision(),
                        "lost the store; serving the last revision loaded, reconnecting"
                    );
                }
                Err(e) => {
                    reconnecting = true;
                    self.status.connected.store(false, Ordering::Release);
                    // Unreachable: said once, when the connection was lost. Anything else (a
                    // schema gone, a refused login) needs someone: said at each attempt.
                    if matches!(e, AdminError::Unavailable(_)) {
                        tracing::debug!(error = %e, "cannot reach the store; retrying");
                    } else {
                        tracing::warn!(error = %e, "cannot follow the store; retrying");
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Loads the latest revision if it is newer than the one served. One that does not
    /// verify, or does not build with this baton's file, is logged once and skipped (the
    /// one served keeps serving); only a lost connection is an error.
    async fn catch_up(
        &self,
        client: &Client,
        apply: &ApplyRevision,
        refused: &mut Option<i64>,
    ) -> Result<(), AdminError> {
        let row = timed(client.query_one("SELECT max(revision) FROM baton_revisions", &[])).await?;
        let latest: Option<i64> = row.try_get(0).map_err(failure)?;
        let served = self.status.revision();
        let Some(latest) = latest.filter(|r| *r != served) else {
            return Ok(());
        };
        if *refused == Some(latest) {
            return Ok(());
        }
        if latest < served {
            // Never back to an older revision (a rollback by whoever can delete rows). A
            // database restored from a backup needs the batons restarted.
            *refused = Some(latest);
            tracing::warn!(
                revision = latest,
                serving = served,
                "the store's latest revision is older than the one served (rows deleted, or \
                 the database restored from a backup?); keeping the one served until a newer \
                 revision, or a restart"
            );
            return Ok(());
        }
        let row = timed(client.query_opt(
            "SELECT document FROM baton_revisions WHERE revision = $1",
            &[&latest],
        ))
        .await?;
        // Pruned in between: a newer one is there, the next round loads it.
        let Some(row) = row else { return Ok(()) };
        let document: String = row.try_get(0).map_err(failure)?;
        let applied = match verify(latest, &document, &self.master_key) {
            Ok(state) => {
                let apply = Arc::clone(apply);
                tokio::task::spawn_blocking(move || apply(state))
                    .await
                    .unwrap_or_else(|e| Err(format!("the load did not finish: {e}")))
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = applied {
            *refused = Some(latest);
            tracing::error!(
                revision = latest,
                error = %reason,
                serving = self.status.revision(),
                "refusing a store revision; the one served keeps serving"
            );
        }
        Ok(())
    }

    /// A connection whose notifications wake the returned receiver (closed with it).
    async fn listen(&self) -> Result<(Client, tokio::sync::mpsc::Receiver<()>), AdminError> {
        let (client, mut connection) =
            tokio::time::timeout(CONNECT_TIMEOUT, self.settings().connect(self.tls.clone()))
                .await
                .map_err(|_| unreachable_in("connecting"))?
                .map_err(failure)?;
        let (notify, notified) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    // A full channel already holds a wake-up.
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        if let Err(TrySendError::Closed(())) = notify.try_send(()) {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "the store's listen connection ended");
                        break;
                    }
                    None => break,
                }
            }
        });
        timed(client.batch_execute(&format!("LISTEN {CHANNEL}"))).await?;
        check_schema(&client).await?;
        Ok((client, notified))
    }

    /// A connection, its I/O driven by a task of its own.
    async fn connect(&self) -> Result<Client, AdminError> {
        let (client, connection) =
            tokio::time::timeout(CONNECT_TIMEOUT, self.settings().connect(self.tls.clone()))
                .await
                .map_err(|_| unreachable_in("connecting"))?
                .map_err(failure)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a store connection ended");
            }
        });
        Ok(client)
    }

    fn settings(&self) -> tokio_postgres::Config {
        let mut settings = self.config.postgres.clone();
        settings
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("baton")
            // A database host gone silent is noticed in about 20 s instead of hours.
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(2);
        if self.config.tls_required {
            settings.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        // A baton stopped in the middle of a write (SIGSTOP, a frozen VM) would hold the
        // write lock for ever: the server ends its transaction after this long instead.
        let options = format!(
            "{} -c idle_in_transaction_session_timeout={}s",
            settings.get_options().unwrap_or_default(),
            IDLE_IN_TRANSACTION.as_secs()
        );
        settings.options(options.trim_start());
        settings
    }
}

/// Parses and verifies the document of `revision`: its MAC (which covers the revision it
/// names) and that it names this revision.
fn verify(revision: i64, document: &str, master_key: &Secret) -> Result<ApiState, AdminError> {
    let what = format!("revision {revision} in the store");
    let state = ApiState::from_document(document.as_bytes(), &what, master_key)?;
    if state.revision() != Some(revision) {
        return Err(AdminError::Storage(format!(
            "{what} holds the document of revision {} (copied outside baton)",
            state
                .revision()
                .map_or("none".to_owned(), |r| r.to_string())
        )));
    }
    Ok(state)
}

/// The latest revision's entries, verified (an empty state at revision 0 before the first
/// write).
async fn latest(client: &impl GenericClient, master_key: &Secret) -> Result<ApiState, AdminError> {
    let row = timed(client.query_opt(
        "SELECT revision, document FROM baton_revisions ORDER BY revision DESC LIMIT 1",
        &[],
    ))
    .await?;
    let Some(row) = row else {
        return Ok(ApiState::empty().with_revision(0));
    };
    let revision: i64 = row.try_get(0).map_err(failure)?;
    let document: String = row.try_get(1).map_err(failure)?;
    verify(revision, &document, master_key)
}

/// Refuses a schema other than [`SCHEMA_VERSION`], naming what to do.
async fn check_schema(client: &impl GenericClient) -> Result<(), AdminError> {
    let row =
        timed(client.query_one("SELECT to_regclass('baton_schema') IS NOT NULL", &[])).await?;
    let exists: bool = row.try_get(0).map_err(failure)?;
    if !exists {
        return Err(AdminError::Storage(NOT_MIGRATED.to_owned()));
    }
    match schema_version(client).await? {
        Some(SCHEMA_VERSION) => Ok(()),
        Some(version) if version > SCHEMA_VERSION => newer_schema(version),
        Some(version) => Err(AdminError::Storage(format!(
            "the store's schema is version {version}; this baton needs {SCHEMA_VERSION}: run \
             `baton store migrate --config <file>` (or set [store] migrate = true)"
        ))),
        None => Err(AdminError::Storage(NOT_MIGRATED.to_owned())),
    }
}

async fn schema_version(client: &impl GenericClient) -> Result<Option<i32>, AdminError> {
    let row = timed(client.query_one("SELECT max(version) FROM baton_schema", &[])).await?;
    row.try_get(0).map_err(failure)
}

fn newer_schema(version: i32) -> Result<(), AdminError> {
    if version > SCHEMA_VERSION {
        return Err(AdminError::Storage(format!(
            "the store's schema is version {version}, newer than this baton's \
             {SCHEMA_VERSION}: run a newer baton"
        )));
    }
    Ok(())
}

/// `future` (a statement), bounded by [`STATEMENT_TIMEOUT`].
async fn timed<T>(
    future: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, AdminError> {
    tokio::time::timeout(STATEMENT_TIMEOUT, future)
        .await
        .map_err(|_| unreachable_in("a statement"))?
        .map_err(failure)
}

fn unreachable_in(what: &str) -> AdminError {
    AdminError::Unavailable(format!(
        "the store did not answer within {}s ({what})",
        STATEMENT_TIMEOUT.as_secs()
    ))
}

/// A database error as an admin error: unreachable (503) when the connection failed or the
/// server is going away or overloaded, else a storage error (500).
fn failure(e: tokio_postgres::Error) -> AdminError {
    // The causes too: "error performing TLS handshake" alone does not say which certificate
    // was refused. None of them holds the URL's password.
    let mut message = format!("the store: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let Some(db) = e.as_db_error() else {
        return AdminError::Unavailable(message);
    };
    let message = format!("the store: {}", db.message());
    let code = db.code().code();
    if db.code() == &SqlState::UNDEFINED_TABLE {
        return AdminError::Storage(NOT_MIGRATED.to_owned());
    }
    // 08: connection exception; 57: operator intervention (shutdown, starting up);
    // 53: insufficient resources; 40: serialization failure or deadlock (retry).
    if ["08", "57", "53", "40"]
        .iter()
        .any(|class| code.starts_with(class))
    {
        AdminError::Unavailable(message)
    } else {
        AdminError::Storage(message)
    }
}
