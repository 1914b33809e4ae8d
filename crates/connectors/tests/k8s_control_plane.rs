//! The Kubernetes deployment on a **real** control plane: etcd, kube-apiserver (`--authorization-mode=Node,RBAC`)
//! and kube-controller-manager built from their Go modules (`scripts/cluster.sh`, `testground/k8s/`), a real
//! `docker-registry` and real skopeo.
//!
//! The components run as processes on this machine, each with a token of its own ServiceAccount from `deploy/`
//! (TokenRequest API), so the RBAC of `deploy/` is what the API server enforces on every call they make.
//! Workloads hold nothing but ServiceAccount tokens from `kubectl create token`.
//!
//! One cluster serves every test of this file (its own harness: the cluster starts before the first test and is
//! torn down after the last); the tests run one after another, each in namespaces of its own.

mod common;

use common::kube::{self, to_yaml};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use common::{CANARY, USER, assert_no_canary, assert_response_clean};
use connectors_testkit::{
    AuthFile, Cluster, OciLayout, Registry, Skopeo, TestCa, ensure_hosts_entry, http, sha256_digest,
};
use serde_json::{Value, json};

const COMPONENTS: &str = "connectors-system";
const HOST: &str = "registry.test";
/// The password the registry is rotated to in `secret_rotation`; checked like the canary.
const CANARY_ROTATED: &str = "Canary-Pw-rotated-41c8";

/// A test of this file: it gets the shared cluster.
type Test = fn(&Env);

/// In the order they run.
static TESTS: [(&str, Test); 11] = [
    (
        "deploy_applies_with_strict_validation_and_server_side_apply",
        deploy_applies_with_strict_validation_and_server_side_apply,
    ),
    (
        "published_shapes_apply_unchanged_and_mistakes_are_refused",
        published_shapes_apply_unchanged_and_mistakes_are_refused,
    ),
    (
        "workload_identity_reverse_and_forward",
        workload_identity_reverse_and_forward,
    ),
    (
        "proxy_permissions_flag_at_run_time",
        proxy_permissions_flag_at_run_time,
    ),
    (
        "controller_status_service_and_garbage_collection",
        controller_status_service_and_garbage_collection,
    ),
    (
        "controller_leader_takeover_on_a_real_lease",
        controller_leader_takeover_on_a_real_lease,
    ),
    (
        "secret_rotation_without_restart",
        secret_rotation_without_restart,
    ),
    (
        "csi_publish_with_a_pod_bound_token",
        csi_publish_with_a_pod_bound_token,
    ),
    (
        "connector_scopes_in_proxy_and_csi",
        connector_scopes_in_proxy_and_csi,
    ),
    ("pod_image_pull_webhook", pod_image_pull_webhook),
    ("api_server_restart", api_server_restart),
];

fn main() {
    let (conclusion, env) = kube::run_in_order(&TESTS, false, || {
        eprintln!(
            "k8s_control_plane: starting a real control plane (scripts/cluster.sh up; the first build takes minutes)"
        );
        Env::new()
    });
    // This drop stops the cluster, which must leave no process and no mount behind.
    let dir = env.cluster.dir().to_owned();
    drop(env);
    let left = connectors_testkit::processes_using(&dir);
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&dir.display().to_string()))
        .count();
    if !left.is_empty() || mounted > 0 || dir.exists() {
        eprintln!(
            "scripts/cluster.sh down left something behind in {}: processes {left:?}, {mounted} mounts, folder exists: {}",
            dir.display(),
            dir.exists()
        );
        std::process::exit(101);
    }
    conclusion.exit();
}

