//! The driver proper: NodePublishVolume and NodeUnpublishVolume, independent of gRPC plumbing.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use connectors_catalog::{Catalog, ResolvedConnector};
use connectors_model::{ConnectorClass, ConnectorRef, SecretString};

use crate::attributes::VolumeAttributes;
use crate::proto::NodePublishVolumeRequest;
use crate::proto::volume_capability::AccessType;
use crate::render::{RenderConnector, RenderRequest, render};
use crate::{Authorize, CsiError, FeatureFlags, PodInfo, TokenSource, jwt, mount, writer};

/// The audience whose kubelet-provided ServiceAccount token is used as the proxy token.
pub const DEFAULT_TOKEN_AUDIENCE: &str = "connectors-proxy";

/// The name of the flag that allows more than one connector per volume.
pub const MULTI_CONNECTOR_FLAG: &str = "enable-multi-connector";

/// The name of the CSIDriver object whose `tokenRequests` set the kubelet tokens' audience and lifetime.
pub const CSI_DRIVER_OBJECT: &str = "connectors-csi";

/// Maps a connector to its proxy URL (`.connector.status.proxyAddress`).
pub type ProxyAddressFn = Box<dyn Fn(&ConnectorRef) -> String + Send + Sync>;

/// How the driver behaves; everything it does not get from the catalog, the token source or the request.
pub struct DriverConfig {
    /// Returned by NodeGetInfo; the node's name in Kubernetes.
    pub node_id: String,
    /// PEM of the proxy CA, mounted as `ca.crt` (and the other CA file names).
    pub ca_cert_pem: String,
    /// The connector's reverse-proxy URL, e.g. `http://127.0.0.1:8080/namespaces/<ns>/connectors/<name>`.
    pub proxy_address_for: ProxyAddressFn,
    /// The forward-proxy URL of the class (`.connectorclass.proxyAddress`), e.g. `http://127.0.0.1:8080`.
    pub class_proxy_address: String,
    /// The `enable-multi-connector` flag: allow more than one connector in one volume. Default `true` (embedded
    /// mode). Ignored when [`DriverConfig::flags`] is set.
    pub multi_connector: bool,
    /// Where to read `enable-multi-connector` on each publish that names several connectors (Kubernetes: the
    /// ConfigMap `connectors-config`). Default `None`: the static [`DriverConfig::multi_connector`] applies.
    pub flags: Option<Arc<dyn FeatureFlags>>,
    /// Refuse a kubelet token that lives shorter than the volume's `token.expiration` (its lifetime is `exp - iat`
    /// of the JWT; a token whose lifetime cannot be read is refused too). Default `false` (embedded mode, where no
    /// kubelet sends tokens); set it in a cluster.
    pub check_kubelet_token_lifetime: bool,
    /// The audience of the kubelet token (`serviceAccount.tokens`) to pass through. Default
    /// [`DEFAULT_TOKEN_AUDIENCE`]; when the kubelet sent exactly one token, that one is used whatever its audience.
    pub token_audience: String,
    /// Mount a tmpfs on each target path (needs root and `CAP_SYS_ADMIN`; when the mount fails the files go into a
    /// plain folder and the reason is logged). Default `true`.
    pub mount_tmpfs: bool,
}

impl DriverConfig {
    /// A configuration with the defaults: multi-connector on, token audience [`DEFAULT_TOKEN_AUDIENCE`], tmpfs
    /// mounts on.
    pub fn new(
        node_id: impl Into<String>,
        ca_cert_pem: impl Into<String>,
        class_proxy_address: impl Into<String>,
        proxy_address_for: impl Fn(&ConnectorRef) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            node_id: node_id.into(),
            ca_cert_pem: ca_cert_pem.into(),
            proxy_address_for: Box::new(proxy_address_for),
            class_proxy_address: class_proxy_address.into(),
            multi_connector: true,
            flags: None,
            check_kubelet_token_lifetime: false,
            token_audience: DEFAULT_TOKEN_AUDIENCE.to_owned(),
            mount_tmpfs: true,
        }
    }
}

