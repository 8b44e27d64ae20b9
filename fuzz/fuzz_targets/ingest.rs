//! The ingest front's parsing of what a client controls, on arbitrary bytes: the subject (its checks and the
//! filter match), the `Idempotency-Key`, the message id asked about, a batch body as a JSON array or NDJSON.
//! A refusal is fine; a panic, an abort, a stack overflow, or a batch over its item limit is a bug.
#![no_main]

use db_event_writer::ingest::limits::{batch_items, check_subject, event_id, idempotency_key, item_id};
use db_event_writer::ingest::status::parse_message_id;
use db_event_writer::ingest::subject_matches;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if check_subject(text).is_ok() {
            let _ = subject_matches("telemetry.>", text);
            let _ = subject_matches("*.a.>", text);
        }
        let _ = parse_message_id(text);
    }
    if let Ok(Some(key)) = idempotency_key(Some(data)) {
        // A single event's id and an item's never coincide.
        assert_ne!(event_id(&key), item_id(&key, 0));
    }
    if let Ok(items) = batch_items(data, 1000) {
        assert!(items.len() <= 1000);
    }
});
