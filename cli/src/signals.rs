//! Signals the long-running commands stop on.

use anyhow::Context;

/// SIGINT (a terminal) or SIGTERM (Kubernetes, systemd): either starts a clean stop.
pub async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping");
    Ok(())
}
