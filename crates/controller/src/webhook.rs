//! Pod image pull via connector (the published `enable-pod-image-pull-via-connector`): a mutating admission
//! webhook, served by the controller over TLS, that rewrites the images of a Pod carrying the label
//! `connectors.cpaas.io/proxy-inject: "true"` and the annotation `connectors.cpaas.io/connector: <ns>/<name>` to the
//! connector's proxy address, so that the kubelet pulls them through the proxy.
//!
//! - Only such Pods reach the webhook: the MutatingWebhookConfiguration in `deploy/` selects them by label
//!   (`objectSelector`), so no other Pod is ever touched, nor blocked when the webhook is down.
//! - With the flag off (ConfigMap `connectors-config`), a Pod that asks for it is refused with a message naming
//!   the flag: it would otherwise run, and fail to pull, without the connector.
//! - An image is rewritten when its registry is the connector's address (host, port and path prefix):
//!   `registry.example.com/team/app:v1` → `<proxy-host>/namespaces/<ns>/connectors/<name>/team/app:v1`, where
//!   `<proxy-host>` is the host of the Connector's `status.proxy.httpAddress.url` (the exposed address when the
//!   controller runs with `--exposed-address`, e.g. a NodePort the node reaches). Images of other registries stay
//!   as they are, with an admission warning saying so.
//!
//! The serving certificate is self-signed, kept in Secret `connectors-webhook-tls` (created once, shared by the
//! replicas), and the controller keeps the configuration's `caBundle` equal to it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use connectors_model::Endpoint;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The label that sends a Pod to the webhook.
pub const INJECT_LABEL: &str = "connectors.cpaas.io/proxy-inject";
/// The annotation naming the connector, `<ns>/<name>` (or `<name>` in the Pod's namespace).
pub const CONNECTOR_ANNOTATION: &str = "connectors.cpaas.io/connector";
/// The feature flag in ConfigMap `connectors-config`.
pub const POD_PULL_FLAG: &str = "enable-pod-image-pull-via-connector";
/// The Secret holding the webhook's serving certificate, in the components namespace.
pub const WEBHOOK_TLS_SECRET: &str = "connectors-webhook-tls";
/// The MutatingWebhookConfiguration whose `caBundle` the controller keeps current.
pub const WEBHOOK_CONFIGURATION: &str = "connectors-pod-image-pull";
/// The path the webhook serves.
pub const WEBHOOK_PATH: &str = "/mutate-pods";

/// Largest AdmissionReview body accepted (the API server sends the whole Pod).
const MAX_REVIEW_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    #[error("API server: {0}")]
    Api(#[from] kube::Error),
    #[error("webhook certificate: {0}")]
    Certificate(String),
    #[error("webhook listener: {0}")]
    Io(#[from] std::io::Error),
}

/// What the webhook needs to know.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Namespace of the flag ConfigMap and the TLS Secret.
    pub components_namespace: String,
    /// DNS names and IP addresses the serving certificate is for (the webhook Service's names; an IP for a
    /// webhook reached by URL).
    pub hosts: Vec<String>,
    /// The MutatingWebhookConfiguration to keep `caBundle` current in.
    pub configuration: String,
}

// --- the decision (pure) ----------------------------------------------------------------------------------------

/// One Pod admission: the JSON patch to apply, warnings, or a refusal.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Patch {
        ops: Vec<Value>,
        warnings: Vec<String>,
    },
    Refuse(String),
}

/// What the webhook knows about the connector a Pod names.
#[derive(Clone, Debug)]
pub struct ConnectorTarget {
    pub namespace: String,
    pub name: String,
    pub address: Endpoint,
    /// `status.proxy.httpAddress.url`; `None` until the controller has written it.
    pub proxy_url: Option<String>,
}

/// The connector a Pod asks for: the annotation's `<ns>/<name>`, or `<name>` in the Pod's namespace.
pub fn requested_connector(pod: &Value, pod_namespace: &str) -> Result<(String, String), String> {
    let value = pod["metadata"]["annotations"][CONNECTOR_ANNOTATION]
        .as_str()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!(
                "the Pod has the label {INJECT_LABEL}=true but no annotation {CONNECTOR_ANNOTATION}: <namespace>/<connector> naming the connector to pull through"
            )
        })?;
    let (ns, name) = match value.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (pod_namespace, value),
    };
    if ns.is_empty() || name.is_empty() || name.contains('/') {
        return Err(format!(
            "annotation {CONNECTOR_ANNOTATION}: {value:?} is not <namespace>/<connector>"
        ));
    }
    Ok((ns.to_owned(), name.to_owned()))
}

