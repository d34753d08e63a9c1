//! The operations HTTP server: plain HTTP on its own port (keep it off the public
//! network; in Kubernetes it is the pod's metrics and probe port).

use std::net::SocketAddr;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde::{Deserialize, Serialize};
use switchyard_router::ActorReport;

use crate::health::ReadyReport;
use crate::metrics;
use crate::state::Ops;

/// `[ops]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Where `/metrics`, `/healthz`, `/readyz` and `/actors` are served; empty turns the
    /// server off. Unset: loopback, port 9464, or 9465 for a router on its own, so an
    /// ingest and a router started on one host don't both claim it ([`OpsConfig::listen_for`]).
    /// Use `0.0.0.0:9464` in a container.
    #[serde(default)]
    pub listen: Option<String>,
    /// Ingest reports not ready while more than this many records wait for the broker.
    #[serde(default = "default_max_producer_queue")]
    pub max_producer_queue: i32,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            listen: None,
            max_producer_queue: default_max_producer_queue(),
        }
    }
}

/// The ops port of a process that serves ingest (alone or with a router).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// The ops port of a router started on its own.
pub const DEFAULT_ROUTER_LISTEN: &str = "127.0.0.1:9465";

impl OpsConfig {
    /// Where this process serves ops: the file's `listen`, or the default of its role.
    pub fn listen_for(&self, router_only: bool) -> &str {
        match &self.listen {
            Some(listen) => listen,
            None if router_only => DEFAULT_ROUTER_LISTEN,
            None => DEFAULT_LISTEN,
        }
    }
}

fn default_max_producer_queue() -> i32 {
    80_000
}

/// `/actors`: the consumer's figures and every actor's.
#[derive(Debug, Serialize)]
pub struct ActorsBody {
    pub consumer: Option<ConsumerBody>,
    pub actors: Vec<ActorReport>,
}

#[derive(Debug, Serialize)]
pub struct ConsumerBody {
    pub records: u64,
    pub paused_partitions: u64,
    pub backpressure_ms: u64,
    pub lag: Vec<(String, i32, i64)>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for ops on {addr}: {source}")]
pub struct BindError {
    addr: String,
    source: std::io::Error,
}

/// Binds the ops server; the caller runs (awaits or spawns) the returned server.
pub fn bind(listen: &str, ops: Ops) -> Result<(Server, SocketAddr), BindError> {
    let ops = web::Data::new(ops);
    let bind_error = |source| BindError {
        addr: listen.to_string(),
        source,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(ops.clone())
            .route("/metrics", web::get().to(metrics_route))
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"alive": true})) }),
            )
            .route("/readyz", web::get().to(ready_route))
            .route("/actors", web::get().to(actors_route))
            .route("/overview", web::get().to(overview_route))
    })
    .workers(1)
    .disable_signals()
    .bind(listen)
    .map_err(bind_error)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| bind_error(std::io::ErrorKind::AddrNotAvailable.into()))?;
    Ok((server.run(), addr))
}

async fn metrics_route(ops: web::Data<Ops>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics::render(&ops).await)
}

async fn ready_route(ops: web::Data<Ops>) -> HttpResponse {
    let readiness = ops.readiness.clone();
    let broker = tokio::task::spawn_blocking(move || readiness.broker())
        .await
        .unwrap_or_else(|error| Err(format!("broker check failed: {error}")));
    let mut problems = Vec::new();
    if let Err(problem) = broker {
        problems.push(problem);
    }
    if let Some(skip) = ops.consumer.as_ref().and_then(|consumer| consumer.last_skip()) {
        problems.push(format!("records skipped: {skip}"));
    }
    if let Some(ingest) = &ops.ingest {
        let queued = ingest.sink.in_flight();
        if queued > ops.max_producer_queue {
            problems.push(format!("overloaded: {queued} records wait for the broker"));
        }
    }
    let report = ReadyReport {
        ready: problems.is_empty(),
        problems,
    };
    if report.ready {
        HttpResponse::Ok().json(report)
    } else {
        HttpResponse::ServiceUnavailable().json(report)
    }
}

async fn actors_route(ops: web::Data<Ops>) -> HttpResponse {
    let actors = match &ops.topology {
        Some(topology) => topology.inspect().await,
        None => Vec::new(),
    };
    let consumer = ops.consumer.as_ref().map(|stats| {
        use std::sync::atomic::Ordering;
        ConsumerBody {
            records: stats.records.load(Ordering::Relaxed),
            paused_partitions: stats.paused_partitions.load(Ordering::Relaxed),
            backpressure_ms: stats.backpressure_micros.load(Ordering::Relaxed) / 1000,
            lag: stats.lag(),
        }
    });
    HttpResponse::Ok().json(ActorsBody { consumer, actors })
}

async fn overview_route(ops: web::Data<Ops>) -> HttpResponse {
    let reports = match &ops.topology {
        Some(topology) => topology.inspect().await,
        None => Vec::new(),
    };
    HttpResponse::Ok().json(crate::overview::overview(reports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_router_on_its_own_defaults_to_another_ops_port_than_ingest() {
        let unset = OpsConfig::default();
        assert_eq!(unset.listen_for(false), DEFAULT_LISTEN);
        assert_eq!(unset.listen_for(true), DEFAULT_ROUTER_LISTEN);
        assert_ne!(DEFAULT_LISTEN, DEFAULT_ROUTER_LISTEN);
        let set = OpsConfig {
            listen: Some(String::new()),
            ..OpsConfig::default()
        };
        assert_eq!(set.listen_for(true), "", "an explicit setting (here: off) wins");
    }
}
