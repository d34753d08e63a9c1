//! Trace context across the Kafka hop. Ingest, the source supervisor and each delivery
//! attempt open a span (target [`TARGET`]); each span's parent is the `traceparent` the
//! event arrived with (HTTP header, then Kafka record header), and what it passes on is
//! its own context. With the OpenTelemetry layer installed (the binary does so when an
//! OTLP endpoint is configured) the spans are exported and one trace shows the HTTP
//! request, the Kafka hop, the supervisor and each attempt; without it the spans are
//! disabled at their call sites and cost nothing, and the `traceparent` still travels.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use switchyard_schemas::trace::Traceparent;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of the spans meant for tracing only (the log output leaves them out).
pub const TARGET: &str = "otel";

/// Makes `span` a child of the remote context `parent`.
pub fn set_parent(span: &tracing::Span, parent: Traceparent) {
    if span.is_disabled() {
        return;
    }
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from(parent.trace_id),
        SpanId::from(parent.span_id),
        flags,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The `traceparent` to pass on from inside `span`: the span's own context when
/// OpenTelemetry records it, else one hop further along `parent`.
pub fn pass_on(span: &tracing::Span, parent: Traceparent) -> Traceparent {
    if !span.is_disabled() {
        let context = span.context();
        let own = context.span().span_context().clone();
        if own.is_valid() {
            return Traceparent {
                trace_id: u128::from_be_bytes(own.trace_id().to_bytes()),
                span_id: u64::from_be_bytes(own.span_id().to_bytes()),
                sampled: own.is_sampled(),
            };
        }
    }
    parent.child()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_tracing_layer_the_trace_still_moves_one_hop_on() {
        let parent = Traceparent::new_root();
        let span = tracing::info_span!(target: TARGET, "hop");
        set_parent(&span, parent);
        let next = pass_on(&span, parent);
        assert_eq!(next.trace_id, parent.trace_id);
        assert_ne!(next.span_id, parent.span_id);
    }
}
