//! NodePublishVolume / NodeUnpublishVolume latency, measured by a real CSI client over the driver's unix socket.
//!
//! ```sh
//! cargo run --release -p connectors-csi --example publish_bench -- --calls 1000
//! ```
//!
//! The driver is started in-process with [`connectors_csi::serve`] on a unix socket in a temporary folder
//! (`$TMPDIR`), with a warm catalog (one connector of the built-in `oci` class), the embedded token source
//! ([`LocalTokenSource`], keys loaded before the first call) and [`AllowAll`]. A tonic client connected over that
//! socket (one connection, kept open, as the kubelet does) then makes one call at a time:
//!
//! * series `plain folder`: `--calls` publishes with `mount_tmpfs = false`, each to a fresh target path, each
//!   followed by the unpublish of that target;
//! * series `tmpfs`: `--tmpfs-calls` publishes with `mount_tmpfs = true` (root with `CAP_SYS_ADMIN` only; the
//!   series is skipped otherwise), each followed by its unpublish so that mounts do not pile up.
//!
//! Each publish names `configuration.names: registry-config,buildkitd`. Every call is timed on the client, from
//! sending the request to receiving the response, so a publish includes the gRPC round trip over the socket,
//! parsing the volume attributes, the catalog lookup, the authorizer, signing a fresh proxy token, rendering the
//! templates and the atomic write (timestamped folder, `..data` swap, one symlink per file; plus the tmpfs `mount`
//! syscall in the tmpfs series). The kubelet's part (creating the target's parent folder) is done before the timer
//! starts. No tracing subscriber is installed, so the driver's log lines cost nothing here.
//!
//! Prints a Markdown table: median, p90, p99, max (nearest-rank percentiles), calls per second (calls / the
//! series' summed call time) and the process CPU time per call (client and driver share the process; the children column
//! counted the `mount`/`umount` processes the driver spawned before it made the syscalls itself, and is 0 now).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connectors_catalog::StaticCatalog;
use connectors_csi::proto::node_client::NodeClient;
use connectors_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume};
use connectors_csi::proto::{
    NodePublishVolumeRequest, NodeUnpublishVolumeRequest, VolumeCapability,
};
use connectors_csi::{AllowAll, CsiError, Driver, DriverConfig, LocalTokenSource};
use connectors_identity::LocalTokens;
use connectors_model::ConnectorRef;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint, Uri};

const PROXY: &str = "127.0.0.1:18080";

const CATALOG: &str = r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {name: reg, namespace: team-a}
spec: {connectorClassName: oci, address: "https://registry.example.com"}
"#;

const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBbench\n-----END CERTIFICATE-----\n";

const USAGE: &str = "\
publish_bench: NodePublishVolume / NodeUnpublishVolume latency over the driver's unix socket

usage: publish_bench [--calls N] [--tmpfs-calls N] [--warmup N]

  --calls N        publish+unpublish pairs with tmpfs mounting off (default 1000)
  --tmpfs-calls N  publish+unpublish pairs with tmpfs mounting on; needs root, skipped otherwise;
                   0 skips the series (default 200)
  --warmup N       untimed publish+unpublish pairs before each series (default 20)
";

struct Options {
    calls: usize,
    tmpfs_calls: usize,
    warmup: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        calls: 1000,
        tmpfs_calls: 200,
        warmup: 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let slot = match name.as_str() {
            "--calls" => &mut options.calls,
            "--tmpfs-calls" => &mut options.tmpfs_calls,
            "--warmup" => &mut options.warmup,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {arg:?}\n\n{USAGE}")),
        };
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{name} needs a number"))?;
        *slot = value
            .parse()
            .map_err(|e| format!("{name} {value:?}: {e}"))?;
    }
    if options.calls == 0 {
        return Err("--calls must be at least 1".to_owned());
    }
    Ok(options)
}

/// A driver serving on a socket in its own temporary folder, and a client connected to it.
struct Bench {
    node: NodeClient<Channel>,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), CsiError>>,
    root: PathBuf,
    /// Targets published and not yet unpublished: unmounted on drop, so that a failure leaves no mounts behind.
    live: Vec<PathBuf>,
    next: usize,
}

