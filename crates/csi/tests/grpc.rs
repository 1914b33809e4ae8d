//! The driver end to end: a real tonic client talks to `connectors_csi::serve` over a unix socket in a temporary
//! folder, and the files the driver writes are checked on disk.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use connectors_catalog::StaticCatalog;
use connectors_csi::proto::identity_client::IdentityClient;
use connectors_csi::proto::node_client::NodeClient;
use connectors_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume};
use connectors_csi::proto::{
    GetPluginCapabilitiesRequest, GetPluginInfoRequest, NodeGetCapabilitiesRequest,
    NodeGetInfoRequest, NodePublishVolumeRequest, NodeUnpublishVolumeRequest, ProbeRequest,
    ProbeResponse, VolumeCapability,
};
use connectors_csi::{
    AllowAll, Authorize, CsiError, Driver, DriverConfig, LocalTokenSource, PodInfo,
};
use connectors_identity::{Allowed, LocalTokens};
use connectors_model::{ConnectorRef, SecretString};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

const PROXY: &str = "127.0.0.1:18080";

const CATALOG: &str = r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {name: reg, namespace: team-a}
spec: {connectorClassName: oci, address: "https://registry.example.com"}
---
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {name: local, namespace: pods}
spec: {connectorClassName: oci, address: "https://local.example.com"}
---
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {name: custom, namespace: team-a}
spec: {connectorClassName: custom, address: "https://custom.example.com"}
---
apiVersion: connectors.alauda.io/v1alpha1
kind: ConnectorClass
metadata: {name: custom}
spec:
  configurations:
    - name: needs-param
      params:
        - name: repository
      data:
        repo.txt: "{{ .configurations.repository }}"
    - name: broken
      data:
        broken.txt: "{{ .connector.metadata.name | noSuchFunction }}"
"#;

/// Refuses one connector, allows the rest.
struct DenyOne(ConnectorRef);

#[async_trait]
impl Authorize for DenyOne {
    async fn allowed(&self, pod: &PodInfo, connector: &ConnectorRef) -> Result<(), CsiError> {
        if *connector == self.0 {
            Err(CsiError::PermissionDenied(format!(
                "{} may not use connector {connector}",
                pod.subject().unwrap_or_default()
            )))
        } else {
            Ok(())
        }
    }
}

/// The targets a test used; on drop (also when the test panics) any tmpfs still mounted there is unmounted, so
/// that a failing test leaves no mounts behind and its temporary folder can be removed.
#[derive(Default)]
struct Targets(std::sync::Mutex<Vec<PathBuf>>);

impl Drop for Targets {
    fn drop(&mut self) {
        let targets = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for target in targets {
            if fs_type_at(&target).is_some()
                && let Ok(canonical) = std::fs::canonicalize(&target)
            {
                let _ = connectors_csi::mount::unmount(&canonical);
            }
        }
    }
}

struct Harness {
    // Before `tmp`: fields drop in order, and the mounts must go before the folder.
    targets: Targets,
    tmp: tempfile::TempDir,
    tokens: Arc<LocalTokens>,
    identity: IdentityClient<Channel>,
    node: NodeClient<Channel>,
    channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), CsiError>>>,
    socket: PathBuf,
}

impl Harness {
    async fn start(multi_connector: bool, authorizer: Arc<dyn Authorize>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let tokens = Arc::new(LocalTokens::load_or_create(&tmp.path().join("state")).unwrap());
        let catalog = Arc::new(StaticCatalog::from_yaml(CATALOG).unwrap());
        let mut config = DriverConfig::new(
            "node-1",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            format!("http://{PROXY}"),
            |r: &ConnectorRef| {
                format!(
                    "http://{PROXY}/namespaces/{}/connectors/{}",
                    r.namespace, r.name
                )
            },
        );
        config.multi_connector = multi_connector;
        let driver = Driver::new(
            config,
            catalog,
            Arc::new(LocalTokenSource::new(tokens.clone())),
            authorizer,
        );

        let socket = tmp.path().join("plugins/csi.sock");
        // A stale socket from an earlier run is replaced.
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let endpoint = format!("unix://{}", socket.display());
        let server = tokio::spawn(async move {
            connectors_csi::serve(&endpoint, driver, async {
                let _ = rx.await;
            })
            .await
        });

        let channel = connect(&socket).await;
        Self {
            targets: Targets::default(),
            tokens,
            identity: IdentityClient::new(channel.clone()),
            node: NodeClient::new(channel.clone()),
            channel,
            shutdown: Some(tx),
            server: Some(server),
            socket,
            tmp,
        }
    }

