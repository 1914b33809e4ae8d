//! `connectors-csi`: a Container Storage Interface driver that mounts ready-to-use client configuration into
//! Pods (docs/kubernetes.md, "CSI driver in the cluster"; docs/rendered-files.md).
//!
//! A Pod declares an inline ephemeral volume with `driver: connectors-csi`, `readOnly: true` and volume attributes
//! naming its connectors. On NodePublishVolume the driver resolves the connectors in the [catalog](Catalog),
//! asks the [`Authorize`] hook, obtains a short-lived proxy token (the kubelet's ServiceAccount token when it
//! passes one, else from the [`TokenSource`]), renders the files with `connectors-render` and writes them
//! atomically into the target path (on a small tmpfs when it can mount one). NodeUnpublishVolume removes it all.
//!
//! Only the Identity and the Node services are served ([`serve`]), on a unix socket: the driver is node-only.
//! Clients that send the socket path as `:authority` (grpc-python, grpc-java) are served too ([`authority`]).
//!
//! [catalog]: connectors_catalog::Catalog
#![forbid(unsafe_code)]

pub mod attributes;
pub mod authority;
mod driver;
mod error;
pub mod jwt;
pub mod mount;
mod pod;
pub mod registration;
mod service;
mod sources;
pub mod writer;

use connectors_render as render;

use std::future::Future;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnixListenerStream;

pub use driver::{
    CSI_DRIVER_OBJECT, DEFAULT_TOKEN_AUDIENCE, Driver, DriverConfig, MULTI_CONNECTOR_FLAG,
    ProxyAddressFn,
};
pub use error::CsiError;
pub use pod::{KubeletToken, PodInfo};
pub use service::DRIVER_NAME;
pub use sources::{AllowAll, Authorize, FeatureFlags, LocalTokenSource, TokenSource};

/// The CSI v1 messages and services this driver uses, generated from `proto/csi.proto` (our own subset of the
/// CSI specification) by `protogen/` and committed, so that building needs neither `protoc` nor protox. The
/// clients are there for tests and tools.
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!("proto/csi.v1.rs");

    /// The kubelet's plugin registration API (v1), from `proto/pluginregistration.proto`.
    pub mod registration {
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        include!("proto/pluginregistration.rs");
    }
}

/// The socket path of a CSI endpoint: `unix:///path/csi.sock`, `unix:/path/csi.sock` or a plain path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CsiError> {
    let bad = |reason: &str| CsiError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let path = match endpoint.split_once("://") {
        Some(("unix", rest)) => rest,
        Some(_) => {
            return Err(bad(
                "only unix sockets are supported: unix:///path/to/csi.sock",
            ));
        }
        None => endpoint.strip_prefix("unix:").unwrap_or(endpoint),
    };
    if path.is_empty() {
        return Err(bad("no socket path; expected unix:///path/to/csi.sock"));
    }
    Ok(PathBuf::from(path))
}

/// Serves the Identity and Node services on the unix socket `endpoint` until `shutdown` completes.
///
/// A socket file left by an earlier run is removed first (anything else at that path is an error); the parent
/// folder is created when missing; the socket file is removed again on the way out.
pub async fn serve(
    endpoint: &str,
    driver: Driver,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CsiError> {
    use crate::proto::identity_server::IdentityServer;
    use crate::proto::node_server::NodeServer;

    let path = socket_path(endpoint)?;
    prepare_socket_path(endpoint, &path)?;
    let listener = UnixListener::bind(&path).map_err(|e| CsiError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: format!("cannot listen on {}: {e}", path.display()),
    })?;
    tracing::info!(
        endpoint = %path.display(),
        driver = DRIVER_NAME,
        node_id = %driver.config().node_id,
        "CSI driver listening"
    );
    // Clients that send the socket path as :authority get `localhost` instead (authority.rs).
    let incoming = UnixListenerStream::new(listener)
        .map(|accepted| accepted.map(authority::AuthorityFix::new));
    let result = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(driver.clone()))
        .add_service(NodeServer::new(driver))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = std::fs::remove_file(&path);
    tracing::info!(endpoint = %path.display(), "CSI driver stopped");
    result.map_err(CsiError::Server)
}

pub(crate) fn prepare_socket_path(endpoint: &str, path: &Path) -> Result<(), CsiError> {
    use std::os::unix::fs::FileTypeExt as _;

    let bad = |reason: String| CsiError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            tracing::debug!(path = %path.display(), "removing the stale socket");
            std::fs::remove_file(path)
                .map_err(|e| bad(format!("cannot remove the stale socket: {e}")))?;
        }
        Ok(_) => {
            return Err(bad(format!(
                "{} exists and is not a socket; remove it or choose another path",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bad(format!("cannot inspect {}: {e}", path.display()))),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| bad(format!("cannot create {}: {e}", parent.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            socket_path("unix:/csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            socket_path("/csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert!(socket_path("tcp://127.0.0.1:10000").is_err());
        assert!(socket_path("unix://").is_err());
        assert!(socket_path("").is_err());
    }
}
