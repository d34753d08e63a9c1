//! Name lookups, behind a trait so a test can answer as a rebinding DNS server would.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// Resolves a host name (never an IP literal: those are checked as they are).
pub trait Resolve: Send + Sync + 'static {
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The system's resolver (`getaddrinfo`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}
