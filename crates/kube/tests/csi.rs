//! The CSI driver with its Kubernetes backends (`SarAuthorize`, `KubeletTokenOnly`, `KubeFlags`) against the fake
//! API server (no real one runs here): the real driver serves on a unix socket, a tonic client publishes like the
//! kubelet (Pod info and `serviceAccount.tokens` in the volume context), and the files are checked on disk.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use connectors_catalog::StaticCatalog;
use connectors_csi::proto::identity_client::IdentityClient;
use connectors_csi::proto::node_client::NodeClient;
use connectors_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume};
use connectors_csi::proto::{NodePublishVolumeRequest, ProbeRequest, VolumeCapability};
use connectors_csi::{CsiError, Driver, DriverConfig};
use connectors_kube::{KubeCsiConfig, KubeFlags, KubeletTokenOnly, SarAuthorize};
use connectors_kubefake::{FakeApiServer, FakeRule};
use connectors_model::ConnectorRef;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

const GROUP: &str = "connectors.alauda.io";
const PROXY: &str = "127.0.0.1:18080";
const SA: &str = "system:serviceaccount:team-a:builder";

const CATALOG: &str = r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {name: reg, namespace: team-a}
spec: {connectorClassName: oci, address: "https://registry.example.com"}
---
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {name: mirror, namespace: team-a}
spec: {connectorClassName: oci, address: "https://mirror.example.com"}
"#;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A kubelet-style ServiceAccount token: a JWT (unsigned; nothing here verifies it) lasting `lifetime` seconds.
fn kubelet_jwt(lifetime: u64) -> String {
    let enc = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let iat = now();
    format!(
        "{}.{}.fake-signature",
        enc(json!({"alg": "RS256", "kid": "fake"})),
        enc(json!({
            "aud": ["connectors-proxy"],
            "iat": iat,
            "nbf": iat,
            "exp": iat + lifetime,
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": SA,
            "kubernetes.io": {"namespace": "team-a", "serviceaccount": {"name": "builder"}},
        }))
    )
}

/// `csi.storage.k8s.io/serviceAccount.tokens` as the kubelet writes it.
fn tokens_context(pairs: &[(&str, &str)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(aud, token)| {
            (
                (*aud).to_owned(),
                json!({"token": token, "expirationTimestamp": "2030-01-01T00:00:00Z"}),
            )
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn config_map(data: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "connectors-config", "namespace": "connectors-system"},
        "data": data})
}

fn allow_get(fake: &FakeApiServer, user: &str, name: &str) {
    fake.allow(
        FakeRule::user(user, "get", GROUP, "connectors")
            .namespace("team-a")
            .name(name),
    );
}

struct Harness {
    fake: FakeApiServer,
    tmp: tempfile::TempDir,
    node: NodeClient<Channel>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), CsiError>>>,
}

impl Harness {
    async fn start(flag_ttl: Duration) -> Self {
        let fake = FakeApiServer::start().await.unwrap();
        Self::with_fake(fake, flag_ttl).await
    }

