//! `connectors render`: the files a workload needs, written into a folder.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use connectors_catalog::Catalog;
use connectors_identity::Allowed;
use connectors_model::ConnectorRef;
use connectors_proxy::ca::ProxyCa;

use crate::{CatalogArgs, StateArgs, load_catalog, load_tokens};

#[derive(Args)]
pub(crate) struct RenderArgs {
    #[command(flatten)]
    catalog: CatalogArgs,
    #[command(flatten)]
    state: StateArgs,
    /// Connectors, comma-separated: NS/NAME, or NAME in --namespace.
    #[arg(long, value_delimiter = ',', required = true)]
    connectors: Vec<String>,
    /// Namespace for connectors given without one (the pod's namespace, in CSI terms).
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Configurations of the connectors' classes to render, comma-separated (e.g. `registry-config,buildkitd`);
    /// `!FILE` leaves a file out (e.g. `!ca.cert`). Without it, only the built-in files are written.
    #[arg(long, default_value = "")]
    configuration_names: String,
    /// Parameters per configuration, as JSON: `{"<configuration>": {"<param>": "<value>"}}`.
    #[arg(long)]
    configuration_params: Option<String>,
    /// Lifetime of the proxy token written into the files, e.g. 30m, 2h.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    token_expiration: Duration,
    /// The proxy as the workload reaches it. Default: http:// plus CONNECTORS_LISTEN, or http://127.0.0.1:8080.
    #[arg(long, env = "CONNECTORS_PROXY_URL")]
    proxy_url: Option<String>,
    /// Folder to write; files appear all at once (a fresh folder swapped in by symlink), mode 0444.
    #[arg(long)]
    out: PathBuf,
}

pub(crate) fn render(args: RenderArgs) -> Result<ExitCode> {
    let catalog = load_catalog(&args.catalog)?;
    let proxy_url = args
        .proxy_url
        .clone()
        .or_else(|| {
            std::env::var("CONNECTORS_LISTEN")
                .ok()
                .map(|l| format!("http://{l}"))
        })
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let proxy_url = proxy_url.trim_end_matches('/').to_owned();
    let mut refs = Vec::new();
    for name in args.connectors.iter().filter(|c| !c.trim().is_empty()) {
        let r = ConnectorRef::parse_with_default(name, Some(&args.namespace))
            .with_context(|| format!("--connectors {name:?}"))?;
        refs.push(r);
    }
    let mut resolved = Vec::new();
    for r in &refs {
        let connector = catalog.connector(r).with_context(|| {
            format!(
                "connector \"{r}\" not found in {}",
                args.catalog.catalog.display()
            )
        })?;
        let class = catalog.class(connector.class_name()).with_context(|| {
            format!(
                "connector {r}: ConnectorClass {:?} not found",
                connector.class_name()
            )
        })?;
        resolved.push((connector, class));
    }
    let params = match &args.configuration_params {
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text)
                .context("--configuration-params must be JSON: {\"<configuration>\": {\"<param>\": \"<value>\"}}")?,
        ),
        None => None,
    };
    let tokens = load_tokens(&args.state)?;
    let token = tokens
        .issue(
            "render",
            &Allowed::Only(refs.clone()),
            args.token_expiration,
        )
        .context("issuing the token")?;
    let ca = ProxyCa::load_or_create(&args.state.state_dir).context("preparing the proxy CA")?;
    let request = connectors_render::RenderRequest {
        connectors: resolved
            .iter()
            .map(|(c, class)| connectors_render::RenderConnector {
                connector: &c.connector,
                class,
                proxy_address: format!(
                    "{proxy_url}/namespaces/{}/connectors/{}",
                    c.reference.namespace, c.reference.name
                ),
            })
            .collect(),
        token: &token,
        ca_cert_pem: ca.cert_pem(),
        class_proxy_address: proxy_url.clone(),
        configuration_names: connectors_render::parse_configuration_names(
            &args.configuration_names,
        ),
        configuration_params: params,
    };
    let files = connectors_render::render(&request)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    connectors_csi::writer::write_files(&args.out, &files)
        .with_context(|| format!("writing {}", args.out.display()))?;
    for name in files.keys() {
        println!("{}", args.out.join(name).display());
    }
    Ok(ExitCode::SUCCESS)
}
