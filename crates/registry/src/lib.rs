//! Talking to upstream registries: challenges, scopes, the token flow and its cache, verified TLS,
//! and the probes behind `connectors check` and the controller.
#![forbid(unsafe_code)]

pub mod bufio;
pub mod challenge;
pub mod client;
pub mod error;
pub mod probe;
pub mod scope;
pub mod token;
pub mod upstream;

pub use client::{BoxError, ResolveOverrides, UpstreamBody};
pub use error::{ErrorKind, UpstreamError};
pub use scope::{Endpoint as OciEndpoint, OciPath, Scope, parse_oci_path, scopes_for};
pub use upstream::{RequestBody, Target, UpstreamAccess, UpstreamRequest, base_url};