    fn target(&self, name: &str) -> PathBuf {
        // Like the kubelet: the parent exists, the target itself is for the driver to create.
        let parent = self.tmp.path().join("pods").join(name).join("volumes");
        std::fs::create_dir_all(&parent).unwrap();
        let target = parent.join("mount");
        self.targets.0.lock().unwrap().push(target.clone());
        target
    }

    async fn publish(
        &mut self,
        target: &Path,
        attrs: &[(&str, &str)],
    ) -> Result<(), tonic::Status> {
        self.node
            .node_publish_volume(publish_request(target, attrs))
            .await
            .map(|_| ())
    }

    async fn unpublish(&mut self, target: &Path) -> Result<(), tonic::Status> {
        self.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: "csi-123".into(),
                target_path: target.display().to_string(),
            })
            .await
            .map(|_| ())
    }

    async fn stop(self) {
        let Harness {
            targets,
            tmp,
            identity,
            node,
            channel,
            shutdown,
            server,
            socket,
            ..
        } = self;
        drop((identity, node, channel));
        if let Some(tx) = shutdown {
            let _ = tx.send(());
        }
        if let Some(server) = server {
            let result = tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("server stops")
                .unwrap();
            result.unwrap();
        }
        assert!(!socket.exists(), "socket removed on shutdown");
        drop(targets);
        drop(tmp);
    }
}

async fn connect(socket: &Path) -> Channel {
    for _ in 0..100 {
        let path = socket.to_path_buf();
        let connected = Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
            }))
            .await;
        // The harness leaves a stale socket file for the driver to replace, so an early attempt may reach
        // the file before the driver listens on it: only a channel that answers a Probe counts.
        if let Ok(channel) = connected
            && IdentityClient::new(channel.clone())
                .probe(ProbeRequest {})
                .await
                .is_ok()
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect to {}", socket.display());
}

