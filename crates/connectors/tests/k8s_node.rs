//! The node tier: connectors installed from `deploy/` on a **real node** — kubelet, containerd + runc, a CNI
//! bridge, kube-proxy and CoreDNS, all built or installed on this machine by `scripts/cluster.sh up --node` —
//! and the published pod examples run as real Jobs whose only credentials are the CSI volumes.
//!
//! The image of connectors is made from this test build's binary (`scripts/build-image.sh --binary`); the pods
//! run `connectors-playground/tools:latest` (skopeo, buildah) and `connectors-playground/buildkit:v0.35.1`, built
//! here. The registry is a real `docker-registry` with htpasswd and TLS on the node's address for pods
//! (10.250.0.1), which pods and this process both call `node.registry.test`.
//!
//! Root only, one node per machine. One cluster serves every test (its own harness); the tests run in order.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use common::kube::{self, to_yaml};
use common::{CANARY, USER, assert_no_canary};
use connectors_testkit::{
    Cluster, Registry, Skopeo, TestCa, ensure_hosts_entry_for, sha256_digest,
};
use serde_json::{Value, json};

const COMPONENTS: &str = "connectors-system";
/// `scripts/cluster-node.sh`'s NODE_IP: the node's address that pods reach.
const NODE_IP: [u8; 4] = [10, 250, 0, 1];
/// The registry's name, for pods (CoreDNS `hosts`) and for this process (/etc/hosts); covered by the test CA's
/// `*.registry.test`.
const REGISTRY_HOST: &str = "node.registry.test";
const TOOLS: &str = "connectors-playground/tools:latest";
const BUILDKIT: &str = "connectors-playground/buildkit:v0.35.1";

type Test = fn(&Env);

static TESTS: [(&str, Test); 9] = [
    ("deploy_runs_on_the_node", deploy_runs_on_the_node),
    (
        "forward_mode_job_skopeo_and_buildah",
        forward_mode_job_skopeo_and_buildah,
    ),
    (
        "reverse_mode_job_with_the_registry_config_volume",
        reverse_mode_job_with_the_registry_config_volume,
    ),
    ("buildkit_image_build_job", buildkit_image_build_job),
    ("two_connectors_in_one_volume", two_connectors_in_one_volume),
    (
        "refused_service_account_mount_fails_with_the_documented_message",
        refused_service_account_mount_fails_with_the_documented_message,
    ),
    (
        "kubelet_pulls_through_the_proxy_with_the_webhook",
        kubelet_pulls_through_the_proxy_with_the_webhook,
    ),
    (
        "credential_provider_pulls_with_the_pods_own_token",
        credential_provider_pulls_with_the_pods_own_token,
    ),
    // Last: it waits for the kubelet to renew the token of a pod started when the cluster came up.
    (
        "republish_renews_the_mounted_token_before_it_expires",
        republish_renews_the_mounted_token_before_it_expires,
    ),
];

