//! Connector scopes (the published "connector scope permissions"), decided from namespace labels at request time.
//!
//! - A Connector in namespace `kube-public` is usable by the ServiceAccounts of every namespace.
//! - A namespace labelled `cpaas.io/inner-namespace: <group>` holds Connectors usable by its own ServiceAccounts
//!   and by those of every namespace labelled `cpaas.io/project: <group>`.
//!
//! Everything else needs RBAC (`get` on the Connector). The proxy and the CSI driver both ask [`Scopes`] through
//! the shared decision in `review.rs`, so they agree.
//!
//! Decision: labels read at request time (namespaces `get`, cached for the review TTL), not RoleBindings that a
//! controller would write and keep in step with the labels. The labels are the published interface; reading them
//! where the decision is made means a label change counts within one TTL, with nothing to reconcile, no
//! RoleBinding to go stale or be edited by hand, and no permission to create RoleBindings (an escalation path)
//! for any component. The cost is one cached `get namespaces` per namespace and TTL.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;

/// Connectors here are usable from every namespace.
pub const PUBLIC_NAMESPACE: &str = "kube-public";
/// `cpaas.io/inner-namespace: <group>` on a namespace: its Connectors serve project `<group>`.
pub const INNER_NAMESPACE_LABEL: &str = "cpaas.io/inner-namespace";
/// `cpaas.io/project: <group>` on a namespace: it belongs to project `<group>`.
pub const PROJECT_LABEL: &str = "cpaas.io/project";

/// The scope a Connector's namespace gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `kube-public`.
    Public,
    /// An inner namespace of project `group`.
    Project { group: String },
    /// Neither: RBAC only.
    None,
}

impl Scope {
    /// Whether a ServiceAccount of `requester` (its namespace) may use a Connector of `connector_ns` by scope.
    fn admits(
        &self,
        connector_ns: &str,
        requester: &str,
        requester_labels: Option<&Labels>,
    ) -> bool {
        match self {
            Scope::Public => true,
            Scope::Project { group } => {
                requester == connector_ns
                    || requester_labels
                        .and_then(|l| l.get(PROJECT_LABEL))
                        .is_some_and(|g| g == group)
            }
            Scope::None => false,
        }
    }

    /// For refusals: what the scope of a Connector in `connector_ns` is.
    pub(crate) fn describe(&self, connector_ns: &str) -> String {
        match self {
            Scope::Public => {
                format!("namespace {connector_ns:?} is public: usable from every namespace")
            }
            Scope::Project { group } => format!(
                "connector scope: namespace {connector_ns:?} is the inner namespace of project {group:?}, so its connectors are usable from {connector_ns:?} and from namespaces labelled {PROJECT_LABEL}={group}"
            ),
            Scope::None => format!(
                "connector scope: none (namespace {connector_ns:?} is neither {PUBLIC_NAMESPACE} nor labelled {INNER_NAMESPACE_LABEL}), so RBAC decides"
            ),
        }
    }
}

type Labels = BTreeMap<String, String>;

/// Namespace labels with a short cache.
pub(crate) struct Scopes {
    client: kube::Client,
    labels: moka::future::Cache<String, Option<Labels>>,
}

impl Scopes {
    pub(crate) fn new(client: kube::Client, ttl: Duration) -> Self {
        Self {
            client,
            labels: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
        }
    }

    /// The scope of the Connectors in `namespace`.
    pub(crate) async fn scope_of(&self, namespace: &str) -> Result<Scope, kube::Error> {
        if namespace == PUBLIC_NAMESPACE {
            return Ok(Scope::Public);
        }
        Ok(self
            .labels(namespace)
            .await?
            .and_then(|l| l.get(INNER_NAMESPACE_LABEL).cloned())
            .filter(|g| !g.is_empty())
            .map_or(Scope::None, |group| Scope::Project { group }))
    }

    /// Whether user `subject` (a ServiceAccount, `system:serviceaccount:<ns>:<name>`) may use a Connector of
    /// `connector_ns` by scope. Other users have no namespace, so no scope admits them.
    pub(crate) async fn admits(
        &self,
        subject: &str,
        connector_ns: &str,
    ) -> Result<bool, kube::Error> {
        let Some(requester) = service_account_namespace(subject) else {
            return Ok(false);
        };
        let scope = self.scope_of(connector_ns).await?;
        let requester_labels = match &scope {
            Scope::Project { .. } if requester != connector_ns => self.labels(requester).await?,
            _ => None,
        };
        Ok(scope.admits(connector_ns, requester, requester_labels.as_ref()))
    }

    async fn labels(&self, namespace: &str) -> Result<Option<Labels>, kube::Error> {
        if let Some(hit) = self.labels.get(namespace).await {
            return Ok(hit);
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let labels = api
            .get_opt(namespace)
            .await?
            .map(|n| n.metadata.labels.unwrap_or_default());
        self.labels
            .insert(namespace.to_owned(), labels.clone())
            .await;
        Ok(labels)
    }
}

/// `<ns>` of `system:serviceaccount:<ns>:<name>`.
pub(crate) fn service_account_namespace(user: &str) -> Option<&str> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn service_account_namespaces() {
        assert_eq!(
            service_account_namespace("system:serviceaccount:team-a:builder"),
            Some("team-a")
        );
        for user in [
            "alice",
            "system:serviceaccount:team-a",
            "system:serviceaccount::builder",
            "system:serviceaccount:team-a:",
            "system:serviceaccount:a:b:c",
            "system:serviceaccounts:team-a:builder",
        ] {
            assert_eq!(service_account_namespace(user), None, "{user}");
        }
    }

    #[test]
    fn which_requesters_a_scope_admits() {
        let project = Scope::Project { group: "g1".into() };
        let member = labels(&[(PROJECT_LABEL, "g1")]);
        let stranger = labels(&[(PROJECT_LABEL, "g2")]);
        let inner_elsewhere = labels(&[(INNER_NAMESPACE_LABEL, "g1")]);
        // Table: scope, connector namespace, requester, its labels → admitted?
        let cases: [(&Scope, &str, Option<&Labels>, bool); 8] = [
            (&Scope::Public, "team-b", None, true),
            (&project, "inner", None, true), // the inner namespace itself
            (&project, "team-b", Some(&member), true),
            (&project, "team-b", Some(&stranger), false),
            (&project, "team-b", None, false),
            // Being another inner namespace of the same group is not membership.
            (&project, "team-b", Some(&inner_elsewhere), false),
            (&Scope::None, "team-b", Some(&member), false),
            (&Scope::None, "inner", None, false),
        ];
        for (scope, requester, requester_labels, want) in cases {
            assert_eq!(
                scope.admits("inner", requester, requester_labels),
                want,
                "{scope:?} from {requester} with {requester_labels:?}"
            );
        }
    }

    #[test]
    fn refusals_name_the_scope() {
        let text = Scope::Project { group: "g1".into() }.describe("inner");
        assert!(
            text.contains("inner namespace of project \"g1\"")
                && text.contains("cpaas.io/project=g1"),
            "{text}"
        );
        assert!(Scope::None.describe("team-a").contains("RBAC decides"));
    }
}
