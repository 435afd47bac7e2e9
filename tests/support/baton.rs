//! The real `baton serve` binary as a child process: on a reserved port, waited for until it
//! answers, killed (and reaped) on drop — panics included — with its log at hand.
//!
//! ```ignore
//! let addr = reserve_addr();
//! let baton = Baton::launch(dir.path(), addr, &config)
//!     .env("MY_SECRET", "…")
//!     .log_format("json")
//!     .start()
//!     .await;
//! ```

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a process may take to start answering.
pub const STARTUP: Duration = Duration::from_secs(30);

/// A free port on 127.0.0.1 for a process about to listen on it: probed with a bind, then
/// released.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`), never from it: a port
/// the kernel gave out for `:0` and that was released could be handed out again at once as
/// the local port of any outgoing connection (baton's to its upstream, a test's to baton),
/// and the process meant to listen on it would fail with "address in use". Each port is
/// handed out once per test process (a counter from a per-process starting point).
pub fn reserve_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = 10_000u32;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|start| *start > low + 1_000)
        .unwrap_or(32_768);
    let span = high - low;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(low + offset).unwrap();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {low} and {high}");
}

/// `127.0.0.1:<a reserved port>`.
pub fn reserve_addr() -> SocketAddr {
    ([127, 0, 0, 1], reserve_port()).into()
}

/// A child process that is killed (and reaped) when the guard is dropped, panics included.
/// On a panic it also prints the process's log, so a failing test shows what the process
/// said.
pub struct ChildGuard {
    name: String,
    child: Child,
    /// Held open so a child reading its stdin sees end-of-input (and exits) if the test
    /// process dies.
    _stdin: Option<ChildStdin>,
    log: PathBuf,
}

// === impl ChildGuard ===

impl ChildGuard {
    /// Guards `child`, whose output goes to the file `log`.
    pub fn new(
        name: impl Into<String>,
        child: Child,
        stdin: Option<ChildStdin>,
        log: PathBuf,
    ) -> Self {
        Self {
            name: name.into(),
            child,
            _stdin: stdin,
            log,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits (polling) up to `within` for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- {} ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.log()
            );
        }
    }
}

/// A running `baton serve --config <dir>/baton.toml`, its stdout and stderr in
/// `<dir>/baton.log`.
pub struct Baton {
    /// The proxy listener (`[proxy] listen`).
    pub addr: SocketAddr,
    /// `http://<addr>`.
    pub base_url: String,
    /// The config file it was started with (rewrite it, then [`Baton::signal`] `HUP`).
    pub config_path: PathBuf,
    /// The process.
    pub process: ChildGuard,
}

/// How to start a [`Baton`]; see [`Baton::launch`].
pub struct Launch<'a> {
    dir: &'a Path,
    addr: SocketAddr,
    config: &'a str,
    env: Vec<(String, String)>,
    log_format: Option<&'a str>,
    ready_path: Option<&'a str>,
    cpus: Option<&'a str>,
    config_file: Option<PathBuf>,
}

// === impl Baton ===

impl Baton {
    /// Prepares `baton serve` on `config` (written to `<dir>/baton.toml`), whose
    /// `[proxy] listen` must be `addr`.
    pub fn launch<'a>(dir: &'a Path, addr: SocketAddr, config: &'a str) -> Launch<'a> {
        Launch {
            dir,
            addr,
            config,
            env: Vec::new(),
            log_format: None,
            ready_path: None,
            cpus: None,
            config_file: None,
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Everything baton logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Sends `signal` (`"HUP"`, `"TERM"`, …) to the process with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -s {signal} {} failed", self.pid());
    }

    /// Replaces the config file's content (baton reads it on SIGHUP or its file watch).
    /// Written to a temporary file and renamed over the old one, so baton never reads
    /// a half-written file.
    pub fn write_config(&self, config: &str) {
        let temporary = self.config_path.with_extension("toml.new");
        std::fs::write(&temporary, config).unwrap();
        std::fs::rename(&temporary, &self.config_path).unwrap();
    }
}

// === impl Launch ===

impl<'a> Launch<'a> {
    /// Sets an environment variable of the process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets several environment variables of the process.
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        for (name, value) in vars {
            self.env.push(((*name).to_owned(), (*value).to_owned()));
        }
        self
    }

    /// `--log-format <format>`.
    pub fn log_format(mut self, format: &'static str) -> Self {
        self.log_format = Some(format);
        self
    }

    /// Runs the process on these CPUs only (`taskset -c <cpus>`, e.g. `"0"` or `"0,1"`).
    pub fn cpus(mut self, cpus: &'a str) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Ready only when `GET <path>` on the proxy listener answers 2xx (by default, ready
    /// when the listener accepts connections).
    pub fn ready_when_serving(mut self, path: &'static str) -> Self {
        self.ready_path = Some(path);
        self
    }

    /// Starts baton on this config file, laid out by the caller (a ConfigMap-style symlink,
    /// say), instead of writing the config to `<dir>/baton.toml`.
    pub fn config_file(mut self, path: PathBuf) -> Self {
        self.config_file = Some(path);
        self
    }

    /// Starts the process and waits (up to [`STARTUP`]) until it is ready. Panics with its
    /// log if it exits first or never gets ready.
    pub async fn start(self) -> Baton {
        let config_path = match &self.config_file {
            Some(path) => path.clone(),
            None => {
                let path = self.dir.join("baton.toml");
                std::fs::write(&path, self.config).unwrap();
                path
            }
        };
        let log = self.dir.join("baton.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = match self.cpus {
            // taskset execs baton: the pid stays the process's.
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.args(["-c", cpus, env!("CARGO_BIN_EXE_baton")]);
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_baton")),
        };
        command.arg("serve");
        if let Some(format) = self.log_format {
            command.args(["--log-format", format]);
        }
        let child = command
            .arg("--config")
            .arg(&config_path)
            .envs(self.env.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut baton = Baton {
            addr: self.addr,
            base_url: format!("http://{}", self.addr),
            config_path,
            process: ChildGuard::new("baton serve", child, None, log),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = baton.process.exited() {
                panic!(
                    "baton serve exited ({status}) before answering on {}:\n{}",
                    baton.base_url,
                    baton.log()
                );
            }
            let ready = match self.ready_path {
                None => TcpStream::connect_timeout(&baton.addr, Duration::from_millis(200)).is_ok(),
                Some(path) => client
                    .get(baton.url(path))
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success()),
            };
            if ready {
                return baton;
            }
            assert!(
                Instant::now() < deadline,
                "baton serve did not answer on {} within {STARTUP:?}:\n{}",
                baton.base_url,
                baton.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