/// The cluster, with `deploy/` installed, and the components' credentials.
struct Env {
    cluster: Cluster,
    work: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let cluster = Cluster::up();
        // What every test needs: the CRDs and deploy/ (the first test checks this step in detail; doing it here
        // too lets any test run alone).
        cluster.kubectl_ok(&["apply", "-f", "deploy/crds/"]);
        cluster.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/connectors.connectors.alauda.io",
            "crd/connectorclasses.connectors.alauda.io",
        ]);
        cluster.kubectl_ok(&["apply", "-k", "deploy/", "--server-side"]);
        let work = tempfile::Builder::new()
            .prefix("connectors-k8s-")
            .tempdir()
            .expect("tempdir");
        Env { cluster, work }
    }

    /// A kubeconfig holding a TokenRequest token of ServiceAccount `sa` in connectors-system (`deploy/`).
    fn component_kubeconfig(&self, sa: &str) -> PathBuf {
        let token = self.cluster.token(COMPONENTS, sa, None);
        self.cluster.token_kubeconfig(self.work.path(), sa, &token)
    }

    /// `connectors proxy` as ServiceAccount connectors-proxy.
    fn proxy(&self, extra: &[&str]) -> Component {
        let kubeconfig = self.component_kubeconfig("connectors-proxy");
        let mut args = vec!["proxy", "--listen", "127.0.0.1:0"];
        args.extend(extra);
        let c = Component::spawn("proxy", &kubeconfig, &args);
        c.wait_stdout("the proxy's first sync", Duration::from_secs(60), |out| {
            out.contains("listening on ") && out.contains("connectors: ")
        });
        c
    }

    /// `connectors controller` as ServiceAccount connectors-controller-manager.
    fn controller(&self, identity: &str, extra: &[&str]) -> Component {
        let kubeconfig = self.component_kubeconfig("connectors-controller-manager");
        let mut args = vec![
            "controller",
            "--identity",
            identity,
            "--lease-duration",
            "4s",
        ];
        args.extend(extra);
        Component::spawn(&format!("controller-{identity}"), &kubeconfig, &args)
    }

    /// A namespace of this test's own, with ServiceAccounts.
    fn namespace(&self, ns: &str, service_accounts: &[&str]) {
        kube::namespace(&self.cluster, ns, service_accounts);
    }

    /// A Secret with the registry's username and `password`, and a Connector of the oci class using it.
    fn connector(
        &self,
        ns: &str,
        name: &str,
        address: &str,
        password: &str,
        ca_secret: Option<&str>,
    ) {
        kube::connector(&self.cluster, ns, name, address, password, ca_secret);
    }

    /// RBAC: ServiceAccount `ns/sa` may `get` connector `name` (and, with `proxy`, `connectors/proxy`).
    fn grant(&self, ns: &str, sa: &str, name: &str, proxy: bool) {
        kube::grant(&self.cluster, ns, sa, name, proxy);
    }

    /// The proxy CA certificate from Secret connectors-proxy-ca, as the CSI driver mounts it.
    fn proxy_ca_pem(&self) -> String {
        let b64 = self.cluster.kubectl_ok(&[
            "get",
            "secret",
            "connectors-proxy-ca",
            "-n",
            COMPONENTS,
            "-o",
            "jsonpath={.data.tls\\.crt}",
        ]);
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .expect("tls.crt is base64"),
        )
        .expect("tls.crt is PEM")
    }

    /// Writes `status.proxy.httpAddress.url` as the controller does with --exposed-address (tests that run no
    /// controller).
    fn set_proxy_url(&self, ns: &str, name: &str, proxy: &str) {
        self.cluster.kubectl_ok(&[
            "patch",
            "connector",
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &json!({"status": {"proxy": {"httpAddress": {"url": format!("http://{proxy}/namespaces/{ns}/connectors/{name}")}}}})
                .to_string(),
        ]);
    }

    fn set_flag(&self, flag: &str, value: bool) {
        self.cluster.kubectl_ok(&[
            "patch",
            "configmap",
            "connectors-config",
            "-n",
            COMPONENTS,
            "--type=merge",
            "-p",
            &json!({"data": {flag: value.to_string()}}).to_string(),
        ]);
    }

    fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend(args);
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.cluster.kubectl_ok(&all)).expect("kubectl printed JSON")
    }

    fn condition(&self, ns: &str, name: &str, kind: &str) -> Option<(String, String)> {
        let c = self.get_json(&["connector", name, "-n", ns]);
        c["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or_default().to_owned(),
                    c["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
    }
}

/// A `connectors` process with a kubeconfig; killed on drop.
struct Component {
    child: Child,
    dir: tempfile::TempDir,
}

impl Component {
    fn spawn(name: &str, kubeconfig: &Path, args: &[&str]) -> Component {
        let dir = tempfile::Builder::new()
            .prefix(&format!("connectors-{name}-"))
            .tempdir()
            .expect("tempdir");
        let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_connectors"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("CONNECTORS_LOG", "debug")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn connectors");
        Component { child, dir }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    fn wait_stdout(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.stdout()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}\n{}",
                self.stdout(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The proxy's address (`listening on ADDR`).
    fn addr(&self) -> String {
        self.stdout()
            .lines()
            .find_map(|l| l.strip_prefix("listening on "))
            .expect("listening line")
            .trim()
            .to_owned()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn assert_log_clean(&self, secrets: &[&str]) {
        let log = self.log();
        assert_no_canary(&log, "a component's log");
        for s in secrets {
            assert!(!log.contains(s), "a token or password in a component's log");
        }
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.kill();
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// GET a manifest through the reverse proxy with `token`.
fn get_manifest(
    proxy: &str,
    ns: &str,
    connector: &str,
    reference: &str,
    token: &str,
) -> http::Response {
    let url = format!(
        "http://{proxy}/v2/namespaces/{ns}/connectors/{connector}/team/app/manifests/{reference}"
    );
    let r = http::send_blocking(
        "GET",
        &url,
        &[
            ("Authorization", &basic("workload", token)),
            ("Accept", "application/vnd.oci.image.manifest.v1+json"),
        ],
        Bytes::new(),
    )
    .expect("request to the proxy");
    assert_response_clean(&r, "a proxy response");
    r
}

/// Polls the manifest GET until it answers `status` (decisions are cached for --review-ttl).
fn wait_status(
    proxy: &str,
    ns: &str,
    connector: &str,
    token: &str,
    status: u16,
    what: &str,
) -> http::Response {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get_manifest(proxy, ns, connector, "v1", token);
        if r.status == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: expected {status}, still {} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn skopeo_ok(args: &[&str], env: &[(&str, &str)], what: &str) {
    let mut skopeo = Skopeo::new();
    for (k, v) in env {
        skopeo = skopeo.env(k, v);
    }
    let out = skopeo.run(args);
    assert_no_canary(&out.stdout, what);
    assert_no_canary(&out.stderr, what);
    out.assert_success(what);
}

/// Pushes a fresh image to `dest` with `auth` (an auth file), returns its manifest digest.
fn push_image(work: &Path, dest: &str, extra: &[&str], env: &[(&str, &str)], what: &str) -> String {
    let image = OciLayout::build(work.join("img"), "v1", &[64 * 1024, 300 * 1024 + 7]);
    let oci = image.oci_ref();
    let mut args = vec!["copy", "--preserve-digests"];
    args.extend(extra);
    args.extend([oci.as_str(), dest]);
    skopeo_ok(&args, env, what);
    image.manifest_digest
}

fn pull_digest(work: &Path, src: &str, extra: &[&str], env: &[(&str, &str)], what: &str) -> String {
    let out = work.join(format!("pulled-{}", sha256_digest(src.as_bytes())));
    let _ = std::fs::remove_dir_all(&out);
    let dest = format!("dir:{}", out.display());
    let mut args = vec!["copy"];
    args.extend(extra);
    args.extend([src, dest.as_str()]);
    skopeo_ok(&args, env, what);
    sha256_digest(&std::fs::read(out.join("manifest.json")).expect("manifest.json"))
}

/// Pushes a fresh image as `team/app:v1` straight to `registry` (no proxy) with the real password; returns its
/// manifest digest.
fn push_direct(work: &Path, registry: &Registry) -> String {
    let creds = format!("{USER}:{CANARY}");
    push_image(
        work,
        &format!("docker://{}/team/app:v1", registry.host_port()),
        &["--dest-tls-verify=false", "--dest-creds", &creds],
        &[],
        "direct push",
    )
}

/// The digest of `repo:tag` asked of the registry itself, with the real password.
fn registry_digest(
    registry: &Registry,
    password: &str,
    repo_tag: &str,
    tls_ca: Option<&Path>,
) -> String {
    let creds = format!("{USER}:{password}");
    let src = match tls_ca {
        Some(_) => format!("docker://{HOST}:{}/{repo_tag}", registry.port()),
        None => format!("docker://{}/{repo_tag}", registry.host_port()),
    };
    let mut args = vec!["inspect", "--raw", "--creds", creds.as_str()];
    let cert_dir;
    match tls_ca {
        Some(dir) => {
            cert_dir = dir.display().to_string();
            args.extend(["--cert-dir", cert_dir.as_str()]);
        }
        None => args.push("--tls-verify=false"),
    }
    args.push(&src);
    let out = Skopeo::new().run(&args);
    out.assert_success("skopeo inspect on the registry itself");
    sha256_digest(out.stdout.as_bytes())
}

// --- 1. deploy/ ------------------------------------------------------------------------------------------------

/// `kubectl apply -f deploy/crds/`, Established, then the whole of `deploy/` with server-side apply and strict
/// field validation; `kubectl get connectors` prints the CRD's printer columns.
fn deploy_applies_with_strict_validation_and_server_side_apply(env: &Env) {
    let c = &env.cluster;
    c.kubectl_ok(&["apply", "-f", "deploy/crds/"]);
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/connectors.connectors.alauda.io",
        "crd/connectorclasses.connectors.alauda.io",
    ]);
    let out = c.kubectl_ok(&[
        "apply",
        "-k",
        "deploy/",
        "--server-side",
        "--validate=strict",
    ]);
    assert!(
        out.contains("connectorclass.connectors.alauda.io/oci"),
        "{out}"
    );
    // Applying again changes nothing and is accepted (the field manager owns every field it set).
    c.kubectl_ok(&[
        "apply",
        "-k",
        "deploy/",
        "--server-side",
        "--validate=strict",
    ]);
    // What `connectors manifests` prints is what deploy/ holds; the API server takes that too.
    let printed = Command::new(env!("CARGO_BIN_EXE_connectors"))
        .arg("manifests")
        .output()
        .expect("connectors manifests");
    // (kubectl's own field manager, as a user re-applying would: fieldRef is an atomic struct that the API server
    // defaults, so another manager applying it would conflict with kubectl's.)
    let out = c.kubectl(
        &["apply", "--server-side", "--validate=strict", "-f", "-"],
        Some(&String::from_utf8_lossy(&printed.stdout)),
    );
    assert!(out.success, "connectors manifests refused: {}", out.stderr);

    env.namespace("cols", &[]);
    env.connector(
        "cols",
        "reg",
        "https://registry.example.com",
        "unused",
        None,
    );
    let table = c.kubectl_ok(&["get", "connectors", "-n", "cols"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "CLASS", "ADDRESS", "READY", "REASON", "AGE"],
        "{table}"
    );
    assert!(table.contains("https://registry.example.com"), "{table}");
}

// --- 2. published shapes ----------------------------------------------------------------------------------------

/// Every Connector, ConnectorClass and Secret of `examples/` applies unchanged with strict field validation;
/// the Pod and Job examples pass the API server's validation (server-side dry run); misspelled and mistyped
/// fields are refused by the API server itself, naming the field.
fn published_shapes_apply_unchanged_and_mistakes_are_refused(env: &Env) {
    let c = &env.cluster;
    env.namespace("team-a", &[]);
    let root = c.repo_root();
    for file in [
        "examples/quickstart.yaml",
        "examples/kubernetes/connectors.yaml",
        "examples/kubernetes/connectorclass.yaml",
    ] {
        let yaml = std::fs::read_to_string(root.join(file)).expect(file);
        let out = c.try_apply(&yaml);
        assert!(out.success, "{file} refused:\n{}", out.stderr);
    }
    for file in [
        "examples/kubernetes/forward-proxy-pod.yaml",
        "examples/kubernetes/build-job.yaml",
    ] {
        let out = c.kubectl(
            &["apply", "--dry-run=server", "--validate=strict", "-f", file],
            None,
        );
        assert!(out.success, "{file} refused:\n{}", out.stderr);
    }
    // The stored objects keep what was written (no field pruned by the schema).
    let internal = env.get_json(&["connector", "internal", "-n", "oci-connector-demo"]);
    assert_eq!(internal["spec"]["addressExtensions"][0]["name"], "realm");
    assert_eq!(
        internal["spec"]["auth"]["params"][0]["value"],
        "oci-connector-demo/app"
    );
    assert_eq!(internal["spec"]["caCertSecretRef"]["name"], "internal-ca");
    assert_eq!(internal["spec"]["params"][0]["value"], "eu-1");
    let registry = env.get_json(&["connector", "registry", "-n", "oci-connector-demo"]);
    assert_eq!(
        registry["metadata"]["annotations"]["cpaas.io/description"],
        "Team A's build registry"
    );
    let public = env.get_json(&["connector", "public-mirror", "-n", "oci-connector-demo"]);
    assert!(public["spec"]["auth"].get("secretRef").is_none());

    let base = json!({
        "apiVersion": "connectors.alauda.io/v1alpha1", "kind": "Connector",
        "metadata": {"name": "mistake", "namespace": "team-a"},
        "spec": {"connectorClassName": "oci", "address": "https://r.example.com",
                 "auth": {"name": "tokenAuth", "secretRef": {"name": "registry-auth"}}},
    });
    type Mutation = fn(&mut Value);
    let mutations: [(&str, Mutation); 6] = [
        ("spec.adress", |v| {
            v["spec"]["adress"] = json!("https://typo.example.com");
        }),
        ("spec.auth.secretRef.nam", |v| {
            v["spec"]["auth"]["secretRef"]["nam"] = json!("x");
        }),
        ("spec.address", |v| {
            v["spec"]["address"] = json!(5);
        }),
        ("spec.params", |v| {
            v["spec"]["params"] = json!({"name": "region"});
        }),
        ("spec.caCertSecretRef.nmae", |v| {
            v["spec"]["caCertSecretRef"] = json!({"nmae": "ca"});
        }),
        ("spec.addressExtensions", |v| {
            v["spec"]["addressExtensions"] =
                json!({"name": "realm", "value": "https://auth.example.com"});
        }),
    ];
    for (field, mutate) in mutations {
        let mut doc = base.clone();
        mutate(&mut doc);
        let out = c.try_apply(&to_yaml(&[doc]));
        assert!(!out.success, "the API server accepted a mistake in {field}");
        let leaf = field.rsplit('.').next().unwrap_or(field);
        let leaf = leaf.split('[').next().unwrap_or(leaf);
        assert!(
            out.stderr.contains(leaf),
            "the refusal does not name {field}:\n{}",
            out.stderr
        );
    }
    assert!(
        !c.kubectl(&["get", "connector", "mistake", "-n", "team-a"], None)
            .success,
        "a refused Connector was stored"
    );
}

// --- 3. workload identity -----------------------------------------------------------------------------------------

/// A ServiceAccount with a RoleBinding to `get` the Connector pushes and pulls in reverse and forward mode holding
/// only `kubectl create token` output (API audience) or only a `connectors-proxy`-audience token; without the
/// binding 403; a token of a deleted ServiceAccount 401.
fn workload_identity_reverse_and_forward(env: &Env) {
    ensure_hosts_entry(HOST)
        .expect("the forward-mode tests need `127.0.0.1 registry.test` in /etc/hosts");
    let c = &env.cluster;
    let ns = "wl";
    env.namespace(ns, &["builder", "other", "temp"]);
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    let upstream_ca = TestCa::new();
    let tls_registry = Registry::builder()
        .htpasswd(USER, CANARY)
        .tls(&upstream_ca)
        .start();
    env.connector(ns, "reg", &registry.url(), CANARY, None);
    c.apply(&to_yaml(&[json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "upstream-ca", "namespace": ns},
        "type": "Opaque",
        "stringData": {"ca.crt": upstream_ca.ca_cert_pem()},
    })]));
    let tls_host = format!("{HOST}:{}", tls_registry.port());
    env.connector(
        ns,
        "fwd",
        &format!("https://{tls_host}"),
        CANARY,
        Some("upstream-ca"),
    );
    env.grant(ns, "builder", "reg", false);
    env.grant(ns, "builder", "fwd", false);
    env.grant(ns, "temp", "reg", false);

    let resolve = format!("--resolve={HOST}:{}:127.0.0.1", tls_registry.port());
    let proxy = env.proxy(&["--review-ttl", "1s", &resolve]);
    let addr = proxy.addr();
    let api_token = c.token(ns, "builder", None);
    let proxy_token = c.token(ns, "builder", Some("connectors-proxy"));
    let other_token = c.token(ns, "other", Some("connectors-proxy"));
    let work = tempfile::tempdir().unwrap();

    // Reverse mode: push with the API-audience token, pull with the connectors-proxy one.
    let dest = format!("docker://{addr}/namespaces/{ns}/connectors/reg/team/app:v1");
    let push_auth = AuthFile::write(work.path().join("api"), &addr, "workload", &api_token);
    let pull_auth = AuthFile::write(work.path().join("proxy"), &addr, "workload", &proxy_token);
    let pushed = push_image(
        work.path(),
        &dest,
        &[
            "--dest-tls-verify=false",
            "--dest-authfile",
            push_auth.to_str().unwrap(),
        ],
        &[],
        "reverse push with a `kubectl create token` token",
    );
    let pulled = pull_digest(
        work.path(),
        &dest,
        &[
            "--src-tls-verify=false",
            "--src-authfile",
            pull_auth.to_str().unwrap(),
        ],
        &[],
        "reverse pull with a connectors-proxy token",
    );
    assert_eq!(pulled, pushed);
    assert_eq!(
        registry_digest(&registry, CANARY, "team/app:v1", None),
        pushed
    );

    // Forward mode: HTTPS_PROXY and the proxy CA read from Secret connectors-proxy-ca.
    let certs = work.path().join("proxy-ca");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), env.proxy_ca_pem()).unwrap();
    let certs = certs.to_str().unwrap();
    let fwd_dest = format!("docker://{tls_host}/team/app:v1");
    for (token, what) in [
        (&proxy_token, "connectors-proxy token"),
        (&api_token, "API token"),
    ] {
        let https_proxy = format!("http://{ns}%2Ffwd:{token}@{addr}");
        let env_vars = [("HTTPS_PROXY", https_proxy.as_str())];
        let pushed = push_image(
            work.path(),
            &fwd_dest,
            &["--dest-cert-dir", certs],
            &env_vars,
            &format!("forward push with a {what}"),
        );
        let pulled = pull_digest(
            work.path(),
            &fwd_dest,
            &["--src-cert-dir", certs],
            &env_vars,
            &format!("forward pull with a {what}"),
        );
        assert_eq!(pulled, pushed);
    }
    let upstream_certs = work.path().join("upstream-ca");
    std::fs::create_dir_all(&upstream_certs).unwrap();
    std::fs::write(upstream_certs.join("ca.crt"), upstream_ca.ca_cert_pem()).unwrap();
    let on_registry = registry_digest(&tls_registry, CANARY, "team/app:v1", Some(&upstream_certs));
    assert_eq!(
        pull_digest(
            work.path(),
            &fwd_dest,
            &["--src-cert-dir", certs],
            &[(
                "HTTPS_PROXY",
                &format!("http://{ns}%2Ffwd:{proxy_token}@{addr}")
            )],
            "forward pull again",
        ),
        on_registry
    );

    // No RoleBinding: 403, naming what is missing.
    let denied = get_manifest(&addr, ns, "reg", "v1", &other_token);
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert!(denied.text().contains("connectors"), "{}", denied.text());
    // A token of a ServiceAccount that was deleted: the API server no longer authenticates it.
    let temp_token = c.token(ns, "temp", Some("connectors-proxy"));
    wait_status(
        &addr,
        ns,
        "reg",
        &temp_token,
        200,
        "the temp ServiceAccount before deletion",
    );
    c.kubectl_ok(&["delete", "serviceaccount", "temp", "-n", ns]);
    let gone = wait_status(
        &addr,
        ns,
        "reg",
        &temp_token,
        401,
        "a deleted ServiceAccount's token",
    );
    assert!(gone.header("www-authenticate").is_some());
    // Not a token at all: 401.
    let junk = get_manifest(&addr, ns, "reg", "v1", "not-a-token");
    assert_eq!(junk.status, 401);

    proxy.assert_log_clean(&[&api_token, &proxy_token, &other_token, &temp_token]);
    assert!(!proxy.log().is_empty());
}

