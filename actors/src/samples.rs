//! The last few errors an actor saw, for the delivery overview: enough for an operator
//! to see what is going wrong without reading logs, bounded so it costs nothing.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How many samples an actor keeps.
const KEEP: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorSample {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub reason: String,
    /// The first affected event's messageId (never its content).
    pub message_id: Option<String>,
    /// Events the error affected (a batch request fails for all it carries).
    pub events: usize,
}

/// The most recent errors, newest last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecentErrors(VecDeque<ErrorSample>);

impl RecentErrors {
    pub fn push(&mut self, reason: &str, message_id: Option<&str>, events: usize) {
        if self.0.len() == KEEP {
            self.0.pop_front();
        }
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.0.push_back(ErrorSample {
            at_ms,
            reason: reason.to_string(),
            message_id: message_id.map(str::to_string),
            events,
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = &ErrorSample> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_few() {
        let mut recent = RecentErrors::default();
        for i in 0..8 {
            recent.push(&format!("error {i}"), Some("m"), 1);
        }
        let reasons: Vec<&str> = recent.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons, vec!["error 3", "error 4", "error 5", "error 6", "error 7"]);
    }
}