/// The patch for `pod`: every container and init container image of the connector's registry rewritten to the
/// proxy.
pub fn mutate(pod: &Value, flag_on: bool, connector: &ConnectorTarget) -> Verdict {
    if !flag_on {
        return Verdict::Refuse(format!(
            "this Pod asks to pull its images through connector {}/{} ({INJECT_LABEL}=true), but pulling through connectors is off: set {POD_PULL_FLAG}: \"true\" in ConfigMap connectors-config, or remove the label",
            connector.namespace, connector.name
        ));
    }
    let Some(proxy_url) = connector.proxy_url.as_deref() else {
        return Verdict::Refuse(format!(
            "connector {}/{} has no proxy address yet (status.proxy.httpAddress.url); wait until the controller has reconciled it",
            connector.namespace, connector.name
        ));
    };
    let Some(proxy_host) = proxy_url
        .strip_prefix("http://")
        .or_else(|| proxy_url.strip_prefix("https://"))
        .and_then(|rest| rest.split('/').next())
        .filter(|h| !h.is_empty())
    else {
        return Verdict::Refuse(format!(
            "connector {}/{}: its proxy address {proxy_url:?} is not an http(s) URL",
            connector.namespace, connector.name
        ));
    };
    let prefix = format!(
        "{proxy_host}/namespaces/{}/connectors/{}",
        connector.namespace, connector.name
    );
    let mut ops = Vec::new();
    let mut warnings = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod["spec"][list].as_array() else {
            continue;
        };
        for (i, c) in containers.iter().enumerate() {
            let Some(image) = c["image"].as_str() else {
                continue;
            };
            match rewrite_image(image, &connector.address, &prefix) {
                Some(new) => ops.push(json!({"op": "replace", "path": format!("/spec/{list}/{i}/image"), "value": new})),
                None if image.starts_with(&prefix) => {}
                None => warnings.push(format!(
                    "image {image:?} is not from connector {}/{}'s registry {}; it is pulled as it is",
                    connector.namespace,
                    connector.name,
                    connector.address.authority()
                )),
            }
        }
    }
    Verdict::Patch { ops, warnings }
}

/// The registry of an image reference and the rest, as container runtimes read it: the first path component
/// when it names a host (has a '.' or a ':', or is `localhost`); `None` for a Docker Hub path (`team/app:v1`).
pub fn image_registry(image: &str) -> Option<(&str, &str)> {
    let (registry, rest) = image.split_once('/')?;
    (registry.contains('.') || registry.contains(':') || registry == "localhost")
        .then_some((registry, rest))
}

/// `image` rewritten onto `proxy_prefix` (`<proxy-host>/namespaces/<ns>/connectors/<name>`) when its registry is
/// `address` (same host, same port — the scheme's default when the image names none — and below the address's
/// path prefix); `None` otherwise.
pub fn rewrite_image(image: &str, address: &Endpoint, proxy_prefix: &str) -> Option<String> {
    let (registry, rest) = image_registry(image)?;
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || registry.starts_with('[') => (h, p.parse().ok()?),
        _ => (registry, address.scheme().default_port()),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if !host.eq_ignore_ascii_case(address.host().trim_start_matches('[').trim_end_matches(']'))
        || port != address.port()
    {
        return None;
    }
    let prefix = address.path_prefix().trim_matches('/');
    let repo = if prefix.is_empty() {
        rest
    } else {
        rest.strip_prefix(prefix)?.strip_prefix('/')?
    };
    if repo.is_empty() {
        return None;
    }
    Some(format!("{proxy_prefix}/{repo}"))
}

