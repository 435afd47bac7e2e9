//! Running the gateway: the accept loop, draining on shutdown, reloading on SIGHUP.
//!
//! Each accepted connection is served by hyper-util's `auto` builder, which reads the first
//! bytes to tell HTTP/1.1 from HTTP/2 with prior knowledge (h2c), so both share the port;
//! HTTP/1.1 upgrades (WebSocket) are kept. A connection idle for `[proxy] idle_timeout` is
//! shut down gracefully, and an HTTP/1 request head slower than `header_timeout` is answered
//! 408 ([`connection`]). On SIGTERM the listener closes and every connection shuts down
//! gracefully: requests in flight finish, idle keep-alive connections close, HTTP/2 clients
//! get a GOAWAY; upgraded connections are waited for too, all within the grace period.
//!
//! With `[proxy] tls` the listener speaks TLS only ([`crate::tls`]): each connection's
//! handshake runs in its own task, then the same builder serves the TLS stream, HTTP/2 or
//! HTTP/1.1 as ALPN chose; the connection's clocks and checks see the decrypted bytes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderValue, StatusCode, Version, header};
use hyper::body::Body as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::admin::AdminState;
use crate::config::Config;
use crate::control::{Control, Loaded};
use crate::errors::RequestRefused;
use crate::exchange::{Exchanger, ExchangerOptions};
use crate::proxy::{Downstream, Gateway, Scheme};
use crate::tls::{CertificatePair, ServerTls, TlsFiles};

mod connection;
mod file_watch;
pub mod head_scan;

use connection::{Activity, ClientIo, TrackedBody};
use head_scan::Smuggling;

/// How long a connection shut down for idleness may take to close before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The largest HTTP/1 request head baton reads (Envoy's default is 60 KiB, nginx's 32 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The gateway and what serves one of its listeners.
#[derive(Clone)]
pub struct App {
    gateway: Arc<Gateway>,
    connections: Arc<auto::Builder<TokioExecutor>>,
    /// The listener's `tls` as it was at start: the listener then speaks TLS only.
    tls: Option<Arc<ServerTls>>,
    role: Role,
}

/// What a listener does with the requests it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `[proxy]`: exchange and forward to the upstream.
    Proxy,
    /// `[forward_auth]`: decide for a front proxy, never forward.
    ForwardAuth,
}