impl Bench {
    async fn start(root: &Path, mount_tmpfs: bool) -> Result<Self, String> {
        std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let tokens = Arc::new(
            LocalTokens::load_or_create(&root.join("state"))
                .map_err(|e| format!("signing key: {e}"))?,
        );
        let catalog =
            Arc::new(StaticCatalog::from_yaml(CATALOG).map_err(|e| format!("catalog: {e}"))?);
        let mut config = DriverConfig::new("bench-node", CA_PEM, format!("http://{PROXY}"), {
            |r: &ConnectorRef| {
                format!(
                    "http://{PROXY}/namespaces/{}/connectors/{}",
                    r.namespace, r.name
                )
            }
        });
        config.mount_tmpfs = mount_tmpfs;
        let driver = Driver::new(
            config,
            catalog,
            Arc::new(LocalTokenSource::new(tokens)),
            Arc::new(AllowAll),
        );
        let socket = root.join("plugins/csi.sock");
        let endpoint = format!("unix://{}", socket.display());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            connectors_csi::serve(&endpoint, driver, async {
                let _ = rx.await;
            })
            .await
        });
        let node = NodeClient::new(connect(&socket).await?);
        Ok(Self {
            node,
            shutdown: Some(tx),
            server,
            root: root.to_path_buf(),
            live: Vec::new(),
            next: 0,
        })
    }

    /// A fresh target path whose parent exists, as the kubelet prepares it.
    fn new_target(&mut self) -> Result<PathBuf, String> {
        self.next += 1;
        let parent = self
            .root
            .join("pods")
            .join(format!("pod-{:06}", self.next))
            .join("volumes");
        std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        Ok(parent.join("mount"))
    }

    async fn publish(&mut self, target: &Path) -> Result<Duration, String> {
        let request = publish_request(target);
        self.live.push(target.to_path_buf());
        let start = Instant::now();
        let result = self.node.node_publish_volume(request).await;
        let elapsed = start.elapsed();
        result.map_err(|s| format!("NodePublishVolume {}: {s}", target.display()))?;
        Ok(elapsed)
    }

    async fn unpublish(&mut self, target: &Path) -> Result<Duration, String> {
        let request = NodeUnpublishVolumeRequest {
            volume_id: volume_id(target),
            target_path: target.display().to_string(),
        };
        let start = Instant::now();
        let result = self.node.node_unpublish_volume(request).await;
        let elapsed = start.elapsed();
        result.map_err(|s| format!("NodeUnpublishVolume {}: {s}", target.display()))?;
        self.live.retain(|t| t != target);
        Ok(elapsed)
    }

    async fn stop(mut self) -> Result<(), String> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let server = std::mem::replace(&mut self.server, tokio::spawn(async { Ok(()) }));
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .map_err(|_| "the driver did not stop".to_owned())?
            .map_err(|e| format!("the driver task: {e}"))?
            .map_err(|e| format!("the driver: {e}"))
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        for target in std::mem::take(&mut self.live) {
            if fs_type_at(&target).is_some_and(|t| t == "tmpfs")
                && let Ok(canonical) = std::fs::canonicalize(&target)
            {
                let _ = connectors_csi::mount::unmount(&canonical);
            }
        }
    }
}

async fn connect(socket: &Path) -> Result<Channel, String> {
    let mut last = String::new();
    for _ in 0..100 {
        let path = socket.to_path_buf();
        let connected = Endpoint::try_from("http://[::]:50051")
            .map_err(|e| e.to_string())?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
            }))
            .await;
        match connected {
            Ok(channel) => return Ok(channel),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("cannot connect to {}: {last}", socket.display()))
}

fn volume_id(target: &Path) -> String {
    // Unique per target, like the kubelet's csi-<hash> ephemeral volume ids.
    let pod = target
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("csi-{pod}")
}