/// `enable-connector-proxy-permissions` flipped in ConfigMap connectors-config while the proxy runs: from then on
/// the `connectors/proxy` subresource is required too.
fn proxy_permissions_flag_at_run_time(env: &Env) {
    let ns = "flag";
    env.namespace(ns, &["builder", "prox"]);
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    env.connector(ns, "reg", &registry.url(), CANARY, None);
    env.grant(ns, "builder", "reg", false);
    env.grant(ns, "prox", "reg", true);
    let work = tempfile::tempdir().unwrap();
    push_direct(work.path(), &registry);
    let proxy = env.proxy(&["--review-ttl", "1s"]);
    let addr = proxy.addr();
    let builder = env.cluster.token(ns, "builder", Some("connectors-proxy"));
    let prox = env.cluster.token(ns, "prox", Some("connectors-proxy"));
    wait_status(
        &addr,
        ns,
        "reg",
        &builder,
        200,
        "get on the connector, flag off",
    );
    wait_status(&addr, ns, "reg", &prox, 200, "get + proxy, flag off");

    env.set_flag("enable-connector-proxy-permissions", true);
    let refused = wait_status(&addr, ns, "reg", &builder, 403, "get only, flag on");
    assert!(refused.text().contains("proxy"), "{}", refused.text());
    wait_status(&addr, ns, "reg", &prox, 200, "get + proxy, flag on");
    env.set_flag("enable-connector-proxy-permissions", false);
    wait_status(&addr, ns, "reg", &builder, 200, "get only, flag off again");
    proxy.assert_log_clean(&[&builder, &prox]);
}

