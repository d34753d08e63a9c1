//! Where Switchyard's own pods may connect on a tenant's behalf.
//!
//! Workspace members configure destinations (a webhook URL, Kafka brokers, a warehouse
//! host, a bucket endpoint) that Switchyard then connects to from inside the operator's
//! network. So the tenant never decides what is reachable: the operator's configuration
//! file does, in `[egress]`, and by default only public addresses over TLS are.
//!
//! Every client checks the addresses it is about to connect to *when it connects*
//! ([`EgressPolicy::resolve`]), not only when the settings were saved: a name checked
//! once can be pointed at `169.254.169.254` a second later (DNS rebinding). Clients
//! connect to exactly the addresses that were checked.

#![forbid(unsafe_code)]

mod ranges;
mod resolve;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;

pub use ranges::blocked_range;
pub use resolve::{Resolve, SystemResolver};

/// `[egress]` in the server's configuration file. Only the operator sets it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressPolicy {
    /// Networks destinations may reach although they are blocked by default, e.g.
    /// `["10.1.0.0/16"]` for an in-cluster receiver, `["127.0.0.1/32"]` for a local trial.
    #[serde(default)]
    pub allow: Vec<IpNet>,
    /// Hosts (as written in the destination's URL) that may be sent to over plain
    /// `http://`; every other destination is reached over TLS.
    #[serde(default)]
    pub allow_plain_http_hosts: Vec<String>,
    #[serde(skip, default = "system_resolver")]
    resolver: Arc<dyn Resolve>,
}

/// A URL's host without the brackets of an IPv6 literal.
fn bare(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

fn system_resolver() -> Arc<dyn Resolve> {
    Arc::new(SystemResolver)
}

impl Default for EgressPolicy {
    /// Public addresses over TLS only.
    fn default() -> Self {
        EgressPolicy {
            allow: Vec::new(),
            allow_plain_http_hosts: Vec::new(),
            resolver: system_resolver(),
        }
    }
}

impl std::fmt::Debug for EgressPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressPolicy")
            .field("allow", &self.allow)
            .field("allow_plain_http_hosts", &self.allow_plain_http_hosts)
            .finish_non_exhaustive()
    }
}

/// Two policies are the same when they allow the same things (the resolver is how, not what).
impl PartialEq for EgressPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.allow == other.allow && self.allow_plain_http_hosts == other.allow_plain_http_hosts
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error(
        "{host} resolves to {addr} ({range}), which the egress policy blocks; only the operator can allow it, in [egress] allow"
    )]
    Blocked {
        host: String,
        addr: IpAddr,
        range: &'static str,
    },
    #[error(
        "plain http to {host} sends events unencrypted; use https, or the operator lists the host in [egress] allow_plain_http_hosts"
    )]
    PlainHttp { host: String },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
}

impl EgressError {
    /// A blocked address or scheme stays blocked; a failed lookup may pass.
    pub fn is_retriable(&self) -> bool {
        matches!(self, EgressError::Resolve { .. })
    }
}

impl EgressPolicy {
    /// A policy that resolves names with `resolver` (tests: a rebinding resolver).
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Allows these networks too (tests and local runs).
    pub fn allowing(mut self, networks: &[&str]) -> Self {
        self.allow
            .extend(networks.iter().filter_map(|n| n.parse::<IpNet>().ok()));
        self
    }

    pub fn allowing_plain_http(mut self, hosts: &[&str]) -> Self {
        self.allow_plain_http_hosts.extend(hosts.iter().map(|h| h.to_string()));
        self
    }

    /// `Ok` when `addr` may be connected to: not in a blocked range, or inside a
    /// network the operator allowed.
    pub fn permits(&self, host: &str, addr: IpAddr) -> Result<(), EgressError> {
        let Some(range) = blocked_range(addr) else {
            return Ok(());
        };
        let canonical = addr.to_canonical();
        if self
            .allow
            .iter()
            .any(|net| net.contains(&addr) || net.contains(&canonical))
        {
            return Ok(());
        }
        Err(EgressError::Blocked {
            host: host.to_string(),
            addr,
            range,
        })
    }

