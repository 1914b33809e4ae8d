//! Kubernetes objects the tiers on a real API server create the way docs/kubernetes.md tells users to.

use std::time::Duration;

use connectors_testkit::Cluster;
use serde_json::{Value, json};

use super::USER;

/// A stream of documents for kubectl. JSON, which is YAML too: a YAML 1.2 emitter writes `on` unquoted, and
/// kubectl (YAML 1.1) reads that as a boolean.
pub fn to_yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// A namespace with ServiceAccounts; returns once its `default` ServiceAccount exists (pods need it).
pub fn namespace(cluster: &Cluster, ns: &str, service_accounts: &[&str]) {
    let mut yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
    for sa in service_accounts {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {sa}\n  namespace: {ns}\n"
        ));
    }
    cluster.apply(&yaml);
    cluster.wait_for("ServiceAccount default", Duration::from_secs(30), || {
        cluster
            .kubectl(&["get", "serviceaccount", "default", "-n", ns], None)
            .success
            .then_some(())
    });
}

/// A Secret with the registry's username ([`USER`]) and `password`, and a Connector of the oci class using it
/// (with the registry's CA from Secret `ca_secret` when given).
pub fn connector(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    address: &str,
    password: &str,
    ca_secret: Option<&str>,
) {
    let mut spec = json!({
        "connectorClassName": "oci",
        "address": address,
        "auth": {"name": "tokenAuth", "secretRef": {"name": format!("{name}-auth")}},
    });
    if let Some(ca) = ca_secret {
        spec["caCertSecretRef"] = json!({"name": ca});
    }
    let docs = [
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{name}-auth"), "namespace": ns},
            "type": "cpaas.io/distribution-registry-token",
            "stringData": {"username": USER, "password": password},
        }),
        json!({
            "apiVersion": "connectors.alauda.io/v1alpha1", "kind": "Connector",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }),
    ];
    cluster.apply(&to_yaml(&docs));
}

/// RBAC: ServiceAccount `ns/sa` may `get` connector `name` (and, with `proxy`, its `connectors/proxy`
/// subresource), as docs/kubernetes.md tells users to write it.
pub fn grant(cluster: &Cluster, ns: &str, sa: &str, name: &str, proxy: bool) {
    let mut resources = vec!["connectors"];
    if proxy {
        resources.push("connectors/proxy");
    }
    let role = format!("use-{name}-{sa}");
    let docs = [
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": role, "namespace": ns},
            "rules": [{"apiGroups": ["connectors.alauda.io"], "resources": resources,
                       "resourceNames": [name], "verbs": ["get"]}],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": role, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        }),
    ];
    cluster.apply(&to_yaml(&docs));
}

/// Runs one test of a libtest-mimic harness, turning its panic into a failure with the panic's message.
pub fn run_caught(f: impl FnOnce()) -> Result<(), libtest_mimic::Failed> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".to_owned())
            .into()
    })
}

/// A test of a tier with a shared environment: its name and what it runs.
pub type TierTest<E> = (&'static str, fn(&E));

/// The harness of a tier whose tests share one environment (a cluster) and run one after another, in order.
///
/// `start` builds the environment only when a test is to run (not for `--list`, not when the filter leaves
/// none, not when `skip` is set: then every test is reported ignored). Returns the conclusion and the
/// environment, whose clones the tests held are gone by then, so that the caller can take it down and check
/// what it left.
pub fn run_in_order<E: Send + Sync + 'static>(
    tests: &'static [TierTest<E>],
    skip: bool,
    start: impl FnOnce() -> E,
) -> (libtest_mimic::Conclusion, E) {
    use libtest_mimic::{Arguments, Trial};
    use std::sync::Arc;

    let mut args = Arguments::from_args();
    // One cluster for all: the tests change cluster-wide things, so they run one after another.
    args.test_threads = Some(1);
    let wanted = |name: &str| {
        args.filter.as_deref().is_none_or(|f| {
            if args.exact {
                name == f
            } else {
                name.contains(f)
            }
        }) && !args.skip.iter().any(|s| name.contains(s.as_str()))
    };
    if skip || args.list || !tests.iter().any(|(n, _)| wanted(n)) {
        let trials = tests
            .iter()
            .map(|(n, _)| Trial::test(*n, || Ok(())).with_ignored_flag(skip))
            .collect();
        libtest_mimic::run(&args, trials).exit();
    }
    let env = Arc::new(start());
    let trials = tests
        .iter()
        .map(|&(name, f)| {
            let env = env.clone();
            Trial::test(name, move || run_caught(|| f(&env)))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    match Arc::try_unwrap(env) {
        Ok(env) => (conclusion, env),
        Err(_) => panic!("a test still holds the shared environment"),
    }
}
