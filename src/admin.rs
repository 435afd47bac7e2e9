//! The admin listener (default `127.0.0.1:9901`): `/healthz`, `/readyz`, `/metrics`.
//!
//! - `/healthz`: the process is up (200).
//! - `/readyz`: a config is loaded, every IdP's keys are at hand, and baton is not draining
//!   (200, else 503), with the detail as JSON.
//! - `/metrics`: Prometheus metrics, OpenMetrics text.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;

use crate::proxy::Gateway;

/// What the admin endpoints read.
#[derive(Debug)]
pub struct AdminState {
    gateway: Arc<Gateway>,
    draining: AtomicBool,
}

// === impl AdminState ===

impl AdminState {
    /// Admin state over `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self {
            gateway,
            draining: AtomicBool::new(false),
        }
    }

    /// Marks baton as draining: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(&state, &req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
            json!({ "error": "use GET" }).to_string(),
        );
    }
    match req.uri().path() {
        "/healthz" => reply(
            StatusCode::OK,
            "application/json",
            json!({ "status": "ok" }).to_string(),
        ),
        "/readyz" => {
            let exchanger = state.gateway.exchanger();
            let idps = exchanger.keys_ready().await;
            let draining = state.draining.load(Ordering::Acquire);
            let ready = !draining && idps.iter().all(|(_, ready)| *ready);
            let body = json!({
                "ready": ready,
                "draining": draining,
                "config_generation": exchanger.generation(),
                "idps": idps.into_iter().map(|(name, ready)| (name, serde_json::Value::Bool(ready))).collect::<serde_json::Map<_, _>>(),
            });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", body.to_string())
        }
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.gateway.metrics().encode(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "application/json",
            json!({ "error": "not found" }).to_string(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