/// Building the app failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The JWKS client could not be built.
    #[error(transparent)]
    Jwks(#[from] crate::idp::jwks::JwksError),
    /// The TLS certificate pair of a listener (`proxy`, `forward_auth`) cannot be served.
    #[error("{listener}.tls.{field}: {error}", field = .error.file().config_field())]
    TlsPair {
        /// The listener's config section.
        listener: &'static str,
        /// What is wrong with the pair.
        error: crate::tls::PairError,
    },
    /// rustls refused the TLS settings.
    #[error("TLS cannot be set up: {0}")]
    TlsSettings(#[from] rustls::Error),
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
        let tls = server_tls(config.proxy.tls.as_ref(), "proxy")?;
        let exchanger = Arc::new(Exchanger::new(config, options)?);
        let gateway = Arc::new(Gateway::new(exchanger)?);
        let mut connections = auto::Builder::new(TokioExecutor::new());
        // An HTTP/1 request head must fit hyper's read buffer, else 431 (hyper's default
        // buffer is 400 KiB); HTTP/2 header lists are bounded by hyper's 16 KiB setting.
        connections.http1().max_buf_size(MAX_HEAD_BYTES);
        Ok(Self {
            gateway,
            connections: Arc::new(connections),
            tls,
            role: Role::Proxy,
        })
    }

    /// The app of the forward-auth listener, over the same gateway (exchanger, cache,
    /// metrics) as `self`'s, with `[forward_auth] tls` when set.
    pub fn forward_auth(&self) -> Result<Self, StartError> {
        let config = self.gateway.exchanger().config();
        let files = config.forward_auth.as_ref().and_then(|f| f.tls.as_ref());
        Ok(Self {
            tls: server_tls(files, "forward_auth")?,
            role: Role::ForwardAuth,
            ..self.clone()
        })
    }

    /// What the listener does.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The listener's TLS, when its `tls` was set at start.
    pub fn tls(&self) -> Option<&Arc<ServerTls>> {
        self.tls.as_ref()
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

/// The TLS of a listener whose config section (`listener`) names `files`.
fn server_tls(
    files: Option<&crate::tls::TlsFiles>,
    listener: &'static str,
) -> Result<Option<Arc<ServerTls>>, StartError> {
    let Some(files) = files else {
        return Ok(None);
    };
    let pair =
        CertificatePair::load(files).map_err(|error| StartError::TlsPair { listener, error })?;
    Ok(Some(Arc::new(ServerTls::new(&pair)?)))
}

impl App {
    /// Serves one accepted connection in a task of its own, where the TLS handshake (if
    /// any) runs too: a slow or silent client never holds up the accept loop. The connection
    /// counts as open from its accept, so draining waits for handshakes too.
    fn spawn_connection(
        &self,
        stream: TcpStream,
        client: SocketAddr,
        shutdown: watch::Receiver<bool>,
        open: &Arc<AtomicUsize>,
    ) {
        let app = self.clone();
        let open = OpenConnection::new(open);
        tokio::spawn(async move {
            let _open = open;
            let Some(tls) = &app.tls else {
                let downstream = Downstream::new(client, Scheme::Http);
                return app.serve_connection(stream, downstream, shutdown).await;
            };
            match tls.accept(stream).await {
                Ok(stream) => {
                    let downstream = Downstream::new(client, Scheme::Https);
                    app.serve_connection(stream, downstream, shutdown).await;
                }
                // Scanners, health checks that only connect, clients that distrust the
                // certificate: nothing for an operator to fix.
                Err(e) => tracing::debug!(%client, error = %e, "a TLS handshake failed"),
            }
        });
    }

    /// Serves HTTP/1.1 or HTTP/2 on `io` (a TCP stream, or TLS over one) until the client
    /// goes, or until it is shut down gracefully: idle for `[proxy] idle_timeout`, or
    /// `shutdown` turned true.
    async fn serve_connection<I>(
        &self,
        io: I,
        downstream: Downstream,
        mut shutdown: watch::Receiver<bool>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Timeouts of the config in force when the connection was accepted.
        let (idle_timeout, header_timeout) = {
            let config = self.gateway.exchanger().config();
            (config.proxy.idle_timeout, config.proxy.header_timeout)
        };
        let activity = Activity::new();
        let io = TokioIo::new(ClientIo::new(io, Arc::clone(&activity), header_timeout));
        let gateway = Arc::clone(&self.gateway);
        let role = self.role;
        let service = hyper::service::service_fn({
            let activity = Arc::clone(&activity);
            move |request: http::Request<hyper::body::Incoming>| {
                let in_flight = activity.request_started();
                let gateway = Arc::clone(&gateway);
                let activity = Arc::clone(&activity);
                let downstream = downstream.clone();
                async move {
                    let refuse = |refused: RequestRefused| match role {
                        Role::Proxy => gateway.refuse(&refused),
                        Role::ForwardAuth => gateway.refuse_check(&refused),
                    };
                    let response = match activity.take_smuggling() {
                        Some(Smuggling::BothLengths) => refuse(RequestRefused::AmbiguousLength),
                        Some(Smuggling::BareLineFeed) => refuse(RequestRefused::BareLineFeed),
                        Some(Smuggling::TooLarge) => refuse(RequestRefused::HeadTooLarge),
                        None => {
                            // A refusal of a request whose body was not read closes the
                            // connection: hyper would read the rest of the body after the
                            // answer, and those bytes are no request head (nginx and Envoy
                            // close there too).
                            let unread_body = request.version() < Version::HTTP_2
                                && !request.body().is_end_stream();
                            let mut response = match role {
                                Role::Proxy => gateway.handle(request, downstream).await,
                                Role::ForwardAuth => gateway.check(request).await,
                            };
                            if unread_body && response.status().as_u16() >= 400 {
                                response
                                    .headers_mut()
                                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                            }
                            response
                        }
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
        let mut connection = std::pin::pin!(connection);
        let mut idle = std::pin::pin!(async {
            match idle_timeout {
                Some(timeout) => activity.idle_for(timeout).await,
                None => std::future::pending().await,
            }
        });
        let mut closing = false;
        // A connection shut down for idleness that does not end by itself (an HTTP/2 client
        // that never acknowledges the GOAWAY's PING) is dropped this long after.
        let mut hard_stop = std::pin::pin!(tokio::time::sleep(IDLE_CLOSE_GRACE));
        let ended = loop {
            tokio::select! {
                ended = connection.as_mut() => break ended,
                () = &mut idle, if !closing => {
                    tracing::debug!("closing a client connection idle for idle_timeout");
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                    hard_stop.as_mut().reset(Instant::now() + IDLE_CLOSE_GRACE);
                }
                () = &mut hard_stop, if closing => {
                    tracing::debug!("dropping a client connection that did not close");
                    break Ok(());
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
    let Loaded {
        config,
        sources,
        store,
        notes,
    } = loaded;
    for note in &notes {
        tracing::warn!("{note}");
    }
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
    let forward_auth_listen = config.forward_auth.as_ref().map(|f| f.listen);
    let admin_listen = config.admin.listen;
    let watch_config = config.server.watch_config;
    crate::traces::start(&config.telemetry).map_err(|e| e.to_string())?;
    let app = App::new(config, ExchangerOptions::default()).map_err(|e| e.to_string())?;
    let forward_auth_app = match forward_auth_listen {
        Some(_) => Some(app.forward_auth().map_err(|e| e.to_string())?),
        None => None,
    };
    let listener = match listen {
        Some(addr) => Some(bind(addr, "").await?),
        None => None,
    };
    let forward_auth_listener = match forward_auth_listen {
        Some(addr) => Some(bind(addr, " (forward-auth)").await?),
        None => None,
    };
    let admin_listener = bind(admin_listen, " (admin)").await?;
    let gateway = Arc::clone(app.gateway());
    if let Some(store) = &store {
        gateway.metrics().attach_store(Arc::clone(store.status()));
    }
    let control = Arc::new(Control::new(
        Arc::clone(&gateway),
        config_path,
        sources,
        store.clone(),
    ));
    // Loads the revisions written through other batons, and catches up after the store was
    // unreachable.
    let follower = store.map(|store| {
        let control = Arc::clone(&control);
        tokio::spawn(store.follow(Arc::new(move |state| control.apply_revision(state))))
    });
    let admin = Arc::new(AdminState::new(Arc::clone(&control)));
    let admin_task = tokio::spawn(crate::admin::serve(admin_listener, Arc::clone(&admin)));
    tokio::spawn({
        let exchanger = Arc::clone(gateway.exchanger());
        async move { exchanger.prefetch_keys().await }
    });
    tracing::info!(
        proxy = %DisplayListen(listen),
        forward_auth = %DisplayListen(forward_auth_listen),
        admin = %admin_listen,
        "baton is serving"
    );

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let watcher = watch_config.then(|| tokio::spawn(file_watch::config_file(Arc::clone(&control))));
    let tls_watchers = [
        app.tls()
            .map(|tls| tokio::spawn(watch_tls_files(Arc::clone(tls), &gateway, proxy_tls))),
        forward_auth_app
            .as_ref()
            .and_then(App::tls)
            .map(|tls| tokio::spawn(watch_tls_files(Arc::clone(tls), &gateway, forward_auth_tls))),
    ];
    let signals = tokio::spawn(handle_signals(Arc::clone(&control), shutdown_tx));
    let mut drain = shutdown_rx.clone();
    let serve = |app: Option<&App>, listener: Option<TcpListener>| {
        let app = app.cloned();
        let shutdown = shutdown_rx.clone();
        async move {
            if let (Some(app), Some(listener)) = (app, listener) {
                app.serve(listener, shutdown).await;
            }
        }
    };
    let proxy_serving = serve(Some(&app), listener);
    let forward_auth_serving = serve(forward_auth_app.as_ref(), forward_auth_listener);
    let serving = async { tokio::join!(proxy_serving, forward_auth_serving) };
    tokio::pin!(serving);
    // Readiness turns 503 as soon as draining starts, so load balancers stop sending.
    tokio::select! {
        _ = &mut serving => {}
        _ = drain.wait_for(|stop| *stop) => {
            admin.start_draining();
            serving.await;
        }
    }
    signals.abort();
    for watcher in tls_watchers
        .into_iter()
        .chain([watcher, follower])
        .flatten()
    {
        watcher.abort();
    }
    admin_task.abort();
    // Off the runtime's threads: the exporter's client blocks.
    let _ = tokio::task::spawn_blocking(crate::traces::flush).await;
    tracing::info!("baton stopped");
    Ok(())
}

/// Binds a listener; `what` names it in the error (` (admin)`).
async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}{what}: {e}"))
}

/// A listener's address in the start line, `off` when it does not run.
struct DisplayListen(Option<SocketAddr>);

impl std::fmt::Display for DisplayListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("off"),
        }
    }
}

/// `[proxy] tls` of a config.
fn proxy_tls(config: &Config) -> Option<TlsFiles> {
    config.proxy.tls.clone()
}

/// `[forward_auth] tls` of a config.
fn forward_auth_tls(config: &Config) -> Option<TlsFiles> {
    config.forward_auth.as_ref().and_then(|f| f.tls.clone())
}

/// Follows the certificate files of a listener's `tls` in the running config, which `files`
/// reads (a reload may point elsewhere; one that drops `tls` keeps the last files, as the
/// listener stays TLS until a restart).
fn watch_tls_files(
    tls: Arc<ServerTls>,
    gateway: &Arc<Gateway>,
    files: fn(&Config) -> Option<TlsFiles>,
) -> impl Future<Output = ()> + Send + 'static {
    let gateway = Arc::clone(gateway);
    let files = move || files(&gateway.exchanger().config());
    let initial = files();
    async move {
        // `App::new` built TLS from this config, so it names the files.
        let Some(initial) = initial else { return };
        tls.watch(initial, files).await;
    }
}

/// Reloads the config file off the runtime's threads (it reads files and may resolve DNS).
pub(super) async fn reload(control: &Arc<Control>) {
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
