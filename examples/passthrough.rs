//! A bare hyper 1.x pass-through proxy, the baseline baton's proxy is measured against
//! (`bench/proxy.sh`), as issue 9 defines it: a current-thread runtime, hyper-util's `auto`
//! server (HTTP/1.1 and h2c), hyper-util's pooled client with `TCP_NODELAY`, mimalloc — with
//! none of baton's work (no token, no path normalization, no header rewriting beyond the
//! target). baton's own listener holds each HTTP/1.1 upstream connection beside the client
//! connection that last used it instead of hyper-util's pool (src/proxy/upstream/pool.rs);
//! the README's Performance section gives both comparisons.
//!
//! ```sh
//! cargo run --release --example passthrough -- 127.0.0.1:18086 127.0.0.1:8080
//! curl -s http://127.0.0.1:18086/
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::{Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Upstream = Client<HttpConnector, Incoming>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: passthrough LISTEN UPSTREAM (both host:port)";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let upstream: Authority = args.next().ok_or(usage)?.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(listen, upstream))
}

async fn serve(listen: SocketAddr, upstream: Authority) -> Result<(), Box<dyn std::error::Error>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Arc<Upstream> = Arc::new(
        Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(256)
            .build(connector),
    );
    let server = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, upstream) = (Arc::clone(&client), upstream.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let (client, upstream) = (Arc::clone(&client), upstream.clone());
            async move {
                let mut target = http::uri::Parts::default();
                target.scheme = Some(Scheme::HTTP);
                target.authority = Some(upstream);
                target.path_and_query = request.uri().path_and_query().cloned();
                *request.uri_mut() = Uri::from_parts(target).unwrap_or_default();
                // The upstream speaks HTTP/1.1 (as baton's does in bench/h2.sh): an h2c
                // request goes on as one, or hyper-util's client refuses it (502).
                *request.version_mut() = Version::HTTP_11;
                Ok::<_, Infallible>(match client.request(request).await {
                    Ok(response) => response.map(Either::Left),
                    Err(_) => {
                        let mut response = Response::new(Either::Right(Empty::<Bytes>::new()));
                        *response.status_mut() = StatusCode::BAD_GATEWAY;
                        response
                    }
                })
            }
        });
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let _ = server
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}
