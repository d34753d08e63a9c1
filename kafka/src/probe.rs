//! One connection to the cluster at start, so that a wrong CA, a refused client
//! certificate or bad SASL credentials stop the process with one error naming the
//! setting to fix, instead of a client that retries in the background forever.
//! A cluster that is merely unreachable is not fatal: it may come up after us.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

/// Why the first connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The settings are wrong: `setting` is the `[kafka]` key to look at.
    #[error("kafka.{setting}: {reason}")]
    Refused { setting: &'static str, reason: String },
    /// No broker answered in time: maybe not up yet.
    #[error("no kafka broker answered within {timeout:?}: {reason}")]
    Unreachable { timeout: Duration, reason: String },
}

/// Collects what librdkafka reports while the probe connects.
#[derive(Default)]
struct Recorder {
    reports: Mutex<Vec<String>>,
}

impl Recorder {
    fn push(&self, text: String) {
        let mut reports = self.reports.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if reports.len() < 64 {
            reports.push(text);
        }
    }
}

impl ClientContext for Recorder {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.push(format!("{fac}: {message}"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.push(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Connects with `config` (a client's whole configuration) and asks for metadata,
/// again every half second until `timeout`: a refusal is known after the first
/// handshake, an unreachable cluster only when the time is up.
pub fn probe(config: &ClientConfig, timeout: Duration) -> Result<(), ProbeError> {
    let client: BaseProducer<Recorder> = config
        .clone()
        .create_with_context(Recorder::default())
        .map_err(|error| classify_creation(&error.to_string()))?;
    let deadline = Instant::now() + timeout;
    loop {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(500));
        let result = client.client().fetch_metadata(None, wait);
        // librdkafka queues its logs and errors for the client's poll (`log.queue`).
        client.poll(Duration::ZERO);
        let error = match result {
            Ok(_) => return Ok(()),
            Err(error) => error.to_string(),
        };
        let reports = client
            .context()
            .reports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let verdict = classify(&reports, &error, timeout);
        if matches!(verdict, ProbeError::Refused { .. }) || Instant::now() >= deadline {
            return Err(verdict);
        }
    }
}

/// A setting librdkafka refused when the client was made (a key it can't read, say).
fn classify_creation(reason: &str) -> ProbeError {
    let setting = if reason.contains("ssl.key") {
        "tls.key_file"
    } else if reason.contains("ssl.certificate") {
        "tls.cert_file"
    } else if reason.contains("ssl.ca") {
        "tls.ca_file"
    } else if reason.contains("sasl") {
        "sasl"
    } else {
        "options"
    };
    ProbeError::Refused {
        setting,
        reason: format!("librdkafka refused the settings: {reason}"),
    }
}

/// Names the setting behind what librdkafka reported, most specific first.
fn classify(reports: &[String], error: &str, timeout: Duration) -> ProbeError {
    let find = |needles: &[&str]| {
        reports
            .iter()
            .find(|report| needles.iter().any(|needle| report.contains(needle)))
            .cloned()
    };
    if let Some(report) = find(&["certificate verify failed", "could not be verified"]) {
        return ProbeError::Refused {
            setting: "tls.ca_file",
            reason: format!("the broker's certificate is not trusted by the configured CA: {report}"),
        };
    }
    if let Some(report) = find(&["certificate required", "alert bad certificate", "alert unknown ca"]) {
        return ProbeError::Refused {
            setting: "tls.cert_file",
            reason: format!("the broker refused our client certificate (mutual TLS): {report}"),
        };
    }
    if let Some(report) = find(&["SASL authentication", "Authentication failed", "SASL handshake"]) {
        return ProbeError::Refused {
            setting: "sasl",
            reason: format!("SASL authentication failed: {report}"),
        };
    }
    if let Some(report) = find(&["SSL handshake failed", "SSL transport error", "wrong version number"]) {
        return ProbeError::Refused {
            setting: "security_protocol",
            reason: format!("the TLS handshake with the broker failed: {report}"),
        };
    }
    let reason = reports.last().cloned().unwrap_or_else(|| error.to_string());
    ProbeError::Unreachable { timeout, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    #[test]
    fn librdkafka_reports_name_the_setting_to_fix() {
        let ca = classify(
            &["FAIL: ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified".into()],
            "timed out",
            TIMEOUT,
        );
        assert!(
            matches!(
                ca,
                ProbeError::Refused {
                    setting: "tls.ca_file",
                    ..
                }
            ),
            "{ca}"
        );
        let client = classify(
            &["FAIL: ssl://b:9093/bootstrap: SSL handshake failed: ssl/record/rec_layer_s3.c:1586: error:0A00045C:SSL routines::tlsv13 alert certificate required".into()],
            "timed out",
            TIMEOUT,
        );
        assert!(
            matches!(
                client,
                ProbeError::Refused {
                    setting: "tls.cert_file",
                    ..
                }
            ),
            "{client}"
        );
        let sasl = classify(
            &["FAIL: sasl_ssl://b:9093/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512".into()],
            "timed out",
            TIMEOUT,
        );
        assert!(matches!(sasl, ProbeError::Refused { setting: "sasl", .. }), "{sasl}");
        let down = classify(
            &["FAIL: b:9093/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused".into()],
            "timed out",
            TIMEOUT,
        );
        assert!(matches!(down, ProbeError::Unreachable { .. }), "{down}");
    }
}
