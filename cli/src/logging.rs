//! Logs on stderr (text or JSON) and, when an OTLP endpoint is configured, traces
//! exported over OTLP/HTTP. The standard OpenTelemetry variables apply:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns export
//! on; `OTEL_TRACES_SAMPLER=parentbased_traceidratio` with `OTEL_TRACES_SAMPLER_ARG=0.01`
//! samples 1% of traces (the default follows the caller's decision and records the rest);
//! `OTEL_BSP_SCHEDULE_DELAY` sets how often spans are sent.
//!
//! Spans for tracing only (target `otel`) never reach the log output, and the log
//! output never carries event payloads or credentials: actors log ids and reasons.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::LogFormat;

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] sends what is left.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("trace export did not finish: {error}");
        }
    }
}

fn otlp_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.is_empty()))
}

pub fn init(format: LogFormat) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"))
        .add_directive(
            format!("{}=off", switchyard_telemetry::TARGET)
                .parse()
                .unwrap_or_default(),
        );
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);
    let (provider, traces) = if otlp_configured() {
        match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
            Ok(exporter) => {
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name("switchyard").build())
                    .build();
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("switchyard"))
                    .with_filter(Targets::new().with_target(switchyard_telemetry::TARGET, LevelFilter::INFO));
                (Some(provider), Some(layer))
            }
            Err(error) => {
                eprintln!("traces are not exported: {error}");
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    tracing_subscriber::registry().with(logs).with(traces).init();
    Telemetry { provider }
}
