//! The distributed deployment's binaries against the in-repo **fake** Kubernetes API server
//! (`connectors-kubefake`; no real API server can run on these machines), a real `docker-registry` and
//! real skopeo: `connectors proxy` reads Connectors and Secrets from the API server, keeps its CA in Secret
//! `connectors-proxy-ca`, and authorizes ServiceAccount tokens through TokenReview + SubjectAccessReview.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use common::{CANARY, NS, USER, assert_no_canary, assert_response_clean};
use connectors_csi::proto::identity_client::IdentityClient;
use connectors_csi::proto::node_client::NodeClient;
use connectors_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume};
use connectors_csi::proto::{NodePublishVolumeRequest, ProbeRequest, VolumeCapability};
use connectors_kubefake::{FakeApiServer, FakeHandle, FakeRule, FakeUser};
use connectors_testkit::{
    AuthFile, OciLayout, Registry, Skopeo, TestCa, ensure_hosts_entry, http, sha256_digest,
};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

const CONNECTORS: &str = "connectors.alauda.io/v1alpha1";
const GROUP: &str = "connectors.alauda.io";
const COMPONENTS: &str = "connectors-system";
const HOST: &str = "registry.test";

/// A JWT-shaped ServiceAccount token (unsigned: only the fake reads it; the proxy reads `exp` only to
/// bound its cache).
fn sa_token(name: &str) -> String {
    let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = iat + 3600;
    format!(
        "{}.{}.fake-signature",
        enc(json!({"alg": "RS256", "kid": "fake"})),
        enc(
            json!({"sub": format!("system:serviceaccount:{NS}:{name}"), "iat": iat, "exp": exp, "aud": ["connectors-proxy"]})
        )
    )
}

fn secret(name: &str, password: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "type": "cpaas.io/distribution-registry-token",
        "stringData": {"username": USER, "password": password},
    })
}

fn connector(name: &str, address: &str, secret: &str, ca_secret: Option<&str>) -> Value {
    let mut spec = json!({
        "connectorClassName": "oci",
        "address": address,
        "auth": {"name": "tokenAuth", "secretRef": {"name": secret}},
    });
    if let Some(ca) = ca_secret {
        spec["caCertSecretRef"] = json!({"name": ca});
    }
    json!({
        "apiVersion": CONNECTORS, "kind": "Connector",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    })
}

/// Lets ServiceAccount `sa` of team-a use connector `name` (RBAC `get` on it).
fn grant(fake: &FakeApiServer, sa: &str, name: &str) {
    fake.allow(
        FakeRule::user(
            &format!("system:serviceaccount:{NS}:{sa}"),
            "get",
            GROUP,
            "connectors",
        )
        .namespace(NS)
        .name(name),
    );
}

/// A `connectors proxy` process talking to the fake API server.
struct KubeProxy {
    child: Child,
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
}

