//! The catalog: which connectors exist, where they point and with which credentials.
//!
//! The proxy asks it on every request, so lookups are synchronous and cheap: an immutable snapshot
//! of hash maps behind an [`arc_swap::ArcSwap`], replaced whole on reload. [`FileCatalog`] reads
//! the same manifests users `kubectl apply` (Connector, ConnectorClass, Secret) from files.
#![forbid(unsafe_code)]

mod error;
mod file;
mod load;
mod resolve;

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use connectors_model::{
    Connector, ConnectorClass, ConnectorRef, Endpoint, RegistryCredentials, Scheme,
};

pub use error::CatalogError;
pub use file::FileCatalog;

/// A connector with everything the proxy needs, resolved against its class and Secrets.
#[derive(Debug)]
pub struct ResolvedConnector {
    pub reference: ConnectorRef,
    /// As written, with `metadata.namespace` filled in.
    pub connector: Connector,
    pub address: Endpoint,
    /// `spec.addressExtensions` by name, in the order written.
    pub extensions: Vec<(String, Endpoint)>,
    /// `Err(reason)` when the connector cannot be used (class or Secret missing, wrong Secret
    /// type, Secret in another namespace, …). The proxy then refuses requests through it with
    /// this reason, which names the resources to fix and never a secret value.
    pub credentials: Result<RegistryCredentials, String>,
    /// Extra CAs (PEM) for the upstream, from `spec.caCertSecretRef`.
    pub ca_pems: Vec<String>,
    /// Changes whenever anything that affects upstream access changes (spec, class, Secret
    /// contents, CAs); use it in cache keys so that a rotated password is never served from a
    /// cache built with the old one. Stable within one process only.
    pub fingerprint: u64,
}

impl ResolvedConnector {
    /// The address, then the extensions: every endpoint that may receive this connector's
    /// credentials.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        std::iter::once(&self.address).chain(self.extensions.iter().map(|(_, e)| e))
    }

    /// Whether a request target belongs to this connector (its address or an extension).
    pub fn owns(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        self.endpoints().any(|e| e.matches(scheme, host, port))
    }

    pub fn is_usable(&self) -> bool {
        self.credentials.is_ok()
    }

    pub fn class_name(&self) -> &str {
        &self.connector.spec.connector_class_name
    }
}

/// Read access to the connectors and classes, for the proxy's per-request path.
pub trait Catalog: Send + Sync + 'static {
    fn connector(&self, r: &ConnectorRef) -> Option<Arc<ResolvedConnector>>;
    /// All connectors, sorted by reference.
    fn connectors(&self) -> Vec<Arc<ResolvedConnector>>;
    /// A class by name; the built-in `oci` class is always there.
    fn class(&self, name: &str) -> Option<Arc<ConnectorClass>>;
}

/// The snapshot holder shared by the catalog implementations.
struct Current(ArcSwap<resolve::Snapshot>);

impl Current {
    fn connector(&self, r: &ConnectorRef) -> Option<Arc<ResolvedConnector>> {
        self.0.load().connectors.get(r).cloned()
    }

    fn connectors(&self) -> Vec<Arc<ResolvedConnector>> {
        self.0.load().ordered.clone()
    }

    fn class(&self, name: &str) -> Option<Arc<ConnectorClass>> {
        self.0.load().classes.get(name).cloned()
    }
}

/// A catalog built once from YAML text: for tests and for callers that hold manifests in memory.
pub struct StaticCatalog {
    current: Current,
}

impl StaticCatalog {
    /// Reads manifests the way [`FileCatalog`] reads a file; errors name the file `<inline>`.
    pub fn from_yaml(yaml: &str) -> Result<Self, CatalogError> {
        let mut resources = load::Resources::default();
        load::parse_text(Path::new("<inline>"), yaml, &mut resources)?;
        let snapshot = resolve::Snapshot::build(resources, &Default::default())?;
        Ok(Self {
            current: Current(ArcSwap::from_pointee(snapshot)),
        })
    }
}

impl StaticCatalog {
    /// A catalog of resources already in memory (read from an API server, say). Each resource is
    /// named `<source>` in error messages; namespaces missing from Connectors and Secrets are
    /// `default`, as with files.
    pub fn from_resources(
        source: &str,
        connectors: Vec<Connector>,
        classes: Vec<ConnectorClass>,
        secrets: Vec<connectors_model::Secret>,
    ) -> Result<Self, CatalogError> {
        let resources =
            load::Resources::from_objects(Path::new(source), connectors, classes, secrets)?;
        let snapshot = resolve::Snapshot::build(resources, &Default::default())?;
        Ok(Self {
            current: Current(ArcSwap::from_pointee(snapshot)),
        })
    }
}

impl Catalog for StaticCatalog {
    fn connector(&self, r: &ConnectorRef) -> Option<Arc<ResolvedConnector>> {
        self.current.connector(r)
    }

    fn connectors(&self) -> Vec<Arc<ResolvedConnector>> {
        self.current.connectors()
    }

    fn class(&self, name: &str) -> Option<Arc<ConnectorClass>> {
        self.current.class(name)
    }
}

#[cfg(test)]
mod tests;