fn main() {
    // scripts/test.sh sets this (and prints why) when the node's binaries and images are not built here.
    let skip = std::env::var_os("CONNECTORS_SKIP_NODE_TIER").is_some();
    if skip {
        eprintln!(
            "k8s_node: skipped (CONNECTORS_SKIP_NODE_TIER): the node's binaries and images are not built on this machine; `scripts/test.sh --all` builds and runs this tier"
        );
    }
    let (conclusion, env) = kube::run_in_order(&TESTS, skip, || {
        eprintln!(
            "k8s_node: starting a control plane and a node (scripts/cluster.sh up --node; the first build takes minutes)"
        );
        Env::new()
    });
    let dir = env.cluster.dir().to_owned();
    drop(env);
    // `down` must leave no process, no mount and no network state behind.
    let left = connectors_testkit::processes_using(&dir);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mounted: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains(&dir.display().to_string()) || l.contains(" /var/lib/kubelet"))
        .collect();
    let addr = std::process::Command::new("ip")
        .args(["-o", "addr", "show", "dev", "lo"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !left.is_empty() || !mounted.is_empty() || addr.contains("10.250.0.1/") {
        eprintln!(
            "scripts/cluster.sh down left processes {left:?}, mounts {mounted:?}, or the node address on lo"
        );
        std::process::exit(101);
    }
    conclusion.exit();
}

struct Env {
    cluster: Cluster,
    registry: Registry,
    ca: TestCa,
    /// Holds the CA as a cert dir for skopeo on this machine.
    work: tempfile::TempDir,
    /// `docker://node.registry.test:PORT/base/tiny:v1`'s manifest digest: a real image (/hello, /true).
    base_digest: String,
    /// The token in pod node-republish/watch's config.json when it started, and its `exp`.
    first_token: (String, u64),
}

impl Env {
    fn new() -> Env {
        let ip = IpAddr::from(NODE_IP);
        ensure_hosts_entry_for(ip, REGISTRY_HOST).expect("/etc/hosts");
        let cluster = Cluster::up_node(Path::new(env!("CARGO_BIN_EXE_connectors")));
        let ca = TestCa::new();
        let registry = Registry::builder()
            .htpasswd(USER, CANARY)
            .tls(&ca)
            .bind_ip(ip)
            .start();
        let work = tempfile::tempdir().expect("tempdir");
        ca.write_cert_dir(work.path().join("certs"));
        let mut env = Env {
            cluster,
            registry,
            ca,
            work,
            base_digest: String::new(),
            first_token: (String::new(), 0),
        };
        env.base_digest = env.seed_base_image();
        env.first_token = env.start_republish_watch();
        env
    }

    /// The kubelet renews a projected token after 80 % of its life: with the CSIDriver's tokenRequests at the
    /// API's minimum (600 s) a pod's token changes after about 8 minutes. This pod starts first and is
    /// checked by the last test. The same patch turns on `serviceAccountTokenInSecrets`.
    fn start_republish_watch(&self) -> (String, u64) {
        let c = &self.cluster;
        c.kubectl_ok(&[
            "patch",
            "csidriver",
            "connectors-csi",
            "--type",
            "merge",
            "-p",
            // serviceAccountTokenInSecrets (GA in 1.36): from here on the kubelet passes every pod's token in
            // the request's secrets, not in the volume context; every later test mounts that way.
            r#"{"spec":{"tokenRequests":[{"audience":"connectors-proxy","expirationSeconds":600}],"serviceAccountTokenInSecrets":true}}"#,
        ]);
        let ns = "node-republish";
        self.team(ns, &["registry"]);
        let spec = pod(
            "builder",
            TOOLS,
            "sleep 3600",
            &[(
                "registry-config",
                "/root/.docker",
                json!({"connector.name": "registry", "configuration.names": "registry-config"}),
            )],
        );
        c.apply(&to_yaml(&[json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "watch", "namespace": ns},
            "spec": spec,
        })]));
        c.kubectl_ok(&[
            "wait",
            "-n",
            ns,
            "pod/watch",
            "--for=condition=Ready",
            "--timeout=120s",
        ]);
        self.mounted_token(ns, "watch")
    }

    /// The proxy token in a pod's `/root/.docker/config.json` (as the pod reads it) and its `exp`.
    fn mounted_token(&self, ns: &str, pod: &str) -> (String, u64) {
        let text = self.cluster.kubectl_ok(&[
            "exec",
            "-n",
            ns,
            pod,
            "--",
            "cat",
            "/root/.docker/config.json",
        ]);
        let config: Value = serde_json::from_str(&text).expect("config.json is JSON");
        let auth = config["auths"]
            .as_object()
            .and_then(|a| a.values().next())
            .and_then(|e| e["auth"].as_str())
            .expect("an auths entry");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .expect("auth is base64");
        let decoded = String::from_utf8(decoded).expect("utf-8");
        let token = decoded
            .split_once(':')
            .map(|(_, t)| t.to_owned())
            .expect("user:token");
        let payload = token.split('.').nth(1).expect("a JWT");
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .expect("JWT payload"),
        )
        .expect("JWT claims");
        (token, claims["exp"].as_u64().expect("exp"))
    }

    fn registry_host_port(&self) -> String {
        format!("{REGISTRY_HOST}:{}", self.registry.port())
    }

    fn cert_dir(&self) -> PathBuf {
        self.work.path().join("certs")
    }

    /// A real image (one layer holding /hello) built with buildah from scratch and pushed straight to the
    /// registry with its password, as `base/tiny:v1`; its manifest digest.
    fn seed_base_image(&self) -> String {
        let dir = self.work.path().join("base");
        std::fs::create_dir_all(dir.join("ctx")).expect("mkdir");
        std::fs::write(dir.join("ctx/hello"), "hello from the base image\n").expect("write");
        // /true: a static program that exits 0, so that a pod of this image can run to completion.
        std::fs::write(dir.join("true.c"), "int main(void) { return 0; }\n").expect("write");
        let gcc = std::process::Command::new("gcc")
            .args(["-static", "-Os", "-o"])
            .arg(dir.join("ctx/true"))
            .arg(dir.join("true.c"))
            .output()
            .expect("gcc");
        assert!(
            gcc.status.success(),
            "gcc: {}",
            String::from_utf8_lossy(&gcc.stderr)
        );
        std::fs::write(
            dir.join("ctx/Containerfile"),
            "FROM scratch\nCOPY hello /hello\nCOPY true /true\nCMD [\"/true\"]\n",
        )
        .expect("write");
        let storage = dir.join("storage");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("buildah")
                .args([
                    "--root",
                    &storage.display().to_string(),
                    "--runroot",
                    &dir.join("run").display().to_string(),
                    "--storage-driver",
                    "vfs",
                ])
                .args(args)
                .output()
                .expect("buildah");
            assert!(
                out.status.success(),
                "buildah {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "build",
            "--isolation",
            "chroot",
            "-t",
            "localhost/base/tiny:v1",
            &dir.join("ctx").display().to_string(),
        ]);
        let dest = format!("docker://{}/base/tiny:v1", self.registry_host_port());
        run(&[
            "push",
            "--creds",
            &format!("{USER}:{CANARY}"),
            "--cert-dir",
            &self.cert_dir().display().to_string(),
            "localhost/base/tiny:v1",
            &dest,
        ]);
        self.digest("base/tiny:v1")
            .expect("the base image is on the registry")
    }

    /// The manifest digest of `repo:tag` asked of the registry itself (with the password), or None when absent.
    fn digest(&self, repo_tag: &str) -> Option<String> {
        let out = Skopeo::new().run(&[
            "inspect",
            "--raw",
            "--creds",
            &format!("{USER}:{CANARY}"),
            "--cert-dir",
            &self.cert_dir().display().to_string(),
            &format!("docker://{}/{repo_tag}", self.registry_host_port()),
        ]);
        out.success().then(|| sha256_digest(out.stdout.as_bytes()))
    }

    /// A namespace with ServiceAccounts `builder` and `stranger`, the registry's CA as Secret `registry-ca`, and Connector
    /// `name` of the oci class for the registry, which `builder` may use (both modes).
    fn team(&self, ns: &str, connectors: &[&str]) {
        let c = &self.cluster;
        kube::namespace(c, ns, &["builder", "stranger"]);
        c.apply(&to_yaml(&[json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "registry-ca", "namespace": ns},
            "type": "Opaque",
            "stringData": {"ca.crt": self.ca.ca_cert_pem()},
        })]));
        for name in connectors {
            kube::connector(
                c,
                ns,
                name,
                &format!("https://{}", self.registry_host_port()),
                CANARY,
                Some("registry-ca"),
            );
            kube::grant(c, ns, "builder", name, true);
        }
        for name in connectors {
            c.wait_for(
                &format!("connector {ns}/{name} Ready with a proxy address"),
                Duration::from_secs(60),
                || {
                    let out = c.kubectl(&["get", "connector", name, "-n", ns, "-o", "json"], None);
                    let v: Value = serde_json::from_str(&out.stdout).ok()?;
                    let ready = v["status"]["conditions"]
                        .as_array()?
                        .iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True");
                    (ready && v["status"]["proxy"]["httpAddress"]["url"].is_string()).then_some(())
                },
            );
        }
    }

    /// Applies a Job (one pod, no retries) and waits for it to complete; on failure panics with its pod's log
    /// and events. Returns the pod's log.
    fn run_job(&self, ns: &str, name: &str, pod_spec: Value) -> String {
        let c = &self.cluster;
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"backoffLimit": 0, "template": {"spec": pod_spec}},
        });
        c.apply(&to_yaml(&[job]));
        // Complete or Failed (a finished Job also carries SuccessCriteriaMet or FailureTarget).
        let complete = c.wait_for(
            &format!("Job {ns}/{name} to finish"),
            Duration::from_secs(300),
            || {
                let out = c.kubectl(&["get", "job", name, "-n", ns, "-o", "json"], None);
                let job: Value = serde_json::from_str(&out.stdout).ok()?;
                job["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find_map(|cond| {
                        let done = cond["status"] == "True"
                            && (cond["type"] == "Complete" || cond["type"] == "Failed");
                        done.then(|| cond["type"] == "Complete")
                    })
            },
        );
        let logs = c
            .kubectl(
                &["logs", "-n", ns, &format!("job/{name}"), "--all-containers"],
                None,
            )
            .stdout;
        if !complete {
            let describe = c
                .kubectl(
                    &[
                        "describe",
                        "pods",
                        "-n",
                        ns,
                        "-l",
                        &format!("job-name={name}"),
                    ],
                    None,
                )
                .stdout;
            panic!("Job {ns}/{name} did not complete:\n--- log\n{logs}\n--- describe\n{describe}");
        }
        logs
    }

    /// The registry password is in no pod log of `ns`, no event, and no file of any CSI volume on the node.
    fn assert_no_password_in(&self, ns: &str, logs: &str) {
        assert_no_canary(logs, &format!("pod logs in {ns}"));
        let events = self
            .cluster
            .kubectl_ok(&["get", "events", "-n", ns, "-o", "json"]);
        assert_no_canary(&events, &format!("events in {ns}"));
        for file in files_under(Path::new("/var/lib/kubelet/pods")) {
            if file
                .components()
                .any(|c| c.as_os_str() == "kubernetes.io~csi")
            {
                let bytes = std::fs::read(&file).unwrap_or_default();
                assert_no_canary(
                    &String::from_utf8_lossy(&bytes),
                    &file.display().to_string(),
                );
            }
        }
    }
}

