//! The gRPC services: thin wrappers that turn [`Driver`] results into CSI responses and statuses.

use tonic::{Request, Response, Status};

use crate::Driver;
use crate::proto::identity_server::Identity;
use crate::proto::node_server::Node;
use crate::proto::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, NodeGetCapabilitiesRequest, NodeGetCapabilitiesResponse,
    NodeGetInfoRequest, NodeGetInfoResponse, NodePublishVolumeRequest, NodePublishVolumeResponse,
    NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse, ProbeRequest, ProbeResponse,
};

/// The driver's name, as Kubernetes manifests write it (`driver: connectors-csi`).
pub const DRIVER_NAME: &str = "connectors-csi";

#[tonic::async_trait]
impl Identity for Driver {
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: DRIVER_NAME.to_owned(),
            vendor_version: env!("CARGO_PKG_VERSION").to_owned(),
            manifest: Default::default(),
        }))
    }

    /// None: a node-only driver of ephemeral volumes has no controller service and no topology constraints.
    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}

#[tonic::async_trait]
impl Node for Driver {
    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let req = request.into_inner();
        match self.publish(&req).await {
            Ok(()) => Ok(Response::new(NodePublishVolumeResponse {})),
            Err(err) => {
                // The message names attributes and connectors, never a token or a file's contents.
                tracing::warn!(volume_id = %req.volume_id, target = %req.target_path, code = ?err.code(), error = %err, "publish failed");
                Err(err.into())
            }
        }
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        self.unpublish(&req.volume_id, &req.target_path).await?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    /// None: no staging, no volume statistics, no expansion.
    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn node_get_info(
        &self,
        _request: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.config().node_id.clone(),
            max_volumes_per_node: 0,
        }))
    }
}
