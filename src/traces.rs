//! Traces over OTLP (`[telemetry] otlp_endpoint`): a span per request on baton's listeners
//! and one per exchange, the caller's W3C `traceparent` continued and passed to the upstream.
//!
//! Off (the default), nothing here runs: each hook is one check of a `OnceLock`, and a
//! client's `traceparent` goes to the upstream untouched like any header. On, spans are
//! batched and sent by the OpenTelemetry SDK's own thread over OTLP/HTTP (protobuf). Spans
//! name outcomes, stages, IdPs, services and paths — never a token, a claim or a header
//! value.
//!
//! The exporter is set up once, at start (a reload does not move it), and is process-wide:
//! the hooks sit in code that runs with no handle to the listener (the exchange's records in
//! `telemetry`), and a second tracer in one process would have no use.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    FutureExt as _, Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};

use crate::config::TelemetryConfig;

/// How long one export may take before it is abandoned (the collector is down or slow).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The process's tracer, when `[telemetry] otlp_endpoint` was set at start.
static TRACES: OnceLock<Traces> = OnceLock::new();

struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

/// Setting up the exporter failed.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint: {0}")]
pub struct TracesError(String);

/// Starts exporting spans to `config`'s collector; does nothing when it names none. Call it
/// once, at start; a second call keeps the first exporter.
pub fn start(config: &TelemetryConfig) -> Result<(), TracesError> {
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(());
    };
    if TRACES.get().is_some() {
        return Ok(());
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TracesError(e.to_string()))?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(config.export_interval)
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_resource(resource)
        .build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "baton");
    let _ = TRACES.set(Traces {
        provider,
        tracer,
        propagator: TraceContextPropagator::new(),
    });
    tracing::info!(endpoint = %endpoint, "exporting traces over OTLP/HTTP");
    Ok(())
}

/// Sends the spans still batched (at shutdown).
pub fn flush() {
    if let Some(traces) = TRACES.get()
        && let Err(e) = traces.provider.force_flush()
    {
        tracing::warn!(error = %e, "could not send the last spans");
    }
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    TRACES.get().is_some()
}

/// A request's server span, continuing the caller's `traceparent` when it has one.
#[derive(Debug)]
pub struct RequestSpan {
    context: Context,
}

impl RequestSpan {
    /// Starts the span of one request on `listener` (`proxy`, `forward_auth`), or `None`
    /// when traces are off.
    pub fn start(
        listener: &'static str,
        method: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<Self> {
        let traces = TRACES.get()?;
        let parent = traces
            .propagator
            .extract(&opentelemetry_http::HeaderExtractor(headers));
        let span = traces
            .tracer
            .span_builder(method.to_owned())
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("url.path", path.to_owned()),
                KeyValue::new("baton.listener", listener),
            ])
            .start_with_context(&traces.tracer, &parent);
        Some(Self {
            context: parent.with_span(span),
        })
    }

    /// Runs `future` with this span as the current context (exchange spans and the
    /// upstream's `traceparent` take it as their parent).
    pub fn scope<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        future.with_context(self.context.clone())
    }

    /// Ends the span with the status baton answered.
    pub fn end(self, status: u16) {
        let span = self.context.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            // OpenTelemetry's HTTP conventions: a server span is an error on 5xx only.
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

/// Sets `traceparent` (and `tracestate`) on a request to the upstream from the current
/// span, replacing the client's: the upstream's spans are children of baton's. Nothing
/// when traces are off.
pub fn inject(headers: &mut HeaderMap) {
    let Some(traces) = TRACES.get() else {
        return;
    };
    let context = Context::current();
    if !context.span().span_context().is_valid() {
        return;
    }
    headers.remove("tracestate");
    traces
        .propagator
        .inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers));
}

/// What one exchange did, for its span.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRecord<'a> {
    /// `proxy`, `tokens`, `forward_auth`.
    pub surface: &'static str,
    /// `ok`, `refused`, `denied`, `unavailable`, `error`.
    pub outcome: &'static str,
    /// The stage that refused, on a refusal.
    pub stage: Option<&'static str>,
    /// The IdP, `-` when none matched.
    pub idp: &'a str,
    /// The service.
    pub service: &'a str,
    /// Whether the minted token came from the cache.
    pub cached: bool,
    /// How long the exchange took (the span ends now and starts this long before).
    pub latency: Duration,
}

/// Records an exchange as a span, child of the current request's.
pub fn exchange(record: &ExchangeRecord<'_>) {
    let Some(traces) = TRACES.get() else {
        return;
    };
    let end = SystemTime::now();
    let start = end.checked_sub(record.latency).unwrap_or(end);
    let mut attributes = vec![
        KeyValue::new("baton.surface", record.surface),
        KeyValue::new("baton.outcome", record.outcome),
        KeyValue::new("baton.idp", record.idp.to_owned()),
        KeyValue::new("baton.service", record.service.to_owned()),
        KeyValue::new("baton.cache_hit", record.cached),
    ];
    if let Some(stage) = record.stage {
        attributes.push(KeyValue::new("baton.stage", stage));
    }
    let mut span = traces
        .tracer
        .span_builder("baton.exchange")
        .with_kind(SpanKind::Internal)
        .with_start_time(start)
        .with_attributes(attributes)
        .start_with_context(&traces.tracer, &Context::current());
    if matches!(record.outcome, "unavailable" | "error") {
        span.set_status(Status::error(""));
    }
    span.end_with_timestamp(end);
}
