//! The controller loop against the in-repo FAKE Kubernetes API server (no real one can run here)
//! and a real `docker-registry`: conditions written through the `/status` subresource, the Service
//! `c-<name>`, the proxy address, periodic re-probe, and leader election on a Lease.

use std::time::Duration;

use connectors_controller::{ControllerConfig, LeaderElector, LeaseConfig};
use connectors_kubefake::{FakeApiServer, FakeHandle};
use connectors_registry::{ResolveOverrides, UpstreamAccess};
use connectors_testkit::Registry;
use serde_json::{Value, json};

const USER: &str = "ci-user";
const PASSWORD: &str = "Canary-Pw-7f3a9d2e";
const CONNECTORS: &str = "connectors.alauda.io/v1alpha1";

fn client(fake: &FakeApiServer) -> kube::Client {
    kube::Client::try_from(kube::Config::new(fake.url().parse().unwrap())).unwrap()
}

fn connector(name: &str, class: &str, address: &str, secret: Option<&str>) -> Value {
    let mut auth = json!({"name": "tokenAuth"});
    if let Some(s) = secret {
        auth["secretRef"] = json!({"name": s});
    }
    json!({
        "apiVersion": CONNECTORS,
        "kind": "Connector",
        "metadata": {"name": name, "namespace": "team-a", "generation": 1},
        "spec": {"connectorClassName": class, "address": address, "auth": auth},
    })
}

fn secret(name: &str, type_: &str, password: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "team-a"},
        "type": type_,
        "stringData": {"username": USER, "password": password},
    })
}

fn oci_class() -> Value {
    serde_json::to_value(connectors_model::builtin_oci_class()).unwrap()
}

/// The `Ready` condition's (status, reason) once the controller has written one.
fn ready(handle: &FakeHandle, name: &str) -> Option<(String, String)> {
    let c = handle.get(CONNECTORS, "Connector", "team-a", name)?;
    let conditions = c["status"]["conditions"].as_array()?.clone();
    let r = conditions.iter().find(|c| c["type"] == "Ready")?;
    Some((
        r["status"].as_str()?.to_owned(),
        r["reason"].as_str().unwrap_or_default().to_owned(),
    ))
}

