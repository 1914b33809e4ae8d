//! `connectors token issue` and `connectors ca show`: the proxy tokens and the forward-mode CA of embedded
//! mode.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use connectors_identity::Allowed;
use connectors_model::ConnectorRef;
use connectors_proxy::ca::ProxyCa;

use crate::{StateArgs, load_tokens};

#[derive(Subcommand)]
pub(crate) enum CaCommand {
    /// Print the proxy CA certificate (PEM): what clients trust for forward mode (`--cert-dir`, `SSL_CERT_FILE`).
    /// Creates the CA if the state folder has none yet.
    Show(StateArgs),
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a new proxy token on stdout.
    Issue(IssueArgs),
}

#[derive(Args)]
pub(crate) struct IssueArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Connectors the token may use, as NS/NAME, comma-separated; `*` for all.
    #[arg(
        long,
        env = "CONNECTORS_TOKEN_CONNECTORS",
        value_delimiter = ',',
        required = true
    )]
    connectors: Vec<String>,
    /// Lifetime, e.g. 30m, 2h (at most 24h).
    #[arg(long, env = "CONNECTORS_TOKEN_TTL", default_value = "30m", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Who the token stands for; appears in the proxy's access log.
    #[arg(long, env = "CONNECTORS_TOKEN_SUBJECT", default_value = "local")]
    subject: String,
}

pub(crate) fn ca_show(args: StateArgs) -> Result<ExitCode> {
    let ca = ProxyCa::load_or_create(&args.state_dir)
        .with_context(|| format!("preparing the proxy CA in {}", args.state_dir.display()))?;
    print!("{}", ca.cert_pem());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn issue(args: IssueArgs) -> Result<ExitCode> {
    let allowed = if args.connectors.iter().any(|c| c.trim() == "*") {
        Allowed::Any
    } else {
        let refs = args
            .connectors
            .iter()
            .map(|c| c.parse::<ConnectorRef>())
            .collect::<Result<Vec<_>, _>>()
            .context("--connectors")?;
        Allowed::Only(refs)
    };
    let tokens = load_tokens(&args.state)?;
    let token = tokens
        .issue(&args.subject, &allowed, args.ttl)
        .context("issuing the token")?;
    println!("{}", token.expose());
    Ok(ExitCode::SUCCESS)
}
