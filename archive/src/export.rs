//! Reading the archive back: the events of a source between two times, decrypted.

use std::io::Write;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::config::ArchiveError;
use crate::keys::KeyRing;
use crate::object::open;

/// The hour an object's path says its events were received in.
fn hour_of(location: &str) -> Option<DateTime<Utc>> {
    let date = location.split("/date=").nth(1)?.get(..10)?;
    let hour = location.split("/hour=").nth(1)?.get(..2)?;
    DateTime::parse_from_rfc3339(&format!("{date}T{hour}:00:00Z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Writes the events of `source_id` received in `[from, to)` as JSON lines, oldest
/// object first; returns how many.
pub async fn export(
    store: &dyn ObjectStore,
    keys: &KeyRing,
    prefix: &str,
    source_id: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    out: &mut dyn Write,
) -> Result<usize, ArchiveError> {
    let identities = keys.identities(source_id)?;
    let base = ObjectPath::from(format!("{prefix}/source_id={source_id}"));
    let failed = |path: &str, reason: String| ArchiveError::Object {
        path: path.to_string(),
        reason,
    };
    let mut objects: Vec<ObjectPath> = store
        .list(Some(&base))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(|source| ArchiveError::Store {
            path: base.to_string(),
            source,
        })?;
    objects.sort();
    let first_hour = from.map(|t| t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t));
    let mut written = 0;
    for location in objects {
        let name = location.to_string();
        let Some(hour) = hour_of(&name) else { continue };
        if first_hour.is_some_and(|first| hour < first) || to.is_some_and(|end| hour >= end) {
            continue;
        }
        let bytes = store
            .get(&location)
            .await
            .map_err(|source| ArchiveError::Store {
                path: name.clone(),
                source,
            })?
            .bytes()
            .await
            .map_err(|source| ArchiveError::Store {
                path: name.clone(),
                source,
            })?;
        // Any of the source's identities: objects from before a rotation stay readable.
        let lines = identities
            .iter()
            .find_map(|identity| open(&bytes, identity).ok())
            .ok_or_else(|| failed(&name, "none of the source's keys opens it".into()))?;
        for line in lines.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
            let received = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|event| event["receivedAt"].as_str().map(str::to_string))
                .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
                .map(|t| t.with_timezone(&Utc));
            let inside = received.is_none_or(|at| from.is_none_or(|f| at >= f) && to.is_none_or(|t| at < t));
            if inside {
                out.write_all(line).map_err(|e| failed(&name, e.to_string()))?;
                out.write_all(b"\n").map_err(|e| failed(&name, e.to_string()))?;
                written += 1;
            }
        }
    }
    Ok(written)
}
