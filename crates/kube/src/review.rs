//! [`KubeReview`]: TokenReview + SubjectAccessReview, with a short decision cache.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use connectors_identity::{Allowed, AuthError, Authenticator, Authorizer, Principal};
use connectors_model::{ConnectorRef, SecretString};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use crate::scope::Scopes;

/// The audience the CSI driver requests for the tokens it hands to workloads.
pub const PROXY_AUDIENCE: &str = "connectors-proxy";
/// The ConfigMap with the feature flags, in the components namespace.
pub const CONFIG_MAP: &str = "connectors-config";
/// The flag that makes the `connectors/proxy` subresource permission necessary.
pub const PROXY_PERMISSIONS_FLAG: &str = "enable-connector-proxy-permissions";

/// How [`KubeReview`] asks the API server.
#[derive(Clone, Debug)]
pub struct KubeReviewConfig {
    /// Audiences sent in the first TokenReview. Default: `connectors-proxy`.
    pub audiences: Vec<String>,
    /// Also accept tokens for the API server's own default audience (`kubectl create token`): when the first
    /// review fails, a second one is sent without audiences, which the API server checks against its defaults.
    /// We cannot name the default audience ourselves: it depends on the cluster's `--api-audiences`.
    pub accept_api_server_audience: bool,
    /// Where ConfigMap `connectors-config` lives. Default: `connectors-system`.
    pub components_namespace: String,
    /// How long an authentication, a decision or the flag is reused. Default: 10 s; never past the token's `exp`.
    pub ttl: Duration,
}

impl Default for KubeReviewConfig {
    fn default() -> Self {
        Self {
            audiences: vec![PROXY_AUDIENCE.to_owned()],
            accept_api_server_audience: true,
            components_namespace: "connectors-system".to_owned(),
            ttl: Duration::from_secs(10),
        }
    }
}

/// Cache hits and misses of [`KubeReview`] (authentications and decisions together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

impl CacheStats {
    /// Hits over lookups; 0 when there were none.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Authenticates with TokenReview and authorizes with SubjectAccessReview.
///
/// - The token's user needs `get` on `connectors.connectors.alauda.io/<name>` in `<ns>`; when ConfigMap
///   `connectors-config` has `enable-connector-proxy-permissions: "true"`, also `get` on the `connectors/proxy`
///   subresource. Decision: verb `get` for the subresource, not `*` as the design sketches: a role that grants `*`
///   on `connectors/proxy` also answers `get`, while one that grants only `get` would fail a review for `*`, so
///   `get` accepts both ways of writing the role.
/// - Authentications and decisions (both yes and no) are cached for `ttl` and never past the token's `exp`, read
///   from the JWT payload for that purpose only. The key of an authentication is the SHA-256 of the token.
/// - Fail closed: when the API server cannot answer and nothing is cached, [`AuthError::Unavailable`].
/// - The flag is read with the same short cache; when the ConfigMap cannot be read and no earlier value is known,
///   the stricter answer (flag on) is used.
pub struct KubeReview {
    client: kube::Client,
    config: KubeReviewConfig,
    tokens: moka::future::Cache<[u8; 32], (Principal, Instant)>,
    decisions: moka::future::Cache<String, (bool, &'static str, Instant)>,
    flag: ConfigFlag,
    scopes: Scopes,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl KubeReview {
    pub fn new(client: kube::Client, config: KubeReviewConfig) -> Self {
        Self {
            tokens: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.ttl)
                .build(),
            decisions: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.ttl)
                .build(),
            flag: ConfigFlag::new(
                client.clone(),
                &config.components_namespace,
                PROXY_PERMISSIONS_FLAG,
                config.ttl,
            ),
            scopes: Scopes::new(client.clone(), config.ttl),
            client,
            config,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn hit(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Until when a result may be reused: `ttl` from now, but not past `expires_at`.
    fn deadline(&self, expires_at: Option<SystemTime>) -> Instant {
        let now = Instant::now();
        let mut until = now + self.config.ttl;
        if let Some(exp) = expires_at {
            let left = exp
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            until = until.min(now + left);
        }
        until
    }

    async fn token_review(
        &self,
        token: &SecretString,
        audiences: Option<Vec<String>>,
    ) -> Result<TokenReviewStatus, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.expose().to_owned()),
                audiences,
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| unavailable("TokenReview", &e))?;
        Ok(answer.status.unwrap_or_default())
    }
}

/// Who a SubjectAccessReview asks about.
pub(crate) struct ReviewSubject<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub uid: Option<&'a str>,
    pub extra: &'a BTreeMap<String, Vec<String>>,
}

