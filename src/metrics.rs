//! Prometheus metrics, served by the admin listener at `/metrics` (OpenMetrics text).
//!
//! Counters the library keeps as plain atomics (minted-token cache, JWKS) are read at scrape
//! time; per-request metrics are recorded here by the proxy and `/tokens`.

use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hashbrown::{Equivalent, HashMap};
use parking_lot::RwLock;
use rustc_hash::FxBuildHasher;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::exchange::Exchanger;
use crate::store::status::StoreStatus;

/// Every metric baton exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    exchanges: Family<ExchangeLabels, Counter>,
    exchange_seconds: Family<SurfaceLabels, Histogram, fn() -> Histogram>,
    proxied: Family<StatusLabels, Counter>,
    forward_auth: Family<StatusLabels, Counter>,
    upstream_seconds: Histogram,
    reloads: Family<ReloadLabels, Counter>,
    /// The per-request series, resolved once: a `Family` lookup hashes its labels with
    /// SipHash under a lock (and `exchanges`' labels would be allocated) on every request.
    hot: HotSeries,
    /// The store's follower, with `[store]` (its metrics are exported only then).
    store: Arc<OnceLock<Arc<StoreStatus>>>,
}

/// Handles to series of the families above (a handle shares its series' value).
#[derive(Debug, Default)]
struct HotSeries {
    /// `proxied` by status − 100 (100–599).
    proxied: Box<[OnceLock<Counter>]>,
    /// `forward_auth` by status − 100 (100–599).
    forward_auth: Box<[OnceLock<Counter>]>,
    /// `exchange_seconds` by surface: `proxy`, `tokens`, `forward_auth`.
    exchange_seconds: [OnceLock<Histogram>; 3],
    /// `exchanges` by its labels.
    exchanges: RwLock<HashMap<ExchangeLabels, Counter, FxBuildHasher>>,
}

/// `ExchangeLabels` borrowed, for looking a series up without allocating its labels.
#[derive(Hash)]
struct ExchangeLabelsRef<'a> {
    surface: &'static str,
    outcome: &'static str,
    idp: &'a str,
    service: &'a str,
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

impl Equivalent<ExchangeLabels> for ExchangeLabelsRef<'_> {
    fn equivalent(&self, key: &ExchangeLabels) -> bool {
        self.surface == key.surface
            && self.outcome == key.outcome
            && self.idp == key.idp
            && self.service == key.service
    }
}