fn publish_request(target: &Path) -> NodePublishVolumeRequest {
    let volume_context: HashMap<String, String> = [
        ("csi.storage.k8s.io/pod.name", "builder-1"),
        ("csi.storage.k8s.io/pod.namespace", "team-a"),
        ("csi.storage.k8s.io/pod.uid", "0f3c6a2e-bench"),
        ("csi.storage.k8s.io/serviceAccount.name", "builder"),
        ("csi.storage.k8s.io/ephemeral", "true"),
        ("connectors", "team-a/reg"),
        ("configuration.names", "registry-config,buildkitd"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    NodePublishVolumeRequest {
        volume_id: volume_id(target),
        target_path: target.display().to_string(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: Some(AccessMode { mode: 1 }),
        }),
        readonly: true,
        volume_context,
        ..Default::default()
    }
}

/// The file-system type of the mount whose mount point is `path` itself.
fn fs_type_at(path: &Path) -> Option<String> {
    let canonical = std::fs::canonicalize(path).ok()?;
    connectors_csi::mount::mounted_at(&canonical)
        .ok()
        .flatten()
        .map(|fs| fs.name())
}

/// The file-system type `path` lives on.
fn fs_type_under(path: &Path) -> String {
    connectors_csi::mount::file_system(path).map_or_else(|_| "?".to_owned(), |fs| fs.name())
}

/// CPU time of this process (all threads) and of its waited-for children, from `/proc/self/stat`, in clock
/// ticks of `USER_HZ` (100 per second on Linux).
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11) // state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
        .take(4) // utime stime cutime cstime
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    match fields.as_slice() {
        [u, s, cu, cs] => (u + s, cu + cs),
        _ => (0, 0),
    }
}

const USER_HZ: f64 = 100.0;

/// One series' timings of one call kind.
struct Stats {
    series: String,
    call: &'static str,
    samples: Vec<Duration>,
    /// Process and children CPU ticks spent during the timed calls of this kind.
    cpu: (u64, u64),
}

impl Stats {
    fn new(series: &str, call: &'static str) -> Self {
        Self {
            series: series.to_owned(),
            call,
            samples: Vec::new(),
            cpu: (0, 0),
        }
    }

    fn add(&mut self, elapsed: Duration, before: (u64, u64), after: (u64, u64)) {
        self.samples.push(elapsed);
        self.cpu.0 += after.0.saturating_sub(before.0);
        self.cpu.1 += after.1.saturating_sub(before.1);
    }

    fn row(&self) -> String {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let n = sorted.len();
        let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
        // Nearest rank: the smallest sample with at least q·n samples at or below it.
        let pct = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            sorted[rank - 1]
        };
        let total: Duration = sorted.iter().sum();
        let per_call_cpu = |ticks: u64| format!("{:.2}", ticks as f64 / USER_HZ * 1e3 / n as f64);
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} |",
            self.series,
            self.call,
            n,
            ms(sorted[0]),
            ms(pct(0.5)),
            ms(pct(0.9)),
            ms(pct(0.99)),
            ms(sorted[n - 1]),
            n as f64 / total.as_secs_f64(),
            per_call_cpu(self.cpu.0),
            per_call_cpu(self.cpu.1),
        )
    }
}

/// What one series measured.
struct Series {
    publish: Stats,
    unpublish: Stats,
    /// Wall time of the timed pairs (the client's bookkeeping between calls included).
    wall: Duration,
    /// Files one publish writes, and their size in bytes.
    files: usize,
    bytes: u64,
}

