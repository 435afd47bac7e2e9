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

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    FutureExt as _, Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, TraceFlags,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

use crate::config::TelemetryConfig;

/// Most spans in one export.
const MAX_EXPORT_BATCH: usize = 2048;

/// How long one export may take before it is abandoned (the collector is down or slow).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

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
                // A sidecar at tens of thousands of requests a second makes two spans each:
                // batches four times the SDK's 512 cost a quarter of the exports, and the
                // queue holds a few of them (the SDK's 2048 would be one).
                .with_max_export_batch_size(MAX_EXPORT_BATCH)
                .with_max_queue_size(4 * MAX_EXPORT_BATCH)
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    // A caller's decision is followed (its `traceparent`'s sampled flag); requests without
    // one start a trace at `sample_ratio`.
    let roots = if config.sample_ratio >= 1.0 {
        Sampler::AlwaysOn
    } else {
        Sampler::TraceIdRatioBased(config.sample_ratio)
    };
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(roots)))
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
        let method = method_name(method);
        let mut span = traces
            .tracer
            .span_builder(method.clone())
            .with_kind(SpanKind::Server)
            .start_with_context(&traces.tracer, &parent);
        // An unsampled request's span records nothing: its attributes are not even built.
        if span.is_recording() {
            span.set_attributes([
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.path", path.to_owned()),
                KeyValue::new("baton.listener", listener),
            ]);
        }
        Some(Self {
            context: parent.with_span(span),
        })
    }

    /// Runs the future `make` makes with this span as the current context (exchange spans
    /// and the upstream's `traceparent` take it as their parent). Made and boxed here, in a
    /// plain function: an `async fn` that made it in its traced branch would reserve room
    /// for it beside the one its untraced branch awaits, doubling every request's future.
    pub fn scope<F: Future>(
        &self,
        make: impl FnOnce() -> F,
    ) -> Pin<Box<impl Future<Output = F::Output>>> {
        Box::pin(make().with_context(self.context.clone()))
    }

    /// Ends the span with the status baton answered.
    pub fn end(self, status: u16) {
        let span = self.context.span();
        if span.is_recording() {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                // OpenTelemetry's HTTP conventions: a server span is an error on 5xx only.
                span.set_status(Status::error(""));
            }
        }
        span.end();
    }
}

/// A request method as a span's name: the standard ones without an allocation per request.
fn method_name(method: &str) -> Cow<'static, str> {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    match STANDARD.iter().find(|name| **name == method) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(method.to_owned()),
    }
}

/// Sets `traceparent` (and `tracestate`) on a request to the upstream from the current
/// span, replacing the client's: the upstream's spans are children of baton's. Nothing
/// when traces are off.
pub fn inject(headers: &mut HeaderMap) {
    if TRACES.get().is_none() {
        return;
    }
    let context = Context::current();
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return;
    }
    // Written here rather than by the SDK's propagator, which formats through `format!` and
    // a `String` per field: this runs on every traced request.
    headers.insert(TRACEPARENT, traceparent(span_context));
    let state = span_context.trace_state().header();
    match HeaderValue::from_str(&state) {
        Ok(value) if !state.is_empty() => {
            headers.insert(TRACESTATE, value);
        }
        _ => {
            headers.remove(TRACESTATE);
        }
    }
}

/// `traceparent` of W3C Trace Context (version 00): `00-{trace id}-{span id}-{flags}`, in
/// lower-case hex, with the sampled flag only (as the SDK's propagator writes it).
fn traceparent(span: &SpanContext) -> HeaderValue {
    let mut text = [0u8; 55];
    text[..3].copy_from_slice(b"00-");
    write_hex(&mut text[3..35], &span.trace_id().to_bytes());
    text[35] = b'-';
    write_hex(&mut text[36..52], &span.span_id().to_bytes());
    text[52] = b'-';
    write_hex(
        &mut text[53..55],
        &[(span.trace_flags() & TraceFlags::SAMPLED).to_u8()],
    );
    HeaderValue::from_bytes(&text).expect("hex digits and dashes are a valid header value")
}

/// Writes `bytes` as lower-case hex into `out` (twice as long).
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
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
    let parent = Context::current();
    let request = parent.span();
    let request = request.span_context();
    if request.is_valid() && !request.is_sampled() {
        // The request was not sampled, so neither is its exchange (parent-based sampling):
        // nothing is built for a span that would be dropped.
        return;
    }
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
        .start_with_context(&traces.tracer, &parent);
    if matches!(record.outcome, "unavailable" | "error") {
        span.set_status(Status::error(""));
    }
    span.end_with_timestamp(end);
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceId, TraceState};

    use super::*;

    /// The example of W3C Trace Context §3.2.
    fn example(flags: TraceFlags) -> SpanContext {
        SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            flags,
            false,
            TraceState::default(),
        )
    }

    #[test]
    fn traceparent_is_written_as_w3c_trace_context_says() {
        assert_eq!(
            traceparent(&example(TraceFlags::SAMPLED)),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(
            traceparent(&example(TraceFlags::default())),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
        // Flags this version does not define are not passed on.
        assert_eq!(
            traceparent(&example(TraceFlags::new(0x03))),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn the_sdk_reads_back_what_is_written() {
        let written = example(TraceFlags::SAMPLED);
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, traceparent(&written));
        let context =
            TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(&headers));
        let read = context.span().span_context().clone();
        assert_eq!(read.trace_id(), written.trace_id());
        assert_eq!(read.span_id(), written.span_id());
        assert_eq!(read.trace_flags(), written.trace_flags());
    }

    #[test]
    fn standard_methods_are_named_without_allocating() {
        assert!(matches!(method_name("GET"), Cow::Borrowed("GET")));
        assert!(matches!(method_name("PATCH"), Cow::Borrowed("PATCH")));
        assert_eq!(method_name("PROPFIND"), "PROPFIND");
        assert!(matches!(method_name("get"), Cow::Owned(_)));
    }
}