impl fmt::Debug for DriverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverConfig")
            .field("node_id", &self.node_id)
            .field("class_proxy_address", &self.class_proxy_address)
            .field("multi_connector", &self.multi_connector)
            .field("flags", &self.flags.as_ref().map(|_| "dynamic"))
            .field(
                "check_kubelet_token_lifetime",
                &self.check_kubelet_token_lifetime,
            )
            .field("token_audience", &self.token_audience)
            .field("mount_tmpfs", &self.mount_tmpfs)
            .finish_non_exhaustive()
    }
}

/// The CSI driver: serves the Identity and Node services (see [`crate::serve`]). Cheap to clone.
#[derive(Clone)]
pub struct Driver {
    inner: Arc<Inner>,
}

struct Inner {
    config: DriverConfig,
    catalog: Arc<dyn Catalog>,
    tokens: Arc<dyn TokenSource>,
    authorizer: Arc<dyn Authorize>,
    /// One lock per target path, so that a publish and an unpublish of the same volume do not interleave.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// One connector of a volume, resolved.
struct Mounted {
    reference: ConnectorRef,
    resolved: Arc<ResolvedConnector>,
    class: Arc<ConnectorClass>,
}

impl Driver {
    /// A driver that reads connectors from `catalog`, gets tokens from `tokens` and asks `authorizer` (use
    /// [`crate::AllowAll`] in embedded mode).
    pub fn new(
        config: DriverConfig,
        catalog: Arc<dyn Catalog>,
        tokens: Arc<dyn TokenSource>,
        authorizer: Arc<dyn Authorize>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                catalog,
                tokens,
                authorizer,
                locks: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &DriverConfig {
        &self.inner.config
    }

    /// NodePublishVolume: resolve, authorize, issue a token, render and write the files into the target path.
    /// Calling it again for the same target (a republish) rewrites the files atomically.
    pub async fn publish(&self, req: &NodePublishVolumeRequest) -> Result<(), CsiError> {
        let config = &self.inner.config;
        if req.volume_id.is_empty() {
            return Err(CsiError::InvalidArgument(
                "volume_id is required".to_owned(),
            ));
        }
        let target = target_path(&req.target_path)?;
        match req
            .volume_capability
            .as_ref()
            .map(|c| c.access_type.as_ref())
        {
            None => {
                return Err(CsiError::InvalidArgument(
                    "volume_capability is required".to_owned(),
                ));
            }
            Some(Some(AccessType::Block(_))) => {
                return Err(CsiError::InvalidArgument(
                    "connectors-csi volumes are file-system volumes; block access is not supported"
                        .to_owned(),
                ));
            }
            Some(_) => {}
        }
        if !req.readonly {
            return Err(CsiError::InvalidArgument(
                "the connectors-csi volume must be read-only: set `readOnly: true` in the Pod's csi volume"
                    .to_owned(),
            ));
        }

        let pod = PodInfo::from_request(&req.volume_context, &req.secrets)?;
        let attrs = VolumeAttributes::parse(&req.volume_context, pod.namespace.as_deref())?;
        if attrs.connectors.len() > 1 && !self.multi_connector_enabled().await? {
            return Err(CsiError::FailedPrecondition(format!(
                "the volume names {} connectors ({}) but the `{MULTI_CONNECTOR_FLAG}` flag is off; name one connector or turn the flag on",
                attrs.connectors.len(),
                join(&attrs.connectors)
            )));
        }

        let mounted = self.resolve(&attrs.connectors)?;
        for m in &mounted {
            self.inner.authorizer.allowed(&pod, &m.reference).await?;
        }
        let token = self.token(&pod, &attrs).await?;

        let request = RenderRequest {
            connectors: mounted
                .iter()
                .map(|m| RenderConnector {
                    connector: &m.resolved.connector,
                    class: &m.class,
                    proxy_address: (config.proxy_address_for)(&m.reference),
                })
                .collect(),
            token: &token,
            ca_cert_pem: &config.ca_cert_pem,
            class_proxy_address: config.class_proxy_address.clone(),
            configuration_names: attrs.configuration_names.clone(),
            configuration_params: attrs.configuration_params.clone(),
        };
        let files = render(&request)?;
        drop(request);
        drop(token);

        let lock = self.lock_for(&target);
        let _guard = lock.lock().await;
        let tmpfs = self.prepare_target(&target).await?;
        let names: Vec<String> = files.keys().cloned().collect();
        let write_target = target.clone();
        tokio::task::spawn_blocking(move || writer::write_files(&write_target, &files))
            .await
            .map_err(|e| CsiError::Internal(format!("the file writer failed: {e}")))??;
        tracing::info!(
            volume_id = %req.volume_id,
            target = %target.display(),
            pod = pod.name.as_deref().unwrap_or("-"),
            namespace = pod.namespace.as_deref().unwrap_or("-"),
            connectors = %join(&attrs.connectors),
            files = ?names,
            tmpfs,
            "volume published"
        );
        Ok(())
    }

    /// NodeUnpublishVolume: unmount the tmpfs (if any), remove the files and the target folder. A target that
    /// does not exist is fine (the call is idempotent).
    pub async fn unpublish(&self, volume_id: &str, target_path_raw: &str) -> Result<(), CsiError> {
        if volume_id.is_empty() {
            return Err(CsiError::InvalidArgument(
                "volume_id is required".to_owned(),
            ));
        }
        let target = target_path(target_path_raw)?;
        let lock = self.lock_for(&target);
        let guard = lock.lock().await;
        let result = self.clean_target(&target).await;
        drop(guard);
        {
            // Forget the lock unless another call for this target holds it too (the map's and ours make two).
            let mut locks = self
                .inner
                .locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if locks
                .get(&target)
                .is_some_and(|l| Arc::strong_count(l) <= 2)
            {
                locks.remove(&target);
            }
        }
        drop(lock);
        match &result {
            Ok(()) => tracing::info!(volume_id, target = %target.display(), "volume unpublished"),
            Err(err) => {
                tracing::warn!(volume_id, target = %target.display(), error = %err, "unpublish failed")
            }
        }
        result
    }

    fn resolve(&self, refs: &[ConnectorRef]) -> Result<Vec<Mounted>, CsiError> {
        refs.iter()
            .map(|reference| {
                let resolved = self.inner.catalog.connector(reference).ok_or_else(|| {
                    CsiError::NotFound(format!(
                        "connector {:?} not found in namespace {:?}",
                        reference.name, reference.namespace
                    ))
                })?;
                let class_name = resolved.class_name();
                let class = self.inner.catalog.class(class_name).ok_or_else(|| {
                    CsiError::FailedPrecondition(format!(
                        "connector {reference} uses ConnectorClass {class_name:?}, which does not exist"
                    ))
                })?;
                Ok(Mounted {
                    reference: reference.clone(),
                    resolved,
                    class,
                })
            })
            .collect()
    }

    /// The kubelet's token for our audience when there is one (passed through: its lifetime is the kubelet's,
    /// not `token.expiration`), else one from the token source.
    async fn token(
        &self,
        pod: &PodInfo,
        attrs: &VolumeAttributes,
    ) -> Result<SecretString, CsiError> {
        let audience = &self.inner.config.token_audience;
        if let Some(kubelet) = pod.kubelet_token(audience) {
            if self.inner.config.check_kubelet_token_lifetime {
                check_lifetime(kubelet.token.expose(), audience, attrs.token_expiration)?;
            }
            return Ok(kubelet.token.clone());
        }
        if !pod.service_account_tokens.is_empty() {
            tracing::warn!(
                want = %audience,
                audiences = ?pod.service_account_tokens.keys().collect::<Vec<_>>(),
                "the kubelet sent ServiceAccount tokens but none for the proxy's audience; issuing one"
            );
        }
        self.inner
            .tokens
            .token(pod, &attrs.connectors, attrs.token_expiration)
            .await
    }

    async fn multi_connector_enabled(&self) -> Result<bool, CsiError> {
        match &self.inner.config.flags {
            Some(flags) => flags.multi_connector().await,
            None => Ok(self.inner.config.multi_connector),
        }
    }

    fn lock_for(&self, target: &Path) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(target.to_path_buf())
            .or_default()
            .clone()
    }