/// `kubectl get KIND NAME -n NS -o jsonpath=PATH`.
fn jsonpath(c: &Cluster, kind: &str, name: &str, ns: &str, path: &str) -> String {
    c.kubectl_ok(&[
        "get",
        kind,
        name,
        "-n",
        ns,
        "-o",
        &format!("jsonpath={path}"),
    ])
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&path)),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    out
}

/// A pod spec running `script` in `image` as ServiceAccount `sa`, with CSI volumes `(name, mount path,
/// attributes)`. Volumes ask for `token.expiration: 10m` unless they say otherwise: this tier lowers the
/// CSIDriver's `expirationSeconds` to 600 (see `start_republish_watch`), and the driver refuses a volume that
/// asks for a longer token than the kubelet gives.
fn pod(sa: &str, image: &str, script: &str, volumes: &[(&str, &str, Value)]) -> Value {
    let volumes: Vec<(&str, &str, Value)> = volumes
        .iter()
        .map(|(n, p, attrs)| {
            let mut attrs = attrs.clone();
            if attrs.get("token.expiration").is_none() {
                attrs["token.expiration"] = json!("10m");
            }
            (*n, *p, attrs)
        })
        .collect();
    json!({
        "serviceAccountName": sa,
        "restartPolicy": "Never",
        "containers": [{
            "name": "main",
            "image": image,
            "imagePullPolicy": "Never",
            "command": ["bash", "-ec", script],
            "volumeMounts": volumes.iter().map(|(n, p, _)| json!({"name": n, "mountPath": p})).collect::<Vec<_>>(),
        }],
        "volumes": volumes.iter().map(|(n, _, attrs)| json!({
            "name": n,
            "csi": {"driver": "connectors-csi", "readOnly": true, "volumeAttributes": attrs},
        })).collect::<Vec<_>>(),
    })
}

