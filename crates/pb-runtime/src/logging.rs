//! Logging and traces. Logs: `tracing` to standard error, filtered by `PB_LOG` (or
//! `RUST_LOG`), text or JSON by `PB_LOG_FORMAT`. Traces: exported with OpenTelemetry over
//! OTLP (HTTP/protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`OTEL_SERVICE_NAME` names
//! the service); when it is not, no span leaves the process and no header is added. No log
//! line or span carries a password: secrets are `pb_protocol::Secret`, whose `Debug` prints
//! `***`, and payloads are never logged or recorded.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the exporter alive; flushes the spans still buffered when dropped (end of `main`).
#[derive(Debug)]
#[must_use = "dropping it at once would stop exporting traces"]
pub struct Telemetry(Option<SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Install the global subscriber for `service` (its default service name), logging at
/// `default_level` unless `PB_LOG` / `RUST_LOG` say otherwise. Call once, from `main`.
pub fn init(service: &str, default_level: &str) -> Telemetry {
    let filter = std::env::var("PB_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default_level.into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("PB_LOG={filter:?} is not a valid filter ({e}); using `{default_level}`");
        EnvFilter::new(default_level)
    });
    let json = std::env::var("PB_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    // The log level filters the logs only: spans go to the exporter at info and above,
    // whatever the logs show (the CLI logs warnings only, and still exports its spans).
    let fmt = fmt.with_filter(filter);
    let (provider, otel) = match exporter(service) {
        Ok(Some(provider)) => {
            let tracer = provider.tracer("pb");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
            (Some(provider), Some(layer))
        }
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("traces are off: {e}. Check OTEL_EXPORTER_OTLP_ENDPOINT");
            (None, None)
        }
    };
    tracing_subscriber::registry().with(fmt).with(otel).init();
    Telemetry(provider)
}

/// The OTLP exporter, if `OTEL_EXPORTER_OTLP_ENDPOINT` asks for one.
/// The machine's name (in a container, the container's own), for the spans' `host.name`:
/// which replica ran a span.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

fn exporter(service: &str) -> Result<Option<SdkTracerProvider>, String> {
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
    let mut resource = opentelemetry_sdk::Resource::builder().with_service_name(name);
    if let Some(host) = host_name() {
        resource = resource.with_attribute(opentelemetry::KeyValue::new("host.name", host));
    }
    let resource = resource.build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    crate::trace::enable();
    Ok(Some(provider))
}
