//! Kubernetes backends of the CSI driver (`connectors csi --kube`): who may mount a connector
//! ([`SarAuthorize`]), where the proxy token comes from ([`KubeletTokenOnly`]) and the feature flags read at publish
//! time ([`KubeFlags`]).

use std::time::Duration;

use async_trait::async_trait;
use connectors_csi::{
    Authorize, CSI_DRIVER_OBJECT, CsiError, FeatureFlags, MULTI_CONNECTOR_FLAG, PodInfo,
    TokenSource,
};
use connectors_model::{ConnectorRef, SecretString};

use crate::review::{
    CONFIG_MAP, ConfigFlag, NEEDS_GET, PROXY_AUDIENCE, PROXY_PERMISSIONS_FLAG, ReviewSubject,
    decide,
};
use crate::scope::Scopes;

/// Where the CSI driver's Kubernetes backends read their flags.
#[derive(Clone, Debug)]
pub struct KubeCsiConfig {
    /// Where ConfigMap `connectors-config` lives. Default: `connectors-system`.
    pub components_namespace: String,
    /// How long a flag value read from the ConfigMap is reused. Default: 10 s.
    pub flag_ttl: Duration,
}

impl Default for KubeCsiConfig {
    fn default() -> Self {
        Self {
            components_namespace: "connectors-system".to_owned(),
            flag_ttl: Duration::from_secs(10),
        }
    }
}

/// Authorizes the Pod's ServiceAccount for each connector it mounts, with SubjectAccessReviews, before anything
/// is written.
///
/// The same rules as the proxy's [`crate::KubeReview`]: `get` on `connectors.connectors.alauda.io/<name>` in the
/// connector's namespace, and `get` on `connectors/proxy` as well when `enable-connector-proxy-permissions` is
/// `"true"`. The user is `system:serviceaccount:<ns>:<sa>` with the groups the API server gives every
/// ServiceAccount token (`system:serviceaccounts`, `system:serviceaccounts:<ns>`, `system:authenticated`), so that
/// bindings to those groups match as they would for the Pod's own requests.
///
/// Decisions are not cached: a publish (and each republish) asks again, so revoking a RoleBinding takes effect at
/// the next republish. When the API server cannot answer, the mount fails with `Unavailable` (fail closed; the
/// kubelet retries).
pub struct SarAuthorize {
    client: kube::Client,
    proxy_flag: ConfigFlag,
    scopes: Scopes,
}

impl SarAuthorize {
    pub fn new(client: kube::Client, config: &KubeCsiConfig) -> Self {
        Self {
            proxy_flag: ConfigFlag::new(
                client.clone(),
                &config.components_namespace,
                PROXY_PERMISSIONS_FLAG,
                config.flag_ttl,
            ),
            scopes: Scopes::new(client.clone(), config.flag_ttl),
            client,
        }
    }
}

#[async_trait]
impl Authorize for SarAuthorize {
    async fn allowed(&self, pod: &PodInfo, connector: &ConnectorRef) -> Result<(), CsiError> {
        let (Some(namespace), Some(service_account)) = (&pod.namespace, &pod.service_account)
        else {
            return Err(CsiError::FailedPrecondition(format!(
                "the kubelet did not say which Pod and ServiceAccount this volume is for, so access to connector {connector} cannot be checked; set `podInfoOnMount: true` on CSIDriver {CSI_DRIVER_OBJECT:?}"
            )));
        };
        let user = format!("system:serviceaccount:{namespace}:{service_account}");
        let groups = vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_owned(),
        ];
        let extra = Default::default();
        let subject = ReviewSubject {
            user: &user,
            groups: &groups,
            uid: None,
            extra: &extra,
        };
        let (allowed, needed) = decide(&self.client, &subject, connector, &self.proxy_flag, &self.scopes)
            .await
            .map_err(|e| {
                CsiError::Unavailable(format!(
                    "cannot check whether ServiceAccount {namespace}/{service_account} may use connector {connector}: the Kubernetes API server did not answer the SubjectAccessReview ({e}); check that it is reachable and that the driver's ServiceAccount may create subjectaccessreviews"
                ))
            })?;
        if allowed {
            return Ok(());
        }
        let mut message =
            denied_message(namespace, service_account, connector, needed != NEEDS_GET);
        if let Ok(scope) = self.scopes.scope_of(&connector.namespace).await {
            message.push_str("; ");
            message.push_str(&scope.describe(&connector.namespace));
        }
        Err(CsiError::PermissionDenied(message))
    }
}

