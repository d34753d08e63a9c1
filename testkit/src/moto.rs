//! A local S3-compatible server (moto) per test, stopped when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Starts `moto_server` on a free port (install: `pip install "moto[s3]" flask flask-cors`).
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start moto_server: {error}; pip install \"moto[s3]\" flask flask-cors")
            });
        let server = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs curl against the server: `args` then the URL of `path`; returns stdout.
    pub fn curl(&self, args: &[&str], path: &str) -> String {
        // moto checks no signature, but it refuses object reads without some credential.
        let authorization = "Authorization: AWS4-HMAC-SHA256 Credential=testing/20261129/us-east-1/s3/aws4_request, \
                             SignedHeaders=host, Signature=0";
        let output = Command::new("curl")
            .args(["-s", "--max-time", "10", "-H", authorization])
            .args(args)
            .arg(format!("{}/{path}", self.endpoint()))
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.curl(&["-X", "PUT"], bucket);
    }

    /// The keys of a bucket's objects.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let listing = self.curl(&[], &format!("{bucket}?list-type=2"));
        listing
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
