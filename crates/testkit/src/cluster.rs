//! A real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager, built from their
//! Go modules and started by `scripts/cluster.sh` in a folder of their own (see docs/testing.md).
//!
//! [`Cluster::up`] builds the binaries on first use (minutes, cached in `/var/cache/connectors-testground`),
//! starts them on free ports of 127.0.0.1 and waits for `/readyz`; dropping the [`Cluster`] runs
//! `scripts/cluster.sh down`, which stops every process and deletes the folder. [`Cluster::up_node`] adds a node
//! that runs pods.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running control plane. Everything it started stops when it is dropped.
pub struct Cluster {
    root: PathBuf,
    dir: PathBuf,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    server: String,
    _parent: tempfile::TempDir,
}

/// What `kubectl` printed, and whether it succeeded.
#[derive(Debug)]
pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Cluster {
    /// Builds (first time only) and starts a control plane; panics with the script's output when it cannot.
    pub fn up() -> Cluster {
        Self::launch(&["up"], &[])
    }

    /// A control plane and a node (`scripts/cluster.sh up --node`: kubelet, containerd, CNI, kube-proxy,
    /// CoreDNS) with connectors installed from `deploy/`, its image made from `connectors_binary` (root only).
    /// Only one node can run on a machine at a time.
    pub fn up_node(connectors_binary: &Path) -> Cluster {
        Self::launch(
            &["up", "--node"],
            &[("CONNECTORS_BINARY", connectors_binary.as_os_str())],
        )
    }

    fn launch(args: &[&str], envs: &[(&str, &std::ffi::OsStr)]) -> Cluster {
        let root = repo_root();
        let parent = tempfile::Builder::new()
            .prefix("connectors-cluster-")
            .tempdir_in("/tmp")
            .expect("cannot create a folder under /tmp for the cluster");
        let dir = parent.path().join("cluster");
        let out = Command::new(root.join("scripts/cluster.sh"))
            .args(args)
            .envs(envs.iter().copied())
            .env("CLUSTER_DIR", &dir)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run scripts/cluster.sh");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            // Whatever started must not outlive the failure.
            let _ = Command::new(root.join("scripts/cluster.sh"))
                .arg("down")
                .env("CLUSTER_DIR", &dir)
                .output();
            panic!(
                "scripts/cluster.sh up failed ({}):\n{stdout}\n{stderr}",
                out.status
            );
        }
        let env = std::fs::read_to_string(dir.join("cluster.env")).expect("cluster.env");
        let value = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{key} missing from cluster.env"))
                .to_owned()
        };
        let bin = PathBuf::from(value("BIN"));
        let server = format!("https://127.0.0.1:{}", value("APISERVER_PORT"));
        Cluster {
            kubectl: bin.join("kubectl"),
            kubeconfig: dir.join("admin.kubeconfig"),
            root,
            dir,
            server,
            _parent: parent,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The cluster CA (PEM file): it signed the API server's certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// The admin kubeconfig (group `system:masters`).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The cluster's folder (logs under `logs/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The repository's root folder.
    pub fn repo_root(&self) -> &Path {
        &self.root
    }

    /// The last `lines` lines of a component's log (etcd, kube-apiserver, kube-controller-manager).
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("logs/{component}.log")))
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// kubectl as admin, with `args`, optionally `stdin`.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> KubectlOutput {
        self.kubectl_as(&self.kubeconfig, args, stdin)
    }

    /// kubectl with another kubeconfig (a ServiceAccount's, say).
    pub fn kubectl_as(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> KubectlOutput {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .current_dir(&self.root)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run kubectl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(input.as_bytes())
                .expect("write kubectl stdin");
        }
        let out: Output = child.wait_with_output().expect("kubectl did not finish");
        KubectlOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// kubectl as admin; panics with its output when it fails. Returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args, None);
        assert!(
            out.success,
            "kubectl {} failed:\n{}{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// `kubectl apply --server-side --validate=strict -f -` as admin; panics when refused.
    pub fn apply(&self, yaml: &str) -> String {
        let out = self.try_apply(yaml);
        assert!(
            out.success,
            "kubectl apply refused:\n{}{}\n--- manifest ---\n{yaml}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// Like [`Cluster::apply`], returning the outcome instead of panicking.
    pub fn try_apply(&self, yaml: &str) -> KubectlOutput {
        self.kubectl(
            &[
                "apply",
                "--server-side",
                "--field-manager=connectors-tests",
                "--validate=strict",
                "-f",
                "-",
            ],
            Some(yaml),
        )
    }

    /// A token for ServiceAccount `ns/sa` from the TokenRequest API (`kubectl create token`), with the API
    /// server's default audience or `audience`.
    pub fn token(&self, ns: &str, sa: &str, audience: Option<&str>) -> String {
        let mut args = vec!["create", "token", sa, "-n", ns, "--duration", "1h"];
        if let Some(a) = audience {
            args.extend(["--audience", a]);
        }
        self.kubectl_ok(&args).trim().to_owned()
    }

    /// Writes a kubeconfig that authenticates with `token` (a ServiceAccount's) and returns its path.
    pub fn token_kubeconfig(&self, dir: &Path, name: &str, token: &str) -> PathBuf {
        let path = dir.join(format!("{name}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context: {{cluster: c, user: {name}}}\ncurrent-context: {name}\n",
            self.server,
            self.ca_path().display()
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Stops one component (etcd, kube-apiserver, kube-controller-manager); its data stays.
    pub fn stop(&self, component: &str) {
        self.script(&["stop", component]);
    }

    /// Starts a stopped component again (for the API server: waits for `/readyz`).
    pub fn start(&self, component: &str) {
        self.script(&["start", component]);
    }

    fn script(&self, args: &[&str]) {
        let out = Command::new(self.root.join("scripts/cluster.sh"))
            .args(args)
            .env("CLUSTER_DIR", &self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run scripts/cluster.sh");
        assert!(
            out.status.success(),
            "scripts/cluster.sh {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Polls `check` every 200 ms until it returns `Some`, for at most `timeout`; panics with `what` after.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(self.root.join("scripts/cluster.sh"))
            .arg("down")
            .env("CLUSTER_DIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Processes whose command line mentions `dir` (what `scripts/cluster.sh down` must leave none of).
pub fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(&needle) {
            found.push(format!(
                "{}: {}",
                entry.file_name().to_string_lossy(),
                text.trim()
            ));
        }
    }
    found
}

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}
