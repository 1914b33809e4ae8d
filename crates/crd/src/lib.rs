//! The Connector and ConnectorClass as kube-rs resources, so that code talking to the API server uses typed
//! `Api<Connector>` / `Api<ConnectorClass>`.
//!
//! The specs are the model's own types (`connectors_model::ConnectorSpec`, `ConnectorClassSpec`), flattened into the
//! derived resources: one definition of each resource, and the model stays free of kube. The CRDs in `deploy/` are
//! generated from the model by `connectors manifests` (structural schemas the derive cannot produce), so the
//! derive's own schema is turned off.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// `spec` of a Connector.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[kube(
    group = "connectors.alauda.io",
    version = "v1alpha1",
    kind = "Connector",
    plural = "connectors",
    namespaced,
    status = "Status",
    schema = "disabled"
)]
pub struct ConnectorResourceSpec {
    #[serde(flatten)]
    pub spec: connectors_model::ConnectorSpec,
}

/// `spec` of a ConnectorClass.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[kube(
    group = "connectors.alauda.io",
    version = "v1alpha1",
    kind = "ConnectorClass",
    plural = "connectorclasses",
    schema = "disabled"
)]
pub struct ConnectorClassResourceSpec {
    #[serde(flatten)]
    pub spec: connectors_model::ConnectorClassSpec,
}

/// A status as stored (the controller writes it with server-side apply; readers look at parts of it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Status(pub serde_json::Value);

impl Connector {
    /// The model's view of this Connector (metadata, spec and status as the catalog reads them).
    pub fn to_model(&self) -> Result<connectors_model::Connector, serde_json::Error> {
        serde_json::from_value(serde_json::to_value(self)?)
    }
}

impl ConnectorClass {
    /// The model's view of this ConnectorClass.
    pub fn to_model(&self) -> Result<connectors_model::ConnectorClass, serde_json::Error> {
        serde_json::from_value(serde_json::to_value(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn the_derived_resources_are_the_models() {
        assert_eq!(Connector::group(&()), connectors_model::API_GROUP);
        assert_eq!(Connector::version(&()), connectors_model::VERSION);
        assert_eq!(Connector::api_version(&()), connectors_model::API_VERSION);
        assert_eq!(
            (
                Connector::kind(&()).as_ref(),
                Connector::plural(&()).as_ref()
            ),
            connectors_model::CONNECTOR_KIND
        );
        assert_eq!(
            (
                ConnectorClass::kind(&()).as_ref(),
                ConnectorClass::plural(&()).as_ref()
            ),
            connectors_model::CONNECTOR_CLASS_KIND
        );
    }

    #[test]
    fn a_connector_reads_as_typed_and_as_the_model() {
        let json = serde_json::json!({
            "apiVersion": "connectors.alauda.io/v1alpha1", "kind": "Connector",
            "metadata": {"name": "reg", "namespace": "team-a", "uid": "u1"},
            "spec": {"connectorClassName": "oci", "address": "https://r.example.com",
                     "auth": {"name": "tokenAuth", "secretRef": {"name": "s"}}},
            "status": {"proxy": {"httpAddress": {"url": "http://c-reg.team-a.svc.cluster.local"}}},
        });
        let typed: Connector = serde_json::from_value(json).unwrap();
        assert_eq!(typed.spec.spec.address, "https://r.example.com");
        assert_eq!(
            typed.status.as_ref().unwrap().0["proxy"]["httpAddress"]["url"],
            "http://c-reg.team-a.svc.cluster.local"
        );
        let model = typed.to_model().unwrap();
        assert_eq!(model.metadata.name, "reg");
        assert_eq!(model.spec.connector_class_name, "oci");
        assert_eq!(model.spec.auth.unwrap().secret_ref.unwrap().name, "s");
    }
}
