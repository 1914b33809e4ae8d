//! What the kubelet tells the driver about the Pod (`podInfoOnMount` and `tokenRequests` of the CSIDriver object).

use std::collections::{BTreeMap, HashMap};

use connectors_model::SecretString;
use serde::Deserialize;

use crate::CsiError;

/// `csi.storage.k8s.io/pod.name`.
pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
/// `csi.storage.k8s.io/pod.namespace`.
pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
/// `csi.storage.k8s.io/pod.uid`.
pub const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
/// `csi.storage.k8s.io/serviceAccount.name`.
pub const SERVICE_ACCOUNT_NAME: &str = "csi.storage.k8s.io/serviceAccount.name";
/// `csi.storage.k8s.io/serviceAccount.tokens`: JSON `{"<audience>": {"token": "…", "expirationTimestamp": "…"}}`.
pub const SERVICE_ACCOUNT_TOKENS: &str = "csi.storage.k8s.io/serviceAccount.tokens";
/// `csi.storage.k8s.io/ephemeral`: `"true"` for an inline (ephemeral) volume.
pub const EPHEMERAL: &str = "csi.storage.k8s.io/ephemeral";

/// The Pod a volume is published for. Every field is optional: outside Kubernetes (embedded mode) a caller may
/// send none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    pub service_account: Option<String>,
    /// Tokens the kubelet requested for the Pod's ServiceAccount, by audience.
    pub service_account_tokens: BTreeMap<String, KubeletToken>,
    pub ephemeral: Option<bool>,
}

/// One ServiceAccount token the kubelet passed in `serviceAccount.tokens`. `Debug` never shows the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletToken {
    pub token: SecretString,
    /// As the kubelet wrote it (RFC 3339); informational.
    pub expiration_timestamp: Option<String>,
}

#[derive(Deserialize)]
struct RawToken {
    token: String,
    #[serde(default, rename = "expirationTimestamp")]
    expiration_timestamp: Option<String>,
}

impl PodInfo {
    /// Reads the `csi.storage.k8s.io/*` keys of a NodePublishVolume request: the pod's identity from the volume
    /// context, its ServiceAccount tokens from the request's secrets when the kubelet put them there (CSIDriver
    /// `serviceAccountTokenInSecrets: true`, Kubernetes 1.35+), else from the volume context.
    pub fn from_request(
        context: &HashMap<String, String>,
        secrets: &HashMap<String, String>,
    ) -> Result<Self, CsiError> {
        let mut pod = Self::from_volume_context(context)?;
        if let Some(raw) = secrets
            .get(SERVICE_ACCOUNT_TOKENS)
            .filter(|raw| !raw.trim().is_empty())
        {
            pod.service_account_tokens = parse_tokens(raw)?;
        }
        Ok(pod)
    }

