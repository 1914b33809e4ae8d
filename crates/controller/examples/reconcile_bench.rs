//! How long the controller takes to bring N Connectors (default 1,000) to `Ready` against the FAKE
//! API server and one real `docker-registry` with htpasswd auth. `bench/controller.sh` runs it.
//!
//! ```sh
//! cargo run --release -p connectors-controller --example reconcile_bench -- 1000
//! ```
//! Prints one JSON line: connectors, seconds until all were Ready, reconciles per second, and the
//! API requests the controller made.

use std::time::{Duration, Instant};

use connectors_controller::ControllerConfig;
use connectors_kubefake::FakeApiServer;
use connectors_registry::{ResolveOverrides, UpstreamAccess};
use connectors_testkit::Registry;
use serde_json::json;

const CONNECTORS: &str = "connectors.alauda.io/v1alpha1";

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let registry = Registry::builder()
        .htpasswd("bench", "bench-password")
        .start();
    let fake = FakeApiServer::start().await.expect("fake API server");
    let handle = fake.handle();
    handle
        .put(serde_json::to_value(connectors_model::builtin_oci_class()).unwrap())
        .unwrap();
    handle
        .put(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "connectors-proxy-service", "namespace": "connectors-system"},
            "spec": {"ports": [{"port": 80}]},
        }))
        .unwrap();
    handle
        .put(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "bench"},
            "type": "cpaas.io/distribution-registry-token",
            "stringData": {"username": "bench", "password": "bench-password"},
        }))
        .unwrap();
    for i in 0..n {
        handle
            .put(json!({
                "apiVersion": CONNECTORS, "kind": "Connector",
                "metadata": {"name": format!("c{i:04}"), "namespace": "bench", "generation": 1},
                "spec": {"connectorClassName": "oci", "address": registry.url(),
                         "auth": {"name": "tokenAuth", "secretRef": {"name": "creds"}}},
            }))
            .unwrap();
    }

    let client = kube::Client::try_from(kube::Config::new(fake.url().parse().unwrap())).unwrap();
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(connectors_controller::run(
        client,
        UpstreamAccess::new(ResolveOverrides::default()),
        ControllerConfig {
            reprobe: Duration::from_secs(3600),
            ..ControllerConfig::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let ready = |c: &serde_json::Value| {
        c["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    };
    loop {
        let done = handle
            .list(CONNECTORS, "Connector")
            .iter()
            .filter(|c| ready(c))
            .count();
        if done == n {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            eprintln!("only {done} of {n} Ready after 600 s");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    let _ = task.await;
    println!(
        "{}",
        json!({
            "connectors": n,
            "seconds_to_all_ready": (seconds * 1000.0).round() / 1000.0,
            "reconciles_per_second": ((n as f64 / seconds) * 10.0).round() / 10.0,
            "registry_requests_logged": registry.log().lines().filter(|l| l.contains("\"GET /v2/")).count(),
        })
    );
}
