//! The Kubernetes manifests under `deploy/` and `examples/`, checked without a cluster: the
//! generated files have not drifted from the types, `connectors manifests` is what kustomize
//! builds, every reference resolves, and the CRD schemas accept the examples the way the API
//! server's structural-schema pruning and validation would.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const REGENERATE: &str = "cargo run -p connectors -- manifests write-generated --dir deploy";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn connectors(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_connectors"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "connectors {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn parse_stream(text: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(doc).unwrap();
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

fn parse_file(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(doc)
            .unwrap_or_else(|e| panic!("{} document {i}: {e}", path.display()));
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn kustomization_docs() -> Vec<Value> {
    let deploy = root().join("deploy");
    let kustomization = &parse_file(&deploy.join("kustomization.yaml"))[0];
    kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| parse_file(&deploy.join(r.as_str().unwrap())))
        .collect()
}

fn deploy_docs() -> Vec<Value> {
    kustomization_docs()
}

fn example_docs() -> Vec<Value> {
    yaml_files(&root().join("examples"))
        .iter()
        .flat_map(|f| parse_file(f))
        .collect()
}

fn id(doc: &Value) -> String {
    format!(
        "{} {}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["namespace"].as_str().unwrap_or(""),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

#[test]
fn generated_files_match_the_types() {
    let deploy = root().join("deploy");
    let crds = parse_stream(&connectors(&["manifests", "crds"]));
    assert_eq!(crds.len(), 2);
    let class = parse_stream(&connectors(&["manifests", "oci-class"]));
    let from_model = serde_json::to_value(connectors_model::builtin_oci_class()).unwrap();
    assert_eq!(
        class,
        vec![from_model],
        "oci-class is the model's built-in class"
    );
    for (file, want) in [
        ("crds/connectors.alauda.io_connectors.yaml", &crds[0]),
        ("crds/connectors.alauda.io_connectorclasses.yaml", &crds[1]),
        ("oci-connectorclass.yaml", &class[0]),
    ] {
        let committed = parse_file(&deploy.join(file));
        assert!(
            committed.len() == 1 && &committed[0] == want,
            "deploy/{file} differs from what the Rust types generate; regenerate it with `{REGENERATE}` and commit the result"
        );
    }
    assert_eq!(crds[0]["spec"]["names"]["kind"], "Connector");
    assert_eq!(crds[0]["spec"]["scope"], "Namespaced");
    assert_eq!(crds[1]["spec"]["names"]["kind"], "ConnectorClass");
    assert_eq!(crds[1]["spec"]["scope"], "Cluster");
    for crd in &crds {
        assert_eq!(crd["spec"]["group"], "connectors.alauda.io");
        assert_eq!(crd["spec"]["names"]["categories"], json!(["alauda"]));
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["served"], true);
        assert_eq!(version["storage"], true);
        assert_eq!(version["subresources"], json!({"status": {}}));
    }
    let columns = |crd: &Value| -> Vec<String> {
        crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c["name"].as_str().unwrap(),
                    c["jsonPath"].as_str().unwrap()
                )
            })
            .collect()
    };
    let ready = r#"Ready=.status.conditions[?(@.type=="Ready")].status"#;
    let reason = r#"Reason=.status.conditions[?(@.type=="Ready")].reason"#;
    let age = "Age=.metadata.creationTimestamp";
    assert_eq!(
        columns(&crds[0]),
        [
            "Class=.spec.connectorClassName",
            "Address=.spec.address",
            ready,
            reason,
            age
        ]
    );
    assert_eq!(columns(&crds[1]), [ready, reason, age]);
}

