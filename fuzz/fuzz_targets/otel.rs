//! The otel decoder on arbitrary bytes, as traces, metric points, metrics and derived MetricBatches (the subject picks the table), within the
//! daemon's default per-message limits: a decode error is fine, a panic, an abort or a stack overflow is a bug.
#![no_main]

use db_event_writer::processor::{ProcessorKind, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = validate(ProcessorKind::Otel, "otel.traces.raw", data, "events");
    let _ = validate(ProcessorKind::Otel, "otel.metrics.raw", data, "events");
    let _ = validate(ProcessorKind::Otel, "otel.metrics", data, "events");
    let _ = validate(ProcessorKind::Otel, "otel.metrics.derived", data, "events");
});
