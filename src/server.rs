//! Running the gateway: the accept loop, draining on shutdown, reloading on SIGHUP.
//!
//! pingora's `Server` owns its runtimes and exits the process; baton drives pingora's
//! HTTP app from its own tokio accept loop instead, so that it can bind any listener
//! (tests use `127.0.0.1:0`), drain on SIGTERM, and reload in place.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pingora::apps::ServerApp;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::AdminState;
use crate::config::Config;
use crate::control::{Control, Loaded};
use crate::exchange::{Exchanger, ExchangerOptions};
use crate::proxy::Gateway;

/// The gateway's HTTP app and what it needs to run.
#[derive(Clone)]
pub struct App {
    gateway: Arc<Gateway>,
    http: Arc<HttpProxy<Gateway>>,
}

/// Building the app failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The JWKS client could not be built.
    #[error(transparent)]
    Jwks(#[from] crate::idp::jwks::JwksError),
    /// The upstream could not be resolved.
    #[error(transparent)]
    Upstream(#[from] crate::proxy::UpstreamError),
}

// === impl App ===

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Builds the exchanger and the pingora app for `config`.
    pub fn new(config: Config, options: ExchangerOptions) -> Result<Self, StartError> {
        let exchanger = Arc::new(Exchanger::new(config, options)?);
        let gateway = Arc::new(Gateway::new(exchanger)?);
        // The app owns a `Gateway` by value; both share the exchanger and counters.
        let http = Arc::new(pingora::proxy::http_proxy(
            &Arc::new(ServerConf::default()),
            Gateway::clone_shared(&gateway),
        ));
        Ok(Self { gateway, http })
    }

    /// The gateway (for reloads and metrics).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Accepts connections on `listener` until `shutdown` turns true, then waits up to the
    /// config's `grace_period` (the one in force then) for in-flight requests before
    /// returning (dropping idle connections).
    pub async fn serve(&self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Small responses go out at once rather than waiting on Nagle.
                        let _ = stream.set_nodelay(true);
                        let http = Arc::clone(&self.http);
                        let watch = shutdown.clone();
                        connections.spawn(async move {
                            let stream = pingora_stream(stream, peer);
                            let mut reused = http.process_new(stream, &watch).await;
                            while let Some(stream) = reused {
                                reused = http.process_new(stream, &watch).await;
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors, typically: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        drop(listener);
        let grace = self.gateway.exchanger().config().proxy.grace_period;
        let in_flight = self.gateway.in_flight();
        let deadline = Instant::now() + grace;
        while in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = in_flight.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!(
                requests = left,
                "grace period over; dropping requests still in flight"
            );
        }
    }
}

/// Wraps an accepted socket for pingora: with a write buffer, as pingora's own listeners
/// give (a response header and a small body leave in one segment, not two), and with the
/// socket digest that tells sessions the client's address.
fn pingora_stream(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
) -> pingora::protocols::Stream {
    use pingora::protocols::SocketDigest;
    use std::os::fd::AsRawFd as _;
    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
    // A digest made just now has an empty cell, so `set` cannot fail.
    let _ = digest.peer_addr.set(Some(peer.into()));
    Box::new(BufferedTcp {
        id: stream.as_raw_fd(),
        inner: tokio::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, stream),
        digest: Arc::new(digest),
    })
}

/// pingora's default L4 write buffer: one Ethernet-sized segment.
const WRITE_BUFFER_BYTES: usize = 1460;

/// A downstream TCP connection with a write buffer. pingora flushes it when a response
/// header has no body and when a body is finished, as it does its own buffered streams.
#[derive(Debug)]
struct BufferedTcp {
    id: i32,
    inner: tokio::io::BufWriter<tokio::net::TcpStream>,
    digest: Arc<pingora::protocols::SocketDigest>,
}

impl tokio::io::AsyncRead for BufferedTcp {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for BufferedTcp {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait::async_trait]
impl pingora::protocols::Shutdown for BufferedTcp {
    async fn shutdown(&mut self) {
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.inner).await;
    }
}

impl pingora::protocols::UniqueID for BufferedTcp {
    fn id(&self) -> pingora::protocols::UniqueIDType {
        self.id
    }
}

impl pingora::protocols::Ssl for BufferedTcp {}

impl pingora::protocols::Peek for BufferedTcp {}

impl pingora::protocols::GetTimingDigest for BufferedTcp {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        Vec::new()
    }
}

