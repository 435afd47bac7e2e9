//! Running the gateway: the accept loop, draining on shutdown, reloading on SIGHUP.
//!
//! Each accepted connection is served by hyper-util's `auto` builder, which reads the first
//! bytes to tell HTTP/1.1 from HTTP/2 with prior knowledge (h2c), so both share the port;
//! HTTP/1.1 upgrades (WebSocket) are kept. A connection idle for `[proxy] idle_timeout` is
//! shut down gracefully, and an HTTP/1 request head slower than `header_timeout` is answered
//! 408 ([`connection`]). On SIGTERM the listener closes and every connection shuts down
//! gracefully: requests in flight finish, idle keep-alive connections close, HTTP/2 clients
//! get a GOAWAY; upgraded connections are waited for too, all within the grace period.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::admin::AdminState;
use crate::config::Config;
use crate::control::{Control, Loaded};
use crate::errors::RequestRefused;
use crate::exchange::{Exchanger, ExchangerOptions};
use crate::proxy::Gateway;

mod connection;
pub mod head_scan;

use connection::{Activity, ClientIo, TrackedBody};
use head_scan::Smuggling;

/// The largest HTTP/1 request head baton reads (Envoy's default is 60 KiB, nginx's 32 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The gateway and what serves its listener.
#[derive(Clone)]
pub struct App {
    gateway: Arc<Gateway>,
    connections: Arc<auto::Builder<TokioExecutor>>,
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
    /// Builds the exchanger and the gateway for `config`.
    pub fn new(config: Config, options: ExchangerOptions) -> Result<Self, StartError> {
        let exchanger = Arc::new(Exchanger::new(config, options)?);
        let gateway = Arc::new(Gateway::new(exchanger)?);
        let mut connections = auto::Builder::new(TokioExecutor::new());
        // An HTTP/1 request head must fit hyper's read buffer, else 431 (hyper's default
        // buffer is 400 KiB); HTTP/2 header lists are bounded by hyper's 16 KiB setting.
        connections.http1().max_buf_size(MAX_HEAD_BYTES);
        Ok(Self {
            gateway,
            connections: Arc::new(connections),
        })
    }

    /// The gateway (for reloads and metrics).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Accepts connections on `listener` until `shutdown` turns true, then shuts every
    /// connection down gracefully and waits up to the config's `grace_period` (the one in
    /// force then) for them, and for upgraded connections, before returning.
    pub async fn serve(&self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let open = Arc::new(AtomicUsize::new(0));
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, client)) => {
                        // Small responses go out at once rather than waiting on Nagle.
                        let _ = stream.set_nodelay(true);
                        self.spawn_connection(stream, client, shutdown.clone(), &open);
                    }
                    Err(e) => {
                        // Out of file descriptors, typically: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        drop(listener);
        let grace = self.gateway.exchanger().config().proxy.grace_period;
        let deadline = Instant::now() + grace;
        // Every connection task saw the shutdown and shut its connection down gracefully.
        while open.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let connections = open.load(Ordering::Acquire);
        if connections > 0 {
            tracing::warn!(
                connections,
                "grace period over; dropping connections with requests still in flight"
            );
        }
        while self.gateway.open_tunnels() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let tunnels = self.gateway.open_tunnels();
        if tunnels > 0 {
            tracing::warn!(tunnels, "grace period over; dropping upgraded connections");
        }
    }
}

impl App {
    /// Serves one client connection in its own task until it ends: shut down gracefully
    /// when it has been idle for `[proxy] idle_timeout` or when `shutdown` turns true.
    fn spawn_connection(
        &self,
        stream: tokio::net::TcpStream,
        client: std::net::SocketAddr,
        mut shutdown: watch::Receiver<bool>,
        open: &Arc<AtomicUsize>,
    ) {
        // Timeouts of the config in force when the connection was accepted.
        let (idle_timeout, header_timeout) = {
            let config = self.gateway.exchanger().config();
            (config.proxy.idle_timeout, config.proxy.header_timeout)
        };
        let activity = Activity::new();
        let io = TokioIo::new(ClientIo::new(stream, Arc::clone(&activity), header_timeout));
        let gateway = Arc::clone(&self.gateway);
        let service = hyper::service::service_fn({
            let activity = Arc::clone(&activity);
            move |request| {
                let in_flight = activity.request_started();
                let gateway = Arc::clone(&gateway);
                let activity = Arc::clone(&activity);
                async move {
                    let response = match activity.take_smuggling() {
                        Some(Smuggling::BothLengths) => {
                            gateway.refuse(&RequestRefused::AmbiguousLength)
                        }
                        Some(Smuggling::BareLineFeed) => {
                            gateway.refuse(&RequestRefused::BareLineFeed)
                        }
                        None => gateway.handle(request, client).await,
                    };
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                        activity.upgraded();
                    }
                    Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, in_flight)))
                }
            }
        });
        let connection = self
            .connections
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let open = OpenConnection::new(open);
        tokio::spawn(async move {
            let _open = open;
            let mut connection = std::pin::pin!(connection);
            let mut idle = std::pin::pin!(async {
                match idle_timeout {
                    Some(timeout) => activity.idle_for(timeout).await,
                    None => std::future::pending().await,
                }
            });
            let mut closing = false;
            let ended = loop {
                tokio::select! {
                    ended = connection.as_mut() => break ended,
                    () = &mut idle, if !closing => {
                        tracing::debug!("closing a client connection idle for idle_timeout");
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    _ = shutdown.wait_for(|stop| *stop), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            };
            if let Err(e) = ended {
                // A client that goes away or sends garbage: nothing to answer.
                tracing::debug!(error = %e, "a client connection ended with an error");
            }
        });
    }
}

/// Counts an open client connection while it lives.
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(open))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