    async fn with_fake(fake: FakeApiServer, flag_ttl: Duration) -> Self {
        let client =
            kube::Client::try_from(kube::Config::new(fake.url().parse().unwrap())).unwrap();
        let kube_config = KubeCsiConfig {
            flag_ttl,
            ..Default::default()
        };
        let tmp = tempfile::tempdir().unwrap();
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
        // Files in plain folders: the tmpfs mount is tested in the csi crate.
        config.mount_tmpfs = false;
        // The static flag says "allowed"; the ConfigMap must win.
        config.multi_connector = true;
        config.flags = Some(Arc::new(KubeFlags::new(client.clone(), &kube_config)));
        config.check_kubelet_token_lifetime = true;
        let driver = Driver::new(
            config,
            Arc::new(StaticCatalog::from_yaml(CATALOG).unwrap()),
            Arc::new(KubeletTokenOnly::default()),
            Arc::new(SarAuthorize::new(client, &kube_config)),
        );
        let socket = tmp.path().join("csi.sock");
        let endpoint = format!("unix://{}", socket.display());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            connectors_csi::serve(&endpoint, driver, async {
                let _ = rx.await;
            })
            .await
        });
        let channel = connect(&socket).await;
        Self {
            fake,
            tmp,
            node: NodeClient::new(channel),
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    fn target(&self, name: &str) -> PathBuf {
        let parent = self.tmp.path().join("pods").join(name).join("volumes");
        std::fs::create_dir_all(&parent).unwrap();
        parent.join("mount")
    }

    async fn publish(
        &mut self,
        target: &Path,
        service_account: Option<&str>,
        attrs: &[(&str, &str)],
    ) -> Result<(), tonic::Status> {
        let mut volume_context: HashMap<String, String> = [
            ("csi.storage.k8s.io/pod.name", "builder-1"),
            ("csi.storage.k8s.io/pod.namespace", "team-a"),
            ("csi.storage.k8s.io/pod.uid", "0f3c"),
            ("csi.storage.k8s.io/ephemeral", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(sa) = service_account {
            volume_context.insert("csi.storage.k8s.io/serviceAccount.name".into(), sa.into());
        }
        for (k, v) in attrs {
            volume_context.insert((*k).to_owned(), (*v).to_owned());
        }
        let request = NodePublishVolumeRequest {
            volume_id: "csi-123".into(),
            target_path: target.display().to_string(),
            volume_capability: Some(VolumeCapability {
                access_type: Some(AccessType::Mount(MountVolume::default())),
                access_mode: Some(AccessMode { mode: 1 }),
            }),
            readonly: true,
            volume_context,
            ..Default::default()
        };
        self.node.node_publish_volume(request).await.map(|_| ())
    }

    /// Publishes `connectors` for ServiceAccount `builder` with a kubelet token lasting an hour.
    /// Publishes and expects the refusal `code`; the status, for the message checks.
    async fn refused(
        &mut self,
        code: Code,
        target: &Path,
        service_account: Option<&str>,
        attrs: &[(&str, &str)],
    ) -> tonic::Status {
        let status = self
            .publish(target, service_account, attrs)
            .await
            .expect_err("the publish must be refused");
        assert_eq!(status.code(), code, "{status:?}");
        status
    }

    async fn publish_as_builder(
        &mut self,
        target: &Path,
        connectors: &str,
    ) -> Result<(), tonic::Status> {
        let tokens = tokens_context(&[("connectors-proxy", &kubelet_jwt(3600))]);
        self.publish(
            target,
            Some("builder"),
            &[
                ("connectors", connectors),
                ("csi.storage.k8s.io/serviceAccount.tokens", &tokens),
            ],
        )
        .await
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("server stops")
                .unwrap()
                .unwrap();
        }
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

fn read(target: &Path, name: &str) -> String {
    std::fs::read_to_string(target.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", target.join(name).display()))
}

/// Nothing was written: the target does not exist or is empty.
fn nothing_written(target: &Path) -> bool {
    match std::fs::read_dir(target) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// The SubjectAccessReviews the fake received, as `(user, groups, namespace, name, subresource)`.
fn sars(fake: &FakeApiServer) -> Vec<(String, Vec<String>, String, String, String)> {
    fake.reviews_received()
        .iter()
        .filter(|r| r["kind"] == "SubjectAccessReview")
        .map(|r| {
            let a = &r["resourceAttributes"];
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (
                s(&r["user"]),
                r["groups"]
                    .as_array()
                    .map(|g| g.iter().map(s).collect())
                    .unwrap_or_default(),
                s(&a["namespace"]),
                s(&a["name"]),
                s(&a["subresource"]),
            )
        })
        .collect()
}

#[tokio::test]
async fn fake_api_server_publishes_with_a_kubelet_token_and_refuses_a_service_account_without_permission()
 {
    let mut h = Harness::start(Duration::from_secs(60)).await;
    allow_get(&h.fake, SA, "reg");

    let target = h.target("allowed");
    let token = kubelet_jwt(3600);
    let tokens = tokens_context(&[
        ("connectors-proxy", &token),
        ("https://kubernetes.default.svc", "other-audience-token"),
    ]);
    h.publish(
        &target,
        Some("builder"),
        &[
            ("connectors", "reg"),
            ("csi.storage.k8s.io/serviceAccount.tokens", &tokens),
        ],
    )
    .await
    .unwrap();
    assert_eq!(read(&target, "context.token").trim(), token);
    assert!(
        read(&target, "http.proxy").contains(&format!("team-a%2Freg:{token}@{PROXY}")),
        "{}",
        read(&target, "http.proxy")
    );
    let reviews = sars(&h.fake);
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    let (user, groups, ns, name, sub) = &reviews[0];
    assert_eq!(user, SA);
    assert_eq!(
        groups,
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "system:authenticated"
        ]
    );
    assert_eq!(
        (ns.as_str(), name.as_str(), sub.as_str()),
        ("team-a", "reg", "")
    );

    // Another ServiceAccount of the namespace, without a rule: refused, and nothing is written.
    let denied = h.target("denied");
    let tokens = tokens_context(&[("connectors-proxy", &kubelet_jwt(3600))]);
    let status = h
        .refused(
            Code::PermissionDenied,
            &denied,
            Some("intruder"),
            &[
                ("connectors", "reg"),
                ("csi.storage.k8s.io/serviceAccount.tokens", &tokens),
            ],
        )
        .await;
    let msg = status.message();
    for needle in [
        "team-a/intruder",
        "team-a/reg",
        "`get` on Connector \"reg\"",
        "kubectl -n team-a create role",
        "--serviceaccount=team-a:intruder",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing in {msg}");
    }
    assert!(!msg.contains("fake-signature"), "{msg}");
    assert!(nothing_written(&denied));

    // Granting to the namespace's ServiceAccounts group reaches the review (the driver sends the groups).
    h.fake.allow(
        FakeRule::group("system:serviceaccounts:team-a", "get", GROUP, "connectors")
            .namespace("team-a")
            .name("reg"),
    );
    h.publish(
        &denied,
        Some("intruder"),
        &[
            ("connectors", "reg"),
            ("csi.storage.k8s.io/serviceAccount.tokens", &tokens),
        ],
    )
    .await
    .unwrap();
    assert!(!nothing_written(&denied));

    // A volume of two connectors where one is denied writes nothing either (and the flag allows two).
    h.fake
        .put(config_map(json!({"enable-multi-connector": "true"})))
        .unwrap();
    let partial = h.target("partial");
    let status = h
        .publish_as_builder(&partial, "reg,mirror")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("team-a/mirror"), "{status:?}");
    assert!(nothing_written(&partial));
    h.stop().await;
}

#[tokio::test]
async fn fake_api_server_proxy_permissions_flag_needs_the_proxy_subresource() {
    let mut h = Harness::start(Duration::from_secs(60)).await;
    h.fake
        .put(config_map(
            json!({"enable-connector-proxy-permissions": "true"}),
        ))
        .unwrap();
    allow_get(&h.fake, SA, "reg");
    let target = h.target("proxy-flag");
    let status = h.publish_as_builder(&target, "reg").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let msg = status.message();
    assert!(
        msg.contains("connectors/proxy")
            && msg.contains("enable-connector-proxy-permissions")
            && msg.contains(
                "--resource=connectors.connectors.alauda.io,connectors.connectors.alauda.io/proxy"
            ),
        "{msg}"
    );
    assert!(nothing_written(&target));

    h.fake.allow(
        FakeRule::user(SA, "get", GROUP, "connectors")
            .subresource("proxy")
            .namespace("team-a")
            .name("reg"),
    );
    h.publish_as_builder(&target, "reg").await.unwrap();
    assert!(!nothing_written(&target));
    let subresources: Vec<String> = sars(&h.fake).into_iter().map(|r| r.4).collect();
    assert_eq!(subresources, ["", "proxy", "", "proxy"]);
    h.stop().await;
}

#[tokio::test]
async fn fake_api_server_down_fails_closed() {
    let mut h = Harness::start(Duration::from_secs(60)).await;
    allow_get(&h.fake, SA, "reg");
    h.fake.set_down(true);
    let target = h.target("down");
    let status = h.publish_as_builder(&target, "reg").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("SubjectAccessReview")
            && status.message().contains("team-a/builder"),
        "{status:?}"
    );
    assert!(nothing_written(&target));

    // The multi-connector flag cannot be read either, and no earlier value is known: Unavailable, not a guess.
    let status = h
        .publish_as_builder(&target, "reg,mirror")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("enable-multi-connector"),
        "{status:?}"
    );
    assert!(nothing_written(&target));

    h.fake.set_down(false);
    h.publish_as_builder(&target, "reg").await.unwrap();
    assert!(!nothing_written(&target));
    h.stop().await;
}

#[tokio::test]
async fn fake_api_server_multi_connector_flag_is_read_per_publish() {
    let ttl = Duration::from_millis(300);
    let mut h = Harness::start(ttl).await;
    allow_get(&h.fake, SA, "reg");
    allow_get(&h.fake, SA, "mirror");
    let target = h.target("multi");

    // No ConfigMap at all: the flag is off, as installed.
    let status = h
        .publish_as_builder(&target, "reg,mirror")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("enable-multi-connector"));

    h.fake
        .put(config_map(json!({"enable-multi-connector": "false"})))
        .unwrap();
    // Past the cache's lifetime, the "false" is read (and still refuses).
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let gets = h.fake.request_count("get configmaps");
    let status = h
        .publish_as_builder(&target, "reg,mirror")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(h.fake.request_count("get configmaps"), gets + 1);
    assert!(nothing_written(&target));
    // One connector needs no flag.
    h.publish_as_builder(&target, "reg").await.unwrap();

    h.fake
        .put(config_map(json!({"enable-multi-connector": "true"})))
        .unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    h.publish_as_builder(&target, "reg,mirror").await.unwrap();
    let config = read(&target, "http.proxy");
    assert!(config.contains("team-a%2Freg,team-a%2Fmirror"), "{config}");
    h.stop().await;
}