impl KubeProxy {
    fn start(fake: &FakeApiServer, extra: &[&str]) -> KubeProxy {
        let dir = tempfile::Builder::new()
            .prefix("connectors-kube-e2e-")
            .tempdir()
            .unwrap();
        let stdout = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_connectors"))
            .args(["proxy", "--listen", "127.0.0.1:0", "--kube-url"])
            .arg(fake.url())
            .args(["--components-namespace", COMPONENTS])
            .args(extra)
            .env("CONNECTORS_LOG", "debug")
            .env_remove("POD_NAMESPACE")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn connectors proxy");
        let mut proxy = KubeProxy {
            child,
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = std::fs::read_to_string(proxy.dir.path().join("stdout")).unwrap_or_default();
            if let Some(line) = out.lines().find_map(|l| l.strip_prefix("listening on ")) {
                proxy.addr = line.trim().parse().unwrap();
                // "listening" is printed once the catalog has synced; wait for the count line too.
                if out.contains("connectors: ") {
                    return proxy;
                }
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("connectors proxy exited ({status}):\n{}", proxy.log());
            }
            assert!(
                Instant::now() < deadline,
                "connectors proxy did not start in 60 s:\n{}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    fn image_ref(&self, connector: &str, repo_tag: &str) -> String {
        format!(
            "docker://{}/namespaces/{NS}/connectors/{connector}/{repo_tag}",
            self.addr
        )
    }

    fn manifest_url(&self, connector: &str, repo: &str, reference: &str) -> String {
        format!(
            "http://{}/v2/namespaces/{NS}/connectors/{connector}/{repo}/manifests/{reference}",
            self.addr
        )
    }
}

impl Drop for KubeProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn get_manifest(url: &str, token: &str) -> http::Response {
    http::send(
        "GET",
        url,
        &[
            ("Authorization", &basic("workload", token)),
            (
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            ),
        ],
        Bytes::new(),
    )
    .await
    .unwrap()
}

/// Runs a blocking client (skopeo) off the runtime that serves the fake API server.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Runs skopeo with `args` (and `env`) off the runtime; asserts that it succeeded and that the canary is in
/// neither of its outputs.
async fn skopeo_ok(args: &[&str], env: &[(&str, &str)], what: &str) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let what = what.to_owned();
    blocking(move || {
        let mut skopeo = Skopeo::new();
        for (k, v) in &env {
            skopeo = skopeo.env(k, v);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = skopeo.run(&args);
        assert_no_canary(&out.stdout, &what);
        assert_no_canary(&out.stderr, &what);
        out.assert_success(&what);
    })
    .await;
}

fn ca_secret_cert(handle: &FakeHandle) -> Option<String> {
    let s = handle.get("v1", "Secret", COMPONENTS, "connectors-proxy-ca")?;
    let b64 = s["data"]["tls.crt"].as_str()?;
    let pem = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(pem).ok()
}

fn write_cert_dir(dir: &Path, pem: &str) -> PathBuf {
    let certs = dir.join("proxy-ca");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), pem).unwrap();
    certs
}

/// Reverse mode through `connectors proxy`: an allowed ServiceAccount pushes and pulls with nothing but its
/// token; one without RBAC gets 403; an unknown token 401; with the API server down the cached decision
/// keeps an allowed workload going while a token never seen before is refused (fail closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_mode_with_serviceaccount_tokens() {
    let fake = FakeApiServer::start().await.unwrap();
    let registry = blocking(|| Registry::builder().htpasswd(USER, CANARY).start()).await;
    let handle = fake.handle();
    handle
        .put(serde_json::to_value(connectors_model::builtin_oci_class()).unwrap())
        .unwrap();
    handle.put(secret("reg-auth", CANARY)).unwrap();
    handle
        .put(connector("reg", &registry.url(), "reg-auth", None))
        .unwrap();
    let builder = sa_token("builder");
    let other = sa_token("other");
    for (token, sa) in [(&builder, "builder"), (&other, "other")] {
        fake.add_token(
            token.as_str(),
            FakeUser::service_account(NS, sa).with_audiences(&["connectors-proxy"]),
        );
    }
    grant(&fake, "builder", "reg");

    let proxy = KubeProxy::start(&fake, &["--review-ttl", "10m"]);
    // The first replica created the CA Secret; a second one reads the same CA instead of making its own.
    let ca_pem = ca_secret_cert(&handle).expect("Secret connectors-proxy-ca with tls.crt");
    let second = KubeProxy::start(&fake, &[]);
    assert_eq!(ca_secret_cert(&handle).as_deref(), Some(ca_pem.as_str()));
    drop(second);

    // push and pull with skopeo, holding only the ServiceAccount token
    let work = tempfile::tempdir().unwrap();
    let image = OciLayout::build(work.path().join("img"), "v1", &[64 * 1024, 1024 * 1024 + 3]);
    let auth = AuthFile::write(work.path(), &proxy.addr.to_string(), "workload", &builder);
    let dest = proxy.image_ref("reg", "team/app:v1");
    let auth = auth.to_str().unwrap();
    let oci = image.oci_ref();
    let push = [
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-authfile",
        auth,
        &oci,
        &dest,
    ];
    skopeo_ok(&push, &[], "skopeo push through connectors proxy").await;
    let pulled = work.path().join("pulled");
    let pulled_ref = format!("dir:{}", pulled.display());
    let pull = [
        "copy",
        "--src-tls-verify=false",
        "--src-authfile",
        auth,
        &dest,
        &pulled_ref,
    ];
    skopeo_ok(&pull, &[], "skopeo pull through connectors proxy").await;
    assert_eq!(
        sha256_digest(&std::fs::read(pulled.join("manifest.json")).unwrap()),
        image.manifest_digest
    );

    let url = proxy.manifest_url("reg", "team/app", "v1");
    let ok = get_manifest(&url, &builder).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    // A ServiceAccount without RBAC on the connector: 403, saying which permission is missing.
    let denied = get_manifest(&url, &other).await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_response_clean(&denied, "403 for a ServiceAccount without access");
    // A token the API server does not know: 401.
    let unknown = get_manifest(&url, "not-a-token-the-api-server-knows").await;
    assert_eq!(unknown.status, 401, "{}", unknown.text());
    assert_response_clean(&unknown, "401 for an unknown token");
    assert!(fake.request_count("create tokenreviews") >= 2);
    assert!(fake.request_count("create subjectaccessreviews") >= 1);

    // API server down: the cached decision keeps the allowed workload pulling; a new token is refused.
    fake.set_down(true);
    let cached = get_manifest(&url, &builder).await;
    assert_eq!(cached.status, 200, "cached decision: {}", cached.text());
    let fresh = sa_token("fresh");
    let refused = get_manifest(&url, &fresh).await;
    // Fail closed: 503 with Retry-After (the proxy could not check), saying why, not 200 and not 403.
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.header("retry-after").is_some(),
        "{:?}",
        refused.headers
    );
    assert!(refused.text().contains("API server"), "{}", refused.text());
    assert!(
        refused.text().contains("could not check"),
        "{}",
        refused.text()
    );
    assert_response_clean(&refused, "503 while the API server is down");
    fake.set_down(false);

    // A connector created while the proxy runs is served without a restart.
    handle
        .put(connector("late", &registry.url(), "reg-auth", None))
        .unwrap();
    grant(&fake, "builder", "late");
    let late = proxy.manifest_url("late", "team/app", "v1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get_manifest(&late, &builder).await;
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connector created at run time never served: {} {}",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // What the proxies asked the API server is within deploy/proxy.yaml's RBAC (which grants Secrets `get`
    // only, and `create` in the components namespace for the CA).
    let allowed = [
        "get connectors",
        "list connectors",
        "watch connectors",
        "get connectorclasses",
        "list connectorclasses",
        "watch connectorclasses",
        "get secrets",
        "create secrets",
        "get configmaps",
        "get namespaces",
        "create tokenreviews",
        "create subjectaccessreviews",
    ];
    for call in fake.request_counts().keys() {
        assert!(
            allowed.contains(&call.as_str()),
            "the proxy made a call its RBAC does not grant: {call}"
        );
    }

    let log = proxy.log();
    assert!(!log.is_empty());
    assert_no_canary(&log, "the proxy's log");
    for token in [&builder, &other] {
        assert!(
            !log.contains(token.as_str()),
            "a ServiceAccount token in the log"
        );
    }
}

