//! Stripe signatures already taken, so a replayed delivery is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Stripe signatures seen within their tolerance, by (source, decoded signature bytes).
#[derive(Debug, Default)]
pub struct Replays(Mutex<HashMap<ReplayKey, i64>>);

type ReplayKey = (Arc<str>, Vec<u8>);

impl Replays {
    /// True the first time a signature is seen; forgets those older than `tolerance`.
    pub(crate) fn first_time(
        &self,
        source: &Arc<str>,
        signature: &[u8],
        timestamp: i64,
        now: i64,
        tolerance: i64,
    ) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.len() >= 10_000 {
            seen.retain(|_, at| now - *at <= tolerance);
        }
        seen.insert((source.clone(), signature.to_vec()), timestamp).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_taken_once_within_its_tolerance() {
        let replays = Replays::default();
        let source: Arc<str> = Arc::from("stripe");
        assert!(replays.first_time(&source, b"abc", 100, 100, 300));
        assert!(!replays.first_time(&source, b"abc", 100, 150, 300), "a replay");
        assert!(
            replays.first_time(&Arc::from("other"), b"abc", 100, 150, 300),
            "per source"
        );
    }
}