// --- §3 deploy/ on the node -------------------------------------------------------------------------------------

/// `scripts/cluster.sh up --node` applied `deploy/` (an overlay that only sets the image): two proxy replicas
/// and two controller replicas are Ready (one holds the Lease), the privileged CSI pod runs, and the kubelet
/// registered the driver through its plugin registration API (the CSINode lists it).
fn deploy_runs_on_the_node(env: &Env) {
    let c = &env.cluster;
    let get = |kind: &str, name: &str| -> Value {
        serde_json::from_str(&c.kubectl_ok(&["get", kind, name, "-n", COMPONENTS, "-o", "json"]))
            .expect("json")
    };
    assert_eq!(
        get("deployment", "connectors-proxy")["status"]["readyReplicas"],
        2
    );
    assert_eq!(
        get("deployment", "connectors-controller-manager")["status"]["readyReplicas"],
        2
    );
    assert_eq!(
        get("daemonset", "connectors-csi")["status"]["numberReady"],
        1
    );
    let pods: Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        COMPONENTS,
        "-l",
        "app.kubernetes.io/name=connectors-controller-manager",
        "-o",
        "json",
    ]))
    .expect("json");
    let names: Vec<&str> = pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    let leases = c.kubectl_ok(&["get", "leases", "-n", COMPONENTS, "-o", "json"]);
    let leases: Value = serde_json::from_str(&leases).expect("json");
    let holders: Vec<&str> = leases["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|l| l["spec"]["holderIdentity"].as_str())
        .collect();
    assert!(
        holders.iter().any(|h| names.iter().any(|n| h.contains(n))),
        "no controller pod {names:?} holds a Lease (holders {holders:?})"
    );
    let csinode: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "csinode", "connectors-node", "-o", "json"]))
            .expect("json");
    let drivers = csinode["spec"]["drivers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        drivers
            .iter()
            .any(|d| d["name"] == "connectors-csi" && d["nodeID"] == "connectors-node"),
        "CSINode drivers: {drivers:?}"
    );
}

