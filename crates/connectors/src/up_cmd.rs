//! `connectors up`: the proxy of embedded mode, with the file catalog and locally signed tokens.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use connectors_catalog::Catalog;
use connectors_proxy::ca::ProxyCa;
use connectors_registry::base_url;

use crate::{CatalogArgs, StateArgs, load_catalog, load_tokens, resolve_overrides, serve};

#[derive(Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    catalog: CatalogArgs,
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    serve: serve::ServeArgs,
    /// The proxy CA certificate (PEM) that signs intercepted connections in forward mode. Default: `ca.crt`
    /// in the state folder, created with `ca.key` on first start.
    #[arg(long, env = "CONNECTORS_CA_CERT", requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The CA's private key (PEM, PKCS#8, mode 0600), with --ca-cert.
    #[arg(long, env = "CONNECTORS_CA_KEY", requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// How often to look for catalog changes.
    #[arg(long, env = "CONNECTORS_CATALOG_POLL", default_value = "1s", value_parser = humantime::parse_duration)]
    catalog_poll: Duration,
}

pub(crate) async fn up(args: UpArgs) -> Result<ExitCode> {
    resolve_overrides(&args.serve.resolve)?;
    let running = args.serve.ops.start().await?;
    let catalog = load_catalog(&args.catalog)?;
    let tokens = Arc::new(load_tokens(&args.state)?);
    let ca = Arc::new(match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => ProxyCa::load(cert, key).context("loading the proxy CA")?,
        _ => ProxyCa::load_or_create(&args.state.state_dir).context("preparing the proxy CA")?,
    });
    let listener = args.serve.bind().await?;
    let local = listener
        .local_addr()
        .context("reading the listening address")?;
    let _watch = catalog.spawn_watch(args.catalog_poll);

    println!("listening on {local}");
    println!("state folder {}", args.state.state_dir.display());
    println!(
        "forward mode: HTTPS_PROXY=http://<namespace>%2F<connector>:<token>@{local} (trust the CA from `connectors ca show`)"
    );
    for c in catalog.connectors() {
        let status = match &c.credentials {
            Ok(_) => "ready".to_string(),
            Err(reason) => format!("UNUSABLE: {reason}"),
        };
        println!(
            "connector {} -> {} via {local}/namespaces/{}/connectors/{} ({status})",
            c.reference,
            base_url(&c.address),
            c.reference.namespace,
            c.reference.name
        );
    }
    tracing::info!(%local, connectors = catalog.connectors().len(), "proxy started");
    let backends = serve::Backends {
        catalog,
        authn: tokens.clone(),
        authz: tokens,
        ca,
    };
    args.serve.serve(listener, backends, &running).await
}
