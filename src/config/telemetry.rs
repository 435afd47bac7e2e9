//! `[telemetry]`: traces over OTLP (off unless `otlp_endpoint` is set).

use std::time::Duration;

use super::spec::TelemetrySpec;
use super::{Loader, Place};

/// How often spans are sent unless `[telemetry] export_interval` is set (the OpenTelemetry
/// SDK's default batch delay).
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(5);

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector's base URL (`http://127.0.0.1:4318`); spans go to
    /// `{otlp_endpoint}/v1/traces`. `None`: no traces.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// How long spans are batched before they are sent.
    pub export_interval: Duration,
    /// The share of requests without a caller's `traceparent` that start a trace (0 to 1). A
    /// caller's sampling decision is always followed.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "baton".to_owned(),
            export_interval: DEFAULT_EXPORT_INTERVAL,
            sample_ratio: 1.0,
        }
    }
}

impl Loader<'_> {
    pub(super) fn telemetry(&mut self, spec: TelemetrySpec) -> TelemetryConfig {
        let otlp_endpoint = spec.otlp_endpoint.map(|endpoint| {
            let valid = url::Url::parse(&endpoint).is_ok_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some()
                    && url.query().is_none()
            });
            if !valid {
                self.error(
                    None,
                    "telemetry.otlp_endpoint",
                    "an http(s) URL of an OTLP/HTTP collector, e.g. \"http://127.0.0.1:4318\"",
                );
            }
            endpoint.trim_end_matches('/').to_owned()
        });
        let place = Place {
            path: "telemetry".to_owned(),
            span: Some(0..0),
        };
        let export_interval = self.duration(
            spec.export_interval.as_ref(),
            DEFAULT_EXPORT_INTERVAL,
            &place,
            "export_interval",
        );
        let sample_ratio = spec.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_ratio) {
            self.error(
                Some(&place),
                "telemetry.sample_ratio",
                "a share of requests from 0 (none) to 1 (all, the default)",
            );
        }
        TelemetryConfig {
            otlp_endpoint,
            service_name: spec.service_name.unwrap_or_else(|| "baton".to_owned()),
            export_interval,
            sample_ratio,
        }
    }
}