/// What a Connector permission decision needed: `get` on the Connector, or also `get` on `connectors/proxy`.
pub(crate) const NEEDS_GET: &str = "get";
pub(crate) const NEEDS_PROXY: &str = "get on connectors/proxy";

/// The shared decision of the proxy and the CSI driver: `get` on `connectors.connectors.alauda.io/<name>` in the
/// connector's namespace and, when `proxy_flag` (`enable-connector-proxy-permissions`) is on, `get` on the
/// `connectors/proxy` subresource too. Returns whether it is allowed and which of [`NEEDS_GET`] / [`NEEDS_PROXY`]
/// was checked last (the permission that was missing when it is not).
///
/// A connector scope ([`crate::scope`]: `kube-public`, or an inner namespace of the requester's project) admits
/// without RBAC. When the namespace labels cannot be read, the scope admits nothing and RBAC decides (fail closed).
pub(crate) async fn decide(
    client: &kube::Client,
    subject: &ReviewSubject<'_>,
    connector: &ConnectorRef,
    proxy_flag: &ConfigFlag,
    scopes: &Scopes,
) -> Result<(bool, &'static str), kube::Error> {
    match scopes.admits(subject.user, &connector.namespace).await {
        Ok(true) => return Ok((true, NEEDS_GET)),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, namespace = %connector.namespace, "cannot read namespace labels for the connector scope; RBAC decides")
        }
    }
    let mut allowed = access_review(client, subject, connector, None).await?;
    let mut needed = NEEDS_GET;
    if allowed && proxy_flag.get_or_strict().await {
        needed = NEEDS_PROXY;
        allowed = access_review(client, subject, connector, Some("proxy")).await?;
    }
    Ok((allowed, needed))
}

async fn access_review(
    client: &kube::Client,
    subject: &ReviewSubject<'_>,
    connector: &ConnectorRef,
    subresource: Option<&str>,
) -> Result<bool, kube::Error> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(subject.user.to_owned()),
            groups: Some(subject.groups.to_vec()),
            uid: subject.uid.map(str::to_owned),
            extra: Some(subject.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(connector.namespace.clone()),
                verb: Some("get".into()),
                group: Some(connectors_model::API_GROUP.into()),
                resource: Some(connectors_model::CONNECTOR_KIND.1.into()),
                subresource: subresource.map(str::to_owned),
                name: Some(connector.name.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// One `"true"`/`"false"` flag of ConfigMap `connectors-config`, read at request time with a short cache.
///
/// A missing ConfigMap or key reads as `false` (the flags are off as installed).
pub(crate) struct ConfigFlag {
    client: kube::Client,
    namespace: String,
    key: &'static str,
    ttl: Duration,
    last: Mutex<Option<(bool, Instant)>>,
}

impl ConfigFlag {
    pub(crate) fn new(
        client: kube::Client,
        namespace: &str,
        key: &'static str,
        ttl: Duration,
    ) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            key,
            ttl,
            last: Mutex::new(None),
        }
    }

    pub(crate) fn key(&self) -> &'static str {
        self.key
    }

    /// The flag; when the ConfigMap cannot be read, the error and the last value read (if any).
    pub(crate) async fn get(&self) -> Result<bool, (kube::Error, Option<bool>)> {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((value, until)) = last
            && Instant::now() < until
        {
            return Ok(value);
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let value = api
            .get_opt(CONFIG_MAP)
            .await
            .map_err(|e| (e, last.map(|(v, _)| v)))?
            .and_then(|cm| cm.data)
            .and_then(|d| d.get(self.key).cloned())
            .is_some_and(|v| v.trim() == "true");
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((value, Instant::now() + self.ttl));
        Ok(value)
    }

    /// The flag, for a flag whose `true` is the stricter answer: when the ConfigMap cannot be read, the last value
    /// read, else `true`.
    pub(crate) async fn get_or_strict(&self) -> bool {
        match self.get().await {
            Ok(value) => value,
            Err((e, last)) => {
                let value = last.unwrap_or(true);
                tracing::warn!(error = %e, namespace = %self.namespace, flag = self.key, assumed = value, "cannot read ConfigMap {CONFIG_MAP}");
                value
            }
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }
}

fn unavailable(what: &str, e: &kube::Error) -> AuthError {
    AuthError::Unavailable(format!(
        "the Kubernetes API server did not answer the {what} ({e}); check that it is reachable and that the proxy's ServiceAccount may create {what}s"
    ))
}

/// `exp` of a JWT, read without checking anything: only to bound how long results are cached.
fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(exp))
}

