//! `connectors`: the one binary. Each role is a subcommand in a module of its own (`up_cmd`, `token_cmd`,
//! `render_cmd`, `csi_cmd`, `check_cmd`, `proxy_cmd`, `controller_cmd`, `manifests`); this file parses the
//! command line and holds what several share (catalog, state folder and `--resolve` arguments).

mod check_cmd;
mod controller_cmd;
mod credential_provider_cmd;
mod csi_cmd;
mod csi_kube;
mod kube_args;
mod limits;
mod manifests;
mod ops;
mod proxy_cmd;
mod render_cmd;
mod serve;
mod token_cmd;
mod up_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use connectors_catalog::FileCatalog;
use connectors_identity::LocalTokens;
use connectors_registry::ResolveOverrides;

#[derive(Parser)]
#[command(
    name = "connectors",
    version,
    about = "Push and pull container images through a proxy that holds the registry credentials",
    long_about = "Connectors lets a workload push and pull images without ever holding the registry's password. \
The workload presents a short-lived proxy token; the proxy checks that the token may use the named connector \
(a registry address plus credentials) and talks to the real registry with the connector's credentials.\n\n\
Quick start (embedded mode, one machine):\n  \
connectors up --catalog examples/quickstart.yaml\n  \
connectors token issue --connectors team-a/registry\n  \
skopeo copy --src-tls-verify=false --src-creds any:<token> \\\n    \
docker://127.0.0.1:8080/namespaces/team-a/connectors/registry/app:v1 dir:/tmp/app"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "CONNECTORS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the proxy (embedded mode): connectors and secrets come from YAML manifests, proxy tokens are
    /// signed with a key in the state folder.
    Up(up_cmd::UpArgs),
    /// Proxy tokens for embedded mode.
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// Write the files a workload needs (proxy URLs, .env, ca.crt, config.json, buildkitd.toml, …) into a
    /// folder: what the CSI driver mounts into a pod, for one machine.
    Render(render_cmd::RenderArgs),
    /// Serve the CSI node driver (`connectors-csi`) on a unix socket: pods get the rendered files as an
    /// ephemeral inline volume. In embedded mode it reads the file catalog and signs tokens locally.
    Csi(csi_cmd::CsiArgs),
    /// The proxy's certificate authority for forward mode.
    #[command(subcommand)]
    Ca(token_cmd::CaCommand),
    /// Probe connectors' registries: reachable? credentials accepted? One line per connector; exit status 1
    /// when any check fails.
    Check(check_cmd::CheckArgs),
    /// Print the Kubernetes manifests of the distributed deployment (what `kubectl kustomize deploy/`
    /// builds); `manifests crds` prints only the CustomResourceDefinitions.
    Manifests(manifests::ManifestsArgs),
    /// Kubernetes: serve the proxy of the distributed deployment. Connectors and Secrets come from the
    /// API server, workloads authenticate with their ServiceAccount tokens (TokenReview, then a
    /// SubjectAccessReview per connector), and the forward-mode CA is kept in Secret `connectors-proxy-ca`.
    Proxy(proxy_cmd::ProxyArgs),
    /// Kubernetes: keep every Connector's status (conditions, proxy address) and its proxy Service
    /// `c-<name>` current, probing registries periodically. Replicas elect one leader with a Lease.
    Controller(controller_cmd::ControllerArgs),
    /// Kubernetes: a kubelet image credential provider (credentialprovider.kubelet.k8s.io/v1). The kubelet
    /// runs it per image pull and passes the pod's ServiceAccount token; it answers with that token as the
    /// password for the proxy, so such pods need no imagePullSecret (docs/kubernetes.md).
    CredentialProvider(credential_provider_cmd::CredentialProviderArgs),
}

#[derive(Args)]
struct CatalogArgs {
    /// A YAML file or a folder of YAML files with Connector, Secret (and ConnectorClass) manifests, as you
    /// would `kubectl apply` them. Edits are picked up without a restart; a broken edit keeps the last good
    /// state and is logged.
    #[arg(long, env = "CONNECTORS_CATALOG", default_value = "connectors.yaml")]
    catalog: PathBuf,
}

#[derive(Args)]
struct StateArgs {
    /// Folder for the proxy's own state: the token signing key (and the CA). Created if missing.
    #[arg(long, env = "CONNECTORS_STATE_DIR", default_value_os_t = default_state_dir())]
    state_dir: PathBuf,
}

#[derive(Args)]
struct ResolveArgs {
    /// Connect to ADDR whenever a connector's registry HOST:PORT is dialled (repeatable), e.g.
    /// `registry.test:5443:127.0.0.1`. For tests and air-gapped setups; TLS still verifies HOST.
    #[arg(
        long = "resolve",
        value_name = "HOST:PORT:ADDR",
        env = "CONNECTORS_RESOLVE",
        value_delimiter = ','
    )]
    resolve: Vec<String>,
}

fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("connectors");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/connectors"),
        None => PathBuf::from(".connectors-state"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up_cmd::up(args).await,
            Command::Token(token_cmd::TokenCommand::Issue(args)) => token_cmd::issue(args),
            Command::Check(args) => check_cmd::check(args).await,
            Command::Ca(token_cmd::CaCommand::Show(args)) => token_cmd::ca_show(args),
            Command::Render(args) => render_cmd::render(args),
            Command::Csi(args) => csi_cmd::csi(args).await,
            Command::Manifests(args) => manifests::run(args).map(|()| ExitCode::SUCCESS),
            Command::Controller(args) => controller_cmd::controller(args).await,
            Command::Proxy(args) => proxy_cmd::proxy(args).await,
            Command::CredentialProvider(args) => credential_provider_cmd::credential_provider(args),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONNECTORS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal; log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The token signing key in the state folder (created on first use).
fn load_tokens(state: &StateArgs) -> Result<LocalTokens> {
    LocalTokens::load_or_create(&state.state_dir)
        .with_context(|| format!("preparing the state folder {}", state.state_dir.display()))
}

fn resolve_overrides(args: &ResolveArgs) -> Result<ResolveOverrides> {
    let mut overrides = ResolveOverrides::default();
    for entry in args.resolve.iter().filter(|e| !e.trim().is_empty()) {
        let ((host, port), addr) =
            ResolveOverrides::parse_entry(entry.trim()).map_err(anyhow::Error::msg)?;
        overrides.insert(&host, port, addr);
    }
    Ok(overrides)
}

fn load_catalog(args: &CatalogArgs) -> Result<Arc<FileCatalog>> {
    if !args.catalog.exists() {
        bail!(
            "no catalog at {}: pass --catalog FILE|DIR with Connector and Secret manifests (see examples/quickstart.yaml)",
            args.catalog.display()
        );
    }
    FileCatalog::load(&args.catalog)
        .with_context(|| format!("loading the catalog {}", args.catalog.display()))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