fn publish_request(target: &Path, attrs: &[(&str, &str)]) -> NodePublishVolumeRequest {
    let mut volume_context: HashMap<String, String> = [
        ("csi.storage.k8s.io/pod.name", "builder-1"),
        ("csi.storage.k8s.io/pod.namespace", "pods"),
        ("csi.storage.k8s.io/pod.uid", "0f3c"),
        ("csi.storage.k8s.io/serviceAccount.name", "builder"),
        ("csi.storage.k8s.io/ephemeral", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in attrs {
        volume_context.insert((*k).to_owned(), (*v).to_owned());
    }
    let readonly = volume_context
        .remove("test.readonly")
        .is_none_or(|v| v == "true");
    NodePublishVolumeRequest {
        volume_id: "csi-123".into(),
        target_path: target.display().to_string(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: Some(AccessMode { mode: 1 }),
        }),
        readonly,
        volume_context,
        ..Default::default()
    }
}

fn read(target: &Path, name: &str) -> String {
    std::fs::read_to_string(target.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", target.join(name).display()))
}

fn visible_names(target: &Path) -> BTreeSet<String> {
    std::fs::read_dir(target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with(".."))
        .collect()
}

fn timestamped_dirs(target: &Path) -> Vec<String> {
    std::fs::read_dir(target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("..") && n != "..data")
        .collect()
}

/// The token in a `config.json` auth entry, and the entry's key.
fn config_json_token(target: &Path) -> (String, String) {
    let config: serde_json::Value = serde_json::from_str(&read(target, "config.json")).unwrap();
    let auths = config["auths"].as_object().expect("auths object");
    assert_eq!(auths.len(), 1, "{config}");
    let (host, entry) = auths.iter().next().unwrap();
    let auth = entry["auth"].as_str().expect("auth string");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    let (_user, token) = decoded.split_once(':').expect("user:token");
    (host.clone(), token.to_owned())
}

fn fs_type_at(path: &Path) -> Option<String> {
    let canonical = std::fs::canonicalize(path).ok()?;
    connectors_csi::mount::mounted_at(&canonical)
        .ok()
        .flatten()
        .map(|fs| fs.name())
}

/// Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN): tried on a scratch folder.
fn tmpfs_works() -> bool {
    let scratch = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(scratch.path())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let _ = std::process::Command::new("umount")
            .arg(scratch.path())
            .status();
    }
    mounted
}

#[tokio::test]
async fn identity_and_node_info() {
    let mut h = Harness::start(true, Arc::new(AllowAll)).await;
    let info = h
        .identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "connectors-csi");
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    let caps = h
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(caps.capabilities.is_empty(), "node-only: no controller");
    let probe = h
        .identity
        .probe(ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));
    let node = h
        .node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(node.node_id, "node-1");
    let caps = h
        .node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(caps.capabilities.is_empty());

    // Calls this driver does not serve are UNIMPLEMENTED.
    let mut grpc = tonic::client::Grpc::new(h.channel.clone());
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<ProbeRequest, ProbeResponse, _>(
            tonic::Request::new(ProbeRequest {}),
            "/csi.v1.Node/NodeStageVolume".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    h.stop().await;
}

