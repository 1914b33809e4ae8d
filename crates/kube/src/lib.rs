//! Kubernetes API server backends for the proxy (work in progress).
#![forbid(unsafe_code)]
