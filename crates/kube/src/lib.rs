//! Kubernetes API server backends for the proxy and the CSI driver.
//!
//! [`KubeReview`] authenticates proxy tokens with a TokenReview and authorizes them with SubjectAccessReviews
//! (docs/security.md, "In Kubernetes"). [`KubeCatalog`] follows Connectors, ConnectorClasses and the Secrets they reference;
//! [`load_or_create_proxy_ca`] / [`read_proxy_ca_cert`] share the proxy CA through a Secret. The [`csi`] module
//! gives the CSI driver the same authorization for the Pod's ServiceAccount ([`SarAuthorize`]), the
//! kubelet-token-only token source ([`KubeletTokenOnly`]) and the feature flags read at publish time
//! ([`KubeFlags`]). Tested against the in-repo fake API server (`connectors-kubefake`), since no real one runs
//! here.
#![forbid(unsafe_code)]

mod ca;
mod catalog;
pub mod csi;
mod error;
mod review;
mod scope;

pub use ca::{PROXY_CA_SECRET, load_or_create_proxy_ca, read_proxy_ca_cert};
pub use catalog::{KubeCatalog, KubeCatalogConfig};
pub use csi::{KubeCsiConfig, KubeFlags, KubeletTokenOnly, SarAuthorize};
pub use error::KubeError;
pub use review::{CacheStats, KubeReview, KubeReviewConfig, PROXY_AUDIENCE};
pub use scope::{INNER_NAMESPACE_LABEL, PROJECT_LABEL, PUBLIC_NAMESPACE};
