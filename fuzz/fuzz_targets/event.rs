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
        let again = serde_json::json!({ "batch": parsed.events });
        let reparsed = parse_batch(again.to_string().as_bytes(), &limits).expect("what parsed, parses again");
        assert_eq!(reparsed.events.len(), parsed.events.len());
    }
});
