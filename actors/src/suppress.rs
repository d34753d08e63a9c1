//! The suppression list: users whose archive was deleted, whose new events a source
//! drops. Held as SHA-256 digests of the identifiers, so the list itself doesn't keep
//! the ids of the people who asked to be forgotten. An event is suppressed when its
//! `userId` or its `anonymousId` is on the list.

use std::collections::HashSet;

use actix::Message;
use sha2::{Digest as _, Sha256};
use switchyard_schemas::Event;

pub type Digest = [u8; 32];

/// The digest a user identifier is listed under.
pub fn digest(id: &str) -> Digest {
    Sha256::digest(id.as_bytes()).into()
}

/// One source's suppressed users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suppression(HashSet<Digest>);

impl Suppression {
    pub fn insert(&mut self, digest: Digest) {
        self.0.insert(digest);
    }

    /// Adds a digest written as hex (as it is named in the store); false if it isn't one.
    pub fn insert_hex(&mut self, text: &str) -> bool {
        let mut digest = [0u8; 32];
        let ok = hex::decode_to_slice(text, &mut digest).is_ok();
        if ok {
            self.0.insert(digest);
        }
        ok
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `id` (a userId or anonymousId) is suppressed.
    pub fn holds_id(&self, id: &str) -> bool {
        self.0.contains(&digest(id))
    }

    /// Whether the event belongs to a suppressed user. Nothing is hashed while the
    /// list is empty, which is almost always.
    pub fn holds(&self, event: &Event) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let common = event.common();
        common.user_id.as_deref().is_some_and(|id| self.holds_id(id))
            || common.anonymous_id.as_deref().is_some_and(|id| self.holds_id(id))
    }
}

/// Replaces a source's suppression list (the router refreshes it from the archive).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SetSuppression(pub std::sync::Arc<Suppression>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_held_by_its_user_id_or_anonymous_id() {
        let mut list = Suppression::default();
        assert!(list.insert_hex(&hex::encode(digest("gone@example.com"))));
        assert!(!list.insert_hex("not hex"));
        let event = |json: &str| serde_json::from_str::<Event>(json).expect("event");
        assert!(list.holds(&event(r#"{"type":"track","event":"x","userId":"gone@example.com"}"#)));
        assert!(list.holds(&event(
            r#"{"type":"track","event":"x","anonymousId":"gone@example.com"}"#
        )));
        assert!(!list.holds(&event(r#"{"type":"track","event":"x","userId":"stays"}"#)));
        assert!(!Suppression::default().holds(&event(r#"{"type":"track","event":"x","userId":"gone@example.com"}"#)));
    }
}
