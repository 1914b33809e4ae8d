//! KubeCatalog against the fake API server (`connectors-kubefake`; no real one can run here).
//!
//! Changes are made through the fake's handle, as `kubectl apply` would make them; each test then waits (polling,
//! with a generous overall timeout, no timing thresholds) until the catalog shows them.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use connectors_catalog::Catalog;
use connectors_kube::{KubeCatalog, KubeCatalogConfig, KubeError};
use connectors_kubefake::FakeApiServer;
use connectors_model::{ConnectorRef, RegistryCredentials};
use serde_json::{Value, json};

const V1A1: &str = "connectors.alauda.io/v1alpha1";
const FIRST: &str = "first-pass-0001";
const SECOND: &str = "second-pass-0002";

fn client(fake: &FakeApiServer) -> kube::Client {
    let config = kube::Config::new(fake.url().parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

fn config() -> KubeCatalogConfig {
    KubeCatalogConfig {
        secret_refresh: Duration::from_millis(100),
        ..Default::default()
    }
}

async fn start(fake: &FakeApiServer, config: KubeCatalogConfig) -> Arc<KubeCatalog> {
    let catalog = KubeCatalog::start(client(fake), config).await.unwrap();
    assert!(catalog.is_synced());
    catalog
}

fn r(s: &str) -> ConnectorRef {
    s.parse().unwrap()
}

fn connector(ns: &str, name: &str, class: &str, address: &str, secret: Option<&str>) -> Value {
    let mut spec = json!({"connectorClassName": class, "address": address});
    if let Some(secret) = secret {
        spec["auth"] = json!({"name": "tokenAuth", "secretRef": {"name": secret}});
    }
    json!({
        "apiVersion": V1A1, "kind": "Connector",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

fn class(name: &str) -> Value {
    json!({
        "apiVersion": V1A1, "kind": "ConnectorClass",
        "metadata": {"name": name},
        "spec": {"auth": {"types": [{"name": "tokenAuth", "secretType": "cpaas.io/distribution-registry-token"}]}},
    })
}

fn secret(ns: &str, name: &str, password: &str) -> Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "cpaas.io/distribution-registry-token",
        "data": {"username": b64("robot"), "password": b64(password)},
    })
}

/// Polls `check` until it holds; panics with `what` after a generous overall timeout.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The references of every connector in the catalog, sorted.
fn references(catalog: &KubeCatalog) -> Vec<String> {
    catalog
        .connectors()
        .iter()
        .map(|c| c.reference.to_string())
        .collect()
}

fn address(catalog: &KubeCatalog, reference: &str) -> Option<String> {
    catalog
        .connector(&r(reference))
        .map(|c| c.connector.spec.address.clone())
}

fn password(catalog: &KubeCatalog, reference: &str) -> Option<String> {
    match &catalog.connector(&r(reference))?.credentials {
        Ok(RegistryCredentials::Basic { password, .. }) => Some(password.expose().to_owned()),
        _ => None,
    }
}

fn reason(catalog: &KubeCatalog, reference: &str) -> Option<String> {
    catalog
        .connector(&r(reference))?
        .credentials
        .as_ref()
        .err()
        .cloned()
}

#[tokio::test]
async fn connectors_and_classes_appear_change_disappear() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.put(connector(
        "team-a",
        "prod",
        "oci",
        "https://r1.example",
        None,
    ))
    .unwrap();
    let catalog = start(&fake, config()).await;
    // The first snapshot is complete when start returns.
    assert_eq!(
        address(&catalog, "team-a/prod").as_deref(),
        Some("https://r1.example")
    );
    assert!(catalog.class("oci").is_some(), "the built-in class");

    fake.put(connector(
        "team-b",
        "dev",
        "oci",
        "https://r2.example",
        None,
    ))
    .unwrap();
    wait_until("team-b/dev appears", || {
        address(&catalog, "team-b/dev").is_some()
    })
    .await;
    fake.put(connector(
        "team-a",
        "prod",
        "oci",
        "https://r3.example",
        None,
    ))
    .unwrap();
    wait_until("team-a/prod changes its address", || {
        address(&catalog, "team-a/prod").as_deref() == Some("https://r3.example")
    })
    .await;
    fake.put(class("harbor")).unwrap();
    wait_until("class harbor appears", || catalog.class("harbor").is_some()).await;

    assert!(fake.delete(V1A1, "Connector", "team-a", "prod"));
    wait_until("team-a/prod disappears", || {
        catalog.connector(&r("team-a/prod")).is_none()
    })
    .await;
    assert!(fake.delete(V1A1, "ConnectorClass", "", "harbor"));
    wait_until("class harbor disappears", || {
        catalog.class("harbor").is_none()
    })
    .await;
    let refs = references(&catalog);
    assert_eq!(refs, ["team-b/dev"]);
}

#[tokio::test]
async fn one_namespace_only() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.put(connector(
        "team-a",
        "prod",
        "oci",
        "https://r1.example",
        None,
    ))
    .unwrap();
    fake.put(connector(
        "team-b",
        "prod",
        "oci",
        "https://r2.example",
        None,
    ))
    .unwrap();
    let catalog = start(
        &fake,
        KubeCatalogConfig {
            namespace: Some("team-b".into()),
            ..config()
        },
    )
    .await;
    let refs = references(&catalog);
    assert_eq!(refs, ["team-b/prod"]);
}