/// Forward mode through `connectors proxy`: skopeo with `HTTPS_PROXY` and the CA read from Secret
/// `connectors-proxy-ca` (as the CSI driver mounts it) pushes and pulls a TLS registry; the connector's
/// upstream CA comes from its `caCertSecretRef`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_mode_trusts_the_ca_from_the_secret() {
    ensure_hosts_entry(HOST)
        .expect("the forward-mode tests need `127.0.0.1 registry.test` in /etc/hosts");
    let fake = FakeApiServer::start().await.unwrap();
    let (ca, registry) = blocking(|| {
        let ca = TestCa::new();
        let registry = Registry::builder().htpasswd(USER, CANARY).tls(&ca).start();
        (ca, registry)
    })
    .await;
    let handle = fake.handle();
    handle.put(secret("fwd-auth", CANARY)).unwrap();
    handle
        .put(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "fwd-ca", "namespace": NS},
            "type": "Opaque",
            "stringData": {"ca.crt": ca.ca_cert_pem()},
        }))
        .unwrap();
    let reg = format!("{HOST}:{}", registry.port());
    handle
        .put(connector(
            "fwd",
            &format!("https://{reg}"),
            "fwd-auth",
            Some("fwd-ca"),
        ))
        .unwrap();
    let token = sa_token("builder");
    fake.add_token(
        token.as_str(),
        FakeUser::service_account(NS, "builder").with_audiences(&["connectors-proxy"]),
    );
    grant(&fake, "builder", "fwd");
    let resolve = format!("--resolve={HOST}:{}:127.0.0.1", registry.port());
    let proxy = KubeProxy::start(&fake, &[&resolve]);
    let ca_pem = ca_secret_cert(&handle).expect("Secret connectors-proxy-ca");
    let work = tempfile::tempdir().unwrap();
    let certs = write_cert_dir(work.path(), &ca_pem);
    let https_proxy = format!("http://{NS}%2Ffwd:{token}@{}", proxy.addr);
    let image = OciLayout::build(work.path().join("img"), "v1", &[256 * 1024]);
    let dest = format!("docker://{reg}/team/app:v1");
    let pulled = work.path().join("pulled");
    let (certs, oci, pulled_ref) = (
        certs.to_str().unwrap(),
        image.oci_ref(),
        format!("dir:{}", pulled.display()),
    );
    let env = [("HTTPS_PROXY", https_proxy.as_str())];
    let push = [
        "copy",
        "--preserve-digests",
        "--dest-cert-dir",
        certs,
        &oci,
        &dest,
    ];
    skopeo_ok(&push, &env, "push via HTTPS_PROXY").await;
    let pull = ["copy", "--src-cert-dir", certs, &dest, &pulled_ref];
    skopeo_ok(&pull, &env, "pull via HTTPS_PROXY").await;
    assert_eq!(
        sha256_digest(&std::fs::read(pulled.join("manifest.json")).unwrap()),
        image.manifest_digest
    );
    assert_no_canary(&proxy.log(), "the proxy's log");
}