// --- 4. controller -------------------------------------------------------------------------------------------------

/// The controller, as its own ServiceAccount: conditions, `status.proxy.httpAddress.url`, Service `c-<name>` owned
/// by its Connector and garbage collected with it by kube-controller-manager.
fn controller_status_service_and_garbage_collection(env: &Env) {
    let c = &env.cluster;
    let ns = "ctl";
    env.namespace(ns, &[]);
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    env.connector(ns, "reg", &registry.url(), CANARY, None);
    let controller = env.controller("solo", &[]);
    c.wait_for("Connector ctl/reg Ready", Duration::from_secs(60), || {
        (env.condition(ns, "reg", "Ready")? == ("True".into(), "".into())
            || env.condition(ns, "reg", "Ready")?.0 == "True")
            .then_some(())
    });
    let connector = env.get_json(&["connector", "reg", "-n", ns]);
    assert_eq!(
        connector["status"]["proxy"]["httpAddress"]["url"],
        format!("http://c-reg.{ns}.svc.cluster.local/namespaces/{ns}/connectors/reg"),
        "{connector}"
    );
    for kind in [
        "ConnectorClassReady",
        "SecretReady",
        "LivenessReady",
        "AuthReady",
        "ProxyServiceReady",
    ] {
        assert_eq!(
            env.condition(ns, "reg", kind).map(|c| c.0),
            Some("True".to_owned()),
            "{kind}: {connector}"
        );
    }
    let table = c.kubectl_ok(&["get", "connectors", "-n", ns]);
    assert!(
        table.lines().nth(1).unwrap_or_default().contains("True"),
        "{table}"
    );
    let service = env.get_json(&["service", "c-reg", "-n", ns]);
    let owner = &service["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Connector");
    assert_eq!(owner["uid"], connector["metadata"]["uid"]);
    assert_eq!(
        service["spec"]["externalName"],
        format!("connectors-proxy-service.{COMPONENTS}.svc.cluster.local"),
        "{service}"
    );

    // The controller follows what the status depends on (its re-probe interval is the default 5 minutes here): a
    // deleted Service c-<name> comes back, and a changed Secret is probed again at once.
    c.kubectl_ok(&["delete", "service", "c-reg", "-n", ns]);
    c.wait_for("Service c-reg back", Duration::from_secs(30), || {
        c.kubectl(&["get", "service", "c-reg", "-n", ns], None)
            .success
            .then_some(())
    });
    env.connector(ns, "reg", &registry.url(), "a-wrong-password", None);
    c.wait_for(
        "AuthReady False after the Secret changed",
        Duration::from_secs(30),
        || {
            (env.condition(ns, "reg", "AuthReady")?
                == ("False".into(), "AuthenticationFailed".into()))
                .then_some(())
        },
    );
    env.connector(ns, "reg", &registry.url(), CANARY, None);
    c.wait_for(
        "Ready after the Secret was put right",
        Duration::from_secs(30),
        || (env.condition(ns, "reg", "Ready")?.0 == "True").then_some(()),
    );

    // A connector whose Secret is missing: SecretReady False with the reason of connectors_controller::conditions.
    c.apply(&to_yaml(&[json!({
        "apiVersion": "connectors.alauda.io/v1alpha1", "kind": "Connector",
        "metadata": {"name": "nosecret", "namespace": ns},
        "spec": {"connectorClassName": "oci", "address": registry.url(),
                 "auth": {"name": "tokenAuth", "secretRef": {"name": "missing"}}},
    })]));
    c.wait_for("SecretReady False", Duration::from_secs(60), || {
        (env.condition(ns, "nosecret", "SecretReady")? == ("False".into(), "SecretNotFound".into()))
            .then_some(())
    });

    // Deleting the Connector deletes its Service (garbage collector, via the owner reference).
    c.kubectl_ok(&["delete", "connector", "reg", "-n", ns]);
    c.wait_for(
        "Service c-reg garbage collected",
        Duration::from_secs(60),
        || {
            (!c.kubectl(&["get", "service", "c-reg", "-n", ns], None)
                .success)
                .then_some(())
        },
    );
    controller.assert_log_clean(&[]);
}

