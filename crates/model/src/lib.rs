//! The resource model of Connectors: Connector, ConnectorClass and the Secrets that hold registry
//! credentials, as users write them for the `connectors.alauda.io/v1alpha1` API. No I/O here.
#![forbid(unsafe_code)]

mod reference;
mod secret;

pub use reference::{ConnectorRef, ParseConnectorRefError};
pub use secret::SecretString;