/// What to grant, with the kubectl commands that grant it.
fn denied_message(
    namespace: &str,
    service_account: &str,
    connector: &ConnectorRef,
    proxy: bool,
) -> String {
    let (ns, name) = (&connector.namespace, &connector.name);
    let (permission, resource) = if proxy {
        (
            format!(
                "`get` on connectors/proxy of Connector {name:?} in namespace {ns:?} (the {PROXY_PERMISSIONS_FLAG} flag is on)"
            ),
            "connectors.connectors.alauda.io,connectors.connectors.alauda.io/proxy",
        )
    } else {
        (
            format!("`get` on Connector {name:?} in namespace {ns:?}"),
            "connectors.connectors.alauda.io",
        )
    };
    format!(
        "ServiceAccount {namespace}/{service_account} may not use connector {connector}: it needs {permission}; grant it with `kubectl -n {ns} create role use-connector-{name} --verb=get --resource={resource} --resource-name={name}` and `kubectl -n {ns} create rolebinding use-connector-{name} --role=use-connector-{name} --serviceaccount={namespace}:{service_account}`"
    )
}

/// The proxy token in a cluster is the kubelet-issued ServiceAccount token (CSIDriver `tokenRequests`), which the
/// driver takes from the volume context before it asks a token source. This source is asked only when that token
/// is missing, and explains what to change.
#[derive(Clone, Debug)]
pub struct KubeletTokenOnly {
    audience: String,
}

impl KubeletTokenOnly {
    /// `audience`: the driver's token audience (`DriverConfig::token_audience`, default `connectors-proxy`).
    pub fn new(audience: impl Into<String>) -> Self {
        Self {
            audience: audience.into(),
        }
    }
}

impl Default for KubeletTokenOnly {
    fn default() -> Self {
        Self::new(PROXY_AUDIENCE)
    }
}

#[async_trait]
impl TokenSource for KubeletTokenOnly {
    async fn token(
        &self,
        pod: &PodInfo,
        _connectors: &[ConnectorRef],
        _ttl: Duration,
    ) -> Result<SecretString, CsiError> {
        let audience = &self.audience;
        let got = if pod.service_account_tokens.is_empty() {
            "no ServiceAccount token".to_owned()
        } else {
            // Audiences only, never the tokens.
            let audiences: Vec<&str> = pod
                .service_account_tokens
                .keys()
                .map(String::as_str)
                .collect();
            format!("tokens only for audiences {audiences:?}")
        };
        Err(CsiError::FailedPrecondition(format!(
            "the kubelet passed {got} for the proxy audience {audience:?}; in a cluster the proxy token is the Pod's ServiceAccount token from the kubelet: add `- audience: {audience}` (with `expirationSeconds`) to `spec.tokenRequests` of CSIDriver {CSI_DRIVER_OBJECT:?}"
        )))
    }
}

/// `enable-multi-connector` from ConfigMap `connectors-config`, read when a volume names several connectors and
/// reused for [`KubeCsiConfig::flag_ttl`]. A missing ConfigMap or key is `false` (as installed). When the ConfigMap
/// cannot be read, the last value read applies; with none, the mount fails with `Unavailable` (the kubelet
/// retries).
pub struct KubeFlags {
    multi_connector: ConfigFlag,
}

impl KubeFlags {
    pub fn new(client: kube::Client, config: &KubeCsiConfig) -> Self {
        Self {
            multi_connector: ConfigFlag::new(
                client,
                &config.components_namespace,
                MULTI_CONNECTOR_FLAG,
                config.flag_ttl,
            ),
        }
    }
}

#[async_trait]
impl FeatureFlags for KubeFlags {
    async fn multi_connector(&self) -> Result<bool, CsiError> {
        match self.multi_connector.get().await {
            Ok(value) => Ok(value),
            Err((e, Some(last))) => {
                tracing::warn!(error = %e, flag = self.multi_connector.key(), assumed = last, "cannot read ConfigMap {CONFIG_MAP}");
                Ok(last)
            }
            Err((e, None)) => Err(CsiError::Unavailable(format!(
                "cannot read flag {MULTI_CONNECTOR_FLAG} from ConfigMap {CONFIG_MAP} in namespace {:?} ({e}); check that the API server is reachable and that the driver's ServiceAccount may get that ConfigMap",
                self.multi_connector.namespace()
            ))),
        }
    }
}
