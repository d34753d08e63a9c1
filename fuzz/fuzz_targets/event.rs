//! The event parser and validator: any bytes, as a single event of each type and as a
//! batch, must give events or an error, never a panic; what parses must serialize and
//! parse again to the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_schemas::{EventType, Limits, parse_batch, parse_single, validate};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let _ = switchyard_schemas::parse::write_key_in_body(data);
    for event_type in EventType::ALL {
        if let Ok(parsed) = parse_single(data, event_type, &limits) {
            for event in &parsed.events {
                let _ = validate(event);
            }
        }
    }
    if let Ok(parsed) = parse_batch(data, &limits) {
        // Written as the pipeline writes records (serde_json straight to text): raw
        // sections stay as sent. Through a `serde_json::Value` a number past f64's range
        // in `properties` (`1e999`, kept raw) can't be represented, and the harness, not
        // the parser, failed on it.
        let events = serde_json::to_string(&parsed.events).expect("parsed events serialize");
        let again = format!("{{\"batch\":{events}}}");
        let reparsed = parse_batch(again.as_bytes(), &limits).expect("what parsed, parses again");
        assert_eq!(reparsed.events.len(), parsed.events.len());
    }
});