/// Counts one response with `status` in `family`, through its resolved handle in `hot`.
fn count_status(family: &Family<StatusLabels, Counter>, hot: &[OnceLock<Counter>], status: u16) {
    let series = || family.get_or_create(&StatusLabels { status }).clone();
    match status
        .checked_sub(100)
        .and_then(|i| hot.get(usize::from(i)))
    {
        Some(slot) => slot.get_or_init(series).inc(),
        None => series().inc(),
    };
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
        let forward_auth = Family::<StatusLabels, Counter>::default();
        registry.register(
            "forward_auth_requests",
            "Check requests on the forward-auth listener by response status (HTTP; an Envoy \
             gRPC check by the HTTP status its answer stands for)",
            forward_auth.clone(),
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
        let store = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(StoreCollector(Arc::clone(&store))));
        Self {
            store,
            registry,
            exchanges,
            exchange_seconds,
            proxied,
            forward_auth,
            upstream_seconds,
            reloads,
            hot: HotSeries {
                proxied: (100..600).map(|_| OnceLock::new()).collect(),
                forward_auth: (100..600).map(|_| OnceLock::new()).collect(),
                ..HotSeries::default()
            },
        }
    }

    /// Exports the store's metrics from `status` (once; later calls are ignored).
    pub fn attach_store(&self, status: Arc<StoreStatus>) {
        let _ = self.store.set(status);
    }

    /// Records one configuration change: `source` is `file`, `admin` or `store`.
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
        let labels = ExchangeLabelsRef {
            surface,
            outcome,
            idp,
            service,
        };
        let known = self.hot.exchanges.read().get(&labels).cloned();
        let counter = known.unwrap_or_else(|| {
            let owned = ExchangeLabels {
                surface,
                outcome,
                idp: idp.to_owned(),
                service: service.to_owned(),
            };
            let counter = self.exchanges.get_or_create(&owned).clone();
            self.hot.exchanges.write().insert(owned, counter.clone());
            counter
        });
        counter.inc();
        let histogram = match surface {
            "proxy" => Some(&self.hot.exchange_seconds[0]),
            "tokens" => Some(&self.hot.exchange_seconds[1]),
            "forward_auth" => Some(&self.hot.exchange_seconds[2]),
            _ => None,
        };
        let observe = |h: &Histogram| h.observe(latency.as_secs_f64());
        match histogram {
            Some(slot) => observe(slot.get_or_init(|| {
                self.exchange_seconds
                    .get_or_create(&SurfaceLabels { surface })
                    .clone()
            })),
            None => observe(
                &self
                    .exchange_seconds
                    .get_or_create(&SurfaceLabels { surface }),
            ),
        }
    }

    /// Records one response of the proxy listener.
    pub fn proxied(&self, status: u16) {
        count_status(&self.proxied, &self.hot.proxied, status);
    }

    /// Records one answer of the forward-auth listener.
    pub fn forward_auth_checked(&self, status: u16) {
        count_status(&self.forward_auth, &self.hot.forward_auth, status);
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

/// The store's follower, read at scrape time.
#[derive(Debug)]
struct StoreCollector(Arc<OnceLock<Arc<StoreStatus>>>);

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(status) = self.0.get() else {
            return Ok(());
        };
        let reconnects = ConstCounter::new(status.reconnects());
        reconnects.encode(encoder.encode_descriptor(
            "store_reconnects",
            "Times this baton connected to the store again after losing it",
            None,
            reconnects.metric_type(),
        )?)?;
        let revision = ConstGauge::new(status.revision());
        revision.encode(encoder.encode_descriptor(
            "store_revision",
            "The store revision served (0: the store had none)",
            None,
            revision.metric_type(),
        )?)?;
        let connected = ConstGauge::new(i64::from(status.connected()));
        connected.encode(encoder.encode_descriptor(
            "store_connected",
            "Whether this baton is connected to the store (1) or serving its last revision \
             without it (0)",
            None,
            connected.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::exchange::ExchangerOptions;

    fn metrics() -> Metrics {
        let config = Config::from_toml(
            "[[keys]]\nid = \"sbk_t\"\nalgorithm = \"HS256\"\nsecret = \"sbsec_t\"\n",
            Path::new("."),
            &|_| None,
        )
        .unwrap();
        let exchanger = Exchanger::new(config, ExchangerOptions::default()).unwrap();
        Metrics::new(Arc::new(exchanger))
    }

    fn line<'t>(text: &'t str, starts: &str) -> Vec<&'t str> {
        text.lines().filter(|l| l.starts_with(starts)).collect()
    }

    #[test]
    fn series_counted_through_their_handles_are_the_exported_series() {
        let m = metrics();
        for _ in 0..3 {
            m.exchange("proxy", "ok", "okta", "app", Duration::from_micros(20));
        }
        m.exchange("proxy", "ok", "okta", "other", Duration::from_micros(20));
        m.exchange("tokens", "refused", "-", "app", Duration::from_micros(20));
        m.exchange("elsewhere", "ok", "okta", "app", Duration::from_micros(20));
        m.proxied(200);
        m.proxied(200);
        m.proxied(401);
        m.proxied(42);
        let text = m.encode();
        let exchanges = line(&text, "baton_exchanges_total{");
        assert_eq!(exchanges.len(), 4, "{text}");
        assert!(
            exchanges.iter().any(|l| l.contains("surface=\"proxy\"")
                && l.contains("service=\"app\"")
                && l.ends_with(" 3")),
            "{exchanges:?}"
        );
        assert!(
            exchanges
                .iter()
                .any(|l| l.contains("service=\"other\"") && l.ends_with(" 1"))
        );
        let counts = line(&text, "baton_exchange_duration_seconds_count");
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(
            counts
                .iter()
                .any(|l| l.contains("\"proxy\"") && l.ends_with(" 4"))
        );
        let proxied = line(&text, "baton_proxied_requests_total{");
        assert!(
            proxied.contains(&"baton_proxied_requests_total{status=\"200\"} 2"),
            "{proxied:?}"
        );
        assert!(proxied.contains(&"baton_proxied_requests_total{status=\"401\"} 1"));
        assert!(proxied.contains(&"baton_proxied_requests_total{status=\"42\"} 1"));
    }
}