// --- §4 the published pod examples --------------------------------------------------------------------------------

/// Forward mode as examples/kubernetes/forward-proxy-pod.yaml: `. /connector/.env`, then skopeo copies and
/// buildah pulls and pushes by the registry's own name, trusting the proxy CA from the volume.
fn forward_mode_job_skopeo_and_buildah(env: &Env) {
    let ns = "node-forward";
    env.team(ns, &["registry"]);
    let reg = env.registry_host_port();
    let script = format!(
        "test ! -e /root/.docker/config.json\n\
         . /connector/.env\n\
         skopeo copy --src-cert-dir /connector --dest-cert-dir /connector \
           docker://{reg}/base/tiny:v1 docker://{reg}/{ns}/skopeo:v1\n\
         buildah pull --cert-dir /connector docker://{reg}/base/tiny:v1\n\
         buildah tag {reg}/base/tiny:v1 {reg}/{ns}/buildah:v1\n\
         buildah push --cert-dir /connector {reg}/{ns}/buildah:v1\n\
         echo done\n"
    );
    let logs = env.run_job(
        ns,
        "forward-copy",
        pod(
            "builder",
            TOOLS,
            &script,
            &[(
                "connector",
                "/connector",
                json!({"connectors": "registry", "configuration.names": "!ca.cert"}),
            )],
        ),
    );
    assert!(logs.contains("done"), "{logs}");
    assert_eq!(
        env.digest(&format!("{ns}/skopeo:v1")).as_deref(),
        Some(env.base_digest.as_str()),
        "skopeo's copy is the base image, byte for byte"
    );
    assert!(
        env.digest(&format!("{ns}/buildah:v1")).is_some(),
        "buildah pushed {ns}/buildah:v1"
    );
    env.assert_no_password_in(ns, &logs);
}

/// Reverse mode: the `registry-config` volume as `~/.docker` (config.json holds the pod's token for the
/// connector's proxy address), skopeo copies through `c-registry.<ns>.svc.cluster.local`.
fn reverse_mode_job_with_the_registry_config_volume(env: &Env) {
    let ns = "node-reverse";
    env.team(ns, &["registry"]);
    let proxy = proxy_base(ns, "registry");
    reverse_copy_job(
        env,
        ns,
        "reverse-copy",
        json!({"connector.name": "registry", "configuration.names": "registry-config"}),
        &format!("{proxy}/base/tiny:v1"),
        &format!("{proxy}/{ns}/reverse:v1"),
    );
}

/// `c-<name>.<ns>.svc.cluster.local/namespaces/<ns>/connectors/<name>`: where a pod reaches a connector in reverse
/// mode.
fn proxy_base(ns: &str, name: &str) -> String {
    format!("c-{name}.{ns}.svc.cluster.local/namespaces/{ns}/connectors/{name}")
}

/// A Job that copies `src` to `dest` (both through the proxy) with skopeo, holding only the `registry-config`
/// volume with `attrs` as `~/.docker`; afterwards `dest` on the registry is the base image, byte for byte, and the
/// password is in no log, event or volume file.
fn reverse_copy_job(env: &Env, ns: &str, job: &str, attrs: Value, src: &str, dest: &str) {
    let script = format!(
        "skopeo copy --src-tls-verify=false --dest-tls-verify=false docker://{src} docker://{dest}\n\
         echo done\n"
    );
    let logs = env.run_job(
        ns,
        job,
        pod(
            "builder",
            TOOLS,
            &script,
            &[("registry-config", "/root/.docker", attrs)],
        ),
    );
    assert!(logs.contains("done"), "{logs}");
    let (_, repo_tag) = dest
        .split_once("/connectors/")
        .and_then(|(_, rest)| rest.split_once('/'))
        .expect("dest is a proxy address");
    assert_eq!(
        env.digest(repo_tag).as_deref(),
        Some(env.base_digest.as_str()),
        "{dest} is the base image"
    );
    env.assert_no_password_in(ns, &logs);
}