/// The AdmissionReview response for `request` (an AdmissionReview v1 body) given the verdict.
pub fn review_response(uid: &str, verdict: &Verdict) -> Value {
    let response = match verdict {
        Verdict::Patch { ops, warnings } => {
            let mut r = json!({"uid": uid, "allowed": true});
            if !ops.is_empty() {
                let patch = serde_json::to_vec(ops).unwrap_or_default();
                r["patchType"] = json!("JSONPatch");
                r["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch));
            }
            if !warnings.is_empty() {
                r["warnings"] = json!(warnings);
            }
            r
        }
        Verdict::Refuse(message) => json!({
            "uid": uid, "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": message},
        }),
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

// --- serving -------------------------------------------------------------------------------------------------------

struct Shared {
    client: Client,
    config: WebhookConfig,
}

/// Serves the webhook on `listener` with the certificate from Secret [`WEBHOOK_TLS_SECRET`] (created when
/// missing) and keeps the configuration's `caBundle` current, until `shutdown` completes.
pub async fn serve(
    client: Client,
    config: WebhookConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WebhookError> {
    // The API server may not answer yet (or the Secret may be half-made by another replica): keep trying.
    let (cert_pem, key_pem) = loop {
        match load_or_create_tls(&client, &config).await {
            Ok(pair) => break pair,
            Err(e) => {
                tracing::warn!(error = %e, "webhook: no serving certificate yet; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let tls = server_config(&cert_pem, &key_pem)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let shared = Arc::new(Shared {
        client: client.clone(),
        config: config.clone(),
    });
    tokio::spawn(keep_ca_bundle(
        client,
        config.configuration.clone(),
        cert_pem,
    ));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "webhook: TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&shared, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "webhook: connection ended with an error");
            }
        });
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::POST || req.uri().path() != WEBHOOK_PATH {
        return plain(
            StatusCode::NOT_FOUND,
            format!("POST an AdmissionReview to {WEBHOOK_PATH}"),
        );
    }
    let body = match Limited::new(req.into_body(), MAX_REVIEW_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("cannot read the AdmissionReview: {e}"),
            );
        }
    };
    let review: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("the body is not an AdmissionReview: {e}"),
            );
        }
    };
    let request = &review["request"];
    let Some(uid) = request["uid"].as_str() else {
        return plain(
            StatusCode::BAD_REQUEST,
            "AdmissionReview without request.uid".into(),
        );
    };
    let verdict = decide(shared, request).await;
    match &verdict {
        Verdict::Patch { ops, .. } => tracing::info!(
            namespace = request["namespace"].as_str().unwrap_or_default(),
            pod = request["name"]
                .as_str()
                .or(request["object"]["metadata"]["generateName"].as_str())
                .unwrap_or_default(),
            images = ops.len(),
            "webhook: Pod images rewritten to the proxy"
        ),
        Verdict::Refuse(message) => tracing::info!(%message, "webhook: Pod refused"),
    }
    let body = serde_json::to_vec(&review_response(uid, &verdict)).unwrap_or_default();
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn decide(shared: &Shared, request: &Value) -> Verdict {
    let pod = &request["object"];
    let pod_namespace = request["namespace"].as_str().unwrap_or_default();
    if pod["metadata"]["labels"][INJECT_LABEL].as_str() != Some("true") {
        // Not selected (the objectSelector keeps such Pods away; answer harmlessly anyway).
        return Verdict::Patch {
            ops: vec![],
            warnings: vec![],
        };
    }
    let (ns, name) = match requested_connector(pod, pod_namespace) {
        Ok(c) => c,
        Err(message) => return Verdict::Refuse(message),
    };
    let configmaps: Api<ConfigMap> =
        Api::namespaced(shared.client.clone(), &shared.config.components_namespace);
    let flag_on = match configmaps.get_opt("connectors-config").await {
        Ok(cm) => cm
            .and_then(|cm| cm.data)
            .and_then(|d| d.get(POD_PULL_FLAG).cloned())
            .is_some_and(|v| v.trim() == "true"),
        Err(e) => {
            return Verdict::Refuse(format!(
                "cannot read ConfigMap connectors-config for {POD_PULL_FLAG} ({e}); retry"
            ));
        }
    };
    let api: Api<connectors_crd::Connector> = Api::namespaced(shared.client.clone(), &ns);
    let object = match api.get_opt(&name).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Verdict::Refuse(format!(
                "connector {ns}/{name} (annotation {CONNECTOR_ANNOTATION}) does not exist"
            ));
        }
        Err(e) => {
            return Verdict::Refuse(format!("cannot read connector {ns}/{name} ({e}); retry"));
        }
    };
    let address = match Endpoint::parse(&object.spec.spec.address) {
        Ok(a) => a,
        Err(e) => return Verdict::Refuse(format!("connector {ns}/{name}: spec.address: {e}")),
    };
    let target = ConnectorTarget {
        proxy_url: object
            .status
            .as_ref()
            .and_then(|s| s.0["proxy"]["httpAddress"]["url"].as_str())
            .map(str::to_owned),
        namespace: ns,
        name,
        address,
    };
    mutate(pod, flag_on, &target)
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r
}

// --- certificate -----------------------------------------------------------------------------------------------

