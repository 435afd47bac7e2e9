//! `[telemetry]`: traces over OTLP (off unless `otlp_endpoint` is set).

use std::time::Duration;

use super::spec::TelemetrySpec;
use super::{Loader, Place};

/// How often spans are sent unless `[telemetry] export_interval` is set (the OpenTelemetry
/// SDK's default batch delay).
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(5);

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector's base URL (`http://127.0.0.1:4318`); spans go to
    /// `{otlp_endpoint}/v1/traces`. `None`: no traces.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// How long spans are batched before they are sent.
    pub export_interval: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "baton".to_owned(),
            export_interval: DEFAULT_EXPORT_INTERVAL,
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
        TelemetryConfig {
            otlp_endpoint,
            service_name: spec.service_name.unwrap_or_else(|| "baton".to_owned()),
            export_interval,
        }
    }
}
