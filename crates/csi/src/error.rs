//! Errors and how they become gRPC statuses. Every message says what to fix; none contains a token or a file's
//! contents, because the kubelet shows them in Pod events.

use std::io;
use std::path::PathBuf;

use crate::render::RenderError;

/// Everything that can go wrong in the driver. [`CsiError::code`] gives the gRPC status code the kubelet sees.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsiError {
    /// A request field or volume attribute is missing or malformed; the message names it and what is expected.
    #[error("{0}")]
    InvalidArgument(String),
    /// A connector that does not exist: `connector "<name>" not found …`.
    #[error("{0}")]
    NotFound(String),
    /// The Pod may not use a connector.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request is fine but the system is not in a state to serve it (a feature flag is off, a class is
    /// missing, a template is broken).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A backend (token issuer, authorizer) cannot answer right now; the kubelet retries.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an environment problem on the node.
    #[error("{0}")]
    Internal(String),
    /// Rendering the configuration files failed.
    #[error("{}", render_message(.0))]
    Render(#[from] RenderError),
    /// A file-system operation on the node failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The endpoint given to [`crate::serve`] cannot be used.
    #[error("CSI endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    /// The gRPC server failed.
    #[error("CSI gRPC server: {0}")]
    Server(#[from] tonic::transport::Error),
}

impl CsiError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// The gRPC status code for this error.
    pub fn code(&self) -> tonic::Code {
        match self {
            CsiError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            CsiError::NotFound(_) => tonic::Code::NotFound,
            CsiError::PermissionDenied(_) => tonic::Code::PermissionDenied,
            CsiError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            CsiError::Unavailable(_) => tonic::Code::Unavailable,
            CsiError::Render(err) => render_code(err),
            CsiError::Internal(_)
            | CsiError::Io { .. }
            | CsiError::Endpoint { .. }
            | CsiError::Server(_) => tonic::Code::Internal,
        }
    }
}

impl From<CsiError> for tonic::Status {
    fn from(err: CsiError) -> Self {
        tonic::Status::new(err.code(), err.to_string())
    }
}

/// Problems with what the volume asked for are the Pod author's to fix (`InvalidArgument`); a broken template
/// is the ConnectorClass author's (`FailedPrecondition`).
fn render_code(err: &RenderError) -> tonic::Code {
    match err {
        RenderError::NoConfiguration { .. }
        | RenderError::MissingParam { .. }
        | RenderError::BadParams(_)
        | RenderError::NoConnectors => tonic::Code::InvalidArgument,
        _ => tonic::Code::FailedPrecondition,
    }
}

/// A template error reads `failed to generate configuration: …`.
fn render_message(err: &RenderError) -> String {
    const PREFIX: &str = "failed to generate configuration";
    let message = err.to_string();
    match err {
        RenderError::Template { .. } if !message.starts_with(PREFIX) => {
            format!("{PREFIX}: {message}")
        }
        _ => message,
    }
}
