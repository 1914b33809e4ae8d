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
    /// Serve the pod image pull webhook (`enable-pod-image-pull-via-connector`) over TLS on this address, on
    /// every replica (leader or not). Off when not given.
    #[arg(long, env = "CONNECTORS_WEBHOOK_LISTEN", value_name = "ADDR")]
    webhook_listen: Option<std::net::SocketAddr>,
    /// Extra DNS name or IP address for the webhook's serving certificate (repeatable), beside
    /// `<webhook-service>.<namespace>.svc` and `….svc.<cluster-domain>`. Used when the certificate is first made.
    #[arg(
        long = "webhook-host",
        env = "CONNECTORS_WEBHOOK_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    webhook_hosts: Vec<String>,
    /// The webhook's Service in the components namespace (its names go into the certificate).
    #[arg(
        long,
        env = "CONNECTORS_WEBHOOK_SERVICE",
        default_value = "connectors-webhook"
    )]
    webhook_service: String,
    /// The MutatingWebhookConfiguration whose caBundle this controller keeps equal to its certificate.
    #[arg(long, env = "CONNECTORS_WEBHOOK_CONFIGURATION", default_value = connectors_controller::webhook::WEBHOOK_CONFIGURATION)]
    webhook_configuration: String,
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
    if let Some(addr) = args.webhook_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--webhook-listen {addr}: cannot listen"))?;
        let ns = &args.kube.components_namespace;
        let mut hosts = vec![
            format!("{}.{ns}.svc", args.webhook_service),
            format!("{}.{ns}.svc.{}", args.webhook_service, args.cluster_domain),
        ];
        hosts.extend(args.webhook_hosts.iter().cloned());
        let config = connectors_controller::webhook::WebhookConfig {
            components_namespace: ns.clone(),
            hosts,
            configuration: args.webhook_configuration.clone(),
        };
        let webhook_client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = connectors_controller::webhook::serve(
                webhook_client,
                config,
                listener,
                std::future::pending::<()>(),
            )
            .await
            {
                tracing::error!(error = %e, "the pod image pull webhook stopped");
            }
        });
        tracing::info!(%addr, "pod image pull webhook: {}", connectors_controller::webhook::WEBHOOK_PATH);
    }
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

    // Lead while holding the Lease; a replica that loses it (say, the API server was away for longer than the
    // lease duration) stops reconciling at once and waits for the Lease again, instead of exiting.
    loop {
        tracing::info!(identity = %args.identity, "waiting for the leader Lease");
        tokio::select! {
            () = elector.acquire() => {}
            () = shutdown_signal() => return Ok(ExitCode::SUCCESS),
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let work = connectors_controller::run(
            client.clone(),
            access.clone(),
            config.clone(),
            async move {
                let _ = stopped.await;
            },
        );
        tokio::pin!(work);
        tokio::select! {
            () = &mut work => return Ok(ExitCode::SUCCESS),
            lost = elector.keep() => {
                // Another replica may lead now: stop at once (dropping the work) rather than reconcile beside it.
                tracing::error!(error = %lost, "lost the leader Lease; stepping down");
            }
            () = shutdown_signal() => {
                let _ = stop.send(());
                work.await;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}