#[tokio::test]
async fn class_missing_then_created() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.put(secret("team-a", "creds", FIRST)).unwrap();
    fake.put(connector(
        "team-a",
        "prod",
        "harbor",
        "https://r.example",
        Some("creds"),
    ))
    .unwrap();
    let catalog = start(&fake, config()).await;
    let why = reason(&catalog, "team-a/prod").expect("unusable without its class");
    assert!(
        why.contains("\"harbor\"") && why.contains("not found"),
        "{why}"
    );
    fake.put(class("harbor")).unwrap();
    wait_until("the connector becomes usable", || {
        password(&catalog, "team-a/prod").as_deref() == Some(FIRST)
    })
    .await;
}

#[tokio::test]
async fn secret_rotation_is_followed() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.put(secret("team-a", "creds", FIRST)).unwrap();
    fake.put(connector(
        "team-a",
        "prod",
        "oci",
        "https://r.example",
        Some("creds"),
    ))
    .unwrap();
    let catalog = start(&fake, config()).await;
    assert_eq!(password(&catalog, "team-a/prod").as_deref(), Some(FIRST));
    let before = catalog.connector(&r("team-a/prod")).unwrap().fingerprint;

    // Changes that do not touch its upstream access (another connector, a status written by the controller) keep
    // its fingerprint, so caches keyed by it stay warm.
    fake.put(connector(
        "team-a",
        "other",
        "oci",
        "https://o.example",
        None,
    ))
    .unwrap();
    let mut with_status = connector("team-a", "prod", "oci", "https://r.example", Some("creds"));
    with_status["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
    fake.put(with_status).unwrap();
    wait_until("both changes arrive", || {
        address(&catalog, "team-a/other").is_some()
            && catalog
                .connector(&r("team-a/prod"))
                .is_some_and(|c| c.connector.status.is_some())
    })
    .await;
    assert_eq!(
        catalog.connector(&r("team-a/prod")).unwrap().fingerprint,
        before
    );

    fake.put(secret("team-a", "creds", SECOND)).unwrap();
    wait_until("the rotated password arrives", || {
        password(&catalog, "team-a/prod").as_deref() == Some(SECOND)
    })
    .await;
    assert_ne!(
        catalog.connector(&r("team-a/prod")).unwrap().fingerprint,
        before
    );

    // Deleting the Secret makes the connector unusable, with the reason.
    assert!(fake.delete("v1", "Secret", "team-a", "creds"));
    wait_until("the deleted Secret is noticed", || {
        reason(&catalog, "team-a/prod").is_some_and(|w| w.contains("Secret team-a/creds"))
    })
    .await;
}

#[tokio::test]
async fn secret_created_after_the_connector() {
    let fake = FakeApiServer::start().await.unwrap();
    // A Secret nobody references: never followed.
    fake.put(secret("team-a", "unrelated", "unrelated-pass"))
        .unwrap();
    fake.put(connector(
        "team-a",
        "prod",
        "oci",
        "https://r.example",
        Some("creds"),
    ))
    .unwrap();
    let catalog = start(&fake, config()).await;
    let why = reason(&catalog, "team-a/prod").expect("unusable without its Secret");
    assert!(
        why.contains("Secret team-a/creds") && why.contains("not found"),
        "{why}"
    );
    assert_eq!(catalog.followed_secrets(), 1);
    assert_eq!(
        fake.request_count("list secrets") + fake.request_count("watch secrets"),
        0
    );

    fake.put(secret("team-a", "creds", FIRST)).unwrap();
    wait_until("the late Secret is picked up", || {
        password(&catalog, "team-a/prod").as_deref() == Some(FIRST)
    })
    .await;

    // A connector that starts referencing a Secret gets it without waiting for the refresh.
    fake.put(secret("team-a", "creds2", SECOND)).unwrap();
    fake.put(connector(
        "team-a",
        "second",
        "oci",
        "https://r.example",
        Some("creds2"),
    ))
    .unwrap();
    wait_until("the second connector has its Secret", || {
        password(&catalog, "team-a/second").as_deref() == Some(SECOND)
    })
    .await;
    assert_eq!(catalog.followed_secrets(), 2);
    // No longer referenced: no longer followed.
    assert!(fake.delete(V1A1, "Connector", "team-a", "second"));
    wait_until("creds2 is dropped", || catalog.followed_secrets() == 1).await;
}