#[test]
fn manifests_command_prints_what_kustomize_builds() {
    let ours = parse_stream(&connectors(&["manifests"]));
    let expected = kustomization_docs();
    assert_eq!(
        ours.iter().map(id).collect::<Vec<_>>(),
        expected.iter().map(id).collect::<Vec<_>>(),
        "same documents in the same order"
    );
    assert_eq!(
        ours, expected,
        "connectors manifests differs from deploy/ (regenerate with `{REGENERATE}`)"
    );

    let kubectl = Path::new("/usr/bin/kubectl");
    if !kubectl.exists() {
        println!("skipped the kubectl half: /usr/bin/kubectl is not installed");
        return;
    }
    // `sortOptions` (kept order) needs kustomize 5; older kubectl builds (Debian's
    // kubernetes-client ships kustomize 2) would reorder or refuse the file.
    let version = Command::new(kubectl)
        .args(["version", "--client", "-o", "json"])
        .output()
        .unwrap();
    let version: Value = serde_json::from_slice(&version.stdout).unwrap_or(Value::Null);
    let kustomize = version["kustomizeVersion"].as_str().unwrap_or("");
    let major: u32 = kustomize
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 5 {
        println!(
            "skipped the kubectl half: kubectl's kustomize is {kustomize:?}, sortOptions needs v5 or later"
        );
        return;
    }
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(root().join("deploy"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = parse_stream(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(
        built.iter().map(id).collect::<Vec<_>>(),
        ours.iter().map(id).collect::<Vec<_>>()
    );
    assert_eq!(
        built, ours,
        "kubectl kustomize deploy/ differs from connectors manifests"
    );
}

#[test]
fn every_manifest_parses_and_names_itself() {
    let mut count = 0;
    for dir in ["deploy", "examples"] {
        for file in yaml_files(&root().join(dir)) {
            for doc in parse_file(&file) {
                count += 1;
                if doc["kind"] == "Kustomization" {
                    continue;
                }
                for field in ["apiVersion", "kind"] {
                    assert!(
                        doc[field].is_string(),
                        "{}: {field} missing",
                        file.display()
                    );
                }
                assert!(
                    doc["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| !n.is_empty()),
                    "{}: {} without metadata.name",
                    file.display(),
                    doc["kind"]
                );
            }
        }
    }
    assert!(count > 30, "found only {count} documents");
    // No two manifests (in deploy/ and examples/) define the same object.
    let mut seen = BTreeSet::new();
    for doc in deploy_docs().iter().chain(&example_docs()) {
        assert!(seen.insert(id(doc)), "{} is defined twice", id(doc));
    }
}

/// Kinds that live in a namespace (the others here are cluster-scoped).
fn namespaced(kind: &str) -> bool {
    !matches!(
        kind,
        "Namespace"
            | "CustomResourceDefinition"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "ConnectorClass"
            | "CSIDriver"
            | "MutatingWebhookConfiguration"
    )
}

/// Objects the components create at run time, so no manifest holds them (docs/kubernetes.md).
const CREATED_AT_RUNTIME: &[&str] = &[
    "Secret connectors-system/connectors-proxy-ca",
    "Secret connectors-system/connectors-webhook-tls",
];

struct Inventory(BTreeSet<String>);

impl Inventory {
    fn new(docs: &[Value]) -> Self {
        Self(docs.iter().map(id).collect())
    }
    fn has(&self, kind: &str, ns: &str, name: &str) -> bool {
        let key = format!("{kind} {ns}/{name}");
        self.0.contains(&key)
            || CREATED_AT_RUNTIME.contains(&format!("{kind} {ns}/{name}").as_str())
    }
}

/// Every reference in `docs` that resolves neither in `docs` nor in `known` (plus implicit
/// objects: each namespace's `default` ServiceAccount and `kube-root-ca.crt` ConfigMap).
fn unresolved(docs: &[Value], known: &Inventory) -> Vec<String> {
    let mut missing = Vec::new();
    let mut need = |what: String, ok: bool| {
        if !ok {
            missing.push(what);
        }
    };
    let has = |kind: &str, ns: &str, name: &str| {
        known.has(kind, ns, name)
            || (kind == "ServiceAccount" && name == "default" && known.has("Namespace", "", ns))
            || (kind == "ConfigMap" && name == "kube-root-ca.crt")
    };
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap_or("");
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or("");
        let me = id(doc);
        if namespaced(kind) {
            need(format!("{me}: namespace missing"), !ns.is_empty());
            need(format!("{me}: Namespace {ns}"), has("Namespace", "", ns));
        } else {
            need(
                format!("{me}: cluster-scoped with a namespace"),
                ns.is_empty(),
            );
        }
        if kind == "RoleBinding" || kind == "ClusterRoleBinding" {
            let role = &doc["roleRef"];
            let role_kind = role["kind"].as_str().unwrap_or("");
            let role_ns = if role_kind == "Role" { ns } else { "" };
            let name = role["name"].as_str().unwrap_or("");
            need(
                format!("{me}: {role_kind} {name}"),
                has(role_kind, role_ns, name),
            );
            for subject in doc["subjects"].as_array().into_iter().flatten() {
                let name = subject["name"].as_str().unwrap_or("");
                let sns = subject["namespace"].as_str().unwrap_or(ns);
                need(
                    format!("{me}: ServiceAccount {sns}/{name}"),
                    has("ServiceAccount", sns, name),
                );
            }
        }
        if kind == "Role" || kind == "ClusterRole" {
            for rule in doc["rules"].as_array().into_iter().flatten() {
                for resource in rule["resources"].as_array().into_iter().flatten() {
                    let kind = match resource.as_str() {
                        Some("secrets") => "Secret",
                        Some("configmaps") => "ConfigMap",
                        _ => continue,
                    };
                    for name in rule["resourceNames"].as_array().into_iter().flatten() {
                        let name = name.as_str().unwrap_or("");
                        need(format!("{me}: {kind} {ns}/{name}"), has(kind, ns, name));
                    }
                }
            }
        }
        if kind == "Connector" {
            let spec = &doc["spec"];
            let class = spec["connectorClassName"].as_str().unwrap_or("");
            need(
                format!("{me}: ConnectorClass {class}"),
                has("ConnectorClass", "", class),
            );
            for secret in [
                &spec["auth"]["secretRef"]["name"],
                &spec["caCertSecretRef"]["name"],
            ] {
                if let Some(name) = secret.as_str() {
                    need(format!("{me}: Secret {ns}/{name}"), has("Secret", ns, name));
                }
            }
        }
        if kind == "Service" {
            let selector = &doc["spec"]["selector"];
            let selects = docs.iter().any(|d| {
                d["metadata"]["namespace"] == doc["metadata"]["namespace"]
                    && pod_spec_labels(d).is_some_and(|labels| {
                        selector
                            .as_object()
                            .into_iter()
                            .flatten()
                            .all(|(k, v)| labels.get(k) == Some(v))
                    })
            });
            need(format!("{me}: selects no pods"), selects);
        }
        if let Some(pod) = pod_spec(doc) {
            let sa = pod["serviceAccountName"].as_str().unwrap_or("default");
            need(
                format!("{me}: ServiceAccount {ns}/{sa}"),
                has("ServiceAccount", ns, sa),
            );
            for volume in pod["volumes"].as_array().into_iter().flatten() {
                if let Some(name) = volume["configMap"]["name"].as_str() {
                    need(
                        format!("{me}: ConfigMap {ns}/{name}"),
                        has("ConfigMap", ns, name),
                    );
                }
                if let Some(name) = volume["secret"]["secretName"].as_str() {
                    need(format!("{me}: Secret {ns}/{name}"), has("Secret", ns, name));
                }
                let csi = &volume["csi"];
                if csi.is_object() {
                    let driver = csi["driver"].as_str().unwrap_or("");
                    need(
                        format!("{me}: CSIDriver {driver}"),
                        has("CSIDriver", "", driver),
                    );
                    let attrs = &csi["volumeAttributes"];
                    let names = attrs["connectors"]
                        .as_str()
                        .or(attrs["connector.name"].as_str())
                        .unwrap_or("");
                    need(
                        format!("{me}: CSI volume names no connector"),
                        !names.is_empty(),
                    );
                    for reference in names.split(',') {
                        let (cns, name) = reference
                            .trim()
                            .split_once('/')
                            .unwrap_or((ns, reference.trim()));
                        need(
                            format!("{me}: Connector {cns}/{name}"),
                            has("Connector", cns, name),
                        );
                    }
                }
            }
            for container in pod["containers"].as_array().into_iter().flatten() {
                for env in container["env"].as_array().into_iter().flatten() {
                    let from = &env["valueFrom"];
                    if let Some(name) = from["configMapKeyRef"]["name"].as_str() {
                        need(
                            format!("{me}: ConfigMap {ns}/{name}"),
                            has("ConfigMap", ns, name),
                        );
                    }
                    if let Some(name) = from["secretKeyRef"]["name"].as_str() {
                        need(format!("{me}: Secret {ns}/{name}"), has("Secret", ns, name));
                    }
                }
            }
        }
    }
    missing
}

fn pod_spec(doc: &Value) -> Option<&Value> {
    match doc["kind"].as_str()? {
        "Pod" => Some(&doc["spec"]),
        "Deployment" | "DaemonSet" | "StatefulSet" | "Job" => {
            Some(&doc["spec"]["template"]["spec"])
        }
        _ => None,
    }
}

fn pod_spec_labels(doc: &Value) -> Option<&serde_json::Map<String, Value>> {
    match doc["kind"].as_str()? {
        "Pod" => doc["metadata"]["labels"].as_object(),
        "Deployment" | "DaemonSet" | "StatefulSet" | "Job" => {
            doc["spec"]["template"]["metadata"]["labels"].as_object()
        }
        _ => None,
    }
}

#[test]
fn references_resolve() {
    let deploy = deploy_docs();
    let known = Inventory::new(&deploy);
    assert_eq!(unresolved(&deploy, &known), Vec::<String>::new(), "deploy/");

    // The cluster examples are applied on top of an installed deploy/. (examples/quickstart.yaml
    // is the embedded-mode catalog; it is only parsed and schema-checked.)
    let examples: Vec<Value> = yaml_files(&root().join("examples/kubernetes"))
        .iter()
        .flat_map(|f| parse_file(f))
        .collect();
    assert!(examples.len() >= 12, "{} cluster examples", examples.len());
    let mut all = deploy.clone();
    all.extend(examples.iter().cloned());
    let known = Inventory::new(&all);
    assert_eq!(
        unresolved(&examples, &known),
        Vec::<String>::new(),
        "examples/"
    );

    // The check can fail: a binding to a missing ServiceAccount and a pod naming a missing
    // connector are reported.
    let mut broken = deploy.clone();
    for doc in &mut broken {
        if doc["kind"] == "ClusterRoleBinding" && doc["metadata"]["name"] == "connectors-csi" {
            doc["subjects"][0]["name"] = json!("connectors-csii");
        }
    }
    let problems = unresolved(&broken, &Inventory::new(&broken));
    assert_eq!(
        problems,
        ["ClusterRoleBinding /connectors-csi: ServiceAccount connectors-system/connectors-csii"]
    );
    let mut job = examples
        .iter()
        .find(|d| d["kind"] == "Job")
        .cloned()
        .unwrap();
    job["spec"]["template"]["spec"]["volumes"][0]["csi"]["volumeAttributes"]["connector.name"] =
        json!("no-such-connector");
    let problems = unresolved(&[job], &known);
    assert_eq!(
        problems,
        ["Job oci-connector-demo/image-build: Connector oci-connector-demo/no-such-connector"]
    );
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/"))
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

#[test]
fn deployment_follows_the_contract() {
    let docs = deploy_docs();
    let flags = find(&docs, "ConfigMap", "connectors-config");
    assert_eq!(
        flags["data"],
        json!({
            "enable-connector-apis-permissions": "false",
            "enable-connector-apis-write-passthrough": "false",
            "enable-connector-proxy-permissions": "false",
            "enable-connectors-approval": "false",
            "enable-multi-connector": "false",
            "enable-custom-ca-certs": "false",
            "enable-pod-image-pull-via-connector": "false",
        })
    );
    let proxy = find(&docs, "Deployment", "connectors-proxy");
    assert_eq!(proxy["spec"]["replicas"], 2);
    let term = &proxy["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0];
    assert_eq!(term["weight"], 100);
    assert_eq!(
        term["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    let c = container(proxy, "proxy");
    assert_eq!(
        c["command"],
        json!([
            "connectors",
            "proxy",
            "--listen",
            "0.0.0.0:8080",
            "--admin-listen",
            "0.0.0.0:9090"
        ])
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "admin"})
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "admin"})
    );
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    let service = find(&docs, "Service", "connectors-proxy-service");
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "proxy");

    let controller = find(&docs, "Deployment", "connectors-controller-manager");
    assert_eq!(controller["spec"]["replicas"], 2);
    let c = container(controller, "manager");
    assert_eq!(
        c["command"],
        json!([
            "connectors",
            "controller",
            "--admin-listen",
            "0.0.0.0:9090",
            "--webhook-listen",
            "0.0.0.0:9443"
        ])
    );
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(env, ["POD_NAMESPACE", "POD_NAME"]);

    let csi = find(&docs, "DaemonSet", "connectors-csi");
    let c = container(csi, "csi-driver");
    assert_eq!(
        c["command"],
        json!([
            "connectors",
            "csi",
            "--kube",
            "--endpoint",
            "unix:///csi/csi.sock",
            "--node-id",
            "$(NODE_NAME)",
            "--registration-dir",
            "/registration",
            "--kubelet-registration-path",
            "/var/lib/kubelet/plugins/connectors-csi/csi.sock"
        ])
    );
    assert_eq!(c["securityContext"]["privileged"], true);
    // The image's user is 65532; the driver mounts and must be root.
    assert_eq!(c["securityContext"]["runAsUser"], 0);
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    // The driver registers itself with the kubelet: one container, no registrar sidecar.
    assert_eq!(
        csi["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let volumes: Vec<&str> = csi["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        volumes,
        ["socket-dir", "mountpoint-dir", "registration-dir"]
    );
    let driver = find(&docs, "CSIDriver", "connectors-csi");
    assert_eq!(
        driver["spec"],
        json!({
            "attachRequired": false,
            "podInfoOnMount": true,
            "volumeLifecycleModes": ["Ephemeral"],
            "tokenRequests": [{"audience": "connectors-proxy", "expirationSeconds": 3600}],
            "requiresRepublish": true,
        })
    );
    for name in [
        "connectors-proxy",
        "connectors-controller-manager",
        "connectors-csi",
    ] {
        let kind = if name == "connectors-csi" {
            "DaemonSet"
        } else {
            "Deployment"
        };
        let workload = find(&docs, kind, name);
        assert_eq!(
            workload["metadata"]["labels"]["app.kubernetes.io/name"],
            name
        );
        assert_eq!(
            workload["spec"]["template"]["spec"]["serviceAccountName"],
            name
        );
        for c in workload["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            assert_eq!(c["image"], "connectors:0.1.0", "{name}");
        }
    }
}

/// What a role grants: (apiGroup, resource, verb, resourceName or "*").
fn grants(role: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let names: Vec<&str> = match rule["resourceNames"].as_array() {
            Some(names) => names.iter().map(|n| n.as_str().unwrap()).collect(),
            None => vec!["*"],
        };
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    for name in &names {
                        out.insert(format!(
                            "{}/{} {} {name}",
                            group.as_str().unwrap(),
                            resource.as_str().unwrap(),
                            verb.as_str().unwrap()
                        ));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn rbac_is_least_privilege() {
    let docs = deploy_docs();
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let cr = |name| grants(find(&docs, "ClusterRole", name));
    let role = |name| grants(find(&docs, "Role", name));
    assert_eq!(
        cr("connectors-proxy"),
        set(&[
            "authentication.k8s.io/tokenreviews create *",
            "authorization.k8s.io/subjectaccessreviews create *",
            "connectors.alauda.io/connectors get *",
            "connectors.alauda.io/connectors list *",
            "connectors.alauda.io/connectors watch *",
            "connectors.alauda.io/connectorclasses get *",
            "connectors.alauda.io/connectorclasses list *",
            "connectors.alauda.io/connectorclasses watch *",
            "/secrets get *",
            "/namespaces get *",
        ])
    );
    assert_eq!(
        role("connectors-proxy"),
        set(&[
            "/secrets create *",
            "/secrets get connectors-proxy-ca",
            "/configmaps get connectors-config",
        ])
    );
    assert_eq!(
        cr("connectors-controller-manager"),
        set(&[
            "connectors.alauda.io/connectors get *",
            "connectors.alauda.io/connectors list *",
            "connectors.alauda.io/connectors watch *",
            "connectors.alauda.io/connectors/status update *",
            "connectors.alauda.io/connectors/status patch *",
            "connectors.alauda.io/connectorclasses get *",
            "connectors.alauda.io/connectorclasses list *",
            "connectors.alauda.io/connectorclasses watch *",
            "/secrets get *",
            "/secrets list *",
            "/secrets watch *",
            "/services get *",
            "/services list *",
            "/services watch *",
            "/services create *",
            "/services patch *",
            "/events create *",
            "events.k8s.io/events create *",
            "admissionregistration.k8s.io/mutatingwebhookconfigurations get connectors-pod-image-pull",
            "admissionregistration.k8s.io/mutatingwebhookconfigurations patch connectors-pod-image-pull",
        ])
    );
    // Leader election; the webhook's certificate Secret (created once) and its flag.
    assert!(role("connectors-controller-manager").iter().all(|g| {
        g.starts_with("coordination.k8s.io/leases ")
            || g == "/secrets create *"
            || g == "/configmaps get connectors-config"
    }));
    assert_eq!(
        cr("connectors-csi"),
        set(&[
            "connectors.alauda.io/connectors get *",
            "connectors.alauda.io/connectors list *",
            "connectors.alauda.io/connectors watch *",
            "connectors.alauda.io/connectorclasses get *",
            "connectors.alauda.io/connectorclasses list *",
            "connectors.alauda.io/connectorclasses watch *",
            "authorization.k8s.io/subjectaccessreviews create *",
            "/namespaces get *",
        ])
    );
    assert_eq!(
        role("connectors-csi"),
        set(&[
            "/secrets get connectors-proxy-ca",
            "/configmaps get connectors-config"
        ])
    );
}

// ---- a small structural-schema checker ----

/// What the API server would do with `value` under `schema`: type errors, missing required
/// fields, values outside an enum, and fields it would prune (not declared, no
/// `x-kubernetes-preserve-unknown-fields`). `metadata` is the API server's own and not pruned.
fn check(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        // The API server drops nulls of non-nullable fields before validation.
        return;
    }
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    let ty = schema["type"].as_str();
    let type_ok = match ty {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => {
            errors.push(format!("{path}: schema has unknown type {other}"));
            return;
        }
    };
    if !type_ok {
        errors.push(format!(
            "{path}: expected {}, got {value}",
            ty.unwrap_or("")
        ));
        return;
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap_or("");
            if object.get(key).is_none_or(Value::is_null) {
                errors.push(format!("{path}: required field {key} is missing"));
            }
        }
        let properties = schema["properties"].as_object();
        for (key, sub) in object {
            let sub_path = format!("{path}.{key}");
            if let Some(sub_schema) = properties.and_then(|p| p.get(key)) {
                if path.is_empty() && key == "metadata" {
                    continue;
                }
                check(sub, sub_schema, &sub_path, errors);
            } else if schema["additionalProperties"].is_object() {
                check(sub, &schema["additionalProperties"], &sub_path, errors);
            } else if !preserve {
                errors.push(format!(
                    "{sub_path}: unknown field, the API server would prune it"
                ));
            }
        }
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(item, item_schema, &format!("{path}[{i}]"), errors);
        }
    }
}

fn schemas() -> (Value, Value) {
    let crds = parse_stream(&connectors(&["manifests", "crds"]));
    let schema = |crd: &Value| crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    (schema(&crds[0]), schema(&crds[1]))
}

fn validate(doc: &Value, connector: &Value, class: &Value) -> Vec<String> {
    let schema = match doc["kind"].as_str() {
        Some("Connector") => connector,
        Some("ConnectorClass") => class,
        _ => return Vec::new(),
    };
    let mut errors = Vec::new();
    check(doc, schema, "", &mut errors);
    errors.iter().map(|e| format!("{}: {e}", id(doc))).collect()
}

/// Every path (with `[]` for list items) in the document's spec, and its annotations.
fn field_paths(value: &Value, path: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, sub) in map {
                let p = format!("{path}.{key}");
                out.insert(p.clone());
                field_paths(sub, &p, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                field_paths(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn crd_schemas_accept_the_examples_with_every_field() {
    let (connector, class) = schemas();
    let mut docs = example_docs();
    docs.extend(deploy_docs());
    let mut checked = 0;
    let mut connector_fields = BTreeSet::new();
    let mut class_fields = BTreeSet::new();
    for doc in &docs {
        let errors = validate(doc, &connector, &class);
        assert_eq!(errors, Vec::<String>::new());
        match doc["kind"].as_str() {
            Some("Connector") => field_paths(doc, "", &mut connector_fields),
            Some("ConnectorClass") => field_paths(doc, "", &mut class_fields),
            _ => continue,
        }
        checked += 1;
    }
    assert!(
        checked >= 7,
        "only {checked} Connector/ConnectorClass documents"
    );
    // Every field of the Connector and ConnectorClass specs (connectors-model), as users write them, is in some example.
    for field in [
        ".spec.connectorClassName",
        ".spec.address",
        ".spec.addressExtensions[].name",
        ".spec.addressExtensions[].value",
        ".spec.auth.name",
        ".spec.auth.secretRef.name",
        ".spec.auth.secretRef.namespace",
        ".spec.auth.params[].name",
        ".spec.auth.params[].value",
        ".spec.params[].name",
        ".spec.params[].value",
        ".spec.caCertSecretRef.name",
    ] {
        assert!(
            connector_fields.contains(field),
            "no example Connector sets {field}"
        );
    }
    for field in [
        ".metadata.annotations.connectors.cpaas.io/proxy-resolver",
        ".spec.address.type",
        ".spec.addressExtensions[].name",
        ".spec.addressExtensions[].default",
        ".spec.params[].name",
        ".spec.auth.types[].name",
        ".spec.auth.types[].secretType",
        ".spec.auth.types[].optional",
        ".spec.configurations[].name",
        ".spec.configurations[].data",
        ".spec.configurations[].params[].default",
        ".spec.proxy.ref",
        ".spec.proxy.uri",
    ] {
        assert!(
            class_fields.contains(field),
            "no example ConnectorClass sets {field}"
        );
    }
    assert!(
        !class_fields.contains(".spec.address.name"),
        "an example ConnectorClass must declare its address without a name"
    );
}

#[test]
fn crd_schemas_reject_what_the_api_server_would_refuse_or_prune() {
    let (connector_schema, class_schema) = schemas();
    let docs = example_docs();
    let connector = docs
        .iter()
        .find(|d| d["kind"] == "Connector" && d["metadata"]["name"] == "internal")
        .unwrap();
    let class = docs.iter().find(|d| d["kind"] == "ConnectorClass").unwrap();
    assert_eq!(
        validate(connector, &connector_schema, &class_schema),
        Vec::<String>::new()
    );

    type Mutation = fn(&mut Value);
    let cases: Vec<(Value, Mutation, &str)> = vec![
        (
            connector.clone(),
            |d| d["spec"]["connectorClass"] = json!("oci"),
            ".spec.connectorClass: unknown field",
        ),
        (
            connector.clone(),
            |d| d["spec"]["auth"]["secretRef"]["nmae"] = json!("x"),
            ".spec.auth.secretRef.nmae: unknown field",
        ),
        (
            connector.clone(),
            |d| d["spec"]["address"] = json!(443),
            ".spec.address: expected string",
        ),
        (
            connector.clone(),
            |d| d["spec"]["params"] = json!({"region": "eu-1"}),
            ".spec.params: expected array",
        ),
        (
            connector.clone(),
            |d| d["spec"]["params"][0] = json!({"name": "region"}),
            ".spec.params[0]: required field value is missing",
        ),
        (
            connector.clone(),
            |d| d["spec"]["addressExtensions"][0] = json!({"value": "https://x"}),
            ".spec.addressExtensions[0]: required field name is missing",
        ),
        (
            class.clone(),
            |d| d["spec"]["auth"]["types"][0] = json!({"secretType": "Opaque"}),
            ".spec.auth.types[0]: required field name is missing",
        ),
        (
            class.clone(),
            |d| d["spec"]["auth"]["types"][0]["optional"] = json!("yes"),
            ".spec.auth.types[0].optional: expected boolean",
        ),
        (
            class.clone(),
            |d| d["spec"]["configurations"][0]["data"]["config.json"] = json!({"auths": {}}),
            "data.config.json: expected string",
        ),
        (
            class.clone(),
            |d| d["spec"]["params"][0] = json!({"type": "string"}),
            ".spec.params[0]: required field name is missing",
        ),
        (
            class.clone(),
            |d| d["spec"]["configuration"] = json!([]),
            ".spec.configuration: unknown field",
        ),
    ];
    for (mut doc, mutate, want) in cases {
        mutate(&mut doc);
        let errors = validate(&doc, &connector_schema, &class_schema);
        assert!(
            errors.len() == 1 && errors[0].contains(want),
            "want one error containing {want:?}, got {errors:?}"
        );
    }
    // Free-form parts stay free: any param value, unknown status fields, probes.
    let mut doc = connector.clone();
    doc["spec"]["params"][0]["value"] = json!(["a", {"b": 1}]);
    doc["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "lastProbeTime": "x"}], "proxy": {"httpAddress": {"url": "http://p"}}});
    assert_eq!(
        validate(&doc, &connector_schema, &class_schema),
        Vec::<String>::new()
    );
}
