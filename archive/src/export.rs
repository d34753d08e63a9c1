//! Reading the archive back: the events of a source between two times, decrypted.

use std::io::Write;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use crate::config::ArchiveError;
use crate::keys::KeyRing;
use crate::object::{fetch, open};

/// The hour an object's path says its events were received in.
fn hour_of(location: &str) -> Option<DateTime<Utc>> {
    let date = location.split("/date=").nth(1)?.get(..10)?;
    let hour = location.split("/hour=").nth(1)?.get(..2)?;
    DateTime::parse_from_rfc3339(&format!("{date}T{hour}:00:00Z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A time range of receipt, `[from, to)`, either end open.
#[derive(Debug, Clone, Copy, Default)]
pub struct Range {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Range {
    fn holds_hour(&self, hour: DateTime<Utc>) -> bool {
        let first_hour = self.from.map(|t| t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t));
        !(first_hour.is_some_and(|first| hour < first) || self.to.is_some_and(|end| hour >= end))
    }

    fn holds(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| at >= f) && self.to.is_none_or(|t| at < t)
    }
}

/// The objects of `source_id` that may hold events of `range`, oldest first.
pub async fn objects(
    store: &dyn ObjectStore,
    prefix: &str,
    source_id: &str,
    range: Range,
) -> Result<Vec<ObjectPath>, ArchiveError> {
    let base = ObjectPath::from(format!("{prefix}/source_id={source_id}"));
    let mut objects: Vec<ObjectPath> = store
        .list(Some(&base))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(|source| ArchiveError::Store {
            path: base.to_string(),
            source,
        })?;
    objects.retain(|location| hour_of(location.as_ref()).is_some_and(|hour| range.holds_hour(hour)));
    objects.sort();
    Ok(objects)
}

/// The events (JSON lines) of one object received within `range`, decrypted with
/// whichever of the source's identities opens it.
pub async fn events(
    store: &dyn ObjectStore,
    identities: &[age::x25519::Identity],
    location: &ObjectPath,
    range: Range,
) -> Result<Vec<Vec<u8>>, ArchiveError> {
    let name = location.to_string();
    let failed = |source| ArchiveError::Store {
        path: name.clone(),
        source,
    };
    let bytes = fetch(store, location).await.map_err(failed)?;
    // Any of the source's identities: objects from before a rotation stay readable.
    let lines = identities
        .iter()
        .find_map(|identity| open(&bytes, identity).ok())
        .ok_or_else(|| ArchiveError::Object {
            path: name.clone(),
            reason: "none of the source's keys opens it".into(),
        })?;
    Ok(lines
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter(|line| {
            let received = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|event| event["receivedAt"].as_str().map(str::to_string))
                .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
                .map(|t| t.with_timezone(&Utc));
            received.is_none_or(|at| range.holds(at))
        })
        .map(<[u8]>::to_vec)
        .collect())
}

/// Writes the events of `source_id` received in `range` as JSON lines, oldest object
/// first; returns how many.
pub async fn export(
    store: &dyn ObjectStore,
    keys: &KeyRing,
    prefix: &str,
    source_id: &str,
    range: Range,
    out: &mut dyn Write,
) -> Result<usize, ArchiveError> {
    let identities = keys.identities(source_id).await?;
    let mut written = 0;
    for location in objects(store, prefix, source_id, range).await? {
        for line in events(store, &identities, &location, range).await? {
            out.write_all(&line)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| ArchiveError::Object {
                    path: location.to_string(),
                    reason: e.to_string(),
                })?;
            written += 1;
        }
    }
    Ok(written)
}
