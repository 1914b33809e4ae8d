//! The Connector controller (docs/kubernetes.md, "Status in this version"): what the status of a Connector should say, what its proxy
//! Service should look like, the registry probe shared with `connectors check`, and the loop that
//! writes them through the API server.
//!
//! - [`conditions`]: condition types, reasons, `Ready`, and merging with stored conditions;
//! - [`reconcile`]: class → Secret → registry probe → conditions;
//! - [`proxy_service`]: `status.proxy.httpAddress.url` and the Service `c-<name>`.
//!
//! [`run`] is the kube-facing loop (watch, server-side apply of status and Service, periodic
//! re-probe) and [`lease`] the leader election that lets several replicas run safely; [`webhook`] the mutating
//! admission webhook that makes Pods pull their images through a connector.
#![forbid(unsafe_code)]

pub mod conditions;
pub mod lease;
pub mod proxy_service;
pub mod reconcile;
pub mod run;
pub mod webhook;

use serde::Serialize;

pub use conditions::{Condition, ConditionStatus};
pub use lease::{LeaderElector, LeaseConfig, LeaseError};
pub use proxy_service::{ProxyAddressing, Resolver, desired_service, proxy_url, service_name};
pub use reconcile::{Observed, evaluate, probe_connector};
pub use run::{ControllerConfig, ReconcileError, run};

/// The field manager the controller applies with.
pub const FIELD_MANAGER: &str = "connectors-controller";

/// A Connector's `status`, as the controller writes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorStatus {
    pub conditions: Vec<Condition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatus {
    pub http_address: HttpAddress,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpAddress {
    pub url: String,
}

impl ConnectorStatus {
    /// The server-side-apply body for the `/status` subresource of Connector `name` in `namespace`.
    pub fn apply_patch(&self, namespace: &str, name: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": connectors_model::API_VERSION,
            "kind": "Connector",
            "metadata": {"name": name, "namespace": namespace},
            "status": self,
        })
    }
}

/// Now, as Kubernetes writes times in conditions (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