/// The quick start's `image-build` Job: BuildKit daemonless with the `buildkitd` volume
/// (`BUILDKITD_FLAGS=--config /etc/buildkit/buildkitd.toml`), `FROM` an image pulled through the proxy, the
/// result pushed through it.
fn buildkit_image_build_job(env: &Env) {
    let ns = "node-build";
    env.team(ns, &["registry"]);
    let proxy = proxy_base(ns, "registry");
    let script = format!(
        "mkdir -p /work && cd /work\n\
         printf 'FROM {proxy}/base/tiny:v1\\nCOPY built /built\\n' > Dockerfile\n\
         echo built by connectors > built\n\
         buildctl-daemonless.sh build --progress=plain --frontend=dockerfile.v0 \
           --local context=. --local dockerfile=. \
           --output type=image,name={proxy}/{ns}/app:v1,push=true\n\
         echo done\n"
    );
    let mut spec = pod(
        "builder",
        BUILDKIT,
        &script,
        &[
            (
                "registry-config",
                "/root/.docker",
                json!({"connector.name": "registry", "configuration.names": "registry-config"}),
            ),
            (
                "buildkitd",
                "/etc/buildkit",
                json!({"connector.name": "registry", "configuration.names": "buildkitd", "token.expiration": "10m"}),
            ),
        ],
    );
    let container = &mut spec["containers"][0];
    container["securityContext"] = json!({"privileged": true});
    container["env"] =
        json!([{"name": "BUILDKITD_FLAGS", "value": "--config /etc/buildkit/buildkitd.toml"}]);
    // BuildKit's state on the node's disk: overlayfs cannot stack on the container's own overlay root.
    container["volumeMounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({"name": "state", "mountPath": "/var/lib/buildkit"}));
    spec["volumes"]
        .as_array_mut()
        .expect("volumes")
        .push(json!({"name": "state", "emptyDir": {}}));
    let logs = env.run_job(ns, "image-build", spec);
    assert!(logs.contains("done"), "{logs}");
    assert!(
        env.digest(&format!("{ns}/app:v1")).is_some(),
        "BuildKit pushed {ns}/app:v1"
    );
    env.assert_no_password_in(ns, &logs);
}

/// `enable-multi-connector` on: one volume names two connectors; config.json has an entry for each proxy
/// address, and skopeo copies from one to the other.
fn two_connectors_in_one_volume(env: &Env) {
    let c = &env.cluster;
    c.kubectl_ok(&[
        "patch",
        "configmap",
        "connectors-config",
        "-n",
        COMPONENTS,
        "--type",
        "merge",
        "-p",
        r#"{"data":{"enable-multi-connector":"true"}}"#,
    ]);
    let ns = "node-multi";
    env.team(ns, &["src", "dst"]);
    // The CSI driver reads the flag when it publishes; a pod that started before the patch reached it is retried
    // by the kubelet, so the Job completes either way.
    reverse_copy_job(
        env,
        ns,
        "multi",
        json!({"connectors": "src,dst", "configuration.names": "registry-config"}),
        &format!("{}/base/tiny:v1", proxy_base(ns, "src")),
        &format!("{}/{ns}/multi:v1", proxy_base(ns, "dst")),
    );
    c.kubectl_ok(&[
        "patch",
        "configmap",
        "connectors-config",
        "-n",
        COMPONENTS,
        "--type",
        "merge",
        "-p",
        r#"{"data":{"enable-multi-connector":"false"}}"#,
    ]);
}

/// A pod whose ServiceAccount may not use the connector: the kubelet cannot mount the volume, and the pod's
/// events carry the driver's PermissionDenied message naming the ServiceAccount and the connector.
fn refused_service_account_mount_fails_with_the_documented_message(env: &Env) {
    let c = &env.cluster;
    let ns = "node-refused";
    env.team(ns, &["registry"]);
    let spec = pod(
        "stranger",
        TOOLS,
        "echo should not run",
        &[(
            "registry-config",
            "/root/.docker",
            json!({"connector.name": "registry", "configuration.names": "registry-config"}),
        )],
    );
    let pod_doc = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "refused", "namespace": ns},
        "spec": spec,
    });
    c.apply(&to_yaml(&[pod_doc]));
    let message = c.wait_for(
        "a FailedMount event for pod refused",
        Duration::from_secs(90),
        || {
            let events = c.kubectl(
                &[
                    "get",
                    "events",
                    "-n",
                    ns,
                    "--field-selector",
                    "involvedObject.name=refused,reason=FailedMount",
                    "-o",
                    "jsonpath={.items[*].message}",
                ],
                None,
            );
            (!events.stdout.trim().is_empty()).then_some(events.stdout)
        },
    );
    assert!(message.contains("PermissionDenied"), "{message}");
    assert!(
        message.contains("stranger"),
        "names the ServiceAccount: {message}"
    );
    assert!(
        message.contains("registry"),
        "names the connector: {message}"
    );
    let describe = c.kubectl_ok(&["describe", "pod", "refused", "-n", ns]);
    assert!(describe.contains("FailedMount"), "{describe}");
    let phase = jsonpath(c, "pod", "refused", ns, "{.status.phase}");
    assert_eq!(phase.trim(), "Pending");
    env.assert_no_password_in(ns, "");
}