#[tokio::test]
async fn fake_api_server_multi_connector_flag_is_cached_for_its_ttl() {
    let mut h = Harness::start(Duration::from_secs(3600)).await;
    allow_get(&h.fake, SA, "reg");
    allow_get(&h.fake, SA, "mirror");
    h.fake
        .put(config_map(json!({"enable-multi-connector": "true"})))
        .unwrap();
    let target = h.target("cached");
    h.publish_as_builder(&target, "reg,mirror").await.unwrap();
    let gets = h.fake.request_count("get configmaps");
    // Within the TTL the flag is not read again, so a flip is not seen yet.
    h.fake
        .put(config_map(json!({"enable-multi-connector": "false"})))
        .unwrap();
    h.publish_as_builder(&target, "reg,mirror").await.unwrap();
    assert_eq!(h.fake.request_count("get configmaps"), gets);
    h.stop().await;
}

#[tokio::test]
async fn fake_api_server_kubelet_token_shorter_than_token_expiration_is_refused() {
    let mut h = Harness::start(Duration::from_secs(60)).await;
    allow_get(&h.fake, SA, "reg");
    let target = h.target("short");
    // The kubelet's minimum: 10 minutes, shorter than the default token.expiration of 30m.
    let tokens = tokens_context(&[("connectors-proxy", &kubelet_jwt(600))]);
    let publish = |expiration: Option<&'static str>| {
        let mut attrs = vec![
            ("connectors", "reg".to_owned()),
            ("csi.storage.k8s.io/serviceAccount.tokens", tokens.clone()),
        ];
        if let Some(e) = expiration {
            attrs.push(("token.expiration", e.to_owned()));
        }
        attrs
    };
    for expiration in [None, Some("11m")] {
        let attrs = publish(expiration);
        let attrs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let status = h
            .refused(Code::InvalidArgument, &target, Some("builder"), &attrs)
            .await;
        let msg = status.message();
        assert!(
            msg.contains("expirationSeconds")
                && msg.contains("\"connectors-csi\"")
                && msg.contains("lasts 600s"),
            "{msg}"
        );
        assert!(nothing_written(&target));
    }
    // A volume that asks for no more than the token gives is fine.
    let attrs = publish(Some("10m"));
    let attrs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    h.publish(&target, Some("builder"), &attrs).await.unwrap();

    // A kubelet token whose lifetime cannot be read is refused with the reason, without quoting it.
    let other = h.target("opaque");
    let tokens = tokens_context(&[("connectors-proxy", "canary-opaque-token")]);
    let status = h
        .refused(
            Code::InvalidArgument,
            &other,
            Some("builder"),
            &[
                ("connectors", "reg"),
                ("csi.storage.k8s.io/serviceAccount.tokens", &tokens),
            ],
        )
        .await;
    assert!(status.message().contains("not a JWT"), "{status:?}");
    assert!(!status.message().contains("canary"), "{status:?}");
    assert!(nothing_written(&other));
    h.stop().await;
}