/// A `connectors csi --kube` process on a unix socket in `dir`.
struct KubeCsi {
    child: Child,
    dir: PathBuf,
}

impl KubeCsi {
    fn start(fake: &FakeApiServer, dir: &Path) -> KubeCsi {
        let stderr = std::fs::File::create(dir.join("csi.stderr")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_connectors"))
            .args([
                "csi",
                "--kube",
                "--no-tmpfs",
                "--node-id",
                "node-1",
                "--kube-url",
            ])
            .arg(fake.url())
            .args(["--components-namespace", COMPONENTS, "--flag-ttl", "200ms"])
            .arg("--endpoint")
            .arg(format!("unix://{}", dir.join("csi.sock").display()))
            .env("CONNECTORS_LOG", "debug")
            .env_remove("POD_NAMESPACE")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn connectors csi --kube");
        KubeCsi {
            child,
            dir: dir.to_owned(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("csi.stderr")).unwrap_or_default()
    }

    async fn node(&mut self) -> NodeClient<Channel> {
        let socket = self.dir.join("csi.sock");
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("connectors csi --kube exited ({status}):\n{}", self.log());
            }
            let path = socket.clone();
            let connected = Endpoint::try_from("http://[::]:50051")
                .unwrap()
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await;
            if let Ok(channel) = connected
                && IdentityClient::new(channel.clone())
                    .probe(ProbeRequest {})
                    .await
                    .is_ok()
            {
                return NodeClient::new(channel);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "connectors csi --kube never served its socket:\n{}",
            self.log()
        );
    }
}

impl Drop for KubeCsi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// NodePublishVolume as the kubelet sends it for an inline `connectors-csi` volume of a pod running as
/// ServiceAccount `sa`, with the CSIDriver's `tokenRequests` token.
fn publish_request(target: &Path, sa: &str, token: &str) -> NodePublishVolumeRequest {
    let tokens = json!({"connectors-proxy": {"token": token, "expirationTimestamp": "2030-01-01T00:00:00Z"}});
    let context: std::collections::HashMap<String, String> = [
        ("csi.storage.k8s.io/pod.name", "build-1"),
        ("csi.storage.k8s.io/pod.namespace", NS),
        ("csi.storage.k8s.io/pod.uid", "6a1c0ffe"),
        ("csi.storage.k8s.io/serviceAccount.name", sa),
        ("csi.storage.k8s.io/ephemeral", "true"),
        (
            "csi.storage.k8s.io/serviceAccount.tokens",
            &tokens.to_string(),
        ),
        ("connector.name", "reg"),
        ("configuration.names", "registry-config"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    NodePublishVolumeRequest {
        volume_id: format!("csi-{sa}"),
        target_path: target.display().to_string(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: Some(AccessMode { mode: 1 }),
        }),
        readonly: true,
        volume_context: context,
        ..Default::default()
    }
}

/// The whole chain of the distributed deployment, with the fake API server standing in for Kubernetes:
/// `connectors proxy` creates the CA Secret; `connectors csi --kube` publishes a volume for a pod whose
/// ServiceAccount may use the connector (kubelet token in, `config.json` + `ca.crt` out) and refuses one
/// whose ServiceAccount may not, writing nothing; skopeo then pulls with nothing but the rendered
/// `config.json`, through the proxy, which checks the same token with TokenReview + SubjectAccessReview.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csi_publishes_with_the_kubelet_token_and_skopeo_pulls_with_the_rendered_files() {
    let fake = FakeApiServer::start().await.unwrap();
    let registry = blocking(|| Registry::builder().htpasswd(USER, CANARY).start()).await;
    let handle = fake.handle();
    handle.put(secret("reg-auth", CANARY)).unwrap();
    let proxy = KubeProxy::start(&fake, &[]);
    // As the controller does with --exposed-address: the proxy URL pods use, in the Connector's status.
    let mut reg = connector("reg", &registry.url(), "reg-auth", None);
    reg["status"] = json!({"proxy": {"httpAddress": {"url":
        format!("http://{}/namespaces/{NS}/connectors/reg", proxy.addr)}}});
    handle.put(reg).unwrap();
    let builder = sa_token("builder");
    let other = sa_token("other");
    for (token, sa) in [(&builder, "builder"), (&other, "other")] {
        fake.add_token(
            token.as_str(),
            FakeUser::service_account(NS, sa).with_audiences(&["connectors-proxy"]),
        );
    }
    grant(&fake, "builder", "reg");

    // An image in the registry, pushed directly with the real password.
    let work = tempfile::tempdir().unwrap();
    let image = OciLayout::build(work.path().join("img"), "v1", &[100 * 1024]);
    let (oci, direct, creds) = (
        image.oci_ref(),
        format!("docker://{}/team/app:v1", registry.host_port()),
        format!("{USER}:{CANARY}"),
    );
    let push = [
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &oci,
        &direct,
    ];
    skopeo_ok(&push, &[], "direct push").await;

    let mut csi = KubeCsi::start(&fake, work.path());
    let mut node = csi.node().await;

    // Not allowed: PermissionDenied naming the ServiceAccount, and nothing written.
    let denied_target = work.path().join("pods/other/volume");
    std::fs::create_dir_all(denied_target.parent().unwrap()).unwrap();
    let err = node
        .node_publish_volume(publish_request(&denied_target, "other", &other))
        .await
        .expect_err("a ServiceAccount without access must not get the volume");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("other"), "{}", err.message());
    assert!(
        std::fs::read_dir(&denied_target).map_or(true, |mut d| d.next().is_none()),
        "files were written for a refused volume"
    );