// --- §5 the kubelet pulls through the proxy -------------------------------------------------------------------

/// The published pod image pull: flag on, the proxy exposed as NodePort 30080 on the node's address (the
/// controller told with CONNECTORS_EXPOSED_ADDRESS), containerd told that address is plain HTTP (`cluster.sh`
/// writes its hosts.toml), and an imagePullSecret whose password is a ServiceAccount token for the proxy. A Pod
/// with the label and annotation runs an image that exists only on the password-protected registry.
fn kubelet_pulls_through_the_proxy_with_the_webhook(env: &Env) {
    let c = &env.cluster;
    let ns = "node-pull";
    env.team(ns, &["registry"]);
    c.kubectl_ok(&[
        "patch",
        "configmap",
        "connectors-config",
        "-n",
        COMPONENTS,
        "--type",
        "merge",
        "-p",
        r#"{"data":{"enable-pod-image-pull-via-connector":"true"}}"#,
    ]);
    c.kubectl_ok(&[
        "patch",
        "service",
        "connectors-proxy-service",
        "-n",
        COMPONENTS,
        "-p",
        r#"{"spec":{"type":"NodePort","ports":[{"name":"http","port":80,"targetPort":"proxy","nodePort":30080}]}}"#,
    ]);
    c.kubectl_ok(&[
        "set",
        "env",
        "-n",
        COMPONENTS,
        "deployment/connectors-controller-manager",
        "CONNECTORS_EXPOSED_ADDRESS=10.250.0.1:30080",
    ]);
    c.kubectl_ok(&[
        "rollout",
        "status",
        "-n",
        COMPONENTS,
        "deployment/connectors-controller-manager",
        "--timeout=180s",
    ]);
    c.wait_for(
        "the connector's proxy address on the NodePort",
        Duration::from_secs(90),
        || {
            let url = jsonpath(
                c,
                "connector",
                "registry",
                ns,
                "{.status.proxy.httpAddress.url}",
            );
            url.contains("10.250.0.1:30080").then_some(())
        },
    );
    let token = c.token(ns, "builder", Some("connectors-proxy"));
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("builder:{token}"));
    let dockerconfig = json!({"auths": {"10.250.0.1:30080": {"auth": auth}}}).to_string();
    let image = format!("{}/base/tiny:v1", env.registry_host_port());
    c.apply(&to_yaml(&[
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "proxy-pull", "namespace": ns},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": dockerconfig},
        }),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "pulled", "namespace": ns,
                "labels": {"connectors.cpaas.io/proxy-inject": "true"},
                "annotations": {"connectors.cpaas.io/connector": format!("{ns}/registry")},
            },
            "spec": {
                "restartPolicy": "Never",
                "imagePullSecrets": [{"name": "proxy-pull"}],
                "containers": [{"name": "main", "image": image, "imagePullPolicy": "Always"}],
            },
        }),
    ]));
    let rewritten = jsonpath(c, "pod", "pulled", ns, "{.spec.containers[0].image}");
    assert_eq!(
        rewritten,
        format!("10.250.0.1:30080/namespaces/{ns}/connectors/registry/base/tiny:v1")
    );
    let phase = c.wait_for("pod pulled to finish", Duration::from_secs(120), || {
        let phase = jsonpath(c, "pod", "pulled", ns, "{.status.phase}");
        matches!(phase.trim(), "Succeeded" | "Failed").then(|| phase.trim().to_owned())
    });
    if phase != "Succeeded" {
        let describe = c.kubectl_ok(&["describe", "pod", "pulled", "-n", ns]);
        panic!("pod pulled: {phase}\n{describe}");
    }
    let image_id = jsonpath(
        c,
        "pod",
        "pulled",
        ns,
        "{.status.containerStatuses[0].imageID}",
    );
    assert!(
        image_id.ends_with(&env.base_digest),
        "the kubelet ran {image_id}, not the registry's {}",
        env.base_digest
    );
    env.assert_no_password_in(ns, "");
}