impl pingora::protocols::GetProxyDigest for BufferedTcp {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        None
    }
}

impl pingora::protocols::GetSocketDigest for BufferedTcp {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        Some(Arc::clone(&self.digest))
    }
}

/// `baton serve`: runs until SIGTERM or SIGINT, reloading on SIGHUP and when the config
/// file changes.
pub async fn run(config_path: PathBuf, loaded: Loaded) -> Result<(), String> {
    let Loaded { config, sources } = loaded;
    if let Some(state_file) = &config.admin.state_file {
        // Before the admin listener runs: no write of this process is in progress yet.
        match crate::state::remove_stale_temp_files(state_file) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                removed,
                state_file = %state_file.display(),
                "removed stale temp files of interrupted state writes"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                state_file = %state_file.display(),
                "cannot look for stale temp files beside the state file"
            ),
        }
    }
    let listen = config.proxy.listen;
    let admin_listen = config.admin.listen;
    let watch_config = config.server.watch_config;
    let app = App::new(config, ExchangerOptions::default()).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let admin_listener = TcpListener::bind(admin_listen)
        .await
        .map_err(|e| format!("cannot listen on {admin_listen} (admin): {e}"))?;
    let gateway = Arc::clone(app.gateway());
    let control = Arc::new(Control::new(Arc::clone(&gateway), config_path, sources));
    let admin = Arc::new(AdminState::new(Arc::clone(&control)));
    let admin_task = tokio::spawn(crate::admin::serve(admin_listener, Arc::clone(&admin)));
    tokio::spawn({
        let exchanger = Arc::clone(gateway.exchanger());
        async move { exchanger.prefetch_keys().await }
    });
    tracing::info!(%listen, admin = %admin_listen, "baton is serving");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let watcher = watch_config.then(|| tokio::spawn(watch_file(Arc::clone(&control))));
    let signals = tokio::spawn(handle_signals(Arc::clone(&control), shutdown_tx));
    let mut drain = shutdown_rx.clone();
    let serving = app.serve(listener, shutdown_rx);
    tokio::pin!(serving);
    // Readiness turns 503 as soon as draining starts, so load balancers stop sending.
    tokio::select! {
        () = &mut serving => {}
        _ = drain.wait_for(|stop| *stop) => {
            admin.start_draining();
            serving.await;
        }
    }
    signals.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    admin_task.abort();
    tracing::info!("baton stopped");
    Ok(())
}

/// How often the config file is checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Reloads when the config file's content changes (a ConfigMap update, an edit). Content,
/// not mtime, is compared: Kubernetes swaps a symlink and keeps old mtimes.
async fn watch_file(control: Arc<Control>) {
    let path = control.config_path().to_owned();
    let mut seen = std::fs::read(&path).ok();
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let current = std::fs::read(&path).ok();
        if current.is_some() && current != seen {
            tracing::info!(path = %path.display(), "the config file changed; reloading");
            reload(&control).await;
            seen = current;
        }
    }
}

/// Reloads the config file off the runtime's threads (it reads files and may resolve DNS).
async fn reload(control: &Arc<Control>) {
    let control = Arc::clone(control);
    if let Err(e) = tokio::task::spawn_blocking(move || control.reload_file()).await {
        tracing::error!(error = %e, "the reload task failed");
    }
}

async fn handle_signals(control: Arc<Control>, shutdown: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                reload(&control).await;
            }
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    let _ = shutdown.send(true);
}
