//! A Kafka cluster reachable only over TLS: tansu behind stunnel (Debian's `stunnel4`),
//! with tansu advertising stunnel's port, so every client, after the first metadata
//! answer too, comes back through TLS. Certificates from a test CA made with rcgen;
//! with `mutual`, stunnel refuses clients without a certificate from that CA.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use crate::{Tansu, free_port};

/// A test certificate authority.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("ca certificate");
        TestCa { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate and key (PEM) for these names, signed by this CA.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("leaf params");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// tansu behind a TLS terminator; stopped when dropped.
#[derive(Debug)]
pub struct TlsBroker {
    tansu: Tansu,
    stunnel: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// The CA that signed the broker's (and the client's) certificate.
    pub ca: TestCa,
    /// The SCRAM-SHA-512 user and password the broker knows, when it authenticates.
    scram: Option<(String, String)>,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path
}

fn stunnel_binary() -> &'static str {
    if Path::new("/usr/bin/stunnel4").exists() {
        "/usr/bin/stunnel4"
    } else {
        "stunnel"
    }
}

impl TlsBroker {
    /// Starts tansu and stunnel; `mutual` asks clients for a certificate of the CA.
    pub fn start(mutual: bool) -> TlsBroker {
        Self::start_with(mutual, None)
    }

    /// Starts tansu taking only SASL/SCRAM-SHA-512 clients (`user`, `password`) behind
    /// stunnel: SASL_SSL, as Amazon MSK or Strimzi's SCRAM listener.
    pub fn start_scram(user: &str, password: &str) -> TlsBroker {
        Self::start_with(false, Some((user, password)))
    }

    fn start_with(mutual: bool, scram: Option<(&str, &str)>) -> TlsBroker {
        let dir = tempfile::tempdir().expect("temp dir for stunnel");
        let ca = TestCa::new("switchyard test kafka ca");
        let (server_cert, server_key) = ca.issue(&["127.0.0.1", "localhost"]);
        let (client_cert, client_key) = ca.issue(&["switchyard-client"]);
        let ca_file = write(dir.path(), "ca.pem", &ca.pem());
        let cert_file = write(dir.path(), "server.pem", &server_cert);
        let key_file = write(dir.path(), "server.key", &server_key);
        write(dir.path(), "client.pem", &client_cert);
        write(dir.path(), "client.key", &client_key);
        let (plain, port) = (free_port(), free_port());
        let tansu = match scram {
            Some((user, password)) => Tansu::start_scram(plain, port, user, password),
            None => Tansu::start_advertising(plain, port),
        };
        let mut conf = format!(
            "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{plain}\n\
             cert = {}\nkey = {}\n",
            cert_file.display(),
            key_file.display()
        );
        if mutual {
            conf.push_str(&format!("verify = 2\nCAfile = {}\n", ca_file.display()));
        }
        let conf_file = write(dir.path(), "stunnel.conf", &conf);
        let stunnel = Command::new(stunnel_binary())
            .arg(&conf_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start stunnel: {error}. Install it with `apt-get install stunnel4` (make test-tools does)"
                )
            });
        let broker = TlsBroker {
            tansu,
            stunnel: Some(stunnel),
            port,
            dir,
            ca,
            scram: scram.map(|(user, password)| (user.to_string(), password.to_string())),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "stunnel did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// The TLS address: the only one clients are told about.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn client_cert_file(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    pub fn client_key_file(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }

    /// librdkafka properties of a client this broker accepts.
    pub fn client_options(&self) -> BTreeMap<String, String> {
        let mut options = BTreeMap::from([
            ("security.protocol".to_string(), "ssl".to_string()),
            ("ssl.ca.location".to_string(), self.ca_file().display().to_string()),
            (
                "ssl.certificate.location".to_string(),
                self.client_cert_file().display().to_string(),
            ),
            (
                "ssl.key.location".to_string(),
                self.client_key_file().display().to_string(),
            ),
        ]);
        if let Some((user, password)) = &self.scram {
            options.extend([
                ("security.protocol".to_string(), "sasl_ssl".to_string()),
                ("sasl.mechanism".to_string(), "SCRAM-SHA-512".to_string()),
                ("sasl.username".to_string(), user.clone()),
                ("sasl.password".to_string(), password.clone()),
            ]);
        }
        options
    }

    /// Creates a topic over TLS.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let mut config = crate::kafka::client_config(&self.brokers());
        for (key, value) in self.client_options() {
            config.set(key, value);
        }
        crate::kafka::create_topic(config, name, partitions).await;
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.stunnel.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.tansu.stop();
    }
}
