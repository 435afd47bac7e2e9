//! A throwaway PostgreSQL server for one test: `initdb` into a temporary directory, the
//! server on a free port of 127.0.0.1 (its socket in that directory too), stopped and removed
//! on drop. It never touches another database.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the
//! `postgres` system user (Debian's package makes it) over a directory that user owns.
//! `BATON_TEST_PG_BIN` names the directory of `initdb` and `postgres` when they are not in
//! Debian's `/usr/lib/postgresql/<version>/bin`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::baton::{ChildGuard, reserve_port};

/// The password of the `baton` superuser of every test server.
pub const PASSWORD: &str = "test-pw-'\"-\\";

/// A running PostgreSQL server.
pub struct Postgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// The owner (user and group ids) of the data directory when it is not this process's
    /// user.
    run_as: Option<(u32, u32)>,
    server: Option<ChildGuard>,
    /// `-c` settings besides the defaults (TLS).
    settings: Vec<String>,
    /// How many times the server was started (each start logs to its own file).
    starts: u32,
    _dir: tempfile::TempDir,
}

// === impl Postgres ===

impl Postgres {
    /// initdb and start a server; waits until it accepts connections.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server that also speaks TLS with `leaf`'s certificate (clients may still connect in
    /// cleartext: `sslmode` decides).
    pub async fn start_tls(leaf: &super::tls::Leaf) -> Self {
        Self::start_with(Some(leaf)).await
    }

    async fn start_with(tls: Option<&super::tls::Leaf>) -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let run_as = is_root().then(postgres_ids);
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, PASSWORD).unwrap();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&password_file, Some(uid), Some(gid)).unwrap();
        }
        let output = as_owner(run_as, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "baton", "--auth=scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", password_file.display()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut settings = Vec::new();
        if let Some(leaf) = tls {
            for (name, content) in [
                ("server.crt", &leaf.chain_pem),
                ("server.key", &leaf.key_pem),
            ] {
                let file = dir.path().join(name);
                std::fs::write(&file, content).unwrap();
                // The server refuses a key others can read.
                std::fs::set_permissions(
                    &file,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap();
                if let Some((uid, gid)) = run_as {
                    std::os::unix::fs::chown(&file, Some(uid), Some(gid)).unwrap();
                }
            }
            settings.extend([
                "ssl=on".to_owned(),
                format!("ssl_cert_file={}", dir.path().join("server.crt").display()),
                format!("ssl_key_file={}", dir.path().join("server.key").display()),
            ]);
        }
        let mut postgres = Self {
            settings,
            port: reserve_port(),
            bin,
            data,
            run_as,
            server: None,
            starts: 0,
            _dir: dir,
        };
        postgres.resume().await;
        postgres
    }

    /// `postgres://baton:…@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.url_to(self.port)
    }

    /// The URL of this server's database through another port (a test's proxy in front).
    pub fn url_to(&self, port: u16) -> String {
        let password: String = url::form_urlencoded::byte_serialize(PASSWORD.as_bytes()).collect();
        format!("postgres://baton:{password}@127.0.0.1:{port}/postgres")
    }

    /// A connection of the test's own (its I/O driven by a task).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// Stops the server (fast shutdown: connections are closed) and waits for it to exit.
    pub async fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-INT", &server.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(
            server.wait_exit(Duration::from_secs(30)).await.is_some(),
            "postgres did not stop:\n{}",
            server.log()
        );
    }

    /// Starts the server (again) on its data directory and port; waits until it answers.
    pub async fn resume(&mut self) {
        assert!(self.server.is_none(), "the server is running");
        self.starts += 1;
        let log = self
            .data
            .with_file_name(format!("postgres-{}.log", self.starts));
        let log_file = std::fs::File::create(&log).unwrap();
        let socket_dir = self.data.parent().unwrap().to_owned();
        let child = as_owner(self.run_as, &self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&socket_dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=50",
            ])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut server = ChildGuard::new("postgres", child, None, log);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.exited() {
                panic!("postgres exited ({status}):\n{}", server.log());
            }
            if tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.server = Some(server);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            // Immediate shutdown: nothing to keep. The guard then kills and reaps it.
            let _ = Command::new("kill")
                .args(["-QUIT", &server.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A command run as the user and group `ids` when set: `setpriv` execs the program, so the
/// child's pid is the program's (a signal to it reaches the server).
fn as_owner(ids: Option<(u32, u32)>, program: &Path) -> Command {
    match ids {
        Some((uid, gid)) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The `postgres` system user's user and group ids.
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "running as root needs the postgres system user (apt-get install postgresql)"
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

/// Where `initdb` and `postgres` are.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BATON_TEST_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| Some(e.ok()?.path().join("bin")))
                .filter(|bin| bin.join("postgres").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .expect("no PostgreSQL server in /usr/lib/postgresql (scripts/test.sh installs it)")
}