/// The serving certificate and key (PEM) from the Secret; a new self-signed pair when it is missing (the first
/// replica creates it; one that loses the race reads the winner's).
async fn load_or_create_tls(
    client: &Client,
    config: &WebhookConfig,
) -> Result<(String, String), WebhookError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.components_namespace);
    if let Some(pair) = read_tls(&secrets).await? {
        return Ok(pair);
    }
    let (cert, key) = self_signed(&config.hosts)?;
    let mut secret = Secret {
        type_: Some("kubernetes.io/tls".into()),
        ..Default::default()
    };
    secret.metadata.name = Some(WEBHOOK_TLS_SECRET.into());
    secret.string_data = Some(
        [
            ("tls.crt".to_owned(), cert.clone()),
            ("tls.key".to_owned(), key.clone()),
        ]
        .into_iter()
        .collect(),
    );
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok((cert, key)),
        Err(kube::Error::Api(e)) if e.code == 409 => read_tls(&secrets).await?.ok_or_else(|| {
            WebhookError::Certificate(format!(
                "Secret {WEBHOOK_TLS_SECRET} exists but has no tls.crt/tls.key"
            ))
        }),
        Err(e) => Err(e.into()),
    }
}

async fn read_tls(secrets: &Api<Secret>) -> Result<Option<(String, String)>, WebhookError> {
    let Some(secret) = secrets.get_opt(WEBHOOK_TLS_SECRET).await? else {
        return Ok(None);
    };
    let data = secret.data.unwrap_or_default();
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    match (text("tls.crt"), text("tls.key")) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        _ => Err(WebhookError::Certificate(format!(
            "Secret {WEBHOOK_TLS_SECRET} lacks tls.crt or tls.key; delete it and the controller makes a new one"
        ))),
    }
}

fn self_signed(hosts: &[String]) -> Result<(String, String), WebhookError> {
    let err = |e: rcgen::Error| WebhookError::Certificate(e.to_string());
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(err)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "connectors pod image pull webhook",
    );
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn server_config(cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig, WebhookError> {
    use rustls_pki_types::pem::PemObject;
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        WebhookError::Certificate(format!("Secret {WEBHOOK_TLS_SECRET}: {what}: {e}"))
    };
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("tls.crt", &e))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| bad("tls.key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("certificate and key", &e))
}

