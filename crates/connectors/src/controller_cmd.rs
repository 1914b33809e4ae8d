//! `connectors controller`: keeps every Connector's status and proxy Service current (docs/kubernetes.md).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use connectors_controller::{ControllerConfig, LeaderElector, LeaseConfig};
use connectors_registry::UpstreamAccess;

use crate::{ResolveArgs, resolve_overrides, shutdown_signal};

#[derive(Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    kube: crate::kube_args::KubeArgs,
    /// The proxy's Service in the components namespace; each Connector's Service `c-<name>` points at it.
    #[arg(
        long,
        env = "CONNECTORS_PROXY_SERVICE",
        default_value = "connectors-proxy-service"
    )]
    proxy_service: String,
    /// The cluster's DNS domain, used in `status.proxy.httpAddress.url`.
    #[arg(
        long,
        env = "CONNECTORS_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    cluster_domain: String,
    /// `domain[:port]` where the proxy is exposed outside the cluster (NodePort, Ingress); status URLs
    /// then use it.
    #[arg(long, env = "CONNECTORS_EXPOSED_ADDRESS", value_name = "HOST[:PORT]")]
    exposed_address: Option<String>,
    /// How often each Connector's registry is probed again.
    #[arg(long, env = "CONNECTORS_REPROBE", default_value = "5m", value_parser = humantime::parse_duration)]
    reprobe: Duration,
    /// This replica's name in the leader Lease (unique per replica).
    #[arg(long, env = "POD_NAME", default_value_t = default_identity())]
    identity: String,
    /// How long the leader Lease holds without renewal; another replica takes over after that.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// Serve `/healthz` and `/readyz` on this address (for the kubelet's probes). Off when not given.
    #[arg(long, env = "CONNECTORS_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    resolve: ResolveArgs,
}

fn default_identity() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("connectors-controller-{}", std::process::id()))
}

pub async fn controller(args: ControllerArgs) -> Result<ExitCode> {
    if let Some(addr) = args.admin_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--admin-listen {addr}: cannot listen"))?;
        // Alive and ready from the start: a replica waiting for the Lease is healthy, just idle.
        let state = connectors_proxy::admin::AdminState::new(Default::default());
        state.set_ready(true);
        tokio::spawn(connectors_proxy::admin::serve(
            listener,
            state,
            std::future::pending::<()>(),
        ));
        tracing::info!(%addr, "admin listener: /healthz, /readyz");
    }
    let client = args.kube.client().await?;
    let access = UpstreamAccess::new(resolve_overrides(&args.resolve)?);
    let mut lease = LeaseConfig::new(&args.kube.components_namespace, &args.identity);
    lease.duration = args.lease_duration.max(Duration::from_secs(2));
    lease.renew = lease.duration / 3;
    let elector = LeaderElector::new(client.clone(), lease);
    let config = ControllerConfig {
        components_namespace: args.kube.components_namespace,
        proxy_service: args.proxy_service,
        cluster_domain: args.cluster_domain,
        exposed: args.exposed_address,
        reprobe: args.reprobe,
    };

    tracing::info!(identity = %args.identity, "waiting for the leader Lease");
    tokio::select! {
        () = elector.acquire() => {}
        () = shutdown_signal() => return Ok(ExitCode::SUCCESS),
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let work = connectors_controller::run(client, access, config, async move {
        let _ = stopped.await;
    });
    tokio::pin!(work);
    tokio::select! {
        () = &mut work => Ok(ExitCode::SUCCESS),
        lost = elector.keep() => {
            // Another replica may lead now: stop at once rather than reconcile beside it.
            tracing::error!(error = %lost, "stepping down");
            Ok(ExitCode::FAILURE)
        }
        () = shutdown_signal() => {
            let _ = stop.send(());
            work.await;
            Ok(ExitCode::SUCCESS)
        }
    }
}
