//! OpenTelemetry traces over OTLP/HTTP (protobuf), only when the operator asks for them
//! with the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (spans go to
//! `{endpoint}/v1/traces`) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is).
//! `opentelemetry-otlp` and the SDK read the rest themselves: `OTEL_EXPORTER_OTLP_HEADERS`
//! (and `_TRACES_HEADERS`), `_TIMEOUT`, `_COMPRESSION`, `OTEL_TRACES_SAMPLER` and
//! `_ARG`, `OTEL_SERVICE_NAME` (default here `regkeeper`) and
//! `OTEL_RESOURCE_ATTRIBUTES`. `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
//! turns it off; a protocol other than `http/protobuf` is refused at start, naming the
//! variable. Without an endpoint nothing is built: no exporter, no batch thread, and
//! the spans below are plain `tracing` spans that the log output does not show.
//!
//! Spans (all `regkeeper::*` spans and events at info and above reach the exporter):
//! `http.request` (exported as `METHOD ROUTE`: every API and console request, its
//! parent taken from an incoming
//! W3C `traceparent`/`tracestate`), `credential.resolve`, `token.mint`,
//! `token.refresh`, `sync.push`, `proxy.request`. Their fields are route templates,
//! methods, statuses, kinds and ids — never a secret, an image path given by a client,
//! or a header value (`docs/LOGGING.md`). Spans are exported in batches by the SDK's
//! own thread through a blocking `reqwest` client with rustls and the system's CA
//! certificates (an operator-chosen endpoint, like AWS's, so not through `outbound`);
//! [`Telemetry::shutdown`] flushes what is left when the server stops.

use anyhow::Context as _;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The exporter, while traces are on; dropping it without [`Telemetry::shutdown`]
/// loses the spans not yet sent.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Whether the variables (looked up by `environment`) ask for traces.
pub fn wanted(environment: &dyn Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| environment(name).is_some_and(|value| !value.trim().is_empty());
    let disabled = environment("OTEL_SDK_DISABLED")
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
        || environment("OTEL_TRACES_EXPORTER")
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Refuses a protocol this build cannot speak, naming the variable that asked for it.
fn check_protocol(environment: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(value) = environment(name).filter(|value| !value.trim().is_empty()) {
            if value.trim() != "http/protobuf" {
                anyhow::bail!(
                    "{name}: `{}` is not supported; regkeeper exports traces over http/protobuf (unset it or set it to http/protobuf)",
                    crate::text::echo(&value)
                );
            }
        }
    }
    Ok(())
}

impl Telemetry {
    /// The tracer provider for `OTEL_*` settings in `environment`, if they ask for one.
    /// The exporter itself reads the process environment, as the OpenTelemetry
    /// specification has every SDK do.
    pub fn from_environment(environment: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        if !wanted(environment) {
            return Ok(Self::default());
        }
        check_protocol(environment)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .context("setting up the OTLP trace exporter (OTEL_EXPORTER_OTLP_*)")?;
        let named = environment("OTEL_SERVICE_NAME").is_some_and(|name| !name.is_empty())
            || environment("OTEL_RESOURCE_ATTRIBUTES")
                .is_some_and(|attributes| attributes.contains("service.name="));
        let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
            opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        );
        if !named {
            resource = resource.with_service_name("regkeeper");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Self {
            provider: Some(provider),
        })
    }

    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// The layer that turns `regkeeper`'s spans into OpenTelemetry spans, if traces
    /// are on.
    pub fn layer<S>(&self) -> Option<impl tracing_subscriber::Layer<S>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        use tracing_subscriber::Layer as _;
        let provider = self.provider.as_ref()?;
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("regkeeper"))
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("regkeeper", tracing::Level::INFO),
                ),
        )
    }

    /// Sends the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(error) = provider.shutdown() {
                tracing::warn!(error = %error, "telemetry.shutdown_failed");
            }
        }
    }
}

/// Makes `span` a child of the trace an incoming request names in its W3C
/// `traceparent` (and `tracestate`) headers; nothing without them, or without traces.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    // Err only when no OpenTelemetry layer is installed: traces are off.
    let _ = span.set_parent(parent);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn traces_are_on_only_with_an_endpoint_and_not_disabled() {
        assert!(!wanted(&environment(&[])));
        assert!(!wanted(&environment(&[("OTEL_SERVICE_NAME", "rk")])));
        assert!(!wanted(&environment(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            " "
        )])));
        assert!(wanted(&environment(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318"
        )])));
        assert!(wanted(&environment(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4318/v1/traces"
        )])));
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert!(!wanted(&environment(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                off
            ])));
        }
        assert!(Telemetry::from_environment(&environment(&[]))
            .unwrap()
            .provider
            .is_none());
    }

    #[test]
    fn a_protocol_other_than_http_protobuf_is_refused_by_name() {
        let error = Telemetry::from_environment(&environment(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]))
        .err()
        .expect("grpc is refused");
        let message = error.to_string();
        assert!(
            message.starts_with("OTEL_EXPORTER_OTLP_PROTOCOL: `grpc`"),
            "{message}"
        );
        assert!(check_protocol(&environment(&[(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "http/protobuf"
        )]))
        .is_ok());
    }
}
