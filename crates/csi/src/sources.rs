//! Where the driver gets proxy tokens and authorization decisions. Traits, so that Kubernetes backends
//! (TokenRequest, SubjectAccessReview) can be added without touching the driver.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connectors_identity::{Allowed, IdentityError, LocalTokens};
use connectors_model::{ConnectorRef, SecretString};

use crate::{CsiError, PodInfo};

/// Issues the proxy token written into the volume (`context.token`, and inside the rendered files).
///
/// The driver first looks for a kubelet-provided ServiceAccount token (`csi.storage.k8s.io/serviceAccount.tokens`)
/// and passes that through; only when there is none does it ask the `TokenSource`.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A token for `pod` that may use `connectors` and lasts `ttl`.
    async fn token(
        &self,
        pod: &PodInfo,
        connectors: &[ConnectorRef],
        ttl: Duration,
    ) -> Result<SecretString, CsiError>;
}

/// Decides whether a Pod may mount a connector.
#[async_trait]
pub trait Authorize: Send + Sync {
    /// `Ok(())` to allow; [`CsiError::PermissionDenied`] to refuse; [`CsiError::Unavailable`] when the backend
    /// cannot answer (the kubelet retries).
    async fn allowed(&self, pod: &PodInfo, connector: &ConnectorRef) -> Result<(), CsiError>;
}

/// The embedded (single-machine) authorizer: every Pod may mount every connector in the catalog.
///
/// On one machine the person who runs the driver also owns the catalog and the signing key, so there is nobody
/// to keep out; the token written into the volume is still limited to the connectors the volume names. A
/// Kubernetes deployment must use an authorizer that asks the API server (SubjectAccessReview) instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

#[async_trait]
impl Authorize for AllowAll {
    async fn allowed(&self, _pod: &PodInfo, _connector: &ConnectorRef) -> Result<(), CsiError> {
        Ok(())
    }
}

/// The embedded token source: tokens signed by [`LocalTokens`], limited to the volume's connectors.
///
/// The subject is `system:serviceaccount:<ns>:<sa>` when the kubelet named the ServiceAccount, else the Pod
/// (`<ns>/<pod>`), else `csi-volume` (a caller that sent no Pod information).
#[derive(Debug, Clone)]
pub struct LocalTokenSource {
    tokens: Arc<LocalTokens>,
}

impl LocalTokenSource {
    pub fn new(tokens: Arc<LocalTokens>) -> Self {
        Self { tokens }
    }
}

#[async_trait]
impl TokenSource for LocalTokenSource {
    async fn token(
        &self,
        pod: &PodInfo,
        connectors: &[ConnectorRef],
        ttl: Duration,
    ) -> Result<SecretString, CsiError> {
        let subject = pod.subject().unwrap_or_else(|| "csi-volume".to_owned());
        self.tokens
            .issue(&subject, &Allowed::Only(connectors.to_vec()), ttl)
            .map_err(|err| match err {
                IdentityError::InvalidTtl { .. } => CsiError::InvalidArgument(format!(
                    "volume attribute {:?}: {err}",
                    crate::attributes::TOKEN_EXPIRATION
                )),
                IdentityError::InvalidSubject(_) => CsiError::InvalidArgument(format!(
                    "cannot issue a proxy token for {subject:?}: {err}"
                )),
                other => CsiError::Internal(format!("cannot issue a proxy token: {other}")),
            })
    }
}

/// Feature flags read at publish time (in Kubernetes: ConfigMap `connectors-config`), so that a change applies
/// without restarting the driver. Set [`crate::DriverConfig::flags`] to use one; without it the driver uses the
/// static [`crate::DriverConfig::multi_connector`].
#[async_trait]
pub trait FeatureFlags: Send + Sync {
    /// `enable-multi-connector`: may one volume name more than one connector? Asked only for such volumes.
    /// [`CsiError::Unavailable`] when the answer cannot be read (the kubelet retries).
    async fn multi_connector(&self) -> Result<bool, CsiError>;
}
