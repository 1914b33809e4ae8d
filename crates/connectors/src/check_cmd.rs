//! `connectors check`: probes the connectors' registries, one line each.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use connectors_catalog::{Catalog, ResolvedConnector};
use connectors_model::ConnectorRef;
use connectors_registry::UpstreamAccess;

use crate::{CatalogArgs, ResolveArgs, load_catalog, resolve_overrides};

#[derive(Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    catalog: CatalogArgs,
    #[command(flatten)]
    resolve: ResolveArgs,
    /// Connectors to check, as NS/NAME; all connectors in the catalog when none is given.
    connectors: Vec<String>,
}

pub(crate) async fn check(args: CheckArgs) -> Result<ExitCode> {
    let overrides = resolve_overrides(&args.resolve)?;
    let catalog = load_catalog(&args.catalog)?;
    let selected: Vec<Arc<ResolvedConnector>> = if args.connectors.is_empty() {
        catalog.connectors()
    } else {
        let mut out = Vec::new();
        for name in &args.connectors {
            let r: ConnectorRef = name
                .parse()
                .with_context(|| format!("connector {name:?}"))?;
            match catalog.connector(&r) {
                Some(c) => out.push(c),
                None => bail!(
                    "connector {r} is not in the catalog {}",
                    args.catalog.catalog.display()
                ),
            }
        }
        out
    };
    if selected.is_empty() {
        bail!(
            "the catalog {} has no connectors",
            args.catalog.catalog.display()
        );
    }
    let access = UpstreamAccess::new(overrides);
    let mut failed = false;
    for c in selected {
        let line = match &c.credentials {
            Err(reason) => Err(format!("not usable: {reason}")),
            Ok(credentials) => {
                // The same probe the controller's LivenessReady/AuthReady conditions come from.
                let report = connectors_controller::probe_connector(&access, &c, credentials).await;
                match (report.liveness, report.auth) {
                    (Err(e), _) => Err(format!("unreachable: {e}")),
                    (Ok(()), Err(e)) => Err(format!("reachable, but authentication failed: {e}")),
                    (Ok(()), Ok(how)) => Ok(format!(
                        "registry {} reachable; {how}",
                        c.address.authority()
                    )),
                }
            }
        };
        match line {
            Ok(msg) => println!("ok    {}: {msg}", c.reference),
            Err(msg) => {
                failed = true;
                println!("FAIL  {}: {msg}", c.reference);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
