//! Running `skopeo` in isolation from the machine's container configuration.

use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::{find_tool, is_root, require_tool, write_file};

/// Proxy variables removed from skopeo's environment unless [`Skopeo::keep_proxy_env`].
const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
];

/// Variables that would point skopeo at the machine's config/credentials; always removed.
const CONFIG_VARS: &[&str] = &[
    "REGISTRY_AUTH_FILE",
    "DOCKER_CONFIG",
    "CONTAINERS_CONF",
    "CONTAINERS_REGISTRIES_CONF",
    "CONTAINERS_STORAGE_CONF",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

const CACHE_DIR: &str = "/var/lib/containers/cache";
const UNSHARE_SCRIPT: &str = "mkdir -p /var/lib/containers/cache && mount -t tmpfs tmpfs /var/lib/containers/cache && exec \"$0\" \"$@\"";

#[derive(Clone, Debug)]
enum CacheIsolation {
    /// root: a private mount namespace with a tmpfs over the system blob-info cache.
    Unshare(PathBuf),
    /// non-root: skopeo keeps its cache under `$XDG_DATA_HOME`, which we point at a fresh dir.
    XdgDataHome,
}

fn cache_isolation() -> CacheIsolation {
    static MODE: OnceLock<Result<CacheIsolation, String>> = OnceLock::new();
    MODE.get_or_init(|| {
        if !is_root() {
            return Ok(CacheIsolation::XdgDataHome);
        }
        let unshare = find_tool("unshare")
            .ok_or("`unshare` not found: apt-get install util-linux".to_string())?;
        let out = std::process::Command::new(&unshare)
            .args(["-m", "sh", "-c", UNSHARE_SCRIPT, "true"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        if out.status.success() {
            Ok(CacheIsolation::Unshare(unshare))
        } else {
            Err(format!(
                "running as root but `unshare -m` + `mount -t tmpfs` over {CACHE_DIR} failed ({}): {}\n\
                 skopeo's blob-info cache must be isolated (TESTGROUND G3); give the test process \
                 CAP_SYS_ADMIN or run the tests as a non-root user",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Result of one skopeo run.
#[derive(Clone, Debug)]
pub struct Output {
    /// Exit status (a killed process has no code).
    pub status: ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
    /// Whether it was killed because it exceeded the timeout.
    pub timed_out: bool,
}

impl Output {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with stdout/stderr unless the run succeeded.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert_success(self, what);
        self
    }
}

/// Panics with `what`, the exit status, stdout and stderr unless `out` is a success.
#[track_caller]
pub fn assert_success(out: &Output, what: &str) {
    if !out.success() {
        panic!(
            "{what} failed ({}{}):\n--- stderr ---\n{}\n--- stdout ---\n{}",
            out.status,
            if out.timed_out { ", timed out" } else { "" },
            out.stderr.trim_end(),
            out.stdout.trim_end()
        );
    }
}

/// Runs `skopeo` isolated from the machine: its own blob-info cache per run (TESTGROUND G3),
/// `HOME`, `XDG_RUNTIME_DIR`, `XDG_CONFIG_HOME`, `TMPDIR`, registries.conf, policy
/// (insecureAcceptAnything) and registries.d in a temp dir; inherited proxy variables removed
/// (see [`Skopeo::keep_proxy_env`]), as are `REGISTRY_AUTH_FILE`, `DOCKER_CONFIG`,
/// `SSL_CERT_FILE`, `SSL_CERT_DIR` and the `CONTAINERS_*` config variables. Add your own with
/// [`Skopeo::env`] (applied last).
///
/// As root the cache is isolated with
/// `unshare -m sh -c 'mkdir -p /var/lib/containers/cache && mount -t tmpfs tmpfs /var/lib/containers/cache && exec skopeo "$@"'`;
/// as non-root skopeo keeps its cache under `$XDG_DATA_HOME`, which is set to a fresh directory
/// per run.
#[derive(Debug)]
pub struct Skopeo {
    bin: PathBuf,
    dir: tempfile::TempDir,
    envs: Vec<(OsString, OsString)>,
    keep_proxy_env: bool,
    timeout: Duration,
}

impl Skopeo {
    /// Checks that `skopeo` is installed and prepares the isolated configuration.
    pub fn new() -> Self {
        let bin = require_tool("skopeo", "apt-get install skopeo");
        let _ = cache_isolation();
        let dir = tempfile::Builder::new()
            .prefix("testkit-skopeo-")
            .tempdir()
            .expect("create skopeo tempdir");
        let root = dir.path();
        write_file(
            &root.join("home/.config/containers/registries.conf"),
            "unqualified-search-registries = []\n",
        );
        write_file(
            &root.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        );
        for sub in ["registries.d", "run", "tmp", "runs"] {
            std::fs::create_dir_all(root.join(sub)).expect("create skopeo dirs");
        }
        Skopeo {
            bin,
            dir,
            envs: Vec::new(),
            keep_proxy_env: false,
            timeout: Duration::from_secs(120),
        }
    }

    /// Adds an environment variable for every run (e.g. `HTTPS_PROXY`, `SSL_CERT_FILE`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Keeps the inherited `HTTP(S)_PROXY`/`NO_PROXY`/`ALL_PROXY` variables (removed by default).
    pub fn keep_proxy_env(mut self) -> Self {
        self.keep_proxy_env = true;
        self
    }

    /// Kills a run after `timeout` (default 120 s); the [`Output`] then has `timed_out`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The temp directory owned by this runner (handy for `dir:` destinations).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The isolated `HOME`.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Runs `skopeo <global isolation flags> <args>` and waits (blocking).
    ///
    /// In an async test prefer [`Skopeo::run_async`], which does not block a runtime thread
    /// (a blocked current-thread runtime cannot serve an in-process proxy).
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new("placeholder");
        let run_dir = self.prepare(&mut cmd, args);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start skopeo: {e}"));
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let out_t = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = stdout.read_to_end(&mut b);
            b
        });
        let err_t = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = stderr.read_to_end(&mut b);
            b
        });
        let deadline = Instant::now() + self.timeout;
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for skopeo") {
                break status;
            }
            if Instant::now() >= deadline {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait for killed skopeo");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stdout = out_t.join().unwrap_or_default();
        let stderr = err_t.join().unwrap_or_default();
        drop(run_dir);
        self.finish(status, stdout, stderr, timed_out)
    }

    /// Like [`Skopeo::run`] but with `tokio::process`, for async tests. The child is killed if
    /// the future is dropped.
    pub async fn run_async(&self, args: &[&str]) -> Output {
        let mut std_cmd = std::process::Command::new("placeholder");
        let run_dir = self.prepare(&mut std_cmd, args);
        let mut cmd = tokio::process::Command::from(std_cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start skopeo: {e}"));
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let out_t = tokio::spawn(async move {
            let mut b = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut b).await;
            b
        });
        let err_t = tokio::spawn(async move {
            let mut b = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut b).await;
            b
        });
        let (status, timed_out) = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(status) => (status.expect("wait for skopeo"), false),
            Err(_) => {
                let _ = child.kill().await;
                (child.wait().await.expect("wait for killed skopeo"), true)
            }
        };
        let stdout = out_t.await.unwrap_or_default();
        let stderr = err_t.await.unwrap_or_default();
        drop(run_dir);
        self.finish(status, stdout, stderr, timed_out)
    }

    fn finish(
        &self,
        status: ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        timed_out: bool,
    ) -> Output {
        let mut stderr = String::from_utf8_lossy(&stderr).into_owned();
        if timed_out {
            stderr.push_str(&format!(
                "\n[testkit] skopeo timed out after {:?} and was killed",
                self.timeout
            ));
        }
        Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
            timed_out,
        }
    }

    /// Fills `cmd` (program, args, env) and returns the per-run temp dir to keep alive.
    fn prepare(&self, cmd: &mut std::process::Command, args: &[&str]) -> tempfile::TempDir {
        let root = self.dir.path();
        let run_dir = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(root.join("runs"))
            .expect("create per-run dir");
        let mut argv: Vec<OsString> = vec![
            "--registries-conf".into(),
            root.join("home/.config/containers/registries.conf").into(),
            "--policy".into(),
            root.join("policy.json").into(),
            "--registries.d".into(),
            root.join("registries.d").into(),
            "--tmpdir".into(),
            root.join("tmp").into(),
        ];
        argv.extend(args.iter().map(OsString::from));
        let new_cmd = match cache_isolation() {
            CacheIsolation::Unshare(unshare) => {
                let mut c = std::process::Command::new(unshare);
                c.args(["-m", "sh", "-c", UNSHARE_SCRIPT])
                    .arg(&self.bin)
                    .args(&argv);
                c
            }
            CacheIsolation::XdgDataHome => {
                let mut c = std::process::Command::new(&self.bin);
                c.args(&argv);
                c
            }
        };
        *cmd = new_cmd;
        for var in CONFIG_VARS {
            cmd.env_remove(var);
        }
        if !self.keep_proxy_env {
            for var in PROXY_VARS {
                cmd.env_remove(var);
            }
        }
        cmd.env("HOME", root.join("home"))
            .env("XDG_CONFIG_HOME", root.join("home/.config"))
            .env("XDG_RUNTIME_DIR", root.join("run"))
            .env("XDG_DATA_HOME", run_dir.path())
            .env("TMPDIR", root.join("tmp"));
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd.current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        run_dir
    }
}

impl Default for Skopeo {
    fn default() -> Self {
        Self::new()
    }
}
