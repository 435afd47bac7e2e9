//! Logging: human-readable or JSON lines, filtered by `RUST_LOG` (default `info`).
//!
//! Log lines name outcomes, stages, IdPs and services; never a token or a secret.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

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
}

impl Surface {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tokens => "tokens",
            Self::Proxy => "proxy",
        }
    }
}

/// One line for a successful exchange. A proxied cache hit is the steady state of every
/// request, so it logs at `debug`; everything else at `info`.
pub fn exchange_ok(
    surface: Surface,
    idp: &str,
    service: &str,
    cached: bool,
    latency: std::time::Duration,
) {
    let latency_us = micros(latency);
    if surface == Surface::Proxy && cached {
        tracing::debug!(target: "baton::exchange", outcome = "ok", surface = surface.as_str(), idp, service, cached, latency_us);
    } else {
        tracing::info!(target: "baton::exchange", outcome = "ok", surface = surface.as_str(), idp, service, cached, latency_us);
    }
}

/// One line for a refused exchange: the stage and the error (which never holds the token).
pub fn exchange_refused(
    surface: Surface,
    error: &crate::exchange::ExchangeError,
    service: &str,
    latency: std::time::Duration,
) {
    tracing::info!(
        target: "baton::exchange",
        outcome = "refused",
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
