//! Records of the retry topic: events a full destination parked, read back with their
//! retry state and offered to the same destination once they are due.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_actors::Parked;
use switchyard_schemas::Event;
use switchyard_schemas::record::decode_value;

use crate::dead_letter::header;

/// A parked event read back.
#[derive(Debug)]
pub struct Returning {
    pub source_id: String,
    pub destination_id: String,
    pub event: Event,
    pub state: Parked,
    pub not_before: SystemTime,
}

/// Reads a retry-topic record; the error names what is missing or malformed.
pub fn decode(pairs: &[(&str, Option<&[u8]>)], value: &[u8]) -> Result<Returning, String> {
    let text = |name: &str| -> Result<Option<String>, String> {
        match pairs.iter().rev().find(|(key, _)| *key == name) {
            Some((_, Some(bytes))) => std::str::from_utf8(bytes)
                .map(|s| Some(s.to_string()))
                .map_err(|_| format!("header {name} is not UTF-8")),
            _ => Ok(None),
        }
    };
    let required = |name: &str| text(name)?.ok_or_else(|| format!("retry record without header {name}"));
    let number = |name: &str| -> Result<u64, String> {
        required(name)?
            .parse::<u64>()
            .map_err(|_| format!("header {name} is not a number"))
    };
    let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
    Ok(Returning {
        source_id: required(header::SOURCE_ID)?,
        destination_id: required(header::DESTINATION_ID)?,
        event: decode_value(value).map_err(|error| error.to_string())?,
        state: Parked {
            attempts: u32::try_from(number(header::RETRY_ATTEMPTS)?).unwrap_or(u32::MAX),
            parks: u32::try_from(number(header::RETRY_PARKS)?).unwrap_or(u32::MAX),
            first_seen: at(number(header::RETRY_FIRST_SEEN_MS)?),
            last_error: text(header::RETRY_LAST_ERROR)?,
        },
        not_before: at(number(header::RETRY_NOT_BEFORE_MS)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_retry_state_back_and_names_a_missing_header() {
        let value = br#"{"type":"track","userId":"u","event":"e","messageId":"m1"}"#;
        let pairs: Vec<(&str, Option<&[u8]>)> = vec![
            (header::SOURCE_ID, Some(b"web")),
            (header::DESTINATION_ID, Some(b"hook")),
            (header::RETRY_ATTEMPTS, Some(b"3")),
            (header::RETRY_PARKS, Some(b"2")),
            (header::RETRY_FIRST_SEEN_MS, Some(b"1000")),
            (header::RETRY_NOT_BEFORE_MS, Some(b"5000")),
            (header::RETRY_LAST_ERROR, Some(b"HTTP 503")),
        ];
        let back = decode(&pairs, value).expect("decodes");
        assert_eq!((back.source_id.as_str(), back.destination_id.as_str()), ("web", "hook"));
        assert_eq!(back.event.message_id(), Some("m1"));
        assert_eq!(
            back.state,
            Parked {
                attempts: 3,
                parks: 2,
                first_seen: UNIX_EPOCH + Duration::from_secs(1),
                last_error: Some("HTTP 503".into()),
            }
        );
        assert_eq!(back.not_before, UNIX_EPOCH + Duration::from_secs(5));

        let missing = decode(&pairs[..5], value).expect_err("no not-before");
        assert!(missing.contains(header::RETRY_NOT_BEFORE_MS), "{missing}");
        let mut bad = pairs.clone();
        bad[2] = (header::RETRY_ATTEMPTS, Some(b"three"));
        assert!(decode(&bad, value).expect_err("not a number").contains("not a number"));
    }
}