#[tokio::test]
async fn fake_api_server_without_a_kubelet_token_the_error_names_the_token_request() {
    let mut h = Harness::start(Duration::from_secs(60)).await;
    allow_get(&h.fake, SA, "reg");
    let target = h.target("no-token");
    let status = h
        .refused(
            Code::FailedPrecondition,
            &target,
            Some("builder"),
            &[("connectors", "reg")],
        )
        .await;
    let msg = status.message();
    assert!(
        msg.contains("tokenRequests")
            && msg.contains("audience: connectors-proxy")
            && msg.contains("\"connectors-csi\""),
        "{msg}"
    );
    assert!(nothing_written(&target));

    // Tokens for other audiences only: the audiences are named, the tokens are not.
    let tokens = tokens_context(&[("vault", "canary-a"), ("api", "canary-b")]);
    let status = h
        .refused(
            Code::FailedPrecondition,
            &target,
            Some("builder"),
            &[
                ("connectors", "reg"),
                ("csi.storage.k8s.io/serviceAccount.tokens", &tokens),
            ],
        )
        .await;
    assert!(
        status.message().contains("\"vault\"") && !status.message().contains("canary"),
        "{status:?}"
    );
    assert!(nothing_written(&target));
    h.stop().await;
}

#[tokio::test]
async fn fake_api_server_pod_without_service_account_info_is_refused() {
    let mut h = Harness::start(Duration::from_secs(60)).await;
    allow_get(&h.fake, SA, "reg");
    let target = h.target("no-pod-info");
    let tokens = tokens_context(&[("connectors-proxy", &kubelet_jwt(3600))]);
    let status = h
        .refused(
            Code::FailedPrecondition,
            &target,
            None,
            &[
                ("connectors", "reg"),
                ("csi.storage.k8s.io/serviceAccount.tokens", &tokens),
            ],
        )
        .await;
    assert!(
        status.message().contains("podInfoOnMount: true"),
        "{status:?}"
    );
    assert!(nothing_written(&target));
    assert!(sars(&h.fake).is_empty());
    h.stop().await;
}
