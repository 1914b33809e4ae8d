//! The proxy CA in a Kubernetes Secret, shared by every proxy replica and read by the CSI driver.
//!
//! Forward mode terminates TLS with leaves signed by this CA, so all replicas must use the same one, and the CSI
//! driver mounts its certificate into pods as `ca.crt`. The first replica to start generates it and creates Secret
//! [`PROXY_CA_SECRET`] (type `kubernetes.io/tls`, keys `tls.crt` and `tls.key`) in the components namespace. Two
//! replicas starting at once both generate one, but `create` admits only one Secret of that name: the loser gets
//! 409 AlreadyExists and reads the winner's, so both end up with the same CA.

use std::path::Path;

use base64::Engine as _;
use connectors_ca::ProxyCa;
use kube::api::{Api, DynamicObject, PostParams};

use crate::KubeError;
use crate::catalog::secret_resource;
use crate::error::request_error;

/// Name of the Secret with the proxy CA, in the components namespace.
pub const PROXY_CA_SECRET: &str = "connectors-proxy-ca";
const CERT_KEY: &str = "tls.crt";
const KEY_KEY: &str = "tls.key";
const TLS_TYPE: &str = "kubernetes.io/tls";

/// Proxy replicas: read Secret `connectors-proxy-ca` in `namespace`; if missing, generate a CA and create the
/// Secret; on 409 AlreadyExists (another replica won the race) read the winner's. Keys `tls.crt` / `tls.key`,
/// type `kubernetes.io/tls`. Needs `get` on that Secret and `create` on Secrets in `namespace`.
pub async fn load_or_create_proxy_ca(
    client: &kube::Client,
    namespace: &str,
) -> Result<ProxyCa, KubeError> {
    if let Some(secret) = get(client, namespace).await? {
        return ca_from_secret(&secret, namespace);
    }
    let (cert_pem, key_pem) =
        ProxyCa::generate_pem().map_err(|e| KubeError::Generate(e.to_string()))?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    // A DynamicObject, read back as one too: see `get`.
    let secret: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": PROXY_CA_SECRET,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "connectors-proxy"},
        },
        "type": TLS_TYPE,
        "data": {CERT_KEY: b64(&cert_pem), KEY_KEY: b64(key_pem.expose())},
    }))
    .map_err(|e| KubeError::Generate(e.to_string()))?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &secret_resource());
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = %format!("{namespace}/{PROXY_CA_SECRET}"), "created the proxy CA");
            from_pem(&cert_pem, key_pem.expose(), namespace)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::info!(secret = %format!("{namespace}/{PROXY_CA_SECRET}"), "another replica created the proxy CA first; using it");
            match get(client, namespace).await? {
                Some(secret) => ca_from_secret(&secret, namespace),
                None => Err(KubeError::ProxyCaInvalid {
                    namespace: namespace.to_owned(),
                    name: PROXY_CA_SECRET.to_owned(),
                    reason: "was created by another replica and deleted again at once; restart this replica"
                        .to_owned(),
                }),
            }
        }
        Err(e) => Err(request_error(
            "create",
            "secrets",
            namespace,
            PROXY_CA_SECRET,
            e,
        )),
    }
}

/// The CSI driver: only read the certificate (PEM) of Secret `connectors-proxy-ca` in `namespace`. Needs `get` on
/// that Secret; the private key is never returned.
pub async fn read_proxy_ca_cert(
    client: &kube::Client,
    namespace: &str,
) -> Result<String, KubeError> {
    let Some(secret) = get(client, namespace).await? else {
        return Err(KubeError::ProxyCaMissing {
            namespace: namespace.to_owned(),
            name: PROXY_CA_SECRET.to_owned(),
        });
    };
    let cert = text(&secret, CERT_KEY, namespace)?;
    if !cert.contains("-----BEGIN CERTIFICATE-----") {
        return Err(invalid(namespace, "tls.crt is not a PEM certificate"));
    }
    Ok(cert)
}

/// Read as a DynamicObject, so that a malformed Secret never reaches kube-rs's own warning (which logs the
/// response body, the key included), then parsed by the model's Secret parser, which names keys only.
async fn get(
    client: &kube::Client,
    namespace: &str,
) -> Result<Option<connectors_model::Secret>, KubeError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &secret_resource());
    match api.get_opt(PROXY_CA_SECRET).await {
        Ok(None) => Ok(None),
        Ok(Some(object)) => serde_json::to_value(object)
            .and_then(serde_json::from_value)
            .map(Some)
            .map_err(|e| invalid(namespace, &format!("is not a valid v1 Secret: {e}"))),
        Err(e) => Err(request_error(
            "get",
            "secrets",
            namespace,
            PROXY_CA_SECRET,
            e,
        )),
    }
}

fn ca_from_secret(
    secret: &connectors_model::Secret,
    namespace: &str,
) -> Result<ProxyCa, KubeError> {
    let cert = text(secret, CERT_KEY, namespace)?;
    let key = connectors_model::SecretString::new(text(secret, KEY_KEY, namespace)?);
    from_pem(&cert, key.expose(), namespace)
}

fn from_pem(cert: &str, key: &str, namespace: &str) -> Result<ProxyCa, KubeError> {
    let cert_name = format!("Secret {namespace}/{PROXY_CA_SECRET} key {CERT_KEY}");
    let key_name = format!("Secret {namespace}/{PROXY_CA_SECRET} key {KEY_KEY}");
    ProxyCa::from_pem(cert, key, Path::new(&cert_name), Path::new(&key_name))
        .map_err(|e| invalid(namespace, &e.to_string()))
}

/// A key's value as text; the message names the key, never the value.
fn text(
    secret: &connectors_model::Secret,
    key: &str,
    namespace: &str,
) -> Result<String, KubeError> {
    secret
        .text_value(key)
        .map_err(|e| invalid(namespace, &e.to_string()))?
        .ok_or_else(|| invalid(namespace, &format!("has no key {key}")))
}

fn invalid(namespace: &str, reason: &str) -> KubeError {
    KubeError::ProxyCaInvalid {
        namespace: namespace.to_owned(),
        name: PROXY_CA_SECRET.to_owned(),
        reason: reason.to_owned(),
    }
}
