//! `connectors proxy`: the proxy of the distributed deployment. Connectors, classes and Secrets come from
//! the API server (watched, served from a cache that survives brief API-server outages), proxy tokens are
//! the workloads' ServiceAccount tokens (TokenReview, then SubjectAccessReview per connector), and the CA
//! that signs intercepted connections is kept in Secret `connectors-proxy-ca` so that every replica and the
//! CSI driver share it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use connectors_catalog::Catalog;
use connectors_kube::{KubeCatalog, KubeCatalogConfig, KubeReview, KubeReviewConfig};
use connectors_proxy::ca::ProxyCa;

use crate::{resolve_overrides, serve};

#[derive(Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    serve: serve::ServeArgs,
    #[command(flatten)]
    kube: crate::kube_args::KubeArgs,
    /// Serve only the Connectors of this namespace (default: all namespaces; the RBAC in deploy/ grants
    /// cluster-wide read access).
    #[arg(long, env = "CONNECTORS_WATCH_NAMESPACE", value_name = "NAMESPACE")]
    watch_namespace: Option<String>,
    /// Audience a workload's token must be issued for (repeatable or comma-separated). The CSI driver's
    /// kubelet tokens carry `connectors-proxy`, the CSIDriver's tokenRequests audience.
    #[arg(
        long = "audience",
        env = "CONNECTORS_AUDIENCES",
        value_delimiter = ',',
        default_value = connectors_kube::PROXY_AUDIENCE,
        value_name = "AUDIENCE"
    )]
    audiences: Vec<String>,
    /// Refuse tokens issued for the API server's own audience (`kubectl create token <sa>` without
    /// --audience); by default they are accepted as well.
    #[arg(long, env = "CONNECTORS_STRICT_AUDIENCE")]
    strict_audience: bool,
    /// How long an authentication, an authorization decision and the feature flags are reused before the
    /// API server is asked again (never past the token's expiry).
    #[arg(long, env = "CONNECTORS_REVIEW_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    review_ttl: Duration,
    /// How long to wait at start for the first complete list of Connectors, ConnectorClasses and Secrets;
    /// the proxy reports ready only after it.
    #[arg(long, env = "CONNECTORS_INITIAL_SYNC_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    initial_sync_timeout: Duration,
    /// How often the Secrets that connectors reference are read again: a rotated registry password is
    /// used at most this long after the change.
    #[arg(long, env = "CONNECTORS_SECRET_REFRESH", default_value = "10s", value_parser = humantime::parse_duration)]
    secret_refresh: Duration,
    /// Use this CA certificate (PEM) instead of Secret `connectors-proxy-ca`, with --ca-key.
    #[arg(long, env = "CONNECTORS_CA_CERT", requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The CA's private key (PEM, PKCS#8, mode 0600), with --ca-cert.
    #[arg(long, env = "CONNECTORS_CA_KEY", requires = "ca_cert")]
    ca_key: Option<PathBuf>,
}

pub async fn proxy(args: ProxyArgs) -> Result<ExitCode> {
    resolve_overrides(&args.serve.resolve)?;
    if args.secret_refresh.is_zero() {
        anyhow::bail!("--secret-refresh must be more than 0s");
    }
    if args.review_ttl.is_zero() {
        anyhow::bail!(
            "--review-ttl must be more than 0s (a decision cache is what keeps the API server's load bounded)"
        );
    }
    let running = args.serve.ops.start().await?;
    let listener = args.serve.bind().await?;
    let local = listener
        .local_addr()
        .context("reading the listening address")?;
    let client = args.kube.client().await?;

    let ca = Arc::new(match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => ProxyCa::load(cert, key).context("loading the proxy CA")?,
        _ => connectors_kube::load_or_create_proxy_ca(&client, &args.kube.components_namespace)
            .await
            .with_context(|| {
                format!(
                    "preparing the proxy CA in Secret {}/{}",
                    args.kube.components_namespace,
                    connectors_kube::PROXY_CA_SECRET
                )
            })?,
    });

    let catalog = KubeCatalog::start(
        client.clone(),
        KubeCatalogConfig {
            namespace: args.watch_namespace.clone(),
            secrets: true,
            initial_sync_timeout: args.initial_sync_timeout,
            secret_refresh: args.secret_refresh,
        },
    )
    .await
    .context("reading Connectors, ConnectorClasses and Secrets from the API server")?;

    let review = Arc::new(KubeReview::new(
        client,
        KubeReviewConfig {
            audiences: args.audiences.clone(),
            accept_api_server_audience: !args.strict_audience,
            components_namespace: args.kube.components_namespace.clone(),
            ttl: args.review_ttl,
        },
    ));

    println!("listening on {local}");
    println!(
        "connectors: {} (from the API server{})",
        catalog.connectors().len(),
        match &args.watch_namespace {
            Some(ns) => format!(", namespace {ns}"),
            None => String::new(),
        }
    );
    tracing::info!(%local, connectors = catalog.connectors().len(), "proxy started");
    let backends = serve::Backends {
        catalog,
        authn: review.clone(),
        authz: review,
        ca,
    };
    args.serve.serve(listener, backends, &running).await
}
