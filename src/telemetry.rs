//! Logging: human-readable or JSON lines, filtered by `RUST_LOG` (default `info`).
//!
//! Log lines name outcomes, stages, IdPs and services; never a token or a secret.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::metrics::Metrics;

/// Installs the global subscriber. Calling it twice is harmless (the second is ignored).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Where an exchange was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// `POST /tokens`.
    Tokens,
    /// A proxied request.
    Proxy,
    /// A front proxy's check on the forward-auth listener (HTTP or Envoy's gRPC ext_authz).
    ForwardAuth,
}

impl Surface {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tokens => "tokens",
            Self::Proxy => "proxy",
            Self::ForwardAuth => "forward_auth",
        }
    }
}

/// Records a successful exchange: a metric and a log line. A cache hit of a proxied request
/// or a forward-auth check is the steady state of every request, so it logs at `debug`;
/// everything else at `info`.
pub fn exchange_ok(
    metrics: &Metrics,
    surface: Surface,
    idp: &str,
    service: &str,
    cached: bool,
    latency: std::time::Duration,
) {
    metrics.exchange(surface.as_str(), "ok", idp, service, latency);
    crate::traces::exchange(&crate::traces::ExchangeRecord {
        surface: surface.as_str(),
        outcome: "ok",
        stage: None,
        idp,
        service,
        cached,
        latency,
    });
    let latency_us = micros(latency);
    if surface != Surface::Tokens && cached {
        tracing::debug!(target: "baton::exchange", outcome = "ok", surface = surface.as_str(), idp, service, cached, latency_us);
    } else {
        tracing::info!(target: "baton::exchange", outcome = "ok", surface = surface.as_str(), idp, service, cached, latency_us);
    }
}

/// Records a refused exchange: a metric, and a log line with the stage and the error
/// (which never holds the token).
pub fn exchange_refused(
    metrics: &Metrics,
    surface: Surface,
    error: &crate::exchange::ExchangeError,
    service: &str,
    latency: std::time::Duration,
) {
    let outcome = match error.fault() {
        _ if matches!(error, crate::exchange::ExchangeError::Denied(_)) => "denied",
        crate::exchange::Fault::Client => "refused",
        crate::exchange::Fault::Upstream => "unavailable",
        crate::exchange::Fault::Internal => "error",
    };
    metrics.exchange(surface.as_str(), outcome, "-", service, latency);
    crate::traces::exchange(&crate::traces::ExchangeRecord {
        surface: surface.as_str(),
        outcome,
        stage: Some(error.stage()),
        idp: "-",
        service,
        cached: false,
        latency,
    });
    tracing::info!(
        target: "baton::exchange",
        outcome,
        surface = surface.as_str(),
        stage = error.stage(),
        error = %error,
        service,
        latency_us = micros(latency),
    );
}

/// Microseconds as a `u64` (tracing records `u128` as text).
fn micros(latency: std::time::Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)
}