#[tokio::test]
async fn publish_republish_unpublish() {
    let can_mount = tmpfs_works();
    let mut h = Harness::start(true, Arc::new(AllowAll)).await;
    let target = h.target("web");
    h.publish(
        &target,
        &[
            ("connectors", "team-a/reg"),
            ("configuration.names", "registry-config"),
        ],
    )
    .await
    .unwrap();

    // The tmpfs, when this process may mount one.
    if can_mount {
        assert_eq!(fs_type_at(&target).as_deref(), Some("tmpfs"));
    } else {
        println!(
            "note: cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN); tmpfs checks skipped"
        );
        assert_eq!(fs_type_at(&target), None);
    }

    // Names and the ..data layout.
    let names = visible_names(&target);
    for want in [
        "config.json",
        ".env",
        "http.proxy",
        "https.proxy",
        "context.token",
        "ca.crt",
        "connector.status.proxyAddress",
    ] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    let data = std::fs::read_link(target.join("..data")).unwrap();
    let data_name = data.to_str().unwrap().to_owned();
    assert!(data_name.starts_with(".."), "{data_name}");
    assert_eq!(timestamped_dirs(&target), std::slice::from_ref(&data_name));
    let dir_mode = std::fs::metadata(target.join(&data))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o555);
    for name in &names {
        let link = std::fs::read_link(target.join(name)).unwrap();
        assert_eq!(link, Path::new("..data").join(name));
        let mode = std::fs::metadata(target.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444, "{name}");
    }

    // config.json: one entry for the proxy host whose auth carries a token the proxy accepts.
    let (host, token) = config_json_token(&target);
    assert_eq!(host, PROXY);
    let principal = h.tokens.verify(&SecretString::from(token.clone())).unwrap();
    assert_eq!(principal.subject, "system:serviceaccount:pods:builder");
    assert_eq!(
        principal.allowed,
        Allowed::Only(vec!["team-a/reg".parse().unwrap()])
    );
    assert_eq!(read(&target, "context.token").trim(), token);
    assert_eq!(
        read(&target, "connector.status.proxyAddress").trim(),
        format!("http://{PROXY}/namespaces/team-a/connectors/reg")
    );

    // .env sources in a POSIX shell and gives the forward-proxy URL.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". '{}/.env' && echo \"$https_proxy\"",
            target.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let https_proxy = String::from_utf8(out.stdout).unwrap();
    let want = format!("http://team-a%2Freg:{token}@{PROXY}");
    assert_eq!(https_proxy.trim(), want);
    assert_eq!(read(&target, "http.proxy").trim(), want);

    // Republish: new token, files swapped atomically while a reader keeps reading.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads, target) = (stop.clone(), reads.clone(), target.clone());
        std::thread::spawn(move || -> Result<(), String> {
            while !stop.load(Ordering::Relaxed) {
                for name in ["config.json", "context.token", ".env"] {
                    let text = std::fs::read_to_string(target.join(name))
                        .map_err(|e| format!("{name}: {e}"))?;
                    if text.is_empty() {
                        return Err(format!("{name} was empty"));
                    }
                }
                serde_json::from_str::<serde_json::Value>(
                    &std::fs::read_to_string(target.join("config.json"))
                        .map_err(|e| format!("config.json: {e}"))?,
                )
                .map_err(|e| format!("config.json: {e}"))?;
                reads.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };
    let mut seen_dirs = vec![data_name.clone()];
    let mut last_token = token.clone();
    for _ in 0..5 {
        h.publish(
            &target,
            &[
                ("connectors", "team-a/reg"),
                ("configuration.names", "registry-config"),
            ],
        )
        .await
        .unwrap();
        let (_, new_token) = config_json_token(&target);
        assert_ne!(new_token, last_token, "republish issues a fresh token");
        h.tokens
            .verify(&SecretString::from(new_token.clone()))
            .unwrap();
        last_token = new_token;
        let now = std::fs::read_link(target.join("..data")).unwrap();
        let now = now.to_str().unwrap().to_owned();
        assert!(!seen_dirs.contains(&now), "a fresh folder each time");
        assert_eq!(
            timestamped_dirs(&target),
            std::slice::from_ref(&now),
            "older folders removed"
        );
        seen_dirs.push(now);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap().unwrap();
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(read(&target, "context.token").trim(), last_token);

    // Republish with fewer files: the stale links go.
    h.publish(
        &target,
        &[
            ("connectors", "team-a/reg"),
            ("configuration.names", "registry-config,!ca.cert,!.env"),
        ],
    )
    .await
    .unwrap();
    let names = visible_names(&target);
    assert!(
        !names.contains(".env") && names.contains("config.json"),
        "{names:?}"
    );
    if can_mount {
        assert_eq!(
            fs_type_at(&target).as_deref(),
            Some("tmpfs"),
            "still the same tmpfs"
        );
    }

    // Unpublish removes everything and is idempotent.
    h.unpublish(&target).await.unwrap();
    assert!(!target.exists(), "target removed");
    assert_eq!(fs_type_at(&target), None, "nothing mounted");
    h.unpublish(&target).await.unwrap();
    h.unpublish(&h.tmp.path().join("never/published"))
        .await
        .unwrap();
    h.stop().await;
}

#[tokio::test]
async fn bare_names_resolve_in_the_pod_namespace() {
    let mut h = Harness::start(true, Arc::new(AllowAll)).await;
    let target = h.target("bare");
    h.publish(
        &target,
        &[("connectors", "local"), ("token.expiration", "1h30m")],
    )
    .await
    .unwrap();
    assert_eq!(
        read(&target, "connector.status.proxyAddress").trim(),
        format!("http://{PROXY}/namespaces/pods/connectors/local")
    );
    let token = read(&target, "context.token");
    let principal = h.tokens.verify(&SecretString::from(token.trim())).unwrap();
    assert_eq!(
        principal.allowed,
        Allowed::Only(vec!["pods/local".parse().unwrap()])
    );
    let left = principal
        .expires_at
        .unwrap()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        left > Duration::from_secs(5300) && left <= Duration::from_secs(5400),
        "{left:?}"
    );
    // Without configuration.names: built-in files only.
    assert!(!visible_names(&target).contains("config.json"));

    // The deprecated pair works too.
    let target2 = h.target("deprecated");
    h.publish(
        &target2,
        &[("connector.name", "reg"), ("connector.namespace", "team-a")],
    )
    .await
    .unwrap();
    assert!(read(&target2, "http.proxy").contains("team-a%2Freg:"));
    h.unpublish(&target).await.unwrap();
    h.unpublish(&target2).await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn kubelet_tokens_are_passed_through() {
    let mut h = Harness::start(true, Arc::new(AllowAll)).await;
    let target = h.target("kubelet");
    let tokens = r#"{"connectors-proxy":{"token":"kubelet-sa-token","expirationTimestamp":"2030-01-01T00:00:00Z"},"https://kubernetes.default.svc":{"token":"other"}}"#;
    h.publish(
        &target,
        &[
            ("connectors", "team-a/reg"),
            ("csi.storage.k8s.io/serviceAccount.tokens", tokens),
        ],
    )
    .await
    .unwrap();
    assert_eq!(read(&target, "context.token").trim(), "kubelet-sa-token");
    h.unpublish(&target).await.unwrap();
    h.stop().await;
}

async fn expect_error(
    h: &mut Harness,
    attrs: &[(&str, &str)],
    code: Code,
    parts: &[&str],
) -> tonic::Status {
    let target = h.target("errors");
    let status = h.publish(&target, attrs).await.unwrap_err();
    assert_eq!(status.code(), code, "{attrs:?}: {}", status.message());
    for part in parts {
        assert!(
            status.message().contains(part),
            "{attrs:?}: {:?} should contain {part:?}",
            status.message()
        );
    }
    assert!(
        !status.message().contains("ct1."),
        "no token in {:?}",
        status.message()
    );
    assert!(!target.exists(), "a failed publish writes nothing");
    status
}

#[tokio::test]
async fn errors_say_what_to_fix() {
    let mut h = Harness::start(true, Arc::new(DenyOne("team-a/custom".parse().unwrap()))).await;
    let reg = ("connectors", "team-a/reg");
    expect_error(
        &mut h,
        &[("connectors", "team-a/nope")],
        Code::NotFound,
        &[r#"connector "nope" not found"#, "team-a"],
    )
    .await;
    expect_error(
        &mut h,
        &[("connectors", "nope")],
        Code::NotFound,
        &[r#"connector "nope" not found"#, "pods"],
    )
    .await;
    expect_error(
        &mut h,
        &[reg, ("test.readonly", "false")],
        Code::InvalidArgument,
        &["readOnly: true"],
    )
    .await;
    expect_error(
        &mut h,
        &[],
        Code::InvalidArgument,
        &["\"connectors\" is required"],
    )
    .await;
    expect_error(
        &mut h,
        &[reg, ("token.expiration", "30 minutes")],
        Code::InvalidArgument,
        &["token.expiration", "30m"],
    )
    .await;
    expect_error(
        &mut h,
        &[reg, ("token.expiration", "48h")],
        Code::InvalidArgument,
        &["token.expiration"],
    )
    .await;
    expect_error(
        &mut h,
        &[reg, ("configuration.params", "{\"settings\": ")],
        Code::InvalidArgument,
        &["configuration.params", "JSON"],
    )
    .await;
    expect_error(
        &mut h,
        &[reg, ("configuration.names", "no-such-configuration")],
        Code::InvalidArgument,
        &["no-such-configuration"],
    )
    .await;
    // The authorizer runs before anything is rendered.
    expect_error(
        &mut h,
        &[("connectors", "team-a/custom")],
        Code::PermissionDenied,
        &["team-a/custom"],
    )
    .await;
    h.stop().await;

    let mut h = Harness::start(true, Arc::new(AllowAll)).await;
    let custom = ("connectors", "team-a/custom");
    expect_error(
        &mut h,
        &[custom, ("configuration.names", "needs-param")],
        Code::InvalidArgument,
        &["repository"],
    )
    .await;
    expect_error(
        &mut h,
        &[custom, ("configuration.names", "broken")],
        Code::FailedPrecondition,
        &["failed to generate configuration"],
    )
    .await;
    // With the param the same configuration renders.
    let target = h.target("param");
    h.publish(
        &target,
        &[
            custom,
            ("configuration.names", "needs-param"),
            (
                "configuration.params",
                r#"{"needs-param": {"repository": "library/alpine"}}"#,
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(read(&target, "repo.txt"), "library/alpine");
    h.unpublish(&target).await.unwrap();
    h.stop().await;

    let mut h = Harness::start(false, Arc::new(AllowAll)).await;
    expect_error(
        &mut h,
        &[("connectors", "team-a/reg,pods/local")],
        Code::FailedPrecondition,
        &["enable-multi-connector"],
    )
    .await;
    // One connector is fine with the flag off.
    let target = h.target("single");
    h.publish(&target, &[("connectors", "team-a/reg")])
        .await
        .unwrap();
    h.unpublish(&target).await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn several_connectors_share_one_token() {
    let mut h = Harness::start(true, Arc::new(AllowAll)).await;
    let target = h.target("multi");
    h.publish(
        &target,
        &[
            ("connectors", "team-a/reg,local"),
            ("configuration.names", "registry-config"),
        ],
    )
    .await
    .unwrap();
    let token = read(&target, "context.token");
    let principal = h.tokens.verify(&SecretString::from(token.trim())).unwrap();
    assert_eq!(
        principal.allowed,
        Allowed::Only(vec![
            "team-a/reg".parse().unwrap(),
            "pods/local".parse().unwrap()
        ])
    );
    let proxy = read(&target, "http.proxy");
    assert!(
        proxy.starts_with("http://team-a%2Freg,pods%2Flocal:"),
        "{proxy}"
    );
    h.unpublish(&target).await.unwrap();
    h.stop().await;
}

/// A grpc-python client (grpc-core), as CSI tools and sanity suites written in Python are: over a unix socket it
/// sends the percent-encoded socket path as `:authority`, which h2 alone refuses with RST_STREAM(PROTOCOL_ERROR)
/// (TESTGROUND.md G21). No `grpc.default_authority` is set. The messages are built by hand (an empty request;
/// the response's field 1 and 2 are strings), so that no generated Python code is needed.
const PYTHON_CLIENT: &str = r#"
import sys, grpc
if tuple(map(int, grpc.__version__.split(".")[:2])) < (1, 57):
    sys.exit("grpcio %s sends localhost as :authority; this test needs 1.57 or later (scripts/install-deps.sh)" % grpc.__version__)
socket = sys.argv[1]
with grpc.insecure_channel("unix:" + socket) as channel:
    def call(method):
        return channel.unary_unary(method)(b"", timeout=10)
    def strings(message):
        out, i = {}, 0
        while i < len(message):
            key = message[i]; i += 1
            length = message[i]; i += 1
            out[key >> 3] = message[i:i + length].decode(); i += length
        return out
    info = strings(call("/csi.v1.Identity/GetPluginInfo"))
    node = strings(call("/csi.v1.Node/NodeGetInfo"))
    print(info[1], node[1])
"#;

#[tokio::test]
async fn a_grpc_python_client_that_sends_the_socket_path_as_authority_is_served() {
    let h = Harness::start(false, Arc::new(AllowAll)).await;
    let has_grpc = std::process::Command::new("python3")
        .args(["-c", "import grpc"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_grpc,
        "python3 with grpcio 1.57 or later is needed (scripts/install-deps.sh installs it from PyPI)"
    );
    let socket = h.socket.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", PYTHON_CLIENT])
            .arg(&socket)
            .output()
    })
    .await
    .unwrap()
    .expect("run python3");
    assert!(
        out.status.success(),
        "grpc-python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "connectors-csi node-1"
    );
    h.stop().await;
}