/// Keeps every webhook's `clientConfig.caBundle` in the configuration equal to the serving certificate: now and
/// every 30 s (a re-applied `deploy/` has none).
async fn keep_ca_bundle(client: Client, name: String, cert_pem: String) {
    let bundle = base64::engine::general_purpose::STANDARD.encode(cert_pem.as_bytes());
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    loop {
        match api.get_opt(&name).await {
            Ok(Some(config)) => {
                // A strategic merge patch: webhooks merge by name, so only caBundle changes.
                let stale: Vec<Value> = config
                    .webhooks
                    .unwrap_or_default()
                    .iter()
                    .filter(|w| {
                        w.client_config
                            .ca_bundle
                            .as_ref()
                            .map(|b| base64::engine::general_purpose::STANDARD.encode(&b.0))
                            .as_deref()
                            != Some(bundle.as_str())
                    })
                    .map(|w| json!({"name": w.name, "clientConfig": {"caBundle": bundle}}))
                    .collect();
                if !stale.is_empty() {
                    let patch = json!({"webhooks": stale});
                    match api
                        .patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
                        .await
                    {
                        Ok(_) => tracing::info!(configuration = %name, "webhook: caBundle set"),
                        Err(e) => {
                            tracing::warn!(configuration = %name, error = %e, "webhook: cannot set caBundle")
                        }
                    }
                }
            }
            Ok(None) => {
                tracing::debug!(configuration = %name, "webhook: no MutatingWebhookConfiguration yet")
            }
            Err(e) => {
                tracing::warn!(configuration = %name, error = %e, "webhook: cannot read the configuration")
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(address: &str, proxy: Option<&str>) -> ConnectorTarget {
        ConnectorTarget {
            namespace: "team-a".into(),
            name: "reg".into(),
            address: Endpoint::parse(address).unwrap(),
            proxy_url: proxy.map(str::to_owned),
        }
    }

    #[test]
    fn registry_of_an_image() {
        assert_eq!(
            image_registry("10.250.0.1:30080/a/b:v1"),
            Some(("10.250.0.1:30080", "a/b:v1"))
        );
        assert_eq!(
            image_registry("proxy.example/a:v1"),
            Some(("proxy.example", "a:v1"))
        );
        assert_eq!(
            image_registry("localhost/a:v1"),
            Some(("localhost", "a:v1"))
        );
        assert_eq!(image_registry("team/app:v1"), None);
        assert_eq!(image_registry("app"), None);
    }

    #[test]
    fn images_of_the_connectors_registry_are_rewritten() {
        let prefix = "10.0.0.5:30080/namespaces/team-a/connectors/reg";
        let https = Endpoint::parse("https://registry.example.com").unwrap();
        let with_port = Endpoint::parse("http://registry.test:5000").unwrap();
        let with_path = Endpoint::parse("https://registry.example.com/mirror").unwrap();
        let cases: [(&str, &Endpoint, Option<&str>); 11] = [
            (
                "registry.example.com/team/app:v1",
                &https,
                Some("team/app:v1"),
            ),
            (
                "registry.example.com:443/team/app@sha256:ab",
                &https,
                Some("team/app@sha256:ab"),
            ),
            ("REGISTRY.example.com/app", &https, Some("app")),
            ("registry.example.com:5000/team/app", &https, None),
            ("other.example.com/team/app", &https, None),
            ("team/app:v1", &https, None),
            ("app", &https, None),
            ("registry.test:5000/app:v1", &with_port, Some("app:v1")),
            ("registry.test/app:v1", &with_port, None),
            (
                "registry.example.com/mirror/team/app:v1",
                &with_path,
                Some("team/app:v1"),
            ),
            ("registry.example.com/mirrored/app", &with_path, None),
        ];
        for (image, address, want) in cases {
            assert_eq!(
                rewrite_image(image, address, prefix),
                want.map(|r| format!("{prefix}/{r}")),
                "{image} with {address}"
            );
        }
    }

    #[test]
    fn pods_are_patched_refused_or_warned() {
        let pod = json!({
            "metadata": {"labels": {INJECT_LABEL: "true"}, "annotations": {CONNECTOR_ANNOTATION: "team-a/reg"}},
            "spec": {
                "initContainers": [{"name": "init", "image": "registry.example.com/tools:v1"}],
                "containers": [{"name": "a", "image": "registry.example.com/team/app:v1"},
                               {"name": "b", "image": "docker.io/library/busybox"}],
            },
        });
        let t = target(
            "https://registry.example.com",
            Some("http://10.0.0.5:30080/namespaces/team-a/connectors/reg"),
        );
        let Verdict::Patch { ops, warnings } = mutate(&pod, true, &t) else {
            panic!("refused")
        };
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "/spec/initContainers/0/image", "value": "10.0.0.5:30080/namespaces/team-a/connectors/reg/tools:v1"}),
                json!({"op": "replace", "path": "/spec/containers/0/image", "value": "10.0.0.5:30080/namespaces/team-a/connectors/reg/team/app:v1"}),
            ]
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("docker.io/library/busybox"));
        // Flag off: refused, naming the flag.
        let Verdict::Refuse(message) = mutate(&pod, false, &t) else {
            panic!("not refused")
        };
        assert!(message.contains(POD_PULL_FLAG), "{message}");
        // No proxy address yet: refused, saying so.
        let Verdict::Refuse(message) =
            mutate(&pod, true, &target("https://registry.example.com", None))
        else {
            panic!("not refused")
        };
        assert!(
            message.contains("status.proxy.httpAddress.url"),
            "{message}"
        );
    }

    #[test]
    fn the_annotation_names_the_connector() {
        let pod = |a: Option<&str>| {
            let mut p = json!({"metadata": {"annotations": {}}});
            if let Some(a) = a {
                p["metadata"]["annotations"][CONNECTOR_ANNOTATION] = json!(a);
            }
            p
        };
        assert_eq!(
            requested_connector(&pod(Some("ns/reg")), "own"),
            Ok(("ns".into(), "reg".into()))
        );
        assert_eq!(
            requested_connector(&pod(Some("reg")), "own"),
            Ok(("own".into(), "reg".into()))
        );
        for bad in [None, Some(""), Some("/reg"), Some("ns/"), Some("a/b/c")] {
            assert!(requested_connector(&pod(bad), "own").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn responses_carry_the_patch_or_the_refusal() {
        let ok = review_response(
            "u1",
            &Verdict::Patch {
                ops: vec![json!({"op": "replace", "path": "/x", "value": 1})],
                warnings: vec!["w".into()],
            },
        );
        assert_eq!(ok["response"]["uid"], "u1");
        assert_eq!(ok["response"]["allowed"], true);
        assert_eq!(ok["response"]["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(ok["response"]["patch"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&patch).unwrap()[0]["path"],
            "/x"
        );
        assert_eq!(ok["response"]["warnings"][0], "w");
        let empty = review_response(
            "u2",
            &Verdict::Patch {
                ops: vec![],
                warnings: vec![],
            },
        );
        assert!(empty["response"].get("patch").is_none());
        let no = review_response("u3", &Verdict::Refuse("why".into()));
        assert_eq!(no["response"]["allowed"], false);
        assert_eq!(no["response"]["status"]["message"], "why");
    }
}
