//! Who is calling the proxy, and may they use this connector?
//!
//! A workload authenticates to the proxy with a short-lived proxy token (docs/security.md). This crate holds:
//! - [`Principal`], what an [`Authenticator`] learns from a token, and the [`Authorizer`] that decides whether a
//!   principal may use a connector. Both traits are object-safe so the proxy can hold `Arc<dyn …>` and pick the
//!   backend at start-up (embedded signed tokens here; Kubernetes TokenReview/SubjectAccessReview in
//!   `connectors-kube`);
//! - [`LocalTokens`], the embedded-mode backend: tokens signed with an Ed25519 key in the state folder;
//! - pure parsers for the `Authorization` and `Proxy-Authorization` headers ([`token_from_authorization`],
//!   [`parse_proxy_authorization`]) that a fuzz target can call directly.
#![forbid(unsafe_code)]

mod error;
mod header;
mod local;
mod principal;
pub mod private_file;
mod time;

use async_trait::async_trait;
use connectors_model::{ConnectorRef, SecretString};

pub use error::{AuthError, AuthErrorKind, IdentityError};
pub use header::{
    MAX_CREDENTIALS_LEN, ProxyCredentials, parse_proxy_authorization,
    parse_proxy_authorization_within, token_from_authorization,
};
pub use local::{KEY_FILE_NAME, LocalTokens, MAX_TOKEN_TTL};
pub use principal::{Allowed, Principal};

/// Turns a proxy token into a [`Principal`].
///
/// Implementations must fail closed: when the backend cannot decide (API server down, nothing cached) return
/// [`AuthError::Unavailable`], never a principal.
#[async_trait]
pub trait Authenticator: Send + Sync {
    async fn authenticate(&self, token: &SecretString) -> Result<Principal, AuthError>;
}

/// Decides whether an authenticated [`Principal`] may use one connector.
///
/// Returns `Ok(())` only on an explicit yes; [`AuthError::NotAllowed`] on a no and [`AuthError::Unavailable`]
/// when the backend cannot answer.
#[async_trait]
pub trait Authorizer: Send + Sync {
    async fn authorize(
        &self,
        principal: &Principal,
        connector: &ConnectorRef,
    ) -> Result<(), AuthError>;
}
