//! Registration with the kubelet (its plugin registration API, `pluginregistration` v1), served by the driver
//! itself so that `deploy/` needs no node-driver-registrar sidecar.
//!
//! The kubelet watches `/var/lib/kubelet/plugins_registry/` for sockets. For each new one it calls `GetInfo`, learns
//! the driver's name and its CSI socket on the host, calls the CSI socket (`NodeGetInfo`) to fill the node's
//! `CSINode` object, and then reports the outcome with `NotifyRegistrationStatus`. Removing the socket
//! unregisters the driver. See docs/kubernetes.md, "How the kubelet finds the driver".

use std::future::Future;
use std::path::PathBuf;

use tokio::net::UnixListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::CsiError;
use crate::proto::registration::registration_server::{Registration, RegistrationServer};
use crate::proto::registration::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};

/// The plugin type the kubelet expects from a CSI driver.
pub const CSI_PLUGIN_TYPE: &str = "CSIPlugin";
/// The CSI specification versions the driver speaks, as the kubelet wants them listed.
pub const SUPPORTED_CSI_VERSIONS: [&str; 1] = ["1.0.0"];

/// What the driver tells the kubelet.
#[derive(Clone, Debug)]
pub struct PluginRegistration {
    /// The driver name (the CSIDriver object's name).
    pub driver_name: String,
    /// The driver's CSI socket as the kubelet reaches it: a path on the host, which may differ from the path the
    /// driver listens on inside its container.
    pub kubelet_socket: PathBuf,
}

#[tonic::async_trait]
impl Registration for PluginRegistration {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        tracing::debug!(driver = %self.driver_name, "kubelet asked for the plugin info");
        Ok(Response::new(PluginInfo {
            r#type: CSI_PLUGIN_TYPE.to_owned(),
            name: self.driver_name.clone(),
            endpoint: self.kubelet_socket.display().to_string(),
            supported_versions: SUPPORTED_CSI_VERSIONS
                .iter()
                .map(|v| (*v).to_owned())
                .collect(),
        }))
    }

    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        if status.plugin_registered {
            tracing::info!(driver = %self.driver_name, "the kubelet registered the driver");
        } else {
            tracing::error!(
                driver = %self.driver_name,
                error = %status.error,
                "the kubelet refused to register the driver; pods cannot mount its volumes on this node"
            );
        }
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

/// The registration socket's file name in the kubelet's plugin registry folder.
pub fn registration_socket_name(driver_name: &str) -> String {
    format!("{driver_name}-reg.sock")
}

/// Serves the registration service on `socket` (normally
/// `/var/lib/kubelet/plugins_registry/connectors-csi-reg.sock`) until `shutdown` completes, then removes the
/// socket so that the kubelet unregisters the driver.
pub async fn serve_registration(
    socket: PathBuf,
    registration: PluginRegistration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CsiError> {
    let endpoint = socket.display().to_string();
    crate::prepare_socket_path(&endpoint, &socket)?;
    let listener = UnixListener::bind(&socket).map_err(|e| CsiError::Endpoint {
        endpoint: endpoint.clone(),
        reason: format!("cannot listen on {endpoint}: {e}"),
    })?;
    tracing::info!(
        socket = %endpoint,
        csi_socket = %registration.kubelet_socket.display(),
        "serving the kubelet plugin registration"
    );
    // The kubelet's plugin watcher dials the bare socket path, and grpc-go then sends that path as
    // `:authority`, which h2 refuses (RST_STREAM PROTOCOL_ERROR): read it through the same fix as the CSI
    // socket.
    let incoming = UnixListenerStream::new(listener)
        .map(|accepted| accepted.map(crate::authority::AuthorityFix::new));
    let result = tonic::transport::Server::builder()
        .add_service(RegistrationServer::new(registration))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = std::fs::remove_file(&socket);
    result.map_err(CsiError::Server)
}