/// Two controllers, one leader on a real Lease; the leader killed → the other takes over within the lease
/// duration and reconciles a Connector created after the takeover.
fn controller_leader_takeover_on_a_real_lease(env: &Env) {
    let c = &env.cluster;
    let ns = "lease";
    env.namespace(ns, &[]);
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    let mut one = env.controller("one", &[]);
    let mut two = env.controller("two", &[]);
    let holder = || {
        let lease = env.get_json(&["lease", "-n", COMPONENTS]);
        lease["items"]
            .as_array()?
            .iter()
            .find_map(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    };
    let first = c.wait_for("a leader", Duration::from_secs(30), || {
        holder().filter(|h| h == "one" || h == "two")
    });
    env.connector(ns, "before", &registry.url(), CANARY, None);
    c.wait_for("before Ready", Duration::from_secs(60), || {
        (env.condition(ns, "before", "Ready")?.0 == "True").then_some(())
    });
    let killed_at = Instant::now();
    if first == "one" {
        one.kill();
    } else {
        two.kill();
    }
    let second = c.wait_for("the other replica to lead", Duration::from_secs(30), || {
        holder().filter(|h| *h != first)
    });
    let took = killed_at.elapsed();
    assert!(second == "one" || second == "two");
    // Lease duration 4 s; a replica retries every duration/3 — allow the slack of one retry and the poll.
    assert!(took < Duration::from_secs(12), "takeover took {took:?}");
    env.connector(ns, "after", &registry.url(), CANARY, None);
    c.wait_for(
        "after Ready under the new leader",
        Duration::from_secs(60),
        || (env.condition(ns, "after", "Ready")?.0 == "True").then_some(()),
    );
    eprintln!("leader {first} killed; {second} took over after {took:?}");
}

// --- 5. Secret rotation -------------------------------------------------------------------------------------------

/// The registry's password changes, then the connector's Secret: the controller reports the broken state in between,
/// and the next push works with no restart of anything.
fn secret_rotation_without_restart(env: &Env) {
    let c = &env.cluster;
    let ns = "rot";
    env.namespace(ns, &["builder"]);
    let mut registry = Registry::builder().htpasswd(USER, CANARY).start();
    env.connector(ns, "reg", &registry.url(), CANARY, None);
    env.grant(ns, "builder", "reg", false);
    // Re-probes every 2 s: the registry's password changing is noticed only by probing.
    let _controller = env.controller("rot", &["--reprobe", "2s"]);
    let proxy = env.proxy(&["--secret-refresh", "1s"]);
    let addr = proxy.addr();
    let token = c.token(ns, "builder", Some("connectors-proxy"));
    let work = tempfile::tempdir().unwrap();
    let auth = AuthFile::write(work.path(), &addr, "workload", &token);
    let auth = auth.to_str().unwrap();
    let dest = format!("docker://{addr}/namespaces/{ns}/connectors/reg/team/app:v1");
    let push = ["--dest-tls-verify=false", "--dest-authfile", auth];
    push_image(work.path(), &dest, &push, &[], "push before the rotation");
    c.wait_for("Ready before the rotation", Duration::from_secs(60), || {
        (env.condition(ns, "reg", "Ready")?.0 == "True").then_some(())
    });

    registry.set_htpasswd(USER, CANARY_ROTATED);
    c.wait_for(
        "AuthReady False after the registry's password changed",
        Duration::from_secs(60),
        || {
            (env.condition(ns, "reg", "AuthReady")?
                == ("False".into(), "AuthenticationFailed".into()))
                .then_some(())
        },
    );
    let refused = get_manifest(&addr, ns, "reg", "v1", &token);
    assert!(
        refused.status == 403 || refused.status == 401,
        "old Secret, new password: {} {}",
        refused.status,
        refused.text()
    );

    env.connector(ns, "reg", &registry.url(), CANARY_ROTATED, None);
    c.wait_for(
        "Ready after the Secret was updated",
        Duration::from_secs(60),
        || (env.condition(ns, "reg", "Ready")?.0 == "True").then_some(()),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let dest2 = format!("docker://{addr}/namespaces/{ns}/connectors/reg/team/app:v2");
    loop {
        let image = OciLayout::build(work.path().join("img2"), "v2", &[128 * 1024]);
        let oci = image.oci_ref();
        let out = Skopeo::new().run(&[
            "copy",
            "--preserve-digests",
            push[0],
            push[1],
            push[2],
            &oci,
            &dest2,
        ]);
        assert!(!out.stderr.contains(CANARY_ROTATED) && !out.stdout.contains(CANARY_ROTATED));
        if out.success() {
            assert_eq!(
                registry_digest(&registry, CANARY_ROTATED, "team/app:v2", None),
                image.manifest_digest
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "push after rotation never worked: {}",
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = proxy.log();
    assert!(
        !log.contains(CANARY_ROTATED),
        "the rotated password in the proxy's log"
    );
    proxy.assert_log_clean(&[&token]);
}

// --- 7. CSI -------------------------------------------------------------------------------------------------------

/// `connectors csi --kube` as ServiceAccount connectors-csi: a NodePublishVolume carrying a real pod-bound token
/// (TokenRequest bound to a Pod object with `nodeName`, audience connectors-proxy) writes the files; skopeo pulls
/// with nothing but the mounted `config.json`; a pod of a ServiceAccount without access gets PermissionDenied.
fn csi_publish_with_a_pod_bound_token(env: &Env) {
    let c = &env.cluster;
    let ns = "csi";
    env.namespace(ns, &["builder", "other"]);
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    env.connector(ns, "reg", &registry.url(), CANARY, None);
    env.grant(ns, "builder", "reg", false);
    let work = tempfile::tempdir().unwrap();
    let pushed = push_direct(work.path(), &registry);
    let proxy = env.proxy(&[]);
    let addr = proxy.addr();
    // The proxy URL pods use, as the controller writes it with --exposed-address.
    env.set_proxy_url(ns, "reg", &addr);
    let mut tokens = Vec::new();
    for sa in ["builder", "other"] {
        c.apply(&to_yaml(&[json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{sa}-pod"), "namespace": ns},
            "spec": {"serviceAccountName": sa, "nodeName": "node-1",
                     "containers": [{"name": "main", "image": "tools:latest"}]},
        })]));
        let pod = env.get_json(&["pod", &format!("{sa}-pod"), "-n", ns]);
        let token = c
            .kubectl_ok(&[
                "create",
                "token",
                sa,
                "-n",
                ns,
                "--audience",
                "connectors-proxy",
                "--bound-object-kind",
                "Pod",
                "--bound-object-name",
                &format!("{sa}-pod"),
                "--duration",
                "1h",
            ])
            .trim()
            .to_owned();
        tokens.push((
            sa,
            token,
            pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }

    let csi = CsiDriver::start(env, work.path());
    let target = work.path().join("pods/builder/volume");
    let denied_target = work.path().join("pods/other/volume");
    let (_, other_token, other_uid) = &tokens[1];
    let err = csi
        .publish(&denied_target, ns, "other", other_token, other_uid, "reg")
        .expect_err("a ServiceAccount without access must not get the volume");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("other"), "{}", err.message());
    let (_, token, uid) = &tokens[0];
    csi.publish(&target, ns, "builder", token, uid, "reg")
        .unwrap_or_else(|e| panic!("publish failed: {e:?}\n{}", csi.log()));
    assert!(
        std::fs::read_dir(&denied_target).map_or(true, |mut d| d.next().is_none()),
        "files were written for a refused volume"
    );
    let read = |name: &str| std::fs::read_to_string(target.join(name)).unwrap();
    assert_eq!(read("context.token"), tokens[0].1);
    assert_eq!(read("ca.crt"), env.proxy_ca_pem());
    let config = read("config.json");
    assert!(config.contains(&addr), "{config}");
    let pulled = pull_digest(
        work.path(),
        &format!("docker://{addr}/namespaces/{ns}/connectors/reg/team/app:v1"),
        &[
            "--src-tls-verify=false",
            "--src-authfile",
            target.join("config.json").to_str().unwrap(),
        ],
        &[],
        "skopeo pull with the mounted config.json",
    );
    assert_eq!(pulled, pushed);
    // The pod-bound token dies with its pod: deleted pod → the proxy refuses the token.
    c.kubectl_ok(&[
        "delete",
        "pod",
        "builder-pod",
        "-n",
        ns,
        "--grace-period=0",
        "--force",
    ]);
    wait_status(
        &addr,
        ns,
        "reg",
        &tokens[0].1,
        401,
        "the token of a deleted pod",
    );
    for log in [csi.log(), proxy.log()] {
        assert_no_canary(&log, "a log");
        assert!(!log.contains(tokens[0].1.as_str()), "a pod token in a log");
    }
}

/// `connectors csi --kube` as ServiceAccount connectors-csi on a unix socket, with a gRPC client that calls it as
/// the kubelet does.
struct CsiDriver {
    process: Component,
    rt: tokio::runtime::Runtime,
    channel: tonic::transport::Channel,
}

impl CsiDriver {
    fn start(env: &Env, work: &Path) -> CsiDriver {
        use connectors_csi::proto::ProbeRequest;
        use connectors_csi::proto::identity_client::IdentityClient;
        use hyper_util::rt::TokioIo;
        use tonic::transport::{Endpoint, Uri};

        let kubeconfig = env.component_kubeconfig("connectors-csi");
        let socket = work.join("csi.sock");
        let endpoint = format!("unix://{}", socket.display());
        let process = Component::spawn(
            "csi",
            &kubeconfig,
            &[
                "csi",
                "--kube",
                "--no-tmpfs",
                "--node-id",
                "node-1",
                "--flag-ttl",
                "1s",
                "--endpoint",
                &endpoint,
            ],
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let channel = rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let path = socket.clone();
                let connected = Endpoint::try_from("http://[::]:50051")
                    .expect("endpoint")
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    }))
                    .await;
                if let Ok(channel) = connected
                    && IdentityClient::new(channel.clone())
                        .probe(ProbeRequest {})
                        .await
                        .is_ok()
                {
                    break channel;
                }
                assert!(
                    Instant::now() < deadline,
                    "the CSI driver never served:\n{}",
                    process.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        CsiDriver {
            process,
            rt,
            channel,
        }
    }

    fn log(&self) -> String {
        self.process.log()
    }

    /// NodePublishVolume as the kubelet sends it for an inline volume of pod `<sa>-pod` in `ns` (ServiceAccount
    /// `sa`, pod-bound `token` from the CSIDriver's tokenRequests) mounting `connector` of the pod's namespace or
    /// `ns/name`.
    fn publish(
        &self,
        target: &Path,
        ns: &str,
        sa: &str,
        token: &str,
        uid: &str,
        connector: &str,
    ) -> Result<(), tonic::Status> {
        use connectors_csi::proto::node_client::NodeClient;
        use connectors_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume};
        use connectors_csi::proto::{NodePublishVolumeRequest, VolumeCapability};

        std::fs::create_dir_all(target.parent().expect("target has a parent")).expect("pod folder");
        let tokens = json!({"connectors-proxy": {"token": token, "expirationTimestamp": "2030-01-01T00:00:00Z"}});
        let context = [
            ("csi.storage.k8s.io/pod.name", format!("{sa}-pod")),
            ("csi.storage.k8s.io/pod.namespace", ns.to_owned()),
            ("csi.storage.k8s.io/pod.uid", uid.to_owned()),
            ("csi.storage.k8s.io/serviceAccount.name", sa.to_owned()),
            ("csi.storage.k8s.io/ephemeral", "true".to_owned()),
            (
                "csi.storage.k8s.io/serviceAccount.tokens",
                tokens.to_string(),
            ),
            ("connectors", connector.to_owned()),
            ("configuration.names", "registry-config".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let request = NodePublishVolumeRequest {
            volume_id: format!("csi-{ns}-{sa}"),
            target_path: target.display().to_string(),
            volume_capability: Some(VolumeCapability {
                access_type: Some(AccessType::Mount(MountVolume::default())),
                access_mode: Some(AccessMode { mode: 1 }),
            }),
            readonly: true,
            volume_context: context,
            ..Default::default()
        };
        let mut node = NodeClient::new(self.channel.clone());
        self.rt
            .block_on(node.node_publish_volume(request))
            .map(|_| ())
    }
}

// --- connector scopes ----------------------------------------------------------------------------------------

/// Connectors in kube-public are usable from every namespace; an inner namespace's (`cpaas.io/inner-namespace: g1`)
/// from itself and from namespaces labelled `cpaas.io/project: g1`; anyone else is refused with a message naming
/// the scope — by the proxy (403) and the CSI driver (PermissionDenied) alike, with no RBAC for any of them.
fn connector_scopes_in_proxy_and_csi(env: &Env) {
    let c = &env.cluster;
    let namespaces = [
        (
            "scope-infra",
            Some((connectors_kube::INNER_NAMESPACE_LABEL, "g1")),
        ),
        ("scope-proj-a", Some((connectors_kube::PROJECT_LABEL, "g1"))),
        ("scope-proj-b", Some((connectors_kube::PROJECT_LABEL, "g2"))),
        ("scope-plain", None),
    ];
    let mut docs = Vec::new();
    for (ns, label) in namespaces {
        let mut labels = serde_json::Map::new();
        if let Some((k, v)) = label {
            labels.insert(k.to_owned(), json!(v));
        }
        docs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}));
        docs.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder", "namespace": ns}}));
    }
    c.apply(&to_yaml(&docs));
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    env.connector("kube-public", "shared", &registry.url(), CANARY, None);
    env.connector("scope-infra", "inner", &registry.url(), CANARY, None);
    let work = tempfile::tempdir().unwrap();
    push_direct(work.path(), &registry);
    let proxy = env.proxy(&["--review-ttl", "1s"]);
    let addr = proxy.addr();
    env.set_proxy_url("kube-public", "shared", &addr);
    env.set_proxy_url("scope-infra", "inner", &addr);
    let token = |ns: &str| c.token(ns, "builder", Some("connectors-proxy"));
    let (infra, proj_a, proj_b, plain) = (
        token("scope-infra"),
        token("scope-proj-a"),
        token("scope-proj-b"),
        token("scope-plain"),
    );

    for (who, t) in [("plain", &plain), ("proj-b", &proj_b), ("proj-a", &proj_a)] {
        let r = get_manifest(&addr, "kube-public", "shared", "v1", t);
        assert_eq!(r.status, 200, "{who} → kube-public/shared: {}", r.text());
    }
    for (who, t) in [
        ("the inner namespace itself", &infra),
        ("a project member", &proj_a),
    ] {
        let r = get_manifest(&addr, "scope-infra", "inner", "v1", t);
        assert_eq!(r.status, 200, "{who} → scope-infra/inner: {}", r.text());
    }
    for (who, t) in [("another project", &proj_b), ("no project", &plain)] {
        let r = get_manifest(&addr, "scope-infra", "inner", "v1", t);
        assert_eq!(r.status, 403, "{who} → scope-infra/inner: {}", r.text());
        assert!(
            r.text().contains("inner namespace of project"),
            "{who}: {}",
            r.text()
        );
    }

    // The CSI driver decides the same way.
    let csi = CsiDriver::start(env, work.path());
    let publish = |ns: &str, t: &str, connector: &str| {
        csi.publish(
            &work.path().join(format!("pods/{ns}-{connector}/vol")),
            ns,
            "builder",
            t,
            "uid",
            connector,
        )
    };
    publish("scope-proj-a", &proj_a, "scope-infra/inner")
        .unwrap_or_else(|e| panic!("project member: {e:?}"));
    publish("scope-plain", &plain, "kube-public/shared")
        .unwrap_or_else(|e| panic!("kube-public: {e:?}"));
    let refused =
        publish("scope-proj-b", &proj_b, "scope-infra/inner").expect_err("another project");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(
        refused.message().contains("inner namespace of project"),
        "{}",
        refused.message()
    );

    // Joining the project (a label) counts within the TTL, with nothing else to change.
    c.kubectl_ok(&[
        "label",
        "namespace",
        "scope-proj-b",
        &format!("{}=g1", connectors_kube::PROJECT_LABEL),
        "--overwrite",
    ]);
    wait_status(
        &addr,
        "scope-infra",
        "inner",
        &proj_b,
        200,
        "proj-b after joining project g1",
    );
    proxy.assert_log_clean(&[&infra, &proj_a, &proj_b, &plain]);
}

// --- pod image pull via connector ------------------------------------------------------------------------------

/// The mutating webhook, served by `connectors controller` and called by the real API server: a Pod with the label
/// and annotation gets its images rewritten to the connector's exposed proxy address; with the flag off it is
/// refused, naming the flag; an unlabelled Pod is never sent to the webhook, so it is created untouched even while
/// the webhook is down.
fn pod_image_pull_webhook(env: &Env) {
    use connectors_controller::webhook::{
        CONNECTOR_ANNOTATION, INJECT_LABEL, POD_PULL_FLAG, WEBHOOK_CONFIGURATION,
    };
    let c = &env.cluster;
    let ns = "pull";
    env.namespace(ns, &[]);
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    env.connector(ns, "reg", &registry.url(), CANARY, None);
    let port = connectors_testkit::free_port();
    // deploy/ points the configuration at the webhook Service; here the controller runs on this machine.
    c.kubectl_ok(&[
        "patch",
        "mutatingwebhookconfiguration",
        WEBHOOK_CONFIGURATION,
        "--type=json",
        "-p",
        &json!([{"op": "replace", "path": "/webhooks/0/clientConfig",
                 "value": {"url": format!("https://127.0.0.1:{port}/mutate-pods")}}])
        .to_string(),
    ]);
    let listen = format!("127.0.0.1:{port}");
    let mut controller = env.controller(
        "hook",
        &[
            "--webhook-listen",
            &listen,
            "--webhook-host",
            "127.0.0.1",
            "--exposed-address",
            "node.test:30080",
        ],
    );
    c.wait_for(
        "the controller to set caBundle",
        Duration::from_secs(60),
        || {
            let config = env.get_json(&["mutatingwebhookconfiguration", WEBHOOK_CONFIGURATION]);
            config["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .filter(|b| !b.is_empty())
                .map(|_| ())
        },
    );
    c.wait_for(
        "the connector's proxy address",
        Duration::from_secs(60),
        || {
            env.get_json(&["connector", "reg", "-n", ns])["status"]["proxy"]["httpAddress"]["url"]
                .as_str()
                .map(|_| ())
        },
    );
    let image = format!("{}/team/app:v1", registry.host_port());
    let pod = |name: &str, labelled: bool| {
        let mut labels = serde_json::Map::new();
        if labelled {
            labels.insert(INJECT_LABEL.to_owned(), json!("true"));
        }
        to_yaml(&[json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels,
                         "annotations": {CONNECTOR_ANNOTATION: format!("{ns}/reg")}},
            "spec": {
                "automountServiceAccountToken": false,
                "initContainers": [{"name": "init", "image": image}],
                "containers": [{"name": "app", "image": image},
                               {"name": "side", "image": "other.example.com/tools:v1"}],
            },
        })])
    };

    // Flag off (as installed): refused, naming the flag.
    let refused = c.try_apply(&pod("flag-off", true));
    assert!(
        !refused.success,
        "a labelled Pod was admitted with the flag off"
    );
    assert!(refused.stderr.contains(POD_PULL_FLAG), "{}", refused.stderr);

    env.set_flag(POD_PULL_FLAG, true);
    let out = c.try_apply(&pod("flag-on", true));
    assert!(
        out.success,
        "labelled Pod refused with the flag on: {}",
        out.stderr
    );
    let stored = env.get_json(&["pod", "flag-on", "-n", ns]);
    let via_proxy = format!("node.test:30080/namespaces/{ns}/connectors/reg/team/app:v1");
    assert_eq!(
        stored["spec"]["initContainers"][0]["image"],
        via_proxy.as_str(),
        "{stored}"
    );
    assert_eq!(
        stored["spec"]["containers"][0]["image"],
        via_proxy.as_str(),
        "{stored}"
    );
    assert_eq!(
        stored["spec"]["containers"][1]["image"], "other.example.com/tools:v1",
        "{stored}"
    );
    assert!(
        out.stderr.contains("other.example.com/tools:v1"),
        "the warning for the other image: {}",
        out.stderr
    );

    // Webhook down: an unlabelled Pod is created untouched; a labelled one is refused, not let through unmodified.
    controller.kill();
    let plain = c.try_apply(&pod("plain", false));
    assert!(
        plain.success,
        "an unlabelled Pod was held up by the webhook: {}",
        plain.stderr
    );
    let stored = env.get_json(&["pod", "plain", "-n", ns]);
    assert_eq!(stored["spec"]["containers"][0]["image"], image.as_str());
    assert!(
        !c.try_apply(&pod("down", true)).success,
        "a labelled Pod got through without the webhook"
    );
    env.set_flag(POD_PULL_FLAG, false);
}

