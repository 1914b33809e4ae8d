//! `connectors csi`: the CSI node driver (embedded mode, or `--kube`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use connectors_catalog::Catalog;
use connectors_proxy::ca::ProxyCa;

use crate::{CatalogArgs, StateArgs, csi_kube, load_catalog, load_tokens, shutdown_signal};

#[derive(Args)]
pub(crate) struct CsiArgs {
    #[command(flatten)]
    catalog: CatalogArgs,
    #[command(flatten)]
    state: StateArgs,
    /// The gRPC endpoint, `unix:///path/to/csi.sock` (the kubelet's plugin folder in Kubernetes).
    #[arg(long, env = "CSI_ENDPOINT")]
    endpoint: String,
    /// This node's name, returned by NodeGetInfo.
    #[arg(long, env = "NODE_NAME")]
    node_id: String,
    /// The proxy as pods reach it (written into http.proxy, .env, config.json …). Default: embedded
    /// mode `http://127.0.0.1:8080`; with --kube the proxy's Service (see --proxy-service).
    #[arg(long, env = "CONNECTORS_PROXY_URL")]
    proxy_url: Option<String>,
    /// Refuse volumes that name more than one connector (the `enable-multi-connector` flag off).
    #[arg(long)]
    single_connector: bool,
    /// Do not mount a tmpfs on each volume (write into the target folder as it is).
    #[arg(long)]
    no_tmpfs: bool,
    /// Register the driver with the kubelet through its plugin registration API, serving the registration
    /// socket in this folder (the kubelet's `/var/lib/kubelet/plugins_registry`, mounted into the driver's pod).
    /// No node-driver-registrar sidecar is needed. Requires --kubelet-registration-path.
    #[arg(long, value_name = "DIR", requires = "kubelet_registration_path")]
    registration_dir: Option<std::path::PathBuf>,
    /// The CSI socket as the kubelet reaches it on the host (e.g.
    /// /var/lib/kubelet/plugins/connectors-csi/csi.sock), told to the kubelet at registration.
    #[arg(long, value_name = "PATH", requires = "registration_dir")]
    kubelet_registration_path: Option<std::path::PathBuf>,
    #[command(flatten)]
    kube: csi_kube::CsiKubeArgs,
}

/// Serves the CSI socket, and the kubelet registration socket when asked, until SIGTERM/SIGINT.
async fn serve(args: &CsiArgs, driver: connectors_csi::Driver) -> Result<()> {
    let Some((dir, kubelet_socket)) = args
        .registration_dir
        .as_ref()
        .zip(args.kubelet_registration_path.as_ref())
    else {
        return connectors_csi::serve(&args.endpoint, driver, shutdown_signal())
            .await
            .context("serving the CSI driver");
    };
    use connectors_csi::registration::{
        PluginRegistration, registration_socket_name, serve_registration,
    };
    let socket = dir.join(registration_socket_name(connectors_csi::DRIVER_NAME));
    let registration = PluginRegistration {
        driver_name: connectors_csi::DRIVER_NAME.to_owned(),
        kubelet_socket: kubelet_socket.clone(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let registrar = tokio::spawn(serve_registration(socket, registration, async move {
        let _ = stopped.await;
    }));
    // The CSI socket first: the kubelet calls it as soon as it has read the registration.
    let served = connectors_csi::serve(&args.endpoint, driver, shutdown_signal())
        .await
        .context("serving the CSI driver");
    let _ = stop.send(());
    registrar
        .await
        .context("the kubelet registration task failed")?
        .context("serving the kubelet plugin registration")?;
    served
}

pub(crate) async fn csi(args: CsiArgs) -> Result<ExitCode> {
    if args.kube.kube {
        if args.single_connector {
            bail!(
                "--single-connector is for embedded mode; with --kube set enable-multi-connector: \"false\" in ConfigMap connectors-config"
            );
        }
        let kube = args
            .kube
            .driver(&args.node_id, args.proxy_url.as_deref(), !args.no_tmpfs)
            .await?;
        let driver =
            connectors_csi::Driver::new(kube.config, kube.catalog, kube.tokens, kube.authorize);
        println!(
            "CSI driver {} on {} (Kubernetes mode)",
            connectors_csi::DRIVER_NAME,
            args.endpoint
        );
        serve(&args, driver).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let catalog = load_catalog(&args.catalog)?;
    let _watch = catalog.spawn_watch(Duration::from_secs(1));
    let tokens = Arc::new(load_tokens(&args.state)?);
    let ca = ProxyCa::load_or_create(&args.state.state_dir).context("preparing the proxy CA")?;
    let proxy_url = args
        .proxy_url
        .as_deref()
        .unwrap_or("http://127.0.0.1:8080")
        .trim_end_matches('/')
        .to_owned();
    let base = proxy_url.clone();
    let mut config = connectors_csi::DriverConfig::new(
        args.node_id.clone(),
        ca.cert_pem(),
        proxy_url,
        move |r| format!("{base}/namespaces/{}/connectors/{}", r.namespace, r.name),
    );
    config.multi_connector = !args.single_connector;
    config.mount_tmpfs = !args.no_tmpfs;
    let catalog: Arc<dyn Catalog> = catalog;
    let driver = connectors_csi::Driver::new(
        config,
        catalog,
        Arc::new(connectors_csi::LocalTokenSource::new(tokens)),
        Arc::new(connectors_csi::AllowAll),
    );
    println!(
        "CSI driver {} on {}",
        connectors_csi::DRIVER_NAME,
        args.endpoint
    );
    serve(&args, driver).await?;
    Ok(ExitCode::SUCCESS)
}
