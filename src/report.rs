//! The report `baton explain` prints, and the demo's page shows: one run of the pipeline
//! (its [`Trace`]) with its verdict. Above both the exchange and the trace it reads, so the
//! trace's recorder ([`crate::explain`]) stays below the exchange that records into it.

use std::fmt::Write as _;

use crate::config::Config;
use crate::exchange::{ExchangeError, Minted};
use crate::explain::{Trace, proxy_view};

/// What `baton explain` prints for one run of the pipeline (`result` and its `trace`) for
/// `service` (and `client`): each step, the claims at each stage, what the proxy would send
/// the app when the token is accepted, and the verdict — `result: accepted; …` or `result:
/// refused at stage `…`: …`. The demo's page shows the same text. Never contains a token.
pub fn report(
    config: &Config,
    service: &str,
    client: Option<&str>,
    result: &Result<Minted, ExchangeError>,
    trace: &Trace,
) -> String {
    let mut out = match client {
        Some(client) => format!("service {service}, client {client}:\n"),
        None => format!("service {service}:\n"),
    };
    let _ = write!(out, "{trace}");
    match result {
        Ok(minted) => {
            if let Some(payload) = minted.payload() {
                out.push_str(&proxy_view(config, service, payload.json()));
            }
            let _ = writeln!(
                out,
                "\nresult: accepted; a token would be minted, expiring at {}",
                minted.expires_at
            );
        }
        Err(e) => {
            let _ = writeln!(out, "\nresult: refused at stage `{}`: {e}", e.stage());
        }
    }
    out
}
