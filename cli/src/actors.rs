//! `switchyard actors` and `switchyard overview`: what a process's actors are doing and
//! how delivery goes, as text, from its ops port.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct ActorsArgs {
    /// The process's ops address (its `[ops] listen`).
    #[arg(long, env = "SWITCHYARD_OPS_URL", default_value = "http://127.0.0.1:9464")]
    ops_url: String,
    /// Refresh every two seconds until interrupted.
    #[arg(long)]
    watch: bool,
    /// Print the JSON as served instead of a table.
    #[arg(long)]
    json: bool,
}

/// `/actors` as a table.
pub fn run(args: ActorsArgs) -> anyhow::Result<()> {
    show(args, "actors", table)
}

/// `/overview` as text.
pub fn overview(args: ActorsArgs) -> anyhow::Result<()> {
    show(args, "overview", overview_text)
}

fn show(args: ActorsArgs, path: &str, render: fn(&Value) -> String) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
        let url = format!("{}/{path}", args.ops_url.trim_end_matches('/'));
        loop {
            let mut response = client
                .get(&url)
                .send()
                .await
                .map_err(|error| anyhow::anyhow!("cannot reach {url}: {error}"))?;
            let body: Value = response
                .json()
                .limit(16 * 1024 * 1024)
                .await
                .with_context(|| format!("{url} did not answer JSON"))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                if args.watch {
                    // Clear the screen and go home, as `watch` does.
                    print!("\x1b[2J\x1b[H");
                }
                print!("{}", render(&body));
            }
            if !args.watch {
                return Ok(());
            }
            actix_web::rt::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

const COLUMNS: [&str; 11] = [
    "KIND",
    "SOURCE",
    "DESTINATION",
    "STATE",
    "BUFFERED",
    "MAILBOX",
    "IN",
    "OUT",
    "RESTARTS",
    "IDLE",
    "LAST ERROR",
];

fn cell(actor: &Value, key: &str) -> String {
    match &actor[key] {
        Value::Null => "-".into(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// One row per actor; a supervisor's "out" is what it handed on, a destination's what
/// it delivered.
fn row(actor: &Value) -> Vec<String> {
    let destination = actor["kind"] == "destination";
    let state = if actor.get("received").is_none() {
        "unresponsive".into()
    } else if destination {
        cell(actor, "state")
    } else {
        "running".into()
    };
    let idle = actor["since_progress_ms"]
        .as_u64()
        .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
    vec![
        cell(actor, "kind"),
        cell(actor, "source_id"),
        cell(actor, "destination_id"),
        state,
        if destination {
            cell(actor, "buffered")
        } else {
            "-".into()
        },
        cell(actor, "queued"),
        cell(actor, "received"),
        cell(
            actor,
            if actor["kind"] == "archive" {
                "archived"
            } else {
                "delivered"
            },
        ),
        if destination {
            cell(actor, "restarts")
        } else {
            "-".into()
        },
        idle,
        cell(actor, "last_error"),
    ]
}

/// Rows padded to their columns' widths.
fn aligned(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(text, width)| format!("{text:<width$}"))
            .collect();
        out.push_str(indent);
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn errors_text(errors: &Value, indent: &str) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut out = String::new();
    for sample in errors.as_array().into_iter().flatten() {
        let ago = now_ms.saturating_sub(sample["at_ms"].as_u64().unwrap_or(now_ms)) / 1000;
        out.push_str(&format!(
            "{indent}{ago}s ago: {} (messageId {}, {} event(s))\n",
            cell(sample, "reason"),
            cell(sample, "message_id"),
            cell(sample, "events"),
        ));
    }
    out
}

fn overview_text(body: &Value) -> String {
    let mut out = String::new();
    for source in body["sources"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "source {}: {} received, {} routed, {} duplicates, {} filtered, {} rejected\n",
            cell(source, "id"),
            cell(source, "received"),
            cell(source, "routed"),
            cell(source, "duplicates"),
            cell(source, "filtered"),
            cell(source, "rejected"),
        ));
        out.push_str(&errors_text(&source["recent_errors"], "    "));
        let header = [
            "DESTINATION",
            "STATE",
            "RECEIVED",
            "DELIVERED",
            "FILTERED",
            "RETRYING",
            "DEAD-LETTERED",
            "PARKED",
        ];
        let keys = [
            "id",
            "state",
            "received",
            "delivered",
            "filtered",
            "retrying",
            "dead_lettered",
            "parked",
        ];
        let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
        let destinations: Vec<&Value> = source["destinations"].as_array().into_iter().flatten().collect();
        rows.extend(destinations.iter().map(|d| keys.iter().map(|k| cell(d, k)).collect()));
        out.push_str(&aligned(&rows, "  "));
        for destination in destinations {
            let errors = errors_text(&destination["recent_errors"], "    ");
            if !errors.is_empty() {
                out.push_str(&format!("  recent errors of {}:\n{errors}", cell(destination, "id")));
            }
        }
        out.push('\n');
    }
    out
}