#[tokio::test]
async fn without_secrets_no_secret_is_requested() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.put(secret("team-a", "creds", FIRST)).unwrap();
    fake.put(connector(
        "team-a",
        "prod",
        "oci",
        "https://r.example",
        Some("creds"),
    ))
    .unwrap();
    let catalog = start(
        &fake,
        KubeCatalogConfig {
            secrets: false,
            ..config()
        },
    )
    .await;
    let c = catalog.connector(&r("team-a/prod")).expect("the connector");
    assert_eq!(c.address.to_string(), "https://r.example");
    assert!(c.credentials.is_err());
    assert!(catalog.class(c.class_name()).is_some());

    // Changes still arrive; wait for one so that any Secret request the catalog would make has been made.
    fake.put(connector(
        "team-a",
        "prod",
        "oci",
        "https://r2.example",
        Some("creds"),
    ))
    .unwrap();
    wait_until("the change arrives", || {
        address(&catalog, "team-a/prod").as_deref() == Some("https://r2.example")
    })
    .await;
    let secret_calls: Vec<(String, u64)> = fake
        .request_counts()
        .into_iter()
        .filter(|(call, _)| call.contains("secrets"))
        .collect();
    assert!(secret_calls.is_empty(), "{secret_calls:?}");
    assert!(fake.request_count("list connectors") >= 1);
}

#[tokio::test]
async fn api_server_down_serves_the_last_snapshot_then_catches_up() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.put(secret("team-a", "creds", FIRST)).unwrap();
    fake.put(connector(
        "team-a",
        "prod",
        "oci",
        "https://r.example",
        Some("creds"),
    ))
    .unwrap();
    fake.put(connector(
        "team-a",
        "old",
        "oci",
        "https://old.example",
        None,
    ))
    .unwrap();
    let catalog = start(&fake, config()).await;

    fake.set_down(true);
    // The fake closes new connections at once, so failed attempts leave no trace to wait for: give the cut watches
    // and several Secret refresh rounds time to fail, before and after the changes (this only lengthens the test;
    // nothing is measured) ...
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Changes the catalog cannot see while the fake is down.
    fake.put(secret("team-a", "creds", SECOND)).unwrap();
    fake.put(connector(
        "team-a",
        "new",
        "oci",
        "https://new.example",
        None,
    ))
    .unwrap();
    assert!(fake.delete(V1A1, "Connector", "team-a", "old"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ... and it still answers from its last snapshot.
    assert_eq!(password(&catalog, "team-a/prod").as_deref(), Some(FIRST));
    assert!(address(&catalog, "team-a/old").is_some());
    assert!(address(&catalog, "team-a/new").is_none());
    assert!(catalog.is_synced());

    fake.set_down(false);
    wait_until("the changes made while down arrive", || {
        password(&catalog, "team-a/prod").as_deref() == Some(SECOND)
            && address(&catalog, "team-a/new").is_some()
            && address(&catalog, "team-a/old").is_none()
    })
    .await;
}

#[tokio::test]
async fn relists_after_the_history_is_compacted() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.put(connector(
        "team-a",
        "old",
        "oci",
        "https://old.example",
        None,
    ))
    .unwrap();
    let catalog = start(&fake, config()).await;
    let lists = fake.request_count("list connectors");

    // While the fake is down, the catalog cannot follow; the history it would resume from is then compacted, so
    // its next watch gets 410 Gone and it must list again to see the changes.
    fake.set_down(true);
    // Let the fake cut the open watch first (a change made at the same moment could still slip through it).
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.put(connector(
        "team-a",
        "new",
        "oci",
        "https://new.example",
        None,
    ))
    .unwrap();
    assert!(fake.delete(V1A1, "Connector", "team-a", "old"));
    fake.compact();
    fake.set_down(false);
    wait_until("the relist shows the changes", || {
        address(&catalog, "team-a/new").is_some() && address(&catalog, "team-a/old").is_none()
    })
    .await;
    assert!(fake.request_count("list connectors") > lists);
}

