//! The `baton` command: `serve`, `demo`, `check`, `explain`, `keys generate`.

use std::io::Read as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use baton::clock::{FixedClock, SharedClock, SystemClock};
use baton::config::{Config, LogFormat};
use baton::exchange::{Exchanger, ExchangerOptions};
use clap::{Parser, Subcommand};

/// baton: verify any IdP's token, map its claims, mint your own.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar: the proxy, forward-auth, `POST /tokens`, the published keys, the admin
    /// listener.
    Serve {
        /// The TOML config file (reloaded on SIGHUP).
        #[arg(long, short)]
        config: PathBuf,
        /// Log format, overriding `[server] log_format`: human or json.
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Start a complete local setup (demo IdP, echo upstream, baton) and print what to try.
    Demo {
        /// baton's port; the IdP uses the next one, the echo upstream the one after, baton's
        /// admin listener the one after that. 0 picks free ports.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Validate a config file: print every error, or a summary of what it loads.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show how a token would be exchanged: the IdP, each check, the claims at each stage.
    Explain {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The subject token, or `-` to read it from standard input (keeps it out of `ps`).
        #[arg(long)]
        token: String,
        /// The service whose provider mints (default: `[proxy] service`).
        #[arg(long)]
        service: Option<String>,
        /// Check times as of this Unix second instead of now.
        #[arg(long)]
        at: Option<u64>,
        /// Explain the exchange as `/tokens` does for this authenticated client (its `idps`
        /// limit, and `client` in the provider's condition). Default: no client.
        #[arg(long)]
        client: Option<String>,
        /// An actor token (RFC 8693 delegation), from this file, or `-` for standard input
        /// (then `--token` may not be `-` too).
        #[arg(long)]
        actor_token: Option<String>,
    },
    /// Write a commented, working config for a well-known IdP, and a new signing key.
    Init {
        /// auth0, cognito, supabase, keycloak, google, firebase, github-actions, kubernetes
        /// or generic-oidc.
        #[arg(long)]
        preset: String,
        /// The IdP's issuer URL (cognito, keycloak, kubernetes, generic-oidc; supabase).
        #[arg(long)]
        issuer: Option<String>,
        /// The audience its tokens carry (an API identifier, a client id, a project id).
        #[arg(long)]
        audience: Option<String>,
        /// The provider's domain (auth0: the tenant's; supabase: <ref>.supabase.co).
        #[arg(long)]
        domain: Option<String>,
        /// The service baton mints tokens for (default: app).
        #[arg(long)]
        service: Option<String>,
        /// Where to write the config; the key goes beside it as <name>-signing-key.pem.
        #[arg(long, default_value = "baton.toml")]
        out: PathBuf,
    },
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage the `[store]` database.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Create the store's schema, or migrate it to this baton's version.
    Migrate {
        /// The TOML config file (its `[store]` names the database).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Rotate the master key: seal the latest revision's secrets with the config's master key
    /// (they open with the old one), as a new revision.
    Reseal {
        /// The TOML config file, its master key the new one.
        #[arg(long, short)]
        config: PathBuf,
        /// The environment variable holding the old master key (32 bytes, base64).
        #[arg(long)]
        old_master_key_env: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new key id and HMAC secret, or write a new PEM private key.
    Generate {
        /// HS256, HS384, HS512, RS256, PS256, ES256, ES384 or EdDSA.
        #[arg(long)]
        alg: String,
        /// Where to write the PEM (asymmetric keys). Default: standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// mimalloc instead of glibc's malloc: a proxied request allocates and frees a few dozen small
/// buffers, which cost ~3 µs less CPU per request with it, and the minted-token cache (up to
/// 100 000 small tokens) holds ~12 MiB less (`bench/proxy.sh`, `bench/rss.sh`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, log_format } => serve(config, log_format.as_deref()),
        Command::Demo { port } => demo(port),
        Command::Check { config } => check(&config),
        Command::Explain {
            config,
            token,
            service,
            at,
            client,
            actor_token,
        } => explain(
            &config,
            &token,
            actor_token.as_deref(),
            service,
            at,
            client.as_deref(),
        ),
        Command::Keys {
            command: KeysCommand::Generate { alg, out },
        } => generate(&alg, out),
        Command::Init {
            preset,
            issuer,
            audience,
            domain,
            service,
            out,
        } => init(
            &preset,
            &baton::init::InitOptions {
                issuer,
                audience,
                domain,
                service,
            },
            &out,
        ),
        Command::Store { command } => store(command),
    }
}

fn serve(path: PathBuf, log_format: Option<&str>) -> ExitCode {
    // The config file, with the admin API's state file over it when it has one.
    let loaded = match baton::control::Control::load(&path) {
        Ok(loaded) => loaded,
        Err(e) => {
            print_error(&e);
            return ExitCode::FAILURE;
        }
    };
    let config = &loaded.config;
    let format = match log_format {
        None => config.server.log_format,
        Some("human") => LogFormat::Human,
        Some("json") => LogFormat::Json,
        Some(other) => {
            eprintln!("unknown --log-format {other:?}; expected human or json");
            return ExitCode::FAILURE;
        }
    };
    baton::telemetry::init(format);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let Some(runtime) = runtime(config.proxy.threads) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(baton::server::run(path, loaded)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(port: u16) -> ExitCode {
    baton::telemetry::init(LogFormat::Human);
    let Some(runtime) = runtime(None) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(baton::demo::run(baton::demo::DemoOptions { port })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime for `threads` workers; without `[proxy] threads`, the CPUs this process may run
/// on (`available_parallelism` heeds its CPU affinity and cgroup quota: a Kubernetes CPU limit
/// of 1 gives 1).
fn runtime(threads: Option<usize>) -> Option<tokio::runtime::Runtime> {
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
    let (mut builder, scheduler) = if threads == 1 {
        // One thread: everything on this one (the accept loop included), with no work-stealing
        // scheduler and no wake-ups across threads, instead of a multi-thread runtime whose
        // single worker is woken by the thread that accepts.
        (
            tokio::runtime::Builder::new_current_thread(),
            "current-thread",
        )
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        (builder, "multi-thread")
    };
    match builder.enable_all().build() {
        Ok(runtime) => {
            tracing::info!(threads, scheduler, "runtime started");
            Some(runtime)
        }
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            None
        }
    }
}

/// The config file with the admin API's state file over it, as `baton serve` would load it.
fn load(path: &std::path::Path) -> Result<Config, String> {
    baton::control::Control::load(path).map(|loaded| loaded.config)
}

/// `baton store migrate` and `baton store reseal`.
fn store(command: StoreCommand) -> ExitCode {
    let (StoreCommand::Migrate { config: path } | StoreCommand::Reseal { config: path, .. }) =
        &command;
    // The file alone: the store's entries are what these commands work on.
    let config = match Config::read_file(path)
        .and_then(|file| Config::from_file_text(path, &file, Default::default()))
    {
        Ok(config) => config,
        Err(e) => {
            print_error(&format!("{}: {e}", path.display()));
            return ExitCode::FAILURE;
        }
    };
    let (Some(store_config), Some(master_key)) = (&config.store, &config.admin.master_key) else {
        eprintln!(
            "{}: no [store] (with [admin] master_key_env)",
            path.display()
        );
        return ExitCode::FAILURE;
    };
    let store = match baton::store::Store::new(store_config, master_key) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("cannot start the runtime");
        return ExitCode::FAILURE;
    };
    let done = match command {
        StoreCommand::Migrate { .. } => runtime.block_on(store.migrate()).map(|m| match m {
            baton::store::Migration::Migrated { from } => format!(
                "migrated the store's schema from version {from} to {}",
                baton::store::SCHEMA_VERSION
            ),
            baton::store::Migration::UpToDate => format!(
                "the store's schema is at version {} already",
                baton::store::SCHEMA_VERSION
            ),
        }),
        StoreCommand::Reseal {
            old_master_key_env, ..
        } => {
            let old = std::env::var(&old_master_key_env)
                .map_err(|_| format!("environment variable {old_master_key_env} is not set"))
                .and_then(|value| {
                    baton::secret::master_key(value.as_bytes())
                        .map_err(|e| format!("{old_master_key_env}: {e}"))
                });
            match old {
                Ok(old) => runtime
                    .block_on(store.reseal(&old))
                    .map(|revision| format!("resealed every secret as revision {revision}")),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    match done {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a load error (it names the file) on standard error.
fn print_error(e: &str) {
    eprint!("{e}");
    if !e.ends_with('\n') {
        eprintln!();
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            println!("{}: ok", path.display());
            match config.proxy.listen {
                Some(listen) => println!("  proxy: {listen}"),
                None => println!("  proxy: off (forward-auth only)"),
            }
            if let Some(forward_auth) = &config.forward_auth {
                let prefix = forward_auth
                    .path_prefix
                    .as_deref()
                    .map(|prefix| format!(", path_prefix {prefix}"))
                    .unwrap_or_default();
                println!(
                    "  forward-auth: {} (original request: {}{prefix}{})",
                    forward_auth.listen,
                    forward_auth.original_request.as_str(),
                    if forward_auth.tls.is_some() {
                        ", tls"
                    } else {
                        ""
                    }
                );
            }
            if let Some(tls) = &config.proxy.tls {
                // Loading the config checked the pair: both files parse and the key matches.
                println!(
                    "  proxy tls: {} with its key {}",
                    tls.cert_file.display(),
                    tls.key_file.display()
                );
            }
            if let Some(store) = &config.store {
                // Loading it read the store's latest revision (or the snapshot file's).
                let hosts: Vec<String> = store
                    .postgres
                    .get_hosts()
                    .iter()
                    .map(|host| match host {
                        tokio_postgres::config::Host::Tcp(name) => name.clone(),
                        tokio_postgres::config::Host::Unix(dir) => dir.display().to_string(),
                    })
                    .collect();
                println!(
                    "  store: PostgreSQL at {}, database {}{}",
                    hosts.join(","),
                    store.postgres.get_dbname().unwrap_or("(the user's)"),
                    if store.tls_required { ", tls" } else { "" }
                );
            }
            println!("  keys: {}", config.keys.len());
            for key in &config.keys {
                let state = if key.is_retired() { " (retired)" } else { "" };
                println!("    {} {:?}{state}", key.id(), key.algorithm());
            }
            println!("  idps: {}", config.idps.len());
            for idp in &config.idps {
                println!(
                    "    {} (issuer {:?}, audience {:?}, {:?})",
                    idp.name, idp.issuer, idp.audience, idp.algorithms
                );
            }
            println!("  token providers: {}", config.token_providers.len());
            for p in &config.token_providers {
                println!(
                    "    {} (key {}, {:?}, ttl {}s)",
                    p.service,
                    p.key.id(),
                    p.profile,
                    p.ttl.as_secs()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}

fn explain(
    path: &std::path::Path,
    token: &str,
    actor_token: Option<&str>,
    service: Option<String>,
    at: Option<u64>,
    client: Option<&str>,
) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(e) => {
            print_error(&e);
            return ExitCode::FAILURE;
        }
    };
    if token == "-" && actor_token == Some("-") {
        eprintln!("--token and --actor-token cannot both be read from standard input");
        return ExitCode::FAILURE;
    }
    let token = if token == "-" {
        let mut read = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut read) {
            eprintln!("cannot read the token from standard input: {e}");
            return ExitCode::FAILURE;
        }
        read.trim().to_owned()
    } else {
        token.trim().to_owned()
    };
    let actor_token = match actor_token {
        None => None,
        Some("-") => {
            let mut read = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut read) {
                eprintln!("cannot read the actor token from standard input: {e}");
                return ExitCode::FAILURE;
            }
            Some(read.trim().to_owned())
        }
        Some(file) => match std::fs::read_to_string(file) {
            Ok(text) => Some(text.trim().to_owned()),
            Err(e) => {
                eprintln!("cannot read the actor token from {file}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let Some(service) = service.or_else(|| config.proxy.service.clone()) else {
        eprintln!("no --service given and no [proxy] service in the config");
        return ExitCode::FAILURE;
    };
    let clock: SharedClock = match at {
        Some(at) => Arc::new(FixedClock(at)),
        None => Arc::new(SystemClock),
    };
    let options = ExchangerOptions {
        clock,
        ..ExchangerOptions::default()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exchanger = match Exchanger::new(config, options) {
        Ok(exchanger) => exchanger,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (result, trace) = runtime.block_on(exchanger.explain_delegated(
        &token,
        actor_token.as_deref(),
        &service,
        client,
    ));
    print!(
        "{}",
        baton::report::report(&exchanger.config(), &service, client, &result, &trace)
    );
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `baton init`: renders the preset (every flag checked before anything is written), writes
/// a new ES256 key (mode 0600) and the config, never over existing files, and loads the result
/// as `baton check` would.
fn init(preset: &str, options: &baton::init::InitOptions, out: &std::path::Path) -> ExitCode {
    let preset = match baton::init::Preset::parse(preset) {
        Ok(preset) => preset,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let stem = out.file_stem().map_or_else(
        || "baton".into(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let key_name = format!("{stem}-signing-key.pem");
    let key_path = out.with_file_name(&key_name);
    // ES256: small tokens, fast to sign and verify, supported by every JOSE library.
    let algorithm = jsonwebtoken::Algorithm::ES256;
    let key = match baton::keygen::generate(algorithm) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let entry = baton::init::KeyEntry {
        id: key.id.clone(),
        file: key_name,
        algorithm,
    };
    let text = match baton::init::render(preset, options, &entry) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for path in [out, key_path.as_path()] {
        if path.exists() {
            eprintln!(
                "{} exists; baton init never overwrites (move it away, or choose --out)",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = write_private(&key_path, key.material.expose()) {
        eprintln!("cannot write {}: {e}", key_path.display());
        return ExitCode::FAILURE;
    }
    if let Err(e) = write_new(out, text.as_bytes()) {
        eprintln!("cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {} and {} (its signing key, mode 0600)",
        out.display(),
        key_path.display()
    );
    if let Err(e) = load(out) {
        // A preset that does not load is a bug in baton: say so rather than hide it.
        eprintln!("baton init wrote a config that does not load (please report this):");
        print_error(&e);
        return ExitCode::FAILURE;
    }
    println!(
        "next: review it, then `baton check --config {0}` and `baton serve --config {0}`",
        out.display()
    );
    ExitCode::SUCCESS
}

/// Writes a new file (never over an existing one).
fn write_new(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn generate(alg: &str, out: Option<PathBuf>) -> ExitCode {
    let alg = match baton::algorithm::parse(alg) {
        Ok(alg) => alg,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let key = match baton::keygen::generate(alg) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let material = String::from_utf8_lossy(key.material.expose()).into_owned();
    if baton::algorithm::is_hmac(alg) {
        // Printing is the point of this command: the operator stores the secret.
        println!("key id: {}", key.id);
        println!("secret: {material}");
        return ExitCode::SUCCESS;
    }
    match out {
        Some(path) => {
            if let Err(e) = write_private(&path, material.as_bytes()) {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("key id: {}", key.id);
            println!(
                "private key ({}) written to {}",
                baton::algorithm::name(alg),
                path.display()
            );
        }
        None => {
            eprintln!("key id: {}", key.id);
            print!("{material}");
        }
    }
    ExitCode::SUCCESS
}

/// Writes a private key readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
