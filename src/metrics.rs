//! Prometheus metrics, served by the admin listener at `/metrics` (OpenMetrics text).
//!
//! Counters the library keeps as plain atomics (minted-token cache, JWKS) are read at scrape
//! time; per-request metrics are recorded here by the proxy and `/tokens`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::exchange::Exchanger;

/// Every metric baton exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    exchanges: Family<ExchangeLabels, Counter>,
    exchange_seconds: Family<SurfaceLabels, Histogram, fn() -> Histogram>,
    proxied: Family<StatusLabels, Counter>,
    upstream_seconds: Histogram,
    reloads: Family<ReloadLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExchangeLabels {
    surface: &'static str,
    outcome: &'static str,
    idp: String,
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SurfaceLabels {
    surface: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    source: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Reads the exchanger's counters at scrape time.
#[derive(Debug)]
struct ExchangerCollector(Arc<Exchanger>);

// === impl Metrics ===

impl Metrics {
    /// The metrics of `exchanger`'s gateway.
    pub fn new(exchanger: Arc<Exchanger>) -> Self {
        let mut registry = Registry::with_prefix("baton");
        let exchanges = Family::<ExchangeLabels, Counter>::default();
        registry.register(
            "exchanges",
            "Token exchanges by surface, outcome, IdP and service",
            exchanges.clone(),
        );
        let exchange_seconds: Family<SurfaceLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "exchange_duration_seconds",
            "Time to answer an exchange (cache hits included)",
            exchange_seconds.clone(),
        );
        let proxied = Family::<StatusLabels, Counter>::default();
        registry.register(
            "proxied_requests",
            "Requests on the proxy listener by response status",
            proxied.clone(),
        );
        let upstream_seconds = latency_histogram();
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to its response header",
            upstream_seconds.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration changes by source (file: SIGHUP or the file watch; admin: an admin API \
             write) and outcome (applied, rejected)",
            reloads.clone(),
        );
        registry.register_collector(Box::new(ExchangerCollector(exchanger)));
        Self {
            registry,
            exchanges,
            exchange_seconds,
            proxied,
            upstream_seconds,
            reloads,
        }
    }

    /// Records one configuration change: `source` is `file` or `admin`.
    pub fn config_reload(&self, source: &'static str, applied: bool) {
        let outcome = if applied { "applied" } else { "rejected" };
        self.reloads
            .get_or_create(&ReloadLabels { source, outcome })
            .inc();
    }

    /// Records one exchange.
    pub fn exchange(
        &self,
        surface: &'static str,
        outcome: &'static str,
        idp: &str,
        service: &str,
        latency: Duration,
    ) {
        self.exchanges
            .get_or_create(&ExchangeLabels {
                surface,
                outcome,
                idp: idp.to_owned(),
                service: service.to_owned(),
            })
            .inc();
        self.exchange_seconds
            .get_or_create(&SurfaceLabels { surface })
            .observe(latency.as_secs_f64());
    }

    /// Records one response of the proxy listener.
    pub fn proxied(&self, status: u16) {
        self.proxied.get_or_create(&StatusLabels { status }).inc();
    }

    /// Records one upstream round trip.
    pub fn upstream(&self, latency: Duration) {
        self.upstream_seconds.observe(latency.as_secs_f64());
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; an encoding error would be a bug in a collector.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        text
    }
}

/// 10 µs to about 1.5 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 3.0, 12))
}

// === impl ExchangerCollector ===

impl Collector for ExchangerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let exchanger = &self.0;
        let minted = exchanger.cache_stats();
        let jwks = exchanger.jwks().stats();
        let lookups = [
            ("minted", "hit", minted.hits.load(Ordering::Relaxed)),
            ("minted", "miss", minted.misses.load(Ordering::Relaxed)),
            ("jwks", "hit", jwks.hits.load(Ordering::Relaxed)),
            ("jwks", "miss", jwks.misses.load(Ordering::Relaxed)),
        ];
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "cache_lookups",
            "Cache lookups by cache (minted tokens, JWKS) and result",
            None,
            counter.metric_type(),
        )?;
        for (cache, result, value) in lookups {
            ConstCounter::new(value)
                .encode(family.encode_family(&CacheLabels { cache, result })?)?;
        }
        let mut fetches = encoder.encode_descriptor(
            "jwks_fetches",
            "JWKS fetches by outcome",
            None,
            counter.metric_type(),
        )?;
        for (outcome, value) in [
            ("ok", jwks.fetched.load(Ordering::Relaxed)),
            ("error", jwks.failed.load(Ordering::Relaxed)),
        ] {
            ConstCounter::new(value).encode(fetches.encode_family(&OutcomeLabels { outcome })?)?;
        }
        let entries = ConstGauge::new(i64::try_from(exchanger.cached_tokens()).unwrap_or(i64::MAX));
        entries.encode(encoder.encode_descriptor(
            "cached_tokens",
            "Minted tokens in the cache",
            None,
            entries.metric_type(),
        )?)?;
        let generation = ConstGauge::new(i64::try_from(exchanger.generation()).unwrap_or(i64::MAX));
        generation.encode(encoder.encode_descriptor(
            "config_generation",
            "Configuration generation (1 at start, +1 per reload)",
            None,
            generation.metric_type(),
        )?)?;
        Ok(())
    }
}
