//! The resource model of Connectors: Connector, ConnectorClass and the Secrets that hold registry
//! credentials, as users write them for the `connectors.alauda.io/v1alpha1` API. No I/O here.
#![forbid(unsafe_code)]

mod credentials;
mod endpoint;
mod error;
mod kube_secret;
mod reference;
mod resources;
mod secret;
mod serde_util;

pub use credentials::{
    REGISTRY_SECRET_TYPES, RegistryCredentials, ca_pems_from_secret, credentials_from_secret,
};
pub use endpoint::{Endpoint, Scheme};
pub use error::ModelError;
pub use kube_secret::{
    SECRET_TYPE_BASIC_AUTH, SECRET_TYPE_DISTRIBUTION_TOKEN, SECRET_TYPE_DOCKER_CONFIG_JSON, Secret,
};
pub use reference::{ConnectorRef, ParseConnectorRefError};
pub use resources::{
    API_GROUP, API_VERSION, AddressExtension, AuthType, CONNECTOR_CLASS_KIND, CONNECTOR_KIND,
    ClassAuth, Configuration, Connector, ConnectorAuth, ConnectorClass, ConnectorClassSpec,
    ConnectorSpec, LocalRef, OCI_CLASS_NAME, OCI_TOKEN_AUTH, ObjectMeta, PROXY_RESOLVER_ANNOTATION,
    Param, ParamSpec, SecretRef, VERSION, builtin_oci_class,
};
pub use secret::SecretString;