    /// Refuses `http://` (and `ws://`) unless the operator listed the URL's host.
    pub fn check_scheme(&self, url: &url::Url) -> Result<(), EgressError> {
        if !matches!(url.scheme(), "http" | "ws") {
            return Ok(());
        }
        let host = url.host_str().unwrap_or_default();
        if self
            .allow_plain_http_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host) || allowed.eq_ignore_ascii_case(bare(host)))
        {
            return Ok(());
        }
        Err(EgressError::PlainHttp { host: host.to_string() })
    }

    /// Resolves `host` and checks every address: one blocked address refuses the host
    /// (a name that answers with both a public and a private address is an attack, not
    /// a fallback). Connect to what this returns, never to the name again.
    pub fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let addrs = match bare(host).parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => self
                .resolver
                .lookup(bare(host), port)
                .map_err(|error| EgressError::Resolve {
                    host: host.to_string(),
                    reason: error.to_string(),
                })?,
        };
        if addrs.is_empty() {
            return Err(EgressError::Resolve {
                host: host.to_string(),
                reason: "no address".into(),
            });
        }
        for addr in &addrs {
            self.permits(host, addr.ip())?;
        }
        Ok(addrs)
    }

    /// [`EgressPolicy::resolve`] on tokio's blocking pool (a lookup blocks its thread).
    pub async fn resolve_async(self: &Arc<Self>, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        if bare(host).parse::<IpAddr>().is_ok() {
            return self.resolve(host, port);
        }
        let (policy, owned) = (self.clone(), host.to_string());
        tokio::task::spawn_blocking(move || policy.resolve(&owned, port))
            .await
            .unwrap_or_else(|error| {
                Err(EgressError::Resolve {
                    host: host.to_string(),
                    reason: error.to_string(),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Answers(Vec<&'static str>);

    impl Resolve for Answers {
        fn lookup(&self, _host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
            Ok(self
                .0
                .iter()
                .filter_map(|ip| ip.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, port))
                .collect())
        }
    }

    #[test]
    fn the_default_refuses_private_addresses_and_the_operator_can_allow_a_network() {
        let strict = EgressPolicy::default();
        let error = strict.resolve("169.254.169.254", 80).expect_err("metadata refused");
        assert!(matches!(error, EgressError::Blocked { range, .. } if range.contains("link-local")));
        assert!(error.to_string().contains("[egress] allow"), "{error}");
        assert!(
            strict.resolve("[::ffff:10.1.2.3]", 443).is_err(),
            "mapped form refused too"
        );

        let cluster = EgressPolicy::default().allowing(&["10.1.0.0/16"]);
        assert!(cluster.resolve("10.1.2.3", 443).is_ok());
        assert!(
            cluster.resolve("[::ffff:10.1.2.3]", 443).is_ok(),
            "the same host, mapped"
        );
        assert!(cluster.resolve("10.2.0.1", 443).is_err(), "outside the allowed network");
    }

    #[test]
    fn one_blocked_answer_refuses_the_name() {
        let policy = EgressPolicy::default().with_resolver(Arc::new(Answers(vec!["93.184.216.34", "127.0.0.1"])));
        let error = policy.resolve("hooks.example.com", 443).expect_err("refused");
        assert!(
            matches!(&error, EgressError::Blocked { host, addr, .. } if host == "hooks.example.com" && addr.is_loopback()),
            "{error}"
        );
        let public = EgressPolicy::default().with_resolver(Arc::new(Answers(vec!["93.184.216.34"])));
        assert_eq!(
            public.resolve("hooks.example.com", 8443).expect("public"),
            vec!["93.184.216.34:8443".parse::<SocketAddr>().expect("addr")]
        );
        let nothing = EgressPolicy::default().with_resolver(Arc::new(Answers(vec![])));
        assert!(
            nothing
                .resolve("hooks.example.com", 443)
                .expect_err("none")
                .is_retriable()
        );
    }

    #[test]
    fn plain_http_only_to_hosts_the_operator_listed() {
        let url = |u: &str| url::Url::parse(u).expect("url");
        let strict = EgressPolicy::default();
        assert!(strict.check_scheme(&url("https://hooks.example.com/x")).is_ok());
        let error = strict
            .check_scheme(&url("http://hooks.example.com/x"))
            .expect_err("plain");
        assert!(error.to_string().contains("allow_plain_http_hosts"), "{error}");
        let local = EgressPolicy::default().allowing_plain_http(&["127.0.0.1", "::1", "Sink.Internal"]);
        assert!(local.check_scheme(&url("http://127.0.0.1:9000/hook")).is_ok());
        assert!(local.check_scheme(&url("http://[::1]:9000/hook")).is_ok());
        assert!(local.check_scheme(&url("http://sink.internal/hook")).is_ok());
        assert!(local.check_scheme(&url("http://127.0.0.2/hook")).is_err());
    }

    #[test]
    fn the_config_section_parses_and_refuses_unknown_keys() {
        let policy: EgressPolicy =
            toml_like(r#"{"allow": ["10.1.0.0/16", "fd00::/8"], "allow_plain_http_hosts": ["sink"]}"#);
        assert_eq!(policy.allow.len(), 2);
        assert!(serde_json::from_str::<EgressPolicy>(r#"{"allow_everything": true}"#).is_err());
        assert!(serde_json::from_str::<EgressPolicy>(r#"{"allow": ["not a network"]}"#).is_err());
    }

    fn toml_like(text: &str) -> EgressPolicy {
        serde_json::from_str(text).expect("policy")
    }
}
