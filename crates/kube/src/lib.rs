//! Kubernetes API server backends for the proxy.
//!
//! [`KubeReview`] authenticates proxy tokens with a TokenReview and authorizes them with SubjectAccessReviews
//! (SPEC §3). Tested against the in-repo fake API server (`connectors-kubefake`), since no real one runs here.
#![forbid(unsafe_code)]

mod review;

pub use review::{CacheStats, KubeReview, KubeReviewConfig, PROXY_AUDIENCE};
