//! Kubernetes API server backends for the proxy.
//!
//! [`KubeReview`] authenticates proxy tokens with a TokenReview and authorizes them with SubjectAccessReviews
//! (SPEC §3). [`KubeCatalog`] follows Connectors, ConnectorClasses and the Secrets they reference;
//! [`load_or_create_proxy_ca`] / [`read_proxy_ca_cert`] share the proxy CA through a Secret. Tested against the in-repo fake API server (`connectors-kubefake`), since no real one runs here.
#![forbid(unsafe_code)]

mod ca;
mod catalog;
mod error;
mod review;

pub use ca::{PROXY_CA_SECRET, load_or_create_proxy_ca, read_proxy_ca_cert};
pub use catalog::{KubeCatalog, KubeCatalogConfig};
pub use error::KubeError;
pub use review::{CacheStats, KubeReview, KubeReviewConfig, PROXY_AUDIENCE};
