//! Binding the collection API to its address, over HTTPS unless told otherwise.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::{App, HttpServer};

use crate::config::IngestConfig;
use crate::routes::configure;
use crate::state::IngestState;
use crate::tls::{TlsError, server_config};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A bound, not yet awaited, server and the address it listens on (useful with port 0).
pub struct Bound {
    pub server: Server,
    pub addr: SocketAddr,
    pub tls: bool,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Every request header the browser SDKs send: analytics.js (`Content-Type: text/plain`,
/// `Authorization: Basic`, `X-Retry-Count` on each retry), RudderStack's JavaScript SDK
/// (`AnonymousId`, `Authorization`, `Content-Type`), and trace context. A preflight
/// asking for anything else is refused; a retry must never be.
pub const BROWSER_HEADERS: [&str; 6] = [
    "authorization",
    "content-type",
    "content-encoding",
    "x-retry-count",
    "traceparent",
    "anonymousid",
];

/// Browsers post from any site that embeds analytics.js; the write key, not the
/// origin, is what authenticates them. No credentials mode (cookies) and nothing
/// but the JSON answers is readable, so a page learns nothing of another origin's.
pub fn cors() -> Cors {
    Cors::default()
        .allow_any_origin()
        .allowed_methods(["GET", "POST", "OPTIONS"])
        .allowed_headers(BROWSER_HEADERS)
        .max_age(86_400)
}

pub fn bind(config: &IngestConfig, state: Arc<IngestState>) -> Result<Bound, ServeError> {
    let max_body = config.max_request_bytes;
    let factory = move || {
        App::new()
            .wrap(cors())
            .app_data(actix_web::web::PayloadConfig::new(max_body))
            .configure(configure(state.clone()))
    };
    // A request head must arrive within 5 s (slow-header clients get 408 and are closed),
    // an idle keep-alive connection closes after 30 s, and each worker holds at most
    // 10,000 connections, so stalled clients can't exhaust memory or sockets.
    let mut server = HttpServer::new(factory)
        .shutdown_timeout(10)
        .client_request_timeout(Duration::from_secs(5))
        .client_disconnect_timeout(Duration::from_secs(2))
        .keep_alive(Duration::from_secs(30))
        .max_connections(10_000);
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    let addr = config.listen;
    let bind_error = |source| ServeError::Bind { addr, source };
    let (server, tls) = match config.tls_paths() {
        Some((cert, key)) => (
            server
                .bind_rustls_0_23(addr, server_config(cert, key)?)
                .map_err(bind_error)?,
            true,
        ),
        None => (server.bind(addr).map_err(bind_error)?, false),
    };
    let addr = server.addrs().first().copied().unwrap_or(addr);
    Ok(Bound {
        server: server.run(),
        addr,
        tls,
    })
}