fn token_key(token: &SecretString) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.expose().as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

#[async_trait]
impl Authenticator for KubeReview {
    async fn authenticate(&self, token: &SecretString) -> Result<Principal, AuthError> {
        let key = token_key(token);
        if let Some((principal, until)) = self.tokens.get(&key).await {
            if Instant::now() < until {
                self.hit(true);
                return Ok(principal);
            }
            self.tokens.invalidate(&key).await;
        }
        self.hit(false);
        let mut status = self
            .token_review(token, Some(self.config.audiences.clone()))
            .await?;
        if status.authenticated != Some(true) && self.config.accept_api_server_audience {
            status = self.token_review(token, None).await?;
        }
        let user = match (status.authenticated, status.user) {
            (Some(true), Some(user)) if user.username.as_deref().is_some_and(|u| !u.is_empty()) => {
                user
            }
            _ => {
                let reason = status.error.unwrap_or_else(|| "not authenticated".into());
                return Err(AuthError::Malformed(format!(
                    "the Kubernetes API server does not accept the token ({reason}); use a ServiceAccount token for audience {}",
                    self.config.audiences.join(" or ")
                )));
            }
        };
        let expires_at = jwt_expiry(token.expose());
        let mut principal =
            Principal::new(user.username.unwrap_or_default(), Allowed::Any, expires_at);
        principal.groups = user.groups.unwrap_or_default();
        principal.uid = user.uid.filter(|u| !u.is_empty());
        principal.extra = user.extra.unwrap_or_default().into_iter().collect();
        let until = self.deadline(expires_at);
        if Instant::now() < until {
            self.tokens.insert(key, (principal.clone(), until)).await;
        }
        Ok(principal)
    }
}

#[async_trait]
impl Authorizer for KubeReview {
    async fn authorize(
        &self,
        principal: &Principal,
        connector: &ConnectorRef,
    ) -> Result<(), AuthError> {
        let key = format!(
            "{}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{connector}",
            principal.subject, principal.groups, principal.uid, principal.extra
        );
        let cached = match self.decisions.get(&key).await {
            Some((allowed, needed, until)) if Instant::now() < until => Some((allowed, needed)),
            Some(_) => {
                self.decisions.invalidate(&key).await;
                None
            }
            None => None,
        };
        self.hit(cached.is_some());
        let (allowed, needed) = match cached {
            Some(hit) => hit,
            None => {
                let subject = ReviewSubject {
                    user: &principal.subject,
                    groups: &principal.groups,
                    uid: principal.uid.as_deref(),
                    extra: &principal.extra,
                };
                let (allowed, needed) =
                    decide(&self.client, &subject, connector, &self.flag, &self.scopes)
                        .await
                        .map_err(|e| unavailable("SubjectAccessReview", &e))?;
                let until = self.deadline(principal.expires_at);
                if Instant::now() < until {
                    self.decisions.insert(key, (allowed, needed, until)).await;
                }
                (allowed, needed)
            }
        };
        if allowed {
            return Ok(());
        }
        let permission = if needed == NEEDS_GET {
            "get on connectors.connectors.alauda.io".to_owned()
        } else {
            format!("{needed} (the {PROXY_PERMISSIONS_FLAG} flag is on)")
        };
        let scope = match self.scopes.scope_of(&connector.namespace).await {
            Ok(scope) => format!("; {}", scope.describe(&connector.namespace)),
            Err(_) => String::new(),
        };
        Err(AuthError::NotAllowed {
            // The identity crate's message names the connector; the permission to grant goes with the subject.
            subject: format!(
                "{} (needs {permission} {:?} in namespace {:?}{scope})",
                principal.subject, connector.name, connector.namespace
            ),
            connector: connector.clone(),
        })
    }
}