/// Runs `calls` publish+unpublish pairs (after `warmup` untimed ones) on a fresh driver.
async fn series(
    name: &str,
    root: &Path,
    mount_tmpfs: bool,
    calls: usize,
    warmup: usize,
) -> Result<Series, String> {
    let mut bench = Bench::start(root, mount_tmpfs).await?;

    // The first publish is checked: the files are there, and the target is (or is not) a tmpfs.
    let target = bench.new_target()?;
    bench.publish(&target).await?;
    for file in ["config.json", "buildkitd.toml", "context.token", "ca.crt"] {
        if !target.join(file).is_file() {
            return Err(format!("{name}: {file} missing after a publish"));
        }
    }
    let (files, bytes) = std::fs::read_dir(target.join("..data"))
        .map_err(|e| format!("{name}: ..data: {e}"))?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .fold((0, 0), |(n, bytes), m| (n + 1, bytes + m.len()));
    let tmpfs = fs_type_at(&target).is_some_and(|t| t == "tmpfs");
    if tmpfs != mount_tmpfs {
        let _ = bench.unpublish(&target).await;
        bench.stop().await?;
        return Err(if mount_tmpfs {
            format!("{name}: the driver could not mount a tmpfs (needs root with CAP_SYS_ADMIN)")
        } else {
            format!("{name}: a tmpfs was mounted although mount_tmpfs is off")
        });
    }
    bench.unpublish(&target).await?;
    if target.exists() {
        return Err(format!("{name}: the target is still there after unpublish"));
    }

    for _ in 0..warmup {
        let target = bench.new_target()?;
        bench.publish(&target).await?;
        bench.unpublish(&target).await?;
    }

    let mut publish = Stats::new(name, "NodePublishVolume");
    let mut unpublish = Stats::new(name, "NodeUnpublishVolume");
    let started = Instant::now();
    for _ in 0..calls {
        let target = bench.new_target()?;
        let before = cpu_ticks();
        let elapsed = bench.publish(&target).await?;
        let middle = cpu_ticks();
        publish.add(elapsed, before, middle);
        let elapsed = bench.unpublish(&target).await?;
        unpublish.add(elapsed, middle, cpu_ticks());
    }
    let wall = started.elapsed();
    bench.stop().await?;
    Ok(Series {
        publish,
        unpublish,
        wall,
        files,
        bytes,
    })
}

fn main() {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // Multi-threaded with one worker per CPU, like the `connectors` binary.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(options)) {
        eprintln!("publish_bench: {e}");
        std::process::exit(1);
    }
}

async fn run(options: Options) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let fs = fs_type_under(tmp.path());
    let mut rows = Vec::new();
    let mut notes = Vec::new();

    eprintln!(
        "publish_bench: {} publish+unpublish pairs, tmpfs off, in {} ({fs})",
        options.calls,
        tmp.path().display()
    );
    let plain = series(
        &format!("plain folder ({fs})"),
        &tmp.path().join("plain"),
        false,
        options.calls,
        options.warmup,
    )
    .await?;
    rows.push(plain.publish.row());
    rows.push(plain.unpublish.row());
    notes.push(format!(
        "each publish: connectors team-a/reg, configuration.names registry-config,buildkitd: {} files, {} bytes",
        plain.files, plain.bytes
    ));
    notes.push(format!(
        "plain-folder series: {:.1} s wall for {} timed pairs (after {} untimed warm-up pairs)",
        plain.wall.as_secs_f64(),
        options.calls,
        options.warmup
    ));

    if options.tmpfs_calls > 0 {
        eprintln!(
            "publish_bench: {} publish+unpublish pairs, tmpfs on",
            options.tmpfs_calls
        );
        match series(
            "tmpfs",
            &tmp.path().join("tmpfs"),
            true,
            options.tmpfs_calls,
            options.warmup,
        )
        .await
        {
            Ok(tmpfs) => {
                rows.push(tmpfs.publish.row());
                rows.push(tmpfs.unpublish.row());
                notes.push(format!(
                    "tmpfs series: {:.1} s wall for {} timed pairs (after {} untimed warm-up pairs)",
                    tmpfs.wall.as_secs_f64(),
                    options.tmpfs_calls,
                    options.warmup
                ));
            }
            Err(e) => notes.push(format!("tmpfs series skipped: {e}")),
        }
    }

    println!(
        "| series | call | calls | min ms | median ms | p90 ms | p99 ms | max ms | calls/s | CPU ms/call (process) | CPU ms/call (mount/umount) |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        println!("{row}");
    }
    println!();
    for note in notes {
        println!("{note}");
    }
    Ok(())
}
