//! Harness for the end-to-end tests: the real `connectors` binary, real registries (testkit), real skopeo.
//!
//! Every registry in these tests uses the canary password [`CANARY`]; the suites assert that it never shows
//! up in a response, a client's output or a line the proxy logged.
#![allow(dead_code)]

pub mod kube;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connectors_testkit::http::Response;

/// The registry password in every test. If it appears anywhere a client or a log reader can see it, the
/// proxy leaked it.
pub const CANARY: &str = "Canary-Pw-7f3a9d2e";
pub const USER: &str = "ciuser";
pub const NS: &str = "team-a";

/// The `connectors up` process under test.
pub struct ProxyUnderTest {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl ProxyUnderTest {
    /// Starts `connectors up` on a free port with `catalog` (YAML) and extra flags.
    pub fn start(catalog: &str, extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("connectors-e2e-")
            .tempdir()
            .expect("tempdir");
        let catalog_path = dir.path().join("catalog.yaml");
        std::fs::write(&catalog_path, catalog).expect("write catalog");
        let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_connectors"))
            .arg("up")
            .arg("--catalog")
            .arg(&catalog_path)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--listen", "127.0.0.1:0", "--catalog-poll", "200ms"])
            .args(extra)
            .env("CONNECTORS_LOG", "debug")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn connectors up");
        let mut proxy = ProxyUnderTest {
            child,
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        proxy.addr = proxy.wait_for_listen();
        proxy
    }

    fn wait_for_listen(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default();
            if let Some(line) = out.lines().find_map(|l| l.strip_prefix("listening on ")) {
                return line.trim().parse().expect("address after 'listening on'");
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "connectors up exited ({status}) before listening:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "connectors up did not print its address in 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends SIGTERM to the proxy process.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `timeout` for the process to exit; its exit status, or None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.dir.path().join("catalog.yaml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    /// Everything the proxy wrote on stderr (its log).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("stderr")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// A proxy token from `connectors token issue` for `connectors` (comma-separated, or `*`).
    pub fn token(&self, connectors: &str) -> String {
        self.token_with(connectors, "10m")
    }

    pub fn token_with(&self, connectors: &str, ttl: &str) -> String {
        issue_token(&self.state_dir(), connectors, ttl)
    }

    /// `http://127.0.0.1:PORT/v2/namespaces/<ns>/connectors/<name>/<rest>`
    pub fn v2_url(&self, connector: &str, rest: &str) -> String {
        format!(
            "http://{}/v2/namespaces/{NS}/connectors/{connector}/{rest}",
            self.addr
        )
    }

    /// `docker://127.0.0.1:PORT/namespaces/<ns>/connectors/<name>/<repo:tag>`
    pub fn image_ref(&self, connector: &str, repo_tag: &str) -> String {
        format!(
            "docker://{}/namespaces/{NS}/connectors/{connector}/{repo_tag}",
            self.addr
        )
    }

    /// Asserts that a new connection is not served (after SIGTERM, once the proxy stopped accepting).
    pub fn assert_refuses_new_connections(&self) {
        let refused = connectors_testkit::http::send_blocking(
            "GET",
            &format!("http://{}/healthz", self.addr),
            &[],
            bytes::Bytes::new(),
        );
        assert!(
            refused.is_err(),
            "a new connection was served during shutdown: {:?}",
            refused.map(|r| r.status)
        );
    }

    /// Asserts that the canary password is nowhere in the proxy's log.
    pub fn assert_log_clean(&self) {
        let log = self.log();
        assert!(
            !log.is_empty(),
            "the proxy logged nothing; the canary check would prove nothing"
        );
        assert_no_canary(&log, "the proxy's log");
    }
}

impl Drop for ProxyUnderTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn issue_token(state_dir: &Path, connectors: &str, ttl: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_connectors"))
        .args([
            "token",
            "issue",
            "--connectors",
            connectors,
            "--ttl",
            ttl,
            "--subject",
            "e2e",
        ])
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .expect("run connectors token issue");
    assert!(
        out.status.success(),
        "token issue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 token")
        .trim()
        .to_owned()
}

/// Panics if `text` contains the canary password, in plain or base64 form.
#[track_caller]
pub fn assert_no_canary(text: &str, what: &str) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{CANARY}"));
    assert!(
        !text.contains(CANARY),
        "the registry password leaked into {what}:\n{text}"
    );
    assert!(
        !text.contains(&b64),
        "the registry credentials (base64) leaked into {what}:\n{text}"
    );
}

/// Panics if a response carries the canary in a header or the body.
#[track_caller]
pub fn assert_response_clean(r: &Response, what: &str) {
    let mut all = format!("{}\n", r.status);
    for (k, v) in &r.headers {
        all.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    all.push_str(&r.text());
    assert_no_canary(&all, what);
}

/// A Secret + Connector pair in `team-a`, the secret holding `USER`/`password`.
pub struct ConnectorSpec<'a> {
    pub name: &'a str,
    pub address: String,
    pub password: Option<&'a str>,
    pub extensions: Vec<String>,
    pub ca_pem: Option<String>,
}

impl<'a> ConnectorSpec<'a> {
    pub fn new(name: &'a str, address: impl Into<String>) -> Self {
        ConnectorSpec {
            name,
            address: address.into(),
            password: Some(CANARY),
            extensions: Vec::new(),
            ca_pem: None,
        }
    }

    pub fn yaml(&self) -> String {
        let name = self.name;
        let mut out = String::new();
        if let Some(password) = self.password {
            out.push_str(&format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-auth\n  namespace: {NS}\ntype: cpaas.io/distribution-registry-token\nstringData:\n  username: {USER}\n  password: {password}\n---\n"
            ));
        }
        if let Some(pem) = &self.ca_pem {
            let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
            out.push_str(&format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-ca\n  namespace: {NS}\ntype: Opaque\nstringData:\n  ca.crt: |\n{indented}---\n"
            ));
        }
        out.push_str(&format!(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  connectorClassName: oci\n  address: {}\n",
            self.address
        ));
        if !self.extensions.is_empty() {
            out.push_str("  addressExtensions:\n");
            for (i, e) in self.extensions.iter().enumerate() {
                out.push_str(&format!("  - name: ext{i}\n    value: {e}\n"));
            }
        }
        if self.password.is_some() {
            out.push_str(&format!(
                "  auth:\n    name: tokenAuth\n    secretRef:\n      name: {name}-auth\n"
            ));
        }
        if self.ca_pem.is_some() {
            out.push_str(&format!("  caCertSecretRef:\n    name: {name}-ca\n"));
        }
        out.push_str("---\n");
        out
    }
}

/// An auth.json for the proxy holding only a proxy token.
pub fn proxy_authfile(dir: &Path, proxy: &ProxyUnderTest, token: &str) -> PathBuf {
    connectors_testkit::AuthFile::write(dir, &proxy.host_port(), "workload", token)
}

/// The forward-proxy URL a client puts in `HTTPS_PROXY`: `http://<ns>%2F<name>[,…]:<token>@<proxy>`.
pub fn proxy_url(proxy: &ProxyUnderTest, connectors: &[&str], token: &str) -> String {
    let users: Vec<String> = connectors.iter().map(|c| format!("{NS}%2F{c}")).collect();
    format!("http://{}:{token}@{}", users.join(","), proxy.host_port())
}

/// A folder with the proxy's CA as `ca.crt`, for `--cert-dir`.
pub fn proxy_cert_dir(proxy: &ProxyUnderTest) -> PathBuf {
    let dir = proxy.dir().join("client-certs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(proxy.state_dir().join("ca.crt"), dir.join("ca.crt"))
        .expect("the proxy wrote ca.crt in its state folder");
    dir
}

/// Runs buildah or podman as root with vfs storage in `work`, an isolated blob-info cache and
/// configuration, and only the given proxy variables.
pub fn container_tool(
    bin: &str,
    work: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> connectors_testkit::Output {
    container_tool_sourcing(bin, work, args, env, None)
}

/// [`container_tool`], after `. <env_file>` in the shell that starts the tool: how a workload uses the
/// rendered `.env`.
pub fn container_tool_sourcing(
    bin: &str,
    work: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    env_file: Option<&Path>,
) -> connectors_testkit::Output {
    let source = env_file
        .map(|f| format!(". '{}' && ", f.display()))
        .unwrap_or_default();
    let unshare = format!(
        "{source}mkdir -p /var/lib/containers/cache && mount -t tmpfs tmpfs /var/lib/containers/cache && exec \"$0\" \"$@\""
    );
    let root = work.join(format!("{bin}-store"));
    std::fs::create_dir_all(work.join("home")).unwrap();
    // an auth file with no credentials at all: the workload has none
    std::fs::write(work.join("home/auth.json"), "{\"auths\":{}}\n").unwrap();
    let registries = work.join("registries.conf");
    std::fs::write(&registries, "unqualified-search-registries = []\n").unwrap();
    let mut global: Vec<String> = vec![
        "--root".into(),
        root.join("root").display().to_string(),
        "--runroot".into(),
        root.join("run").display().to_string(),
        "--storage-driver".into(),
        "vfs".into(),
    ];
    if bin == "podman" {
        global.extend(
            [
                "--events-backend",
                "none",
                "--cgroup-manager",
                "cgroupfs",
                "--tmpdir",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        global.push(root.join("tmp").display().to_string());
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &unshare, bin])
        .args(&global)
        .args(args);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", work.join("home"))
        .env("XDG_RUNTIME_DIR", work.join("home"))
        .env("CONTAINERS_REGISTRIES_CONF", &registries)
        .env("REGISTRY_AUTH_FILE", work.join("home/auth.json"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} (apt-get install {bin}): {e}"));
    connectors_testkit::Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        timed_out: false,
    }
}

/// Builds `image` from scratch with buildah in `work` (one file, `/hello.txt`); no network involved.
pub fn buildah_image(work: &Path, image: &str) {
    std::fs::create_dir_all(work).unwrap();
    let hello = work.join("hello.txt");
    std::fs::write(&hello, format!("hello from {image}\n")).unwrap();
    let from = container_tool("buildah", work, &["from", "scratch"], &[]);
    from.assert_success("buildah from scratch");
    let ctr = from.stdout.trim().to_owned();
    container_tool(
        "buildah",
        work,
        &["copy", &ctr, hello.to_str().unwrap(), "/hello.txt"],
        &[],
    )
    .assert_success("buildah copy");
    container_tool("buildah", work, &["commit", &ctr, image], &[]).assert_success("buildah commit");
}