    /// Reads the `csi.storage.k8s.io/*` keys of a volume context.
    pub fn from_volume_context(context: &HashMap<String, String>) -> Result<Self, CsiError> {
        let get = |key: &str| {
            context
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let ephemeral = match get(EPHEMERAL).as_deref() {
            None => None,
            Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
            Some(v) => {
                return Err(CsiError::InvalidArgument(format!(
                    "volume context {EPHEMERAL:?} is {v:?}; expected \"true\" or \"false\""
                )));
            }
        };
        let service_account_tokens = match context.get(SERVICE_ACCOUNT_TOKENS) {
            Some(raw) if !raw.trim().is_empty() => parse_tokens(raw)?,
            _ => BTreeMap::new(),
        };
        Ok(Self {
            name: get(POD_NAME),
            namespace: get(POD_NAMESPACE),
            uid: get(POD_UID),
            service_account: get(SERVICE_ACCOUNT_NAME),
            service_account_tokens,
            ephemeral,
        })
    }

    /// Who a locally issued token is for: `system:serviceaccount:<ns>:<sa>` when the kubelet named the
    /// ServiceAccount, else the Pod (`<ns>/<pod>` or `<pod>`), else `None`.
    pub fn subject(&self) -> Option<String> {
        match (&self.namespace, &self.service_account, &self.name) {
            (Some(ns), Some(sa), _) => Some(format!("system:serviceaccount:{ns}:{sa}")),
            (Some(ns), None, Some(pod)) => Some(format!("{ns}/{pod}")),
            (None, _, Some(pod)) => Some(pod.clone()),
            _ => None,
        }
    }

    /// The kubelet token to pass through as the proxy token: the one for `audience`, or the only one there is.
    pub fn kubelet_token(&self, audience: &str) -> Option<&KubeletToken> {
        self.service_account_tokens.get(audience).or_else(|| {
            let mut all = self.service_account_tokens.values();
            match (all.next(), all.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        })
    }
}

/// Parses `serviceAccount.tokens`. The error never quotes the input: it holds tokens.
fn parse_tokens(raw: &str) -> Result<BTreeMap<String, KubeletToken>, CsiError> {
    let parsed: BTreeMap<String, RawToken> = serde_json::from_str(raw).map_err(|err| {
        CsiError::InvalidArgument(format!(
            "volume context {SERVICE_ACCOUNT_TOKENS:?} is not a JSON object of {{\"<audience>\": {{\"token\": …, \"expirationTimestamp\": …}}}} (error at line {}, column {}); it is set by the kubelet, check the CSIDriver's tokenRequests",
            err.line(),
            err.column()
        ))
    })?;
    Ok(parsed
        .into_iter()
        .filter(|(_, t)| !t.token.is_empty())
        .map(|(audience, t)| {
            (
                audience,
                KubeletToken {
                    token: SecretString::from(t.token),
                    expiration_timestamp: t.expiration_timestamp,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_pod_info_and_subject() {
        let pod = PodInfo::from_volume_context(&context(&[
            (POD_NAME, "web-1"),
            (POD_NAMESPACE, "team-a"),
            (SERVICE_ACCOUNT_NAME, "builder"),
            (EPHEMERAL, "true"),
        ]))
        .unwrap();
        assert_eq!(pod.name.as_deref(), Some("web-1"));
        assert_eq!(pod.ephemeral, Some(true));
        assert_eq!(
            pod.subject().as_deref(),
            Some("system:serviceaccount:team-a:builder")
        );

        let pod = PodInfo::from_volume_context(&context(&[
            (POD_NAME, "web-1"),
            (POD_NAMESPACE, "team-a"),
        ]))
        .unwrap();
        assert_eq!(pod.subject().as_deref(), Some("team-a/web-1"));
        assert_eq!(
            PodInfo::from_volume_context(&context(&[]))
                .unwrap()
                .subject(),
            None
        );
        assert!(PodInfo::from_volume_context(&context(&[(EPHEMERAL, "maybe")])).is_err());
    }

    #[test]
    fn kubelet_tokens_prefer_the_audience_and_never_leak() {
        let raw = r#"{"connectors-proxy":{"token":"canary-a","expirationTimestamp":"2030-01-01T00:00:00Z"},"other":{"token":"canary-b"}}"#;
        let pod = PodInfo::from_volume_context(&context(&[(SERVICE_ACCOUNT_TOKENS, raw)])).unwrap();
        assert_eq!(
            pod.kubelet_token("connectors-proxy")
                .unwrap()
                .token
                .expose(),
            "canary-a"
        );
        // Two tokens, neither for the audience: no guess.
        assert!(pod.kubelet_token("nope").is_none());
        assert!(!format!("{pod:?}").contains("canary"));

        let one = r#"{"api":{"token":"canary-c"}}"#;
        let pod = PodInfo::from_volume_context(&context(&[(SERVICE_ACCOUNT_TOKENS, one)])).unwrap();
        assert_eq!(
            pod.kubelet_token("connectors-proxy")
                .unwrap()
                .token
                .expose(),
            "canary-c"
        );

        let err = PodInfo::from_volume_context(&context(&[(
            SERVICE_ACCOUNT_TOKENS,
            r#"{"a":{"token":5,"canary-d":1}}"#,
        )]))
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(!err.to_string().contains("canary"), "{err}");
    }

    #[test]
    fn tokens_from_the_request_secrets_win_over_the_volume_context() {
        let in_context = r#"{"connectors-proxy":{"token":"from-context"}}"#;
        let in_secrets = r#"{"connectors-proxy":{"token":"from-secrets"}}"#;
        let ctx = context(&[(SERVICE_ACCOUNT_TOKENS, in_context)]);
        let secrets = context(&[(SERVICE_ACCOUNT_TOKENS, in_secrets)]);
        let pod = PodInfo::from_request(&ctx, &secrets).unwrap();
        assert_eq!(
            pod.kubelet_token("connectors-proxy")
                .unwrap()
                .token
                .expose(),
            "from-secrets"
        );
        // Only in the secrets (serviceAccountTokenInSecrets: true): the context has none.
        let pod = PodInfo::from_request(&context(&[]), &secrets).unwrap();
        assert_eq!(
            pod.kubelet_token("connectors-proxy")
                .unwrap()
                .token
                .expose(),
            "from-secrets"
        );
        // No secrets: the volume context, as before.
        let pod = PodInfo::from_request(&ctx, &context(&[])).unwrap();
        assert_eq!(
            pod.kubelet_token("connectors-proxy")
                .unwrap()
                .token
                .expose(),
            "from-context"
        );
        // Garbage in the secrets is refused without quoting it.
        let err = PodInfo::from_request(&ctx, &context(&[(SERVICE_ACCOUNT_TOKENS, "secret-ish{")]))
            .unwrap_err();
        assert!(!err.to_string().contains("secret-ish"), "{err}");
    }
}
