//! The proxy CA Secret against the fake API server (`connectors-kubefake`; no real one can run here).

use connectors_kube::{KubeError, PROXY_CA_SECRET, load_or_create_proxy_ca, read_proxy_ca_cert};
use connectors_kubefake::FakeApiServer;
use serde_json::json;

const NS: &str = "connectors-system";

fn client(fake: &FakeApiServer) -> kube::Client {
    let config = kube::Config::new(fake.url().parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn concurrent_replicas_end_up_with_one_ca() {
    let fake = FakeApiServer::start().await.unwrap();
    let (a, b) = (client(&fake), client(&fake));
    let (first, second) = tokio::join!(
        load_or_create_proxy_ca(&a, NS),
        load_or_create_proxy_ca(&b, NS)
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.cert_pem(), second.cert_pem());
    assert!(first.cert_pem().contains("-----BEGIN CERTIFICATE-----"));

    // Both replicas found no Secret and tried to create one (the futures run interleaved on the test's single
    // thread, so both reads come first): one create won, the other got 409 and read the winner's.
    assert_eq!(fake.request_count("create secrets"), 2);
    let secrets = fake.list("v1", "Secret");
    assert_eq!(secrets.len(), 1, "{:?}", fake.request_counts());
    let stored = &secrets[0];
    assert_eq!(stored["metadata"]["name"], PROXY_CA_SECRET);
    assert_eq!(stored["metadata"]["namespace"], NS);
    assert_eq!(stored["type"], "kubernetes.io/tls");
    assert!(stored["data"]["tls.crt"].is_string() && stored["data"]["tls.key"].is_string());

    // A replica starting later loads the same CA; it can mint leaves with it.
    let third = load_or_create_proxy_ca(&a, NS).await.unwrap();
    assert_eq!(third.cert_pem(), first.cert_pem());
    third.server_config("registry.example").unwrap();
    assert_eq!(fake.list("v1", "Secret").len(), 1);

    // The CSI driver reads the certificate only.
    let cert = read_proxy_ca_cert(&b, NS).await.unwrap();
    assert_eq!(cert, first.cert_pem());
    assert!(!cert.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn reading_a_missing_ca_says_what_to_check() {
    let fake = FakeApiServer::start().await.unwrap();
    let err = read_proxy_ca_cert(&client(&fake), NS).await.unwrap_err();
    assert!(matches!(err, KubeError::ProxyCaMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("connectors-system/connectors-proxy-ca")
            && msg.contains("the proxy creates it on first start")
            && msg.contains("connectors-proxy Deployment"),
        "{msg}"
    );
    // Reading creates nothing.
    assert!(fake.list("v1", "Secret").is_empty());
}

#[tokio::test]
async fn a_broken_ca_secret_is_reported_without_its_key() {
    let fake = FakeApiServer::start().await.unwrap();
    let canary = "canary-key-material-77d1";
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    fake.put(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": PROXY_CA_SECRET, "namespace": NS},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64("not a certificate"), "tls.key": b64(canary)},
    }))
    .unwrap();
    let err = load_or_create_proxy_ca(&client(&fake), NS)
        .await
        .unwrap_err();
    assert!(matches!(err, KubeError::ProxyCaInvalid { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("connectors-system/connectors-proxy-ca"),
        "{msg}"
    );
    assert!(!msg.contains(canary), "{msg}");
    assert!(!format!("{err:?}").contains(canary));
    let err = read_proxy_ca_cert(&client(&fake), NS).await.unwrap_err();
    assert!(
        err.to_string().contains("tls.crt is not a PEM certificate"),
        "{err}"
    );
    // Nothing was replaced.
    assert_eq!(fake.list("v1", "Secret").len(), 1);
}

#[tokio::test]
async fn missing_rbac_names_the_verb() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.forbid_call("create secrets");
    let err = load_or_create_proxy_ca(&client(&fake), NS)
        .await
        .unwrap_err();
    assert!(matches!(err, KubeError::Forbidden { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("may not create secrets in namespace connectors-system"),
        "{msg}"
    );
    assert!(fake.list("v1", "Secret").is_empty());
}