/// Beyond the published API: the kubelet's credential provider (`connectors credential-provider`, configured by
/// `scripts/cluster.sh up --node` with tokenAttributes) passes the pod's own ServiceAccount token, so a pod with
/// the label and annotation and no imagePullSecret pulls through the proxy; a ServiceAccount that may not use
/// the connector cannot.
fn credential_provider_pulls_with_the_pods_own_token(env: &Env) {
    let c = &env.cluster;
    // The flag, the NodePort and the exposed address are those the previous test set.
    let ns = "node-provider";
    env.team(ns, &["registry"]);
    let image = format!("{}/base/tiny:v1", env.registry_host_port());
    let pull_pod = |name: &str, sa: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": ns,
                "labels": {"connectors.cpaas.io/proxy-inject": "true"},
                "annotations": {"connectors.cpaas.io/connector": format!("{ns}/registry")},
            },
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": sa,
                "containers": [{"name": "main", "image": image, "imagePullPolicy": "Always"}],
            },
        })
    };
    c.apply(&to_yaml(&[
        pull_pod("allowed", "builder"),
        pull_pod("denied", "stranger"),
    ]));
    let phase = |name: &str| {
        jsonpath(c, "pod", name, ns, "{.status.phase}")
            .trim()
            .to_owned()
    };
    let allowed = c.wait_for("pod allowed to finish", Duration::from_secs(120), || {
        let p = phase("allowed");
        matches!(p.as_str(), "Succeeded" | "Failed").then_some(p)
    });
    if allowed != "Succeeded" {
        panic!(
            "pod allowed: {allowed}\n{}",
            c.kubectl_ok(&["describe", "pod", "allowed", "-n", ns])
        );
    }
    // The stranger's token is refused by the proxy: the pull fails (ErrImagePull / ImagePullBackOff).
    let reason = c.wait_for(
        "pod denied to fail its pull",
        Duration::from_secs(120),
        || {
            let r = jsonpath(
                c,
                "pod",
                "denied",
                ns,
                "{.status.containerStatuses[0].state.waiting.reason}",
            );
            matches!(r.trim(), "ErrImagePull" | "ImagePullBackOff").then(|| r.trim().to_owned())
        },
    );
    assert!(!reason.is_empty());
    assert_eq!(phase("denied"), "Pending");
    let secrets = c.kubectl_ok(&[
        "get",
        "secrets",
        "-n",
        ns,
        "-o",
        "jsonpath={.items[*].type}",
    ]);
    assert!(
        !secrets.contains("dockerconfigjson"),
        "no pull secret was needed: {secrets}"
    );
    env.assert_no_password_in(ns, "");
}

// --- §3 republish ---------------------------------------------------------------------------------------------

/// `requiresRepublish`: the kubelet calls NodePublishVolume again, and the token in the mounted config.json is
/// replaced by a fresh one before the first expires.
fn republish_renews_the_mounted_token_before_it_expires(env: &Env) {
    let (first, first_exp) = env.first_token.clone();
    let (second, second_exp) = env.cluster.wait_for(
        "the kubelet to republish pod watch with a new token",
        Duration::from_secs(660),
        || {
            let (token, exp) = env.mounted_token("node-republish", "watch");
            (token != first).then_some((token, exp))
        },
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        now < first_exp,
        "the new token came after the old one expired"
    );
    assert!(second_exp > first_exp, "the new token lasts longer");
    assert_ne!(second, first);
}
