//! baton: a token-exchange sidecar.
//!
//! baton trusts the identity providers (IdPs) you configure, verifies a caller's IdP token,
//! maps its claims through JSONPath mappings and mints a token of its own, signed with your
//! key. This crate is the engine behind the `baton` binary; its pipeline is a plain library
//! API with no HTTP types, so the proxy, `POST /tokens` and `baton explain` all share it:
//!
//! ```text
//! subject JWT ─▶ select IdP ─▶ verify ─▶ IdP mapping ─▶ provider mapping ─▶ mint ─▶ cache
//! ```
//!
//! The entry point is [`exchange::Exchanger`], built from a validated [`config::Config`]
//! (see [`config::Config::from_toml`]).

pub mod admin;
pub mod algorithm;
pub mod authorization;
pub mod claim_headers;
pub mod clock;
pub mod config;
pub mod control;
pub mod crypto;
pub mod demo;
pub mod errors;
pub mod exchange;
pub mod explain;
pub mod idp;
pub mod init;
pub mod keygen;
pub mod mapping;
pub mod metrics;
pub mod mint;
pub mod policy;
pub mod proxy;
pub mod published;
pub mod report;
pub mod request_path;
pub mod secret;
pub mod server;
pub mod state;
pub mod store;
pub mod sts;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod traces;

pub use exchange::{ExchangeError, Exchanger, Minted};
