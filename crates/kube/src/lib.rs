//! Kubernetes API server backends for the proxy and the CSI driver.
//!
//! [`KubeReview`] authenticates proxy tokens with a TokenReview and authorizes them with SubjectAccessReviews
//! (SPEC §3). The [`csi`] module gives the CSI driver the same authorization for the Pod's ServiceAccount
//! ([`SarAuthorize`]), the kubelet-token-only token source ([`KubeletTokenOnly`]) and the feature flags read at
//! publish time ([`KubeFlags`]). Tested against the in-repo fake API server (`connectors-kubefake`), since no real
//! one runs here.
#![forbid(unsafe_code)]

pub mod csi;
mod review;

pub use csi::{KubeCsiConfig, KubeFlags, KubeletTokenOnly, SarAuthorize};
pub use review::{CacheStats, KubeReview, KubeReviewConfig, PROXY_AUDIENCE};