    // Allowed: the files are written, the token is the kubelet's, ca.crt is the CA from the Secret.
    let target = work.path().join("pods/builder/volume");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    node.node_publish_volume(publish_request(&target, "builder", &builder))
        .await
        .unwrap_or_else(|e| panic!("publish failed: {e:?}\n{}", csi.log()));
    let read = |name: &str| std::fs::read_to_string(target.join(name)).unwrap();
    assert_eq!(read("context.token"), builder);
    assert_eq!(
        Some(read("ca.crt")),
        ca_secret_cert(&handle),
        "ca.crt is the proxy CA from Secret connectors-proxy-ca"
    );
    let config = read("config.json");
    assert!(config.contains(&proxy.addr.to_string()), "{config}");

    // skopeo with only the rendered config.json pulls through the proxy.
    let pulled = work.path().join("pulled");
    let (authfile, src, dest) = (
        target.join("config.json").display().to_string(),
        proxy.image_ref("reg", "team/app:v1"),
        format!("dir:{}", pulled.display()),
    );
    let pull = [
        "copy",
        "--src-tls-verify=false",
        "--src-authfile",
        &authfile,
        &src,
        &dest,
    ];
    skopeo_ok(&pull, &[], "skopeo pull with the rendered config.json").await;
    assert_eq!(
        sha256_digest(&std::fs::read(pulled.join("manifest.json")).unwrap()),
        image.manifest_digest
    );
    assert!(fake.request_count("create subjectaccessreviews") >= 3);
    for log in [csi.log(), proxy.log()] {
        assert_no_canary(&log, "a log");
        assert!(
            !log.contains(builder.as_str()),
            "a ServiceAccount token in a log"
        );
    }
}