    /// Creates the target folder and, when configured and possible, mounts a tmpfs on it. Returns whether a
    /// tmpfs is mounted there.
    async fn prepare_target(&self, target: &Path) -> Result<bool, CsiError> {
        tokio::fs::create_dir_all(target)
            .await
            .map_err(|e| CsiError::io("create the target folder", target, e))?;
        let canonical = tokio::fs::canonicalize(target)
            .await
            .map_err(|e| CsiError::io("resolve", target, e))?;
        let current = mount::mounted_at(&canonical)
            .map_err(|e| CsiError::io("inspect the mount at", &canonical, e))?;
        if let Some(fs) = current {
            return Ok(fs.is_tmpfs());
        }
        if !self.inner.config.mount_tmpfs {
            return Ok(false);
        }
        // A folder with files is an earlier publish that fell back to a plain folder; keep it that way rather
        // than hide its files under a mount.
        let empty = std::fs::read_dir(&canonical)
            .map_err(|e| CsiError::io("list", &canonical, e))?
            .next()
            .is_none();
        if !empty {
            return Ok(false);
        }
        if !mount::running_as_root() {
            tracing::debug!(target = %canonical.display(), "not running as root: writing into a plain folder instead of a tmpfs");
            return Ok(false);
        }
        match mount::mount_tmpfs(&canonical) {
            Ok(()) => Ok(true),
            Err(reason) => {
                tracing::warn!(target = %canonical.display(), %reason, "cannot mount a tmpfs; writing into a plain folder");
                Ok(false)
            }
        }
    }