// --- 6. the API server goes away ------------------------------------------------------------------------------

/// The API server stopped and started again (etcd kept): the proxy serves from its last state meanwhile (cached
/// decisions, last catalog), its watches recover (a Connector created and one deleted afterwards are seen), and
/// the controller resumes.
fn api_server_restart(env: &Env) {
    let c = &env.cluster;
    let ns = "restart";
    env.namespace(ns, &["builder"]);
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    env.connector(ns, "reg", &registry.url(), CANARY, None);
    env.connector(ns, "doomed", &registry.url(), CANARY, None);
    env.grant(ns, "builder", "reg", false);
    env.grant(ns, "builder", "late", false);
    env.grant(ns, "builder", "doomed", false);
    let work = tempfile::tempdir().unwrap();
    push_direct(work.path(), &registry);
    let proxy = env.proxy(&["--review-ttl", "10m"]);
    let addr = proxy.addr();
    let _controller = env.controller("restart", &[]);
    let token = c.token(ns, "builder", Some("connectors-proxy"));
    wait_status(&addr, ns, "reg", &token, 200, "before the outage");
    wait_status(&addr, ns, "doomed", &token, 200, "before the outage");

    c.stop("kube-apiserver");
    for _ in 0..3 {
        let r = get_manifest(&addr, ns, "reg", "v1", &token);
        assert_eq!(
            r.status,
            200,
            "served from the last state while the API server is down: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    c.start("kube-apiserver");

    env.connector(ns, "late", &registry.url(), CANARY, None);
    c.kubectl_ok(&["delete", "connector", "doomed", "-n", ns]);
    wait_status(
        &addr,
        ns,
        "late",
        &token,
        200,
        "a Connector created after the restart",
    );
    wait_status(
        &addr,
        ns,
        "doomed",
        &token,
        404,
        "a Connector deleted after the restart",
    );
    c.wait_for(
        "the controller resumed (late Ready)",
        Duration::from_secs(90),
        || (env.condition(ns, "late", "Ready")?.0 == "True").then_some(()),
    );
    // Whether the watch resumed with a relist after "too old resource version" depends on the API server's
    // watch cache; the catalog's own tests (fake API server) force one. Say which happened here.
    eprintln!(
        "api_server_restart: the proxy's watches {} after the restart",
        if proxy.log().contains("410 Gone") {
            "relisted (410 Gone)"
        } else {
            "resumed without a relist"
        }
    );
    proxy.assert_log_clean(&[&token]);
}
