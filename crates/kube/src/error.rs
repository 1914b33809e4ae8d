//! [`KubeError`]: why the catalog or the proxy CA cannot be read from the API server.
//!
//! Messages name what to change (the RBAC verb and resource, the namespace, the Deployment to check) and never
//! contain a Secret value: API server messages quoted here are its `Status` texts, which name objects, not data.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// The first complete list of a kind did not arrive in time.
    #[error(
        "no complete list of {resource} {scope} within {timeout:?}: {last_error}; check that the API server is reachable and that this ServiceAccount may list and watch {resource} {scope}"
    )]
    InitialSync {
        /// e.g. `connectors.connectors.alauda.io`
        resource: &'static str,
        /// `in namespace team-a` or `in all namespaces`.
        scope: String,
        timeout: Duration,
        /// The last watch error, or that none was reported (the API server did not answer).
        last_error: String,
    },

    /// The API server refused a request (403): a missing RBAC rule.
    #[error(
        "forbidden: this ServiceAccount may not {verb} {resource} {scope}; add the verb to its Role/ClusterRole (see deploy/) — the API server said: {message}"
    )]
    Forbidden {
        verb: &'static str,
        /// e.g. `secrets`
        resource: &'static str,
        /// `in namespace connectors-system`, …
        scope: String,
        message: String,
    },

    /// The CSI driver asked for the proxy CA before any proxy replica created it.
    #[error(
        "Secret {namespace}/{name} does not exist: the proxy creates it on first start; is the connectors-proxy Deployment running in namespace {namespace}?"
    )]
    ProxyCaMissing { namespace: String, name: String },

    /// The proxy CA Secret exists but cannot be used.
    #[error(
        "Secret {namespace}/{name}: {reason}; fix it, or delete the Secret so that the proxy creates a new CA (clients must then trust the new ca.crt)"
    )]
    ProxyCaInvalid {
        namespace: String,
        name: String,
        reason: String,
    },

    /// The (empty) first catalog could not be built; a bug.
    #[error("building the catalog: {0}")]
    Catalog(String),

    /// Generating a new CA failed.
    #[error("generating the proxy CA: {0}")]
    Generate(String),

    /// Any other API server error (unreachable, 5xx, …).
    #[error("{action}: {source}; is the API server reachable?")]
    Api {
        /// e.g. `get Secret connectors-system/connectors-proxy-ca`
        action: String,
        #[source]
        source: kube::Error,
    },
}

pub(crate) fn scope(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "in all namespaces".to_owned(),
    }
}

/// Maps a failed request: 403 becomes [`KubeError::Forbidden`], the rest [`KubeError::Api`].
pub(crate) fn request_error(
    verb: &'static str,
    resource: &'static str,
    namespace: &str,
    name: &str,
    source: kube::Error,
) -> KubeError {
    match &source {
        kube::Error::Api(status) if status.code == 403 => KubeError::Forbidden {
            verb,
            resource,
            scope: scope(Some(namespace)),
            message: status.message.clone(),
        },
        _ => KubeError::Api {
            action: format!("{verb} {resource} {namespace}/{name}"),
            source,
        },
    }
}
