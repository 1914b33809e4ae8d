//! The controller's log never carries a Secret's values, even for a Secret that does not parse (its
//! `data` not base64): against the in-repo FAKE API server (no real one can run here).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectors_controller::ControllerConfig;
use connectors_kubefake::FakeApiServer;
use connectors_registry::{ResolveOverrides, UpstreamAccess};
use serde_json::json;

const CANARY: &str = "Canary-Pw-not-base64-7f3a9d2e";

struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_malformed_secret_is_reported_without_its_values() {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = Arc::clone(&buffer);
    // Everything, kube-rs included, at debug: where a raw response body would show up.
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || Captured(Arc::clone(&writer)))
            .finish(),
    )
    .unwrap();

    let fake = FakeApiServer::start().await.unwrap();
    let handle = fake.handle();
    handle
        .put(serde_json::to_value(connectors_model::builtin_oci_class()).unwrap())
        .unwrap();
    handle
        .put(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "broken", "namespace": "team-a"},
            "type": "cpaas.io/distribution-registry-token",
            "data": {"username": "ci user !!", "password": CANARY},
        }))
        .unwrap();
    handle
        .put(json!({
            "apiVersion": "connectors.alauda.io/v1alpha1", "kind": "Connector",
            "metadata": {"name": "uses-broken", "namespace": "team-a", "generation": 1},
            "spec": {"connectorClassName": "oci", "address": "http://127.0.0.1:9",
                     "auth": {"name": "tokenAuth", "secretRef": {"name": "broken"}}},
        }))
        .unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = kube::Client::try_from(kube::Config::new(fake.url().parse().unwrap())).unwrap();
    let task = tokio::spawn(connectors_controller::run(
        client,
        UpstreamAccess::new(ResolveOverrides::default()),
        ControllerConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut ready = None;
    for _ in 0..300 {
        let c = handle.get(
            "connectors.alauda.io/v1alpha1",
            "Connector",
            "team-a",
            "uses-broken",
        );
        ready = c.and_then(|c| {
            c["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .cloned()
        });
        if ready.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    let _ = task.await;
    let log = String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned();
    assert!(
        !log.is_empty(),
        "nothing was logged; the check would prove nothing"
    );
    assert!(
        !log.contains(CANARY),
        "the Secret's value is in the log:\n{log}"
    );
    let ready = ready.expect("the controller wrote a Ready condition");
    assert_eq!(ready["status"], "False", "{ready}");
    let status = handle
        .get(
            "connectors.alauda.io/v1alpha1",
            "Connector",
            "team-a",
            "uses-broken",
        )
        .unwrap()["status"]
        .to_string();
    assert!(
        !status.contains(CANARY),
        "the status carries the value: {status}"
    );
}
