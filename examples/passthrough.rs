//! A bare pingora pass-through proxy, the baseline baton's proxy is measured against
//! (`bench/proxy.sh`): a `ProxyHttp` with only `upstream_peer`, run by pingora's own
//! `Server` with one thread.
//!
//! ```sh
//! cargo run --release --example passthrough -- LISTEN UPSTREAM
//! # e.g. passthrough 127.0.0.1:18086 127.0.0.1:18080
//! ```
//!
//! pingora's pid file and upgrade socket go to a temporary directory (not `/tmp/pingora.*`),
//! and SIGTERM stops it at once (no grace period).

use std::net::{SocketAddr, ToSocketAddrs as _};

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

/// Forwards every request to one upstream.
struct PassThrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for PassThrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

/// Runs the pass-through (also the entry point of `passthrough_mimalloc`).
pub(crate) fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: passthrough LISTEN UPSTREAM (e.g. 127.0.0.1:18086 127.0.0.1:18080)";
    let listen = args.next().ok_or(usage)?;
    let upstream = args
        .next()
        .ok_or(usage)?
        .to_socket_addrs()?
        .next()
        .ok_or("the upstream resolves to no address")?;

    let dir = tempfile::tempdir()?;
    let conf = ServerConf {
        threads: 1,
        pid_file: dir.path().join("pingora.pid").display().to_string(),
        upgrade_sock: dir.path().join("upgrade.sock").display().to_string(),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    // `None`: no `Opt::parse_args()` (it would parse this program's arguments with clap).
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy =
        pingora::proxy::http_proxy_service(&server.configuration, PassThrough { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    eprintln!("passthrough: {listen} -> {upstream}");
    server.run(RunArgs::default());
    drop(dir);
    Ok(())
}