#[tokio::test]
async fn initial_sync_failure_says_what_to_check() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.set_down(true);
    let err = KubeCatalog::start(
        client(&fake),
        KubeCatalogConfig {
            initial_sync_timeout: Duration::from_millis(500),
            ..config()
        },
    )
    .await
    .err()
    .expect("no sync while the fake is down");
    assert!(matches!(err, KubeError::InitialSync { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("connectors.connectors.alauda.io")
            && msg.contains("list and watch")
            && msg.contains("in all namespaces"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_connector_invalid_on_its_own_does_not_hide_the_others() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.put(connector(
        "team-a",
        "good",
        "oci",
        "https://r.example",
        None,
    ))
    .unwrap();
    fake.put(connector("team-a", "bad", "oci", "not a url", None))
        .unwrap();
    let catalog = start(&fake, config()).await;
    assert!(address(&catalog, "team-a/good").is_some());
    assert!(catalog.connector(&r("team-a/bad")).is_none());
    fake.put(connector(
        "team-a",
        "bad",
        "oci",
        "https://fixed.example",
        None,
    ))
    .unwrap();
    wait_until("the fixed connector appears", || {
        address(&catalog, "team-a/bad").is_some()
    })
    .await;
}

/// Everything logged by this test binary (all tests: the canary check then covers them all).
fn logs() -> String {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let buffer = LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || Captured(Arc::clone(&writer)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    });
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

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
async fn logs_say_what_to_fix_and_never_a_password() {
    logs();
    let canary = "canary-pass-5f3a9c";
    let fake = FakeApiServer::start().await.unwrap();

    // Down at start: the watch errors are logged at warn, and start fails.
    fake.set_down(true);
    let config_short = KubeCatalogConfig {
        initial_sync_timeout: Duration::from_millis(500),
        ..config()
    };
    assert!(
        KubeCatalog::start(client(&fake), config_short)
            .await
            .is_err()
    );
    assert!(logs().contains("WARN"), "{}", logs());
    assert!(
        logs().contains("watch of connectors.connectors.alauda.io in all namespaces failed")
            && logs().contains("retrying"),
        "{}",
        logs()
    );
    fake.set_down(false);

    // A Secret of the wrong type holding the canary: the connector is unusable, and the reason is logged.
    let mut opaque = secret("team-l", "creds", canary);
    opaque["type"] = json!("Opaque");
    fake.put(opaque).unwrap();
    fake.put(connector(
        "team-l",
        "prod",
        "oci",
        "https://r.example",
        Some("creds"),
    ))
    .unwrap();
    let catalog = start(&fake, config()).await;
    assert!(reason(&catalog, "team-l/prod").is_some());
    assert!(
        logs().contains("connector is unusable") && logs().contains("team-l/creds"),
        "{}",
        logs()
    );

    // A Secret that is not valid (a data value that is not base64, holding the canary).
    fake.put(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "team-l"},
        "type": "cpaas.io/distribution-registry-token",
        "data": {"username": "cm9ib3Q=", "password": format!("{canary}!!")},
    }))
    .unwrap();
    wait_until("the invalid Secret is reported", || {
        reason(&catalog, "team-l/prod").is_some_and(|w| w.contains("base64"))
            && logs().contains("base64")
    })
    .await;

    let all = logs();
    for password in [canary, FIRST, SECOND] {
        assert!(!all.contains(password), "a password was logged:\n{all}");
    }
}

#[tokio::test]
async fn missing_rbac_is_named_in_the_error_and_the_reason() {
    logs();
    let fake = FakeApiServer::start().await.unwrap();
    fake.forbid_call("list connectorclasses");
    let err = KubeCatalog::start(
        client(&fake),
        KubeCatalogConfig {
            initial_sync_timeout: Duration::from_millis(500),
            ..config()
        },
    )
    .await
    .err()
    .expect("no sync without list on connectorclasses");
    let msg = err.to_string();
    assert!(
        msg.contains("forbidden")
            && msg.contains("list and watch connectorclasses.connectors.alauda.io")
            && msg.contains("ClusterRole"),
        "{msg}"
    );
    fake.clear_forbidden_calls();

    // Without get on Secrets the connector stays (unusable); granting it later is picked up by the refresh.
    fake.forbid_call("get secrets");
    fake.put(secret("team-a", "creds", FIRST)).unwrap();
    fake.put(connector(
        "team-a",
        "prod",
        "oci",
        "https://r.example",
        Some("creds"),
    ))
    .unwrap();
    let catalog = start(&fake, config()).await;
    assert!(reason(&catalog, "team-a/prod").is_some());
    wait_until("the missing verb is logged", || {
        logs().contains("may not get secrets in namespace team-a")
    })
    .await;
    fake.clear_forbidden_calls();
    wait_until("the connector becomes usable", || {
        password(&catalog, "team-a/prod").as_deref() == Some(FIRST)
    })
    .await;
}
