//! Trace export: the spans of every use case (tenant, call, table, version
//! on them) sent over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and nothing otherwise.
//!
//! The exporter reads the standard variables: the endpoint (`/v1/traces` is
//! added to `OTEL_EXPORTER_OTLP_ENDPOINT`), `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (`http/protobuf`, the default, or `http/json`), `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`; the batch processor `OTEL_BSP_*`
//! (its queue is bounded: 2,048 spans by default, the newest dropped past
//! it, so a collector that is down costs a bounded amount of memory); the
//! resource `OTEL_SERVICE_NAME` (default `callmeta`) and
//! `OTEL_RESOURCE_ATTRIBUTES`. gRPC is not built in: asking for it is an
//! error at start rather than silence.
//!
//! The exporter posts from a thread of its own (a blocking HTTP client), so
//! it is built before the async runtime starts and shut down (flushing what
//! is queued) after it stops.

use anyhow::bail;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The tracer provider when trace export is asked for by the environment.
pub fn otlp_from_env() -> anyhow::Result<Option<SdkTracerProvider>> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    // The traces' own variable first, as the specification says.
    let mut protocol = Protocol::HttpBinary;
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        let Ok(value) = std::env::var(name) else {
            continue;
        };
        protocol = match value.trim().to_ascii_lowercase().as_str() {
            "" => continue,
            "http/protobuf" => Protocol::HttpBinary,
            "http/json" => Protocol::HttpJson,
            _ => bail!(
                "{name}={value:?}: callmeta exports traces over OTLP/HTTP only; \
                 set it to http/protobuf (the collector's port 4318) or http/json"
            ),
        };
        break;
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| anyhow::anyhow!("setting up the OTLP trace exporter: {e}"))?;
    let mut resource = Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("callmeta");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    Ok(Some(provider))
}

/// The `tracing` layer that hands spans to `provider`'s exporter.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("callmeta"))
}
