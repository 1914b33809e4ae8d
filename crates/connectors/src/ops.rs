//! `connectors up`'s operability flags: the admin listener (health, readiness, metrics) and the
//! audit log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use connectors_proxy::Ops;
use connectors_proxy::admin::AdminState;
use connectors_proxy::audit::AuditLog;

#[derive(Args)]
pub struct OpsArgs {
    /// Serve /healthz, /readyz and Prometheus /metrics on this address (off by default). It has no
    /// authentication: bind it where only the operator's collectors reach it, e.g. 127.0.0.1:9090.
    #[arg(long, env = "CONNECTORS_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Write one JSON line per registry operation (who, connector, repository, reference, operation,
    /// status, bytes; never a secret) to this file (appended, created mode 0600), or `-` for stdout.
    #[arg(long, env = "CONNECTORS_AUDIT_LOG", value_name = "PATH|-")]
    audit_log: Option<PathBuf>,
    /// On SIGTERM: report not ready on /readyz for this long before the proxy stops accepting, so that
    /// load balancers stop sending new connections first.
    #[arg(long, env = "CONNECTORS_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    shutdown_delay: Duration,
}

/// The running admin side of `up`.
pub struct Running {
    pub ops: Ops,
    admin: Arc<AdminState>,
    delay: Duration,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl OpsArgs {
    /// Opens the audit log and starts the admin listener (not ready yet).
    pub async fn start(&self) -> Result<Running> {
        let audit = match &self.audit_log {
            Some(path) => Some(Arc::new(AuditLog::open(path)?)),
            None => None,
        };
        let ops = Ops {
            metrics: Default::default(),
            audit,
        };
        let admin = AdminState::new(ops.metrics.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(addr) = self.admin_listen {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr}; pick another address with --admin-listen")
            })?;
            let local = listener.local_addr().context("reading the admin address")?;
            println!("admin listening on {local}");
            tokio::spawn(connectors_proxy::admin::serve(
                listener,
                admin.clone(),
                async move {
                    let _ = stopped.await;
                },
            ));
        }
        Ok(Running {
            ops,
            admin,
            delay: self.shutdown_delay,
            _stop: stop,
        })
    }
}

impl Running {
    /// The proxy listener and the catalog are ready.
    pub fn ready(&self) {
        self.admin.set_ready(true);
    }

    /// Shutdown begins: not ready first, then (after --shutdown-delay) the proxy stops accepting.
    pub async fn draining(&self) {
        self.admin.set_ready(false);
        tracing::info!(
            delay_s = self.delay.as_secs_f64(),
            "not ready; the proxy stops accepting after the shutdown delay"
        );
        tokio::time::sleep(self.delay).await;
    }
}
