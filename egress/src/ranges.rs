//! The address ranges a tenant's destination may not reach unless the operator allows
//! them: everything that is not the public internet, and every IPv6 form that embeds
//! an IPv4 address (a filter that looks only at IPv4 is bypassed through them).

use std::net::IpAddr;

use ipnet::IpNet;

/// (network, what it is). Checked in order; the first match names the range.
const BLOCKED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private, RFC 1918"),
    ("100.64.0.0/10", "carrier-grade NAT, RFC 6598"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("172.16.0.0/12", "private, RFC 1918"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.168.0.0/16", "private, RFC 1918"),
    ("198.18.0.0/15", "benchmarking, RFC 2544"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved and broadcast"),
    ("::/96", "unspecified, loopback or IPv4-compatible"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("64:ff9b::/96", "NAT64"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("2001::/32", "Teredo"),
    ("2002::/16", "6to4"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// What `addr` is, when it is blocked by default.
pub fn blocked_range(addr: IpAddr) -> Option<&'static str> {
    BLOCKED.iter().find_map(|(net, name)| {
        let net: IpNet = net.parse().ok()?;
        net.contains(&addr).then_some(*name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_the_threat_model_names_is_blocked() {
        for addr in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "198.18.0.1",
            "198.19.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.251",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
        ] {
            let ip: IpAddr = addr.parse().expect("address");
            assert!(blocked_range(ip).is_some(), "{addr} should be blocked");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "93.184.216.34",
            "8.8.8.8",
            "203.0.113.10",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            let ip: IpAddr = addr.parse().expect("address");
            assert_eq!(blocked_range(ip), None, "{addr} is public");
        }
    }
}
