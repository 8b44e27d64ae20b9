//! The logs decoder on arbitrary bytes, within the daemon's default per-message limits: a decode error is
//! fine, a panic, an abort or a stack overflow is a bug.
#![no_main]

use db_event_writer::processor::{ProcessorKind, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = validate(ProcessorKind::Logs, "logs.syslog.processed", data, "events");
    let _ = validate(ProcessorKind::Logs, "logs.snmp", data, "events");
    let _ = validate(ProcessorKind::Logs, "logs.otel", data, "events");
});
