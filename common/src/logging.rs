//! One place that sets up logging and tracing for every vantage binary:
//! log lines on stderr (text or JSON) and, when an OTLP endpoint is given,
//! OpenTelemetry traces exported over OTLP/gRPC. A probe's trace crosses
//! processes as a W3C `traceparent` carried with its result (agent →
//! coordinator) and with the notification it causes (coordinator → sink).

use std::collections::HashMap;

pub use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;

use crate::identity::Identity;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("OTLP endpoint {0:?}: expected http://host:port or https://host:port")]
    Endpoint(String),
    /// The exporter refused its configuration.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// Keeps trace export running; flushes what is buffered when dropped.
/// End it with [`Telemetry::flush`] while the Tokio runtime still runs:
/// the exporter sends on that runtime.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops exporting. Flushing blocks, so it
    /// happens off the runtime's threads while the runtime goes on sending.
    pub async fn flush(self) {
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.provider.take().map(|p| p.shutdown()) {
            eprintln!("could not flush traces: {e}");
        }
    }
}

/// Installs the global subscriber, writing to stderr so that stdout stays
/// free for command output. `RUST_LOG` overrides `default_directive`.
/// Calling it twice is harmless (the second call does nothing).
pub fn init(format: LogFormat, default_directive: &str) {
    // Without an endpoint nothing can fail.
    let _ = init_traced(format, default_directive, None, "vantage", None);
}

/// Like [`init`], and with `otlp_endpoint` also exports spans as
/// `service` over OTLP/gRPC (batched, in the background), from `instance`
/// (`service.instance.id`, and `vantage.region` for an agent). Must be
/// called inside a Tokio runtime when an endpoint is given.
///
/// `RUST_LOG` (or `default_directive`) filters log lines only: what is
/// traced is fixed (vantage's own spans at INFO and above), so quieter logs
/// never silence traces, nor do louder ones export dependencies' spans.
pub fn init_traced(
    format: LogFormat,
    default_directive: &str,
    otlp_endpoint: Option<&str>,
    service: &str,
    instance: Option<&Identity>,
) -> Result<Telemetry, TelemetryError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_directive));
    let provider = otlp_endpoint
        .map(|endpoint| provider(endpoint, service, instance))
        .transpose()?;
    let traced = Targets::new()
        .with_target("vantage_agent", LevelFilter::INFO)
        .with_target("vantage_coordinator", LevelFilter::INFO)
        .with_target("vantage_common", LevelFilter::INFO);
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("vantage"))
            .with_tracked_inactivity(false)
            .with_target(false)
            .with_filter(traced)
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(otel);
    let _ = match format {
        LogFormat::Text => registry.with(fmt.with_filter(filter)).try_init(),
        LogFormat::Json => registry.with(fmt.json().with_filter(filter)).try_init(),
    };
    Ok(Telemetry { provider })
}

fn provider(
    endpoint: &str,
    service: &str,
    instance: Option<&Identity>,
) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint);
    if endpoint.starts_with("https://") {
        // A hosted collector's certificate, checked against the WebPKI roots.
        let tls = tonic::transport::ClientTlsConfig::new().with_enabled_roots();
        builder = builder.with_tls_config(tls);
    } else if !endpoint.starts_with("http://") {
        return Err(TelemetryError::Endpoint(endpoint.to_owned()));
    }
    let exporter = builder
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let mut resource = opentelemetry_sdk::Resource::builder().with_service_name(service.to_owned());
    if let Some(identity) = instance {
        resource = resource.with_attribute(KeyValue::new("service.instance.id", identity.name()));
        if let Identity::Agent { region, .. } = identity {
            resource = resource.with_attribute(KeyValue::new("vantage.region", region.clone()));
        }
    }
    let resource = resource.build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The W3C `traceparent` of `span`, when it is being traced.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Sets `attributes` on `span`'s trace span, for the trace exporter
/// alone: recorded as fields, they would also be formatted for the log
/// layer each time, for no log line (the probe span gets them once the
/// probe is over, as it closes).
pub fn set_attributes(span: &tracing::Span, attributes: impl IntoIterator<Item = KeyValue>) {
    for kv in attributes {
        span.set_attribute(kv.key, kv.value);
    }
}

/// Makes `span` a child of the remote span named by `traceparent` (as
/// produced by [`traceparent`]); ignores values that do not parse.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Makes a command-line program end quietly (exit 0) when the reader of
/// its output goes away (`vantagectl status | head -3`): printing to a
/// closed pipe panics in Rust, which would print a backtrace instead.
pub fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Lets a log line that an outsider can cause at will (a failed TLS
/// handshake, an exhausted accept) through at most once per period,
/// counting the ones held back, so a flood of them cannot flood the log.
#[derive(Debug)]
pub struct Throttle {
    every_ms: i64,
    next_ms: std::sync::atomic::AtomicI64,
    held: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// At most one line per `every_ms` milliseconds.
    pub const fn new(every_ms: i64) -> Self {
        Throttle {
            every_ms,
            next_ms: std::sync::atomic::AtomicI64::new(0),
            held: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this line may be logged (`n` lines were held back
    /// since the last one), `None` when it is held back.
    pub fn allow(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let now = crate::clock::now_ms();
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.every_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}