fn table(body: &Value) -> String {
    let mut rows: Vec<Vec<String>> = vec![COLUMNS.iter().map(|c| c.to_string()).collect()];
    rows.extend(body["actors"].as_array().into_iter().flatten().map(row));
    let mut out = String::new();
    if let Some(consumer) = body.get("consumer").filter(|c| !c.is_null()) {
        out.push_str(&format!(
            "consumer: {} records read, {} partitions paused, {} ms waiting for busy actors\n\n",
            consumer["records"], consumer["paused_partitions"], consumer["backpressure_ms"]
        ));
    }
    out.push_str(&aligned(&rows, ""));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_row_per_actor_with_state_and_counts() {
        let body = serde_json::json!({
            "consumer": {"records": 12, "paused_partitions": 0, "backpressure_ms": 3, "lag": []},
            "actors": [
                {"kind": "source_supervisor", "source_id": "web", "destination_id": null,
                 "received": 12, "delivered": 11, "duplicates": 1, "filtered": 0, "rejected": 0, "invalid": 0},
                {"kind": "destination", "source_id": "web", "destination_id": "hook", "received": 11,
                 "delivered": 4, "state": "backing_off", "buffered": 7, "queued": 0, "restarts": 0,
                 "since_progress_ms": 2500, "last_error": "HTTP 503"},
                {"kind": "destination", "source_id": "web", "destination_id": "stuck"}
            ]
        });
        let text = table(&body);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("consumer: 12 records read"), "{text}");
        assert!(lines[2].starts_with("KIND"), "{text}");
        assert!(
            lines[4].contains("backing_off") && lines[4].contains("2.5s") && lines[4].contains("HTTP 503"),
            "{text}"
        );
        assert!(lines[5].contains("unresponsive"), "{text}");
    }

    #[test]
    fn the_overview_lists_destinations_and_their_recent_errors() {
        let body = serde_json::json!({"sources": [{
            "id": "web", "responsive": true, "received": 20, "routed": 20, "duplicates": 0, "filtered": 0,
            "rejected": 0, "recent_errors": [],
            "destinations": [
                {"id": "good", "state": "running", "received": 20, "delivered": 20, "filtered": 0, "retrying": 0,
                 "dead_lettered": 0, "parked": 0, "recent_errors": []},
                {"id": "picky", "state": "running", "received": 20, "delivered": 15, "filtered": 0, "retrying": 0,
                 "dead_lettered": 5, "parked": 0,
                 "recent_errors": [{"at_ms": 0, "reason": "HTTP 400: no", "message_id": "m-0", "events": 1}]}
            ]
        }]});
        let text = overview_text(&body);
        assert!(text.starts_with("source web: 20 received, 20 routed"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("picky") && l.contains(" 15 ") && l.contains(" 5 ")),
            "{text}"
        );
        assert!(
            text.contains("recent errors of picky:") && text.contains("HTTP 400: no (messageId m-0, 1 event(s))"),
            "{text}"
        );
    }
}
