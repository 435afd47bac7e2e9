//! A minimal RFC 7662 introspection endpoint for `bench/tokens.sh`'s introspection cases:
//! every token is active, with the claims the bench mappings copy.
//!
//! ```sh
//! cargo run --release --example introspection_endpoint -- 127.0.0.1:18181
//! ```
//!
//! Prints `listening` once bound; counts calls and prints the count on stdin's end.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .ok_or("usage: introspection_endpoint LISTEN_ADDR")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        let calls = Arc::new(AtomicU64::new(0));
        println!("listening");
        loop {
            let (stream, _) = listener.accept().await?;
            let calls = Arc::clone(&calls);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let n = calls.fetch_add(1, Ordering::Relaxed);
                    async move {
                        let exp = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs())
                            + 3600;
                        let body = format!(
                            r#"{{"active":true,"iss":"https://opaque.bench","sub":"user-{n}","email":"u{n}@bench.test","roles":["reader"],"scope":"api","exp":{exp}}}"#
                        );
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap_or_default(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
        #[allow(unreachable_code)]
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