    async fn clean_target(&self, target: &Path) -> Result<(), CsiError> {
        let canonical = match tokio::fs::canonicalize(target).await {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(CsiError::io("resolve", target, e)),
        };
        let mounted = mount::mounted_at(&canonical)
            .map_err(|e| CsiError::io("inspect the mount at", &canonical, e))?;
        if mounted.is_some() {
            mount::unmount(&canonical).map_err(|reason| {
                CsiError::Internal(format!("cannot unmount {}: {reason}", canonical.display()))
            })?;
        }
        let removed = tokio::task::spawn_blocking(move || writer::remove_all(&canonical))
            .await
            .map_err(|e| CsiError::Internal(format!("the file remover failed: {e}")))??;
        if !removed {
            tracing::warn!(target = %target.display(), "the target folder holds files the driver did not write; left in place");
        }
        Ok(())
    }
}

/// The kubelet's token must last at least `token.expiration`: its lifetime comes from the CSIDriver's
/// `tokenRequests[].expirationSeconds`, not from the volume, so a shorter one means the CSIDriver must change.
/// (The kubelet renews the token and, with `requiresRepublish`, publishes again, so a long-running Pod keeps
/// valid files; the check is about what one copy of the token promises.)
fn check_lifetime(
    token: &str,
    audience: &str,
    wanted: std::time::Duration,
) -> Result<(), CsiError> {
    let lifetime = jwt::token_lifetime(token).map_err(|err| {
        CsiError::InvalidArgument(format!(
            "cannot read the lifetime of the kubelet's ServiceAccount token for audience {audience:?}: {err}; the kubelet sets it from `tokenRequests` of CSIDriver {CSI_DRIVER_OBJECT:?}"
        ))
    })?;
    if lifetime < wanted {
        return Err(CsiError::InvalidArgument(format!(
            "the kubelet's ServiceAccount token for audience {audience:?} lasts {}s but the volume asks for {} = {}s; raise `expirationSeconds` of that audience in `tokenRequests` of CSIDriver {CSI_DRIVER_OBJECT:?} to at least {}, or lower {} in the volume attributes",
            lifetime.as_secs(),
            crate::attributes::TOKEN_EXPIRATION,
            wanted.as_secs(),
            wanted.as_secs() + u64::from(wanted.subsec_nanos() > 0),
            crate::attributes::TOKEN_EXPIRATION,
        )));
    }
    Ok(())
}

fn target_path(raw: &str) -> Result<PathBuf, CsiError> {
    if raw.is_empty() {
        return Err(CsiError::InvalidArgument(
            "target_path is required".to_owned(),
        ));
    }
    let path = PathBuf::from(raw);
    if !path.is_absolute() {
        return Err(CsiError::InvalidArgument(format!(
            "target_path {raw:?} must be an absolute path"
        )));
    }
    Ok(path)
}

fn join(refs: &[ConnectorRef]) -> String {
    refs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
