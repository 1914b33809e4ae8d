//! `connectors csi --kube`: the CSI driver of the distributed deployment. Connectors and classes come from
//! the API server, the proxy token written into a pod is the kubelet-issued ServiceAccount token (the
//! CSIDriver's `tokenRequests`), each connector is authorized for the pod's ServiceAccount with a
//! SubjectAccessReview before anything is written, `enable-multi-connector` is read from ConfigMap
//! `connectors-config` at every publish, and `ca.crt` is the proxy CA from Secret `connectors-proxy-ca`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use connectors_catalog::Catalog;
use connectors_csi::DriverConfig;
use connectors_kube::{
    KubeCatalog, KubeCatalogConfig, KubeCsiConfig, KubeFlags, KubeletTokenOnly, SarAuthorize,
};
use connectors_model::ConnectorRef;

#[derive(Args)]
#[command(next_help_heading = "Kubernetes (with --kube)")]
pub struct CsiKubeArgs {
    /// Kubernetes mode: connectors from the API server, kubelet-issued ServiceAccount tokens as proxy
    /// tokens, a SubjectAccessReview per connector before a volume is written, flags from ConfigMap
    /// `connectors-config`, `ca.crt` from Secret `connectors-proxy-ca`. Without it the driver runs embedded
    /// (--catalog file, locally signed tokens).
    #[arg(long, env = "CONNECTORS_CSI_KUBE")]
    pub kube: bool,
    #[command(flatten)]
    api: crate::kube_args::KubeArgs,
    /// The audience of the kubelet token to hand to the pod: the `tokenRequests[].audience` of CSIDriver
    /// `connectors-csi`, and one of the proxy's `--audience`s.
    #[arg(long, env = "CONNECTORS_TOKEN_AUDIENCE", default_value = connectors_kube::PROXY_AUDIENCE)]
    token_audience: String,
    /// The proxy's Service in the components namespace: the forward-proxy host written into
    /// `http.proxy`/`.env` is `<service>.<namespace>.svc.<cluster-domain>` unless --proxy-url is given.
    #[arg(
        long,
        env = "CONNECTORS_PROXY_SERVICE",
        default_value = "connectors-proxy-service"
    )]
    proxy_service: String,
    /// The cluster's DNS domain.
    #[arg(
        long,
        env = "CONNECTORS_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    cluster_domain: String,
    /// How long a flag read from ConfigMap `connectors-config` is reused.
    #[arg(long, env = "CONNECTORS_FLAG_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    flag_ttl: Duration,
}

/// Everything the driver needs in Kubernetes mode.
pub struct KubeDriver {
    pub config: DriverConfig,
    pub catalog: Arc<dyn Catalog>,
    pub tokens: Arc<KubeletTokenOnly>,
    pub authorize: Arc<SarAuthorize>,
}

/// A connector's reverse-proxy URL: what the controller wrote in `status.proxy.httpAddress.url`, else the
/// path format through its Service `c-<name>` (the controller's default).
fn connector_url(catalog: &dyn Catalog, r: &ConnectorRef, cluster_domain: &str) -> String {
    catalog
        .connector(r)
        .and_then(|c| {
            c.connector
                .status
                .as_ref()?
                .pointer("/proxy/httpAddress/url")?
                .as_str()
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            format!(
                "http://c-{name}.{ns}.svc.{cluster_domain}/namespaces/{ns}/connectors/{name}",
                name = r.name,
                ns = r.namespace
            )
        })
}

impl CsiKubeArgs {
    pub async fn driver(
        &self,
        node_id: &str,
        proxy_url: Option<&str>,
        mount_tmpfs: bool,
    ) -> Result<KubeDriver> {
        let client = self.api.client().await?;
        let ca_pem = self.wait_for_ca(&client).await?;
        let catalog: Arc<dyn Catalog> = KubeCatalog::start(
            client.clone(),
            KubeCatalogConfig {
                namespace: None,
                // The driver renders files; it never needs registry credentials (its RBAC has no Secrets).
                secrets: false,
                initial_sync_timeout: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .await
        .context("reading Connectors and ConnectorClasses from the API server")?;
        let class_address = match proxy_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!(
                "http://{}.{}.svc.{}",
                self.proxy_service, self.api.components_namespace, self.cluster_domain
            ),
        };
        let for_urls = catalog.clone();
        let domain = self.cluster_domain.clone();
        let mut config = DriverConfig::new(node_id, ca_pem, class_address, move |r| {
            connector_url(for_urls.as_ref(), r, &domain)
        });
        let kube = KubeCsiConfig {
            components_namespace: self.api.components_namespace.clone(),
            flag_ttl: self.flag_ttl,
        };
        config.flags = Some(Arc::new(KubeFlags::new(client.clone(), &kube)));
        config.check_kubelet_token_lifetime = true;
        config.token_audience = self.token_audience.clone();
        config.mount_tmpfs = mount_tmpfs;
        Ok(KubeDriver {
            config,
            catalog,
            tokens: Arc::new(KubeletTokenOnly::new(self.token_audience.clone())),
            authorize: Arc::new(SarAuthorize::new(client, &kube)),
        })
    }

    /// The proxy creates the CA Secret on its first start; a driver that starts first waits for it rather
    /// than crash-looping.
    async fn wait_for_ca(&self, client: &kube::Client) -> Result<String> {
        let mut logged = false;
        loop {
            match connectors_kube::read_proxy_ca_cert(client, &self.api.components_namespace).await
            {
                Ok(pem) => return Ok(pem),
                Err(e) if !logged => {
                    tracing::warn!(error = %e, "waiting for the proxy CA; retrying every 5 s");
                    logged = true;
                }
                Err(e) => tracing::debug!(error = %e, "still waiting for the proxy CA"),
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}