async fn wait_for(handle: &FakeHandle, name: &str, want: (&str, &str)) -> Value {
    for _ in 0..200 {
        if ready(handle, name).is_some_and(|(s, r)| s == want.0 && r == want.1) {
            return handle.get(CONNECTORS, "Connector", "team-a", name).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "Connector {name} never got Ready={want:?}; it has {:?}: {:#}",
        ready(handle, name),
        handle
            .get(CONNECTORS, "Connector", "team-a", name)
            .unwrap_or_default()
    );
}

#[tokio::test]
async fn controller_writes_conditions_service_and_address() {
    let registry = Registry::builder().htpasswd(USER, PASSWORD).start();
    let fake = FakeApiServer::start().await.unwrap();
    let handle = fake.handle();
    handle.put(oci_class()).unwrap();
    handle
        .put(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "connectors-proxy-service", "namespace": "connectors-system"},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
        }))
        .unwrap();
    const TOKEN_TYPE: &str = "cpaas.io/distribution-registry-token";
    handle.put(secret("creds", TOKEN_TYPE, PASSWORD)).unwrap();
    handle.put(secret("opaque", "Opaque", PASSWORD)).unwrap();
    handle
        .put(connector("good", "oci", &registry.url(), Some("creds")))
        .unwrap();
    handle
        .put(connector("no-class", "git", &registry.url(), Some("creds")))
        .unwrap();
    handle
        .put(connector(
            "no-secret",
            "oci",
            &registry.url(),
            Some("missing"),
        ))
        .unwrap();
    handle
        .put(connector(
            "wrong-type",
            "oci",
            &registry.url(),
            Some("opaque"),
        ))
        .unwrap();
    let closed = format!("http://127.0.0.1:{}", connectors_testkit::free_port());
    handle
        .put(connector("down", "oci", &closed, Some("creds")))
        .unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ControllerConfig {
        reprobe: Duration::from_millis(500),
        ..ControllerConfig::default()
    };
    let task = tokio::spawn(connectors_controller::run(
        client(&fake),
        UpstreamAccess::new(ResolveOverrides::default()),
        config,
        async move {
            let _ = stopped.await;
        },
    ));

    let good = wait_for(&handle, "good", ("True", "")).await;
    assert_eq!(
        good["status"]["proxy"]["httpAddress"]["url"],
        "http://c-good.team-a.svc.cluster.local/namespaces/team-a/connectors/good",
        "the oci class resolves by path"
    );
    assert_eq!(good["status"]["observedGeneration"], 1);
    let conditions = good["status"]["conditions"].as_array().unwrap();
    let types: Vec<&str> = conditions
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "ConnectorClassReady",
            "SecretReady",
            "LivenessReady",
            "AuthReady",
            "ProxyServiceReady",
            "Ready"
        ]
    );
    assert!(conditions.iter().all(|c| {
        c["lastTransitionTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    }));
    assert_eq!(
        good["metadata"]["managedFields"][0]["manager"], "connectors-controller",
        "status written by server-side apply with our field manager: {good:#}"
    );

    let service = handle
        .get("v1", "Service", "team-a", "c-good")
        .expect("the controller applied Service c-good");
    assert_eq!(service["spec"]["type"], "ExternalName");
    assert_eq!(
        service["spec"]["externalName"],
        "connectors-proxy-service.connectors-system.svc.cluster.local"
    );
    assert_eq!(
        service["metadata"]["ownerReferences"][0]["uid"], good["metadata"]["uid"],
        "owned by the Connector, so it goes when the Connector goes"
    );

    wait_for(&handle, "no-class", ("False", "ConnectorClassNotFound")).await;
    wait_for(&handle, "no-secret", ("False", "SecretNotFound")).await;
    let wrong = wait_for(&handle, "wrong-type", ("False", "SecretNotFound")).await;
    let message = wrong["status"]["conditions"][1]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("Opaque"), "{message}");
    wait_for(&handle, "down", ("False", "ConnectionFailed")).await;

    // A rotated password that the registry refuses: the periodic re-probe notices.
    handle
        .put(secret("creds", TOKEN_TYPE, "rotated-wrong"))
        .unwrap();
    wait_for(&handle, "good", ("False", "AuthenticationFailed")).await;
    // And back.
    handle.put(secret("creds", TOKEN_TYPE, PASSWORD)).unwrap();
    wait_for(&handle, "good", ("True", "")).await;

    // The proxy's own Service gone: ProxyServiceReady says which one.
    assert!(handle.delete(
        "v1",
        "Service",
        "connectors-system",
        "connectors-proxy-service"
    ));
    let c = wait_for(&handle, "good", ("False", "ProxyServiceNotFound")).await;
    assert!(
        c["status"]["conditions"][4]["message"]
            .as_str()
            .unwrap()
            .contains("connectors-proxy-service not found in namespace connectors-system")
    );

    for c in handle.list(CONNECTORS, "Connector") {
        assert!(
            !c["status"].to_string().contains(PASSWORD),
            "a status leaks the password"
        );
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the controller stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_after_expiry() {
    let fake = FakeApiServer::start().await.unwrap();
    let handle = fake.handle();
    let lease = |id: &str| {
        let mut c = LeaseConfig::new("connectors-system", id);
        c.duration = Duration::from_secs(2);
        c.renew = Duration::from_millis(300);
        LeaderElector::new(client(&fake), c)
    };
    let a = lease("replica-a");
    let b = lease("replica-b");

    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "a takes the free Lease"
    );
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "b must not while a holds it"
    );
    assert!(a.try_acquire_or_renew().await.unwrap(), "a renews");
    let held = handle
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            "connectors-system",
            "connectors-controller",
        )
        .unwrap();
    assert_eq!(held["spec"]["holderIdentity"], "replica-a");

    // a stops renewing (crashed): after the lease duration b takes over.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "b takes the expired Lease"
    );
    assert!(!a.try_acquire_or_renew().await.unwrap(), "a lost it");
    let taken = handle
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            "connectors-system",
            "connectors-controller",
        )
        .unwrap();
    assert_eq!(taken["spec"]["holderIdentity"], "replica-b");
    assert_eq!(taken["spec"]["leaseTransitions"], 1);

    // a's keep() notices it no longer leads.
    let lost = tokio::time::timeout(Duration::from_secs(10), a.keep())
        .await
        .expect("keep returns once the Lease is someone else's");
    assert!(lost.to_string().contains("connectors-controller"), "{lost}");
}
