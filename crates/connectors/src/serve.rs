//! The proxy's serving loop, shared by `connectors up` (embedded mode) and `connectors proxy`
//! (Kubernetes): the flags both take, worker threads, readiness and graceful shutdown.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use connectors_catalog::Catalog;
use connectors_identity::{Authenticator, Authorizer};
use connectors_proxy::ca::ProxyCa;
use connectors_proxy::{ForwardOptions, ForwardPolicy, Proxy};
use connectors_registry::UpstreamAccess;

use crate::{ResolveArgs, limits, ops, resolve_overrides, shutdown_signal};

/// Flags of every command that serves the proxy.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on. Use port 0 to pick a free port (the address is printed).
    #[arg(long, env = "CONNECTORS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Forward mode, for destinations that are not one of the caller's connectors: `tunnel` passes the bytes
    /// through untouched (no interception, no credentials); `deny` refuses them with 403.
    #[arg(long, env = "CONNECTORS_FORWARD_POLICY", value_enum, default_value_t = Policy::Tunnel)]
    forward_policy: Policy,
    /// On SIGTERM or Ctrl-C: stop accepting, then let requests in flight (uploads included) finish for at
    /// most this long before exiting.
    #[arg(long, env = "CONNECTORS_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Worker threads, each serving connections on its own (default: one per CPU).
    #[arg(long, env = "CONNECTORS_THREADS")]
    threads: Option<usize>,
    /// Reverse-mode blob GETs from plain-HTTP registries move their bodies upstream socket → pipe → client
    /// socket with splice(2), never through user space. Off by default: on the machines measured it did
    /// not lower the CPU per GiB (bench/ANALYSIS.md).
    #[arg(long, env = "CONNECTORS_SPLICE")]
    splice: bool,
    #[command(flatten)]
    pub resolve: ResolveArgs,
    #[command(flatten)]
    pub ops: ops::OpsArgs,
    #[command(flatten)]
    limits: limits::LimitArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    Tunnel,
    Deny,
}

/// What the caller chose: where connectors come from and who may use them.
pub struct Backends {
    pub catalog: Arc<dyn Catalog>,
    pub authn: Arc<dyn Authenticator>,
    pub authz: Arc<dyn Authorizer>,
    pub ca: Arc<ProxyCa>,
}

impl ServeArgs {
    /// Binds the listening socket (before anything slow, so a wrong address fails at once).
    pub async fn bind(&self) -> Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}; pick another address with --listen",
                    self.listen
                )
            })
    }

    /// Serves until SIGTERM/Ctrl-C, then drains: not ready, stop accepting after --shutdown-delay, let
    /// requests in flight finish for at most --shutdown-grace.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        backends: Backends,
        running: &ops::Running,
    ) -> Result<ExitCode> {
        let overrides = resolve_overrides(&self.resolve)?;
        let forward = ForwardOptions {
            ca: Some(backends.ca),
            policy: match self.forward_policy {
                Policy::Tunnel => ForwardPolicy::Tunnel,
                Policy::Deny => ForwardPolicy::Deny,
            },
        };
        // One single-threaded runtime per worker thread, each accepting from the same socket with its own
        // upstream pools: a connection's bytes then go from the registry to the client on one thread,
        // without a hand-over between threads for every chunk (measured in bench/RESULTS.md).
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let listener = listener.into_std().context("preparing the listener")?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let grace = self.shutdown_grace;
        let limits = self.limits.limits();
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let listener = listener.try_clone().context("sharing the listener")?;
            let proxy = Proxy::with_options(
                backends.catalog.clone(),
                backends.authn.clone(),
                backends.authz.clone(),
                UpstreamAccess::new(overrides.clone()),
                forward.clone(),
                limits.clone(),
                running.ops.clone(),
            );
            proxy.set_splice(connectors_proxy::SpliceOptions {
                enabled: self.splice,
                ..Default::default()
            });
            let mut stop = stop_rx.clone();
            let worker = std::thread::Builder::new()
                .name(format!("proxy-{i}"))
                .spawn(move || -> std::io::Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        let stopped = async move {
                            let _ = stop.wait_for(|s| *s).await;
                        };
                        proxy.serve_with_grace(listener, stopped, grace).await
                    })
                })
                .context("starting a proxy thread")?;
            workers.push(worker);
        }
        // Only the workers hold the socket now: when they stop accepting, new connections are refused.
        drop(listener);
        running.ready();
        shutdown_signal().await;
        running.draining().await;
        tracing::info!("shutdown requested: no new connections; finishing requests in flight");
        let _ = stop_tx.send(true);
        for worker in workers {
            match tokio::task::spawn_blocking(move || worker.join()).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "a proxy thread failed"),
                _ => tracing::warn!("a proxy thread panicked"),
            }
        }
        tracing::info!("proxy stopped");
        Ok(ExitCode::SUCCESS)
    }
}
