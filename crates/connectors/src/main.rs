//! `connectors`: the one binary. Each role is a subcommand; this is the only place that chooses
//! implementations (file catalog and local tokens in embedded mode).

mod manifests;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod controller_cmd;
mod csi_kube;
mod kube_args;
mod proxy_cmd;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use connectors_catalog::{Catalog, FileCatalog, ResolvedConnector};
use connectors_identity::{Allowed, LocalTokens};
use connectors_model::ConnectorRef;
use connectors_proxy::ca::ProxyCa;
use connectors_registry::{ResolveOverrides, UpstreamAccess, base_url};

mod limits;
mod ops;
mod serve;

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
    Up(UpArgs),
    /// Proxy tokens for embedded mode.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write the files a workload needs (proxy URLs, .env, ca.crt, config.json, buildkitd.toml, …) into a
    /// folder: what the CSI driver mounts into a pod, for one machine.
    Render(RenderArgs),
    /// Serve the CSI node driver (`connectors-csi`) on a unix socket: pods get the rendered files as an
    /// ephemeral inline volume. In embedded mode it reads the file catalog and signs tokens locally.
    Csi(CsiArgs),
    /// The proxy's certificate authority for forward mode.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Probe connectors' registries: reachable? credentials accepted? One line per connector; exit status 1
    /// when any check fails.
    Check(CheckArgs),
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

#[derive(Args)]
struct UpArgs {
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

#[derive(Subcommand)]
enum CaCommand {
    /// Print the proxy CA certificate (PEM): what clients trust for forward mode (`--cert-dir`, `SSL_CERT_FILE`).
    /// Creates the CA if the state folder has none yet.
    Show(StateArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new proxy token on stdout.
    Issue(IssueArgs),
}

#[derive(Args)]
struct IssueArgs {
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

#[derive(Args)]
struct RenderArgs {
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

#[derive(Args)]
struct CsiArgs {
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
    #[command(flatten)]
    kube: csi_kube::CsiKubeArgs,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    catalog: CatalogArgs,
    #[command(flatten)]
    resolve: ResolveArgs,
    /// Connectors to check, as NS/NAME; all connectors in the catalog when none is given.
    connectors: Vec<String>,
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
            Command::Up(args) => up(args).await,
            Command::Token(TokenCommand::Issue(args)) => issue(args),
            Command::Check(args) => check(args).await,
            Command::Ca(CaCommand::Show(args)) => ca_show(args),
            Command::Render(args) => render(args),
            Command::Csi(args) => csi(args).await,
            Command::Manifests(args) => manifests::run(args).map(|()| ExitCode::SUCCESS),
            Command::Controller(args) => controller_cmd::controller(args).await,
            Command::Proxy(args) => proxy_cmd::proxy(args).await,
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

async fn up(args: UpArgs) -> Result<ExitCode> {
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

fn render(args: RenderArgs) -> Result<ExitCode> {
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

async fn csi(args: CsiArgs) -> Result<ExitCode> {
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
        connectors_csi::serve(&args.endpoint, driver, shutdown_signal())
            .await
            .context("serving the CSI driver")?;
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
    connectors_csi::serve(&args.endpoint, driver, shutdown_signal())
        .await
        .context("serving the CSI driver")?;
    Ok(ExitCode::SUCCESS)
}

fn ca_show(args: StateArgs) -> Result<ExitCode> {
    let ca = ProxyCa::load_or_create(&args.state_dir)
        .with_context(|| format!("preparing the proxy CA in {}", args.state_dir.display()))?;
    print!("{}", ca.cert_pem());
    Ok(ExitCode::SUCCESS)
}

fn issue(args: IssueArgs) -> Result<ExitCode> {
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

async fn check(args: CheckArgs) -> Result<ExitCode> {
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
