//! The flags every Kubernetes command shares: which API server, and the components' namespace.

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct KubeArgs {
    /// The API server to talk to. Default: the in-cluster configuration (the pod's ServiceAccount),
    /// else $KUBECONFIG / ~/.kube/config.
    #[arg(long, env = "CONNECTORS_KUBE_URL", value_name = "URL")]
    pub kube_url: Option<String>,
    /// The components' namespace (the pod's own in deploy/): Secret `connectors-proxy-ca`, ConfigMap
    /// `connectors-config`, the proxy's Service and the controller's Lease live here.
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "connectors-system",
        value_name = "NAMESPACE"
    )]
    pub components_namespace: String,
}

impl KubeArgs {
    /// A client for --kube-url (plain `http://` is fine, for a local API server), or the inferred
    /// configuration (in-cluster, then kubeconfig).
    pub async fn client(&self) -> Result<kube::Client> {
        let config = match self.kube_url.as_deref() {
            Some(u) => kube::Config::new(
                u.parse()
                    .with_context(|| format!("--kube-url {u:?} is not a URL"))?,
            ),
            None => kube::Config::infer().await.context(
                "no Kubernetes configuration: run in a pod with a ServiceAccount, set KUBECONFIG, or pass --kube-url",
            )?,
        };
        kube::Client::try_from(config).context("cannot build a Kubernetes client")
    }
}
