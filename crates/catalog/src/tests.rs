//! Catalog tests on manifests shaped like the published documentation's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use connectors_model::{ConnectorRef, RegistryCredentials, Scheme};

use crate::{Catalog, CatalogError, FileCatalog, ResolvedConnector, StaticCatalog};

const CANARY: &str = "canary-pw-4b7e19";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn r(s: &str) -> ConnectorRef {
    s.parse().unwrap()
}

fn basic(user: &str, pass: &str) -> RegistryCredentials {
    RegistryCredentials::Basic {
        username: user.into(),
        password: pass.into(),
    }
}

fn load_one(text: &str) -> (tempfile::TempDir, Result<Arc<FileCatalog>, CatalogError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "manifests.yaml", text);
    let catalog = FileCatalog::load(&path);
    (dir, catalog)
}

fn connector(catalog: &dyn Catalog, reference: &str) -> Arc<ResolvedConnector> {
    catalog
        .connector(&r(reference))
        .unwrap_or_else(|| panic!("{reference} not in catalog"))
}

/// The quick start: a distribution-registry-token Secret plus the connector that uses it.
fn quick_start(secret_body: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: registry-auth
  namespace: oci-connector-demo
type: cpaas.io/distribution-registry-token
{secret_body}
---
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata:
  name: oci-connector
  namespace: oci-connector-demo
spec:
  connectorClassName: oci
  address: "https://registry.example.com"  # Replace with your registry address
  auth:
    name: tokenAuth
    secretRef:
      name: registry-auth
"#
    )
}

#[test]
fn loads_the_quick_start_with_string_data_or_data() {
    let string_data = format!("stringData:\n  username: your-username\n  password: {CANARY}\n");
    let data = format!(
        "data:\n  username: {}\n  password: {}\n",
        b64("your-username"),
        b64(CANARY)
    );
    for body in [string_data, data] {
        let (_dir, catalog) = load_one(&quick_start(&body));
        let catalog = catalog.unwrap();
        let c = connector(catalog.as_ref(), "oci-connector-demo/oci-connector");
        assert_eq!(c.credentials, Ok(basic("your-username", CANARY)));
        assert_eq!(c.address.authority(), "registry.example.com:443");
        assert_eq!(c.class_name(), "oci");
        assert_eq!(
            c.connector.metadata.namespace.as_deref(),
            Some("oci-connector-demo")
        );
        assert!(c.ca_pems.is_empty());
        assert!(c.owns(Scheme::Https, "registry.example.com", 443));
        assert!(!c.owns(Scheme::Http, "registry.example.com", 443));
        assert_eq!(catalog.connectors().len(), 1);
        let oci = catalog.class("oci").unwrap();
        assert_eq!(oci.proxy_resolver(), "path");
    }
}

#[test]
fn a_connector_without_secret_is_anonymous() {
    // (spec.auth part, namespace line)
    let cases = [
        "  auth:\n    name: tokenAuth\n",
        "",
        "  auth: {}\n",
        "  auth:\n    name: tokenAuth\n    secretRef: null\n",
    ];
    for auth in cases {
        let yaml = format!(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: oci-registry-demo\nspec:\n  connectorClassName: oci\n  address: https://registry.example.com\n{auth}"
        );
        let (_dir, catalog) = load_one(&yaml);
        let catalog = catalog.unwrap();
        // No namespace in the manifest: `default`, as with kubectl.
        let c = connector(catalog.as_ref(), "default/oci-registry-demo");
        assert_eq!(c.credentials, Ok(RegistryCredentials::Anonymous), "{auth}");
    }
}

#[test]
fn reads_basic_auth_and_dockerconfigjson_secrets() {
    let docker = format!(
        r#"{{"auths":{{"harbor.example.com:8443":{{"auth":"{}"}}}}}}"#,
        b64(&format!("robot$ci:{CANARY}"))
    );
    let yaml = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: basic, namespace: team-a}}
type: kubernetes.io/basic-auth
stringData: {{username: alice, password: {CANARY}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: pull, namespace: team-a}}
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: {}
---
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {{name: basic, namespace: team-a}}
spec:
  connectorClassName: oci
  address: https://registry.example.com
  auth: {{name: tokenAuth, secretRef: {{name: basic}}}}
---
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {{name: harbor, namespace: team-a}}
spec:
  connectorClassName: oci
  address: https://Harbor.example.com:8443/
  auth: {{name: tokenAuth, secretRef: {{name: pull, namespace: team-a}}}}
---
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {{name: elsewhere, namespace: team-a}}
spec:
  connectorClassName: oci
  address: https://other.example.com
  auth: {{name: tokenAuth, secretRef: {{name: pull}}}}
"#,
        b64(&docker)
    );
    let (_dir, catalog) = load_one(&yaml);
    let catalog = catalog.unwrap();
    assert_eq!(
        connector(catalog.as_ref(), "team-a/basic").credentials,
        Ok(basic("alice", CANARY))
    );
    assert_eq!(
        connector(catalog.as_ref(), "team-a/harbor").credentials,
        Ok(basic("robot$ci", CANARY))
    );
    let reason = connector(catalog.as_ref(), "team-a/elsewhere")
        .credentials
        .clone()
        .unwrap_err();
    assert!(
        reason.contains("other.example.com:443")
            && reason.contains("\"harbor.example.com:8443\"")
            && reason.contains("team-a/pull")
            && reason.contains("team-a/elsewhere"),
        "{reason}"
    );
    assert!(!reason.contains(CANARY), "{reason}");
}

#[test]
fn skips_other_kinds_of_a_whole_quick_start_manifest() {
    let yaml = format!(
        r#"---
apiVersion: v1
kind: Namespace
metadata:
  name: oci-connector-demo
---
{}---
apiVersion: v1
kind: ConfigMap
metadata: {{name: containerfile, namespace: oci-connector-demo}}
data:
  Containerfile: |
    FROM scratch
---
apiVersion: v1
kind: Pod
metadata: {{name: p, namespace: oci-connector-demo}}
spec:
  containers: [{{name: c, image: busybox}}]
---
apiVersion: batch/v1
kind: Job
metadata: {{name: image-build, namespace: oci-connector-demo}}
spec: {{template: {{spec: {{restartPolicy: Never}}}}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: sa}}
---
"#,
        quick_start("stringData: {username: u, password: p}")
    );
    let (_dir, catalog) = load_one(&yaml);
    let catalog = catalog.unwrap();
    assert_eq!(catalog.connectors().len(), 1);
    assert!(connector(catalog.as_ref(), "oci-connector-demo/oci-connector").is_usable());
}

#[test]
fn reads_kind_list() {
    let yaml = r#"
apiVersion: v1
kind: List
items:
  - apiVersion: connectors.alauda.io/v1alpha1
    kind: Connector
    metadata: {name: a, namespace: ns}
    spec: {connectorClassName: oci, address: "http://localhost:5000"}
  - apiVersion: v1
    kind: Secret
    metadata: {name: s, namespace: ns}
    type: kubernetes.io/basic-auth
    stringData: {username: u, password: p}
  - apiVersion: v1
    kind: Namespace
    metadata: {name: ns}
"#;
    let catalog = StaticCatalog::from_yaml(yaml).unwrap();
    let c = connector(&catalog, "ns/a");
    assert_eq!(c.address.authority(), "localhost:5000");
    assert_eq!(c.credentials, Ok(RegistryCredentials::Anonymous));
}

#[test]
fn loads_a_folder_in_name_order_and_ignores_other_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "10-secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\ntype: cpaas.io/distribution-registry-token\nstringData: {username: u, password: p}\n",
    );
    write(
        dir.path(),
        "20-connector.yml",
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: c, namespace: ns}\nspec: {connectorClassName: oci, address: 'https://r.example.com', auth: {name: tokenAuth, secretRef: {name: s}}}\n",
    );
    write(dir.path(), "README.md", "not yaml: [");
    write(dir.path(), ".20-connector.yml.swp", "not yaml: [");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write(&dir.path().join("sub"), "x.yaml", "not yaml: [");
    let catalog = FileCatalog::load(dir.path()).unwrap();
    assert_eq!(
        connector(catalog.as_ref(), "ns/c").credentials,
        Ok(basic("u", "p"))
    );

    // The same connector in a second file: an error naming both places.
    write(
        dir.path(),
        "30-again.yaml",
        "---\napiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: c, namespace: ns}\nspec: {connectorClassName: oci, address: 'https://r.example.com'}\n",
    );
    let err = FileCatalog::load(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains("30-again.yaml (document 1)")
            && err.contains("20-connector.yml (document 1)")
            && err.contains("Connector ns/c"),
        "{err}"
    );
}

#[test]
fn an_empty_folder_is_an_empty_catalog_with_the_builtin_class() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = FileCatalog::load(dir.path()).unwrap();
    assert!(catalog.connectors().is_empty());
    assert!(catalog.class("oci").is_some());
    assert!(catalog.class("harbor").is_none());
    let missing = FileCatalog::load(&dir.path().join("nope")).err().unwrap();
    assert!(matches!(missing, CatalogError::Io { .. }), "{missing}");
    assert!(missing.to_string().contains("nope"), "{missing}");
}

const CONNECTOR_HEAD: &str = "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: prod, namespace: team-a}\n";

#[test]
fn invalid_manifests_name_file_resource_and_field() {
    let conn = |spec: &str| format!("{CONNECTOR_HEAD}spec:\n{spec}");
    // (yaml, parts the message must contain)
    let cases: Vec<(String, Vec<&str>)> = vec![
        (conn("  connectorClassName: oci\n  address: registry.example.com\n"), vec!["Connector team-a/prod: spec.address: ", "no scheme"]),
        (conn(&format!("  connectorClassName: oci\n  address: https://u:{CANARY}@r.example.com\n")), vec!["Connector team-a/prod: spec.address: ", "put credentials in a Secret, not in the address"]),
        (conn("  connectorClassName: oci\n"), vec!["Connector team-a/prod: spec.address: ", "is required"]),
        (conn("  address: https://r\n"), vec!["Connector team-a/prod: spec.connectorClassName: ", "oci"]),
        (conn("  connectorClassName: oci\n  address: https://r\n  addressExtensions: [{name: realm, value: 'ftp://x'}]\n"), vec!["spec.addressExtensions[0].value: ", "http or https"]),
        (conn("  connectorClassName: oci\n  address: https://r\n  addressExtensions: [{name: realm, value: 'https://r/'}]\n"), vec!["spec.addressExtensions[0].value: ", "same as spec.address"]),
        (conn("  connectorClassName: oci\n  address: https://r\n  addressExtensions: [{name: a, value: 'https://x'}, {name: a, value: 'https://y'}]\n"), vec!["spec.addressExtensions[1].name: ", "more than once"]),
        (conn("  connectorClassName: oci\n  address: https://r\n  addressExtensions: [{name: a, value: [x]}]\n"), vec!["spec.addressExtensions[0].value: ", "URL"]),
        (conn("  connectorClassName: oci\n  address: https://r\n  auth: {name: tokenAuth, secretRef: {name: ''}}\n"), vec!["Connector team-a/prod: spec.auth.secretRef.name: "]),
        (conn("  connectorClassName: oci\n  address: https://r\n  caCertSecretRef: {}\n"), vec!["Connector team-a/prod: spec.caCertSecretRef.name: "]),
        // type errors carry the field path and line
        (conn("  connectorClassName: oci\n  address: https://r\n  addressExtensions: nope\n"), vec!["Connector team-a/prod: ", "spec.addressExtensions", "line 7"]),
        // names
        ("apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {namespace: team-a}\nspec: {}\n".into(), vec!["Connector (document 1): metadata.name: is required"]),
        ("apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: Prod_1}\nspec: {}\n".into(), vec!["Connector default/Prod_1: metadata.name: "]),
        ("apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: p, namespace: Team}\nspec: {}\n".into(), vec!["Connector Team/p: metadata.namespace: "]),
        // kind and apiVersion
        ("kind: Connector\nmetadata: {name: p}\nspec: {}\n".into(), vec!["Connector default/p: apiVersion: is missing; use connectors.alauda.io/v1alpha1"]),
        ("kind: Secret\nmetadata: {name: s}\n".into(), vec!["Secret default/s: apiVersion: is missing; use v1"]),
        ("apiVersion: v1\nmetadata: {name: s}\n".into(), vec!["resource default/s: kind: is missing"]),
        ("apiVersion: v1\nspec: {}\n".into(), vec!["resource (document 1): kind: is missing"]),
        ("- a\n- b\n".into(), vec!["document 1", "mapping"]),
        ("apiVersion: v1\nkind: List\n".into(), vec!["items"]),
        // classes
        ("apiVersion: connectors.alauda.io/v1alpha1\nkind: ConnectorClass\nmetadata: {name: x}\nspec:\n  auth:\n    types: [{name: a}, {name: a}]\n".into(), vec!["ConnectorClass x: spec.auth.types[1].name: ", "\"a\""]),
        ("apiVersion: connectors.alauda.io/v1alpha1\nkind: ConnectorClass\nmetadata: {name: x}\nspec:\n  configurations: [{data: {}}]\n".into(), vec!["ConnectorClass x: spec.configurations[0].name: is required"]),
        // Secrets: the value is never quoted
        (format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: team-a}}\nstringData:\n  password: 4{}\n", "8".repeat(9)), vec!["Secret team-a/s: ", "\"password\"", "line"]),
        // duplicates in one file
        (format!("{CONNECTOR_HEAD}spec: {{connectorClassName: oci, address: 'https://r'}}\n---\n{CONNECTOR_HEAD}spec: {{connectorClassName: oci, address: 'https://r'}}\n"), vec!["(document 2): Connector team-a/prod: defined again; it is already defined in ", "(document 1)"]),
    ];
    for (yaml, parts) in cases {
        let (dir, result) = load_one(&yaml);
        let err = result
            .err()
            .unwrap_or_else(|| panic!("should fail:\n{yaml}"));
        let msg = err.to_string();
        let file = dir.path().join("manifests.yaml").display().to_string();
        assert!(msg.starts_with(&file), "{msg:?} should start with the file");
        for part in parts {
            assert!(msg.contains(part), "{msg:?} should contain {part:?}");
        }
        assert!(!msg.contains(CANARY) && !msg.contains("488888888"), "{msg}");
    }
}

#[test]
fn yaml_syntax_errors_name_file_and_line() {
    let (dir, result) = load_one("apiVersion: v1\nkind: Secret\nmetadata:\n  name: [unclosed\n");
    let err = result.err().unwrap();
    let CatalogError::Yaml { line, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(line.is_some(), "{err}");
    let file = dir.path().join("manifests.yaml").display().to_string();
    assert!(err.to_string().starts_with(&format!("{file}:")), "{err}");
    assert!(err.to_string().contains("invalid YAML"), "{err}");
}

#[test]
fn skips_foreign_api_groups() {
    let yaml = "apiVersion: example.com/v1\nkind: Connector\nmetadata: {name: x}\nspec: {address: 5}\n---\napiVersion: apps/v1\nkind: Secret\nmetadata: {name: y}\n";
    let catalog = StaticCatalog::from_yaml(yaml).unwrap();
    assert!(catalog.connectors().is_empty());
}

/// Builds a one-connector catalog in `team-a` with extra resources, returns the connector.
fn team_a(connector_spec: &str, others: &str) -> Arc<ResolvedConnector> {
    let yaml = format!("{CONNECTOR_HEAD}spec:\n{connector_spec}---\n{others}");
    let catalog = StaticCatalog::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    connector(&catalog, "team-a/prod")
}

const TOKEN_SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: team-a}\ntype: cpaas.io/distribution-registry-token\nstringData: {username: u, password: canary-pw-4b7e19}\n";

#[test]
fn unusable_connectors_say_what_to_fix() {
    let strict_class = "apiVersion: connectors.alauda.io/v1alpha1\nkind: ConnectorClass\nmetadata: {name: strict}\nspec:\n  auth:\n    types:\n      - {name: tokenAuth, secretType: cpaas.io/distribution-registry-token}\n      - {name: other}\n  addressExtensions:\n    - {name: realm}\n    - {name: blobs, default: ''}\n";
    let other_ns_secret = TOKEN_SECRET.replace("team-a", "team-b");
    let opaque = TOKEN_SECRET.replace("cpaas.io/distribution-registry-token", "Opaque");
    let no_password = "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: team-a}\ntype: kubernetes.io/basic-auth\nstringData: {username: u}\n";
    let realm = "  addressExtensions: [{name: realm, value: 'https://auth.r'}]\n";
    // (connector spec, other resources, parts of the reason)
    let cases: Vec<(String, String, Vec<&str>)> = vec![
        (
            "  connectorClassName: oci\n  address: https://r\n  auth: {name: tokenAuth, secretRef: {name: registry-auth}}\n".into(),
            String::new(),
            vec!["Secret team-a/registry-auth", "spec.auth.secretRef", "Connector team-a/prod", "not found"],
        ),
        (
            "  connectorClassName: git\n  address: https://r\n".into(),
            String::new(),
            vec!["ConnectorClass \"git\"", "not found", "Connector team-a/prod"],
        ),
        (
            "  connectorClassName: oci\n  address: https://r\n  auth: {name: basicAuth}\n".into(),
            String::new(),
            vec!["spec.auth.name \"basicAuth\"", "ConnectorClass \"oci\"", "tokenAuth"],
        ),
        (
            "  connectorClassName: oci\n  address: https://r\n  auth: {name: tokenAuth, secretRef: {name: creds, namespace: team-b}}\n".into(),
            other_ns_secret,
            vec!["spec.auth.secretRef.namespace is \"team-b\"", "own namespace \"team-a\""],
        ),
        (
            "  connectorClassName: oci\n  address: https://r\n  auth: {name: tokenAuth, secretRef: {name: creds}}\n".into(),
            opaque,
            vec!["team-a/creds", "\"Opaque\"", "cpaas.io/distribution-registry-token"],
        ),
        (
            "  connectorClassName: oci\n  address: https://r\n  auth: {name: tokenAuth, secretRef: {name: creds}}\n".into(),
            no_password.into(),
            vec!["team-a/creds", "\"password\""],
        ),
        (
            format!("  connectorClassName: strict\n  address: https://r\n  auth: {{name: tokenAuth}}\n{realm}"),
            strict_class.into(),
            vec!["no spec.auth.secretRef", "\"tokenAuth\"", "ConnectorClass \"strict\"", "requires a Secret of type cpaas.io/distribution-registry-token"],
        ),
        (
            format!("  connectorClassName: strict\n  address: https://r\n{realm}"),
            strict_class.into(),
            vec!["spec.auth.name is not set", "tokenAuth, other"],
        ),
        (
            "  connectorClassName: strict\n  address: https://r\n  auth: {name: tokenAuth}\n".into(),
            strict_class.into(),
            vec!["lacks \"realm\""],
        ),
        (
            "  connectorClassName: strict\n  address: https://r\n  addressExtensions: [{name: realm, value: 'https://a'}, {name: cdn, value: 'https://b'}]\n".into(),
            strict_class.into(),
            vec!["\"cdn\"", "does not declare", "realm, blobs"],
        ),
        (
            "  connectorClassName: oci\n  address: https://r\n  caCertSecretRef: {name: ca}\n".into(),
            String::new(),
            vec!["Secret team-a/ca", "spec.caCertSecretRef", "not found"],
        ),
        (
            "  connectorClassName: oci\n  address: https://r\n  caCertSecretRef: {name: creds}\n".into(),
            TOKEN_SECRET.into(),
            vec!["spec.caCertSecretRef", "team-a/creds", "no CA certificate"],
        ),
    ];
    for (spec, others, parts) in cases {
        let c = team_a(&spec, &others);
        let reason = c.credentials.clone().expect_err(&spec);
        assert!(!c.is_usable());
        for part in parts {
            assert!(reason.contains(part), "{reason:?} should contain {part:?}");
        }
        assert!(!reason.contains(CANARY), "{reason}");
    }
}

#[test]
fn a_class_from_the_files_replaces_the_builtin_one() {
    let class = "apiVersion: connectors.alauda.io/v1alpha1\nkind: ConnectorClass\nmetadata:\n  name: oci\n  annotations: {connectors.cpaas.io/proxy-resolver: path}\nspec:\n  auth:\n    types: [{name: tokenAuth, secretType: cpaas.io/distribution-registry-token, optional: false}]\n";
    let c = team_a(
        "  connectorClassName: oci\n  address: https://r\n  auth: {name: tokenAuth}\n",
        class,
    );
    assert!(
        c.credentials
            .as_ref()
            .unwrap_err()
            .contains("requires a Secret")
    );
}

#[test]
fn ca_cert_secret_ref_collects_pems() {
    let pem =
        "-----BEGIN CERTIFICATE-----\n    MIIBszCCAVmgAwIBAgIU\n    -----END CERTIFICATE-----";
    let ca = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: ca, namespace: team-a}}\ntype: Opaque\ndata:\n  ca.crt: {}\nstringData:\n  notes.txt: hello\n  extra.pem: |\n    {pem}\n",
        b64("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    );
    let c = team_a(
        "  connectorClassName: oci\n  address: https://r\n  caCertSecretRef: {name: ca}\n",
        &ca,
    );
    assert_eq!(c.credentials, Ok(RegistryCredentials::Anonymous));
    assert_eq!(c.ca_pems.len(), 2, "{:?}", c.ca_pems);
    assert!(
        c.ca_pems
            .iter()
            .all(|p| p.contains("-----BEGIN CERTIFICATE-----"))
    );
}

#[test]
fn endpoints_include_extensions() {
    let c = team_a(
        "  connectorClassName: oci\n  address: https://registry.example.com/prefix\n  addressExtensions:\n    - {name: realm, value: 'https://auth.example.com:8443'}\n    - {name: blobs, value: 'http://blobs.example.com'}\n",
        "",
    );
    let all: Vec<String> = c.endpoints().map(|e| e.authority()).collect();
    assert_eq!(
        all,
        [
            "registry.example.com:443",
            "auth.example.com:8443",
            "blobs.example.com:80"
        ]
    );
    assert_eq!(c.address.path_prefix(), "/prefix");
    assert!(c.owns(Scheme::Https, "AUTH.example.com", 8443));
    assert!(c.owns(Scheme::Http, "blobs.example.com", 80));
    assert!(!c.owns(Scheme::Https, "blobs.example.com", 443));
    assert_eq!(c.extensions[0].0, "realm");
}

#[test]
fn reload_keeps_the_last_good_state_and_picks_up_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let good = quick_start("stringData: {username: u, password: first}");
    let path = write(dir.path(), "m.yaml", &good);
    let catalog = FileCatalog::load(&path).unwrap();
    let before = connector(catalog.as_ref(), "oci-connector-demo/oci-connector");

    assert!(!catalog.reload().unwrap(), "nothing changed");
    let same = connector(catalog.as_ref(), "oci-connector-demo/oci-connector");
    assert_eq!(same.fingerprint, before.fingerprint);

    // A broken edit: the error names the file, the old state stays.
    write(
        dir.path(),
        "m.yaml",
        &good.replace("https://registry.example.com", "registry.example.com"),
    );
    let err = catalog.reload().err().unwrap().to_string();
    assert!(
        err.contains("m.yaml") && err.contains("spec.address"),
        "{err}"
    );
    let kept = connector(catalog.as_ref(), "oci-connector-demo/oci-connector");
    assert_eq!(kept.credentials, Ok(basic("u", "first")));

    // A fixed edit with a rotated password: picked up, and the fingerprint moves.
    write(
        dir.path(),
        "m.yaml",
        &good.replace("password: first", "password: second"),
    );
    assert!(catalog.reload().unwrap());
    let after = connector(catalog.as_ref(), "oci-connector-demo/oci-connector");
    assert_eq!(after.credentials, Ok(basic("u", "second")));
    assert_ne!(after.fingerprint, before.fingerprint);

    // Removing the file keeps the state too.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(catalog.reload(), Err(CatalogError::Io { .. })));
    assert_eq!(catalog.connectors().len(), 1);
}

#[test]
fn fingerprint_follows_what_affects_upstream_access() {
    let spec = "  connectorClassName: oci\n  address: https://r\n  auth: {name: tokenAuth, secretRef: {name: creds}}\n  caCertSecretRef: {name: ca}\n";
    let ca = |body: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: ca, namespace: team-a}}\nstringData:\n  ca.crt: '-----BEGIN CERTIFICATE-----{body}'\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file = |spec: &str, secret: &str, ca: &str| {
        format!("{CONNECTOR_HEAD}spec:\n{spec}---\n{secret}---\n{ca}")
    };
    let path = write(dir.path(), "m.yaml", &file(spec, TOKEN_SECRET, &ca("A")));
    let catalog = FileCatalog::load(&path).unwrap();
    let fp = |c: &FileCatalog| connector(c, "team-a/prod").fingerprint;
    let base = fp(&catalog);
    // (variant, should the fingerprint change)
    let variants = [
        (file(spec, TOKEN_SECRET, &ca("A")), false),
        (
            format!("# a comment\n{}", file(spec, TOKEN_SECRET, &ca("A"))),
            false,
        ),
        (
            file(spec, &TOKEN_SECRET.replace(CANARY, "rotated"), &ca("A")),
            true,
        ),
        (file(spec, TOKEN_SECRET, &ca("B")), true),
        (
            file(
                &spec.replace("https://r", "https://r2"),
                TOKEN_SECRET,
                &ca("A"),
            ),
            true,
        ),
        (
            file(
                spec,
                &TOKEN_SECRET.replace("username: u", "username: v"),
                &ca("A"),
            ),
            true,
        ),
    ];
    for (text, changes) in variants {
        write(dir.path(), "m.yaml", &text);
        catalog.reload().unwrap();
        assert_eq!(fp(&catalog) != base, changes, "{text}");
    }
}

#[test]
fn secret_values_never_show_in_errors_or_debug() {
    let docker = format!(
        r#"{{"auths":{{"x.example.com":{{"auth":"{}"}}}}}}"#,
        b64(&format!("u:{CANARY}"))
    );
    let yaml = format!(
        "{TOKEN_SECRET}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: pull, namespace: team-a}}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{docker}'\n---\n\
         {CONNECTOR_HEAD}spec: {{connectorClassName: oci, address: 'https://r', auth: {{name: tokenAuth, secretRef: {{name: creds}}}}}}\n---\n\
         apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: pull, namespace: team-a}}\nspec: {{connectorClassName: oci, address: 'https://r', auth: {{name: tokenAuth, secretRef: {{name: pull}}}}}}\n"
    );
    let catalog = StaticCatalog::from_yaml(&yaml).unwrap();
    let mut outputs = Vec::new();
    for c in catalog.connectors() {
        outputs.push(format!("{c:?}"));
        outputs.push(format!("{:?}", c.credentials));
        if let Err(reason) = &c.credentials {
            outputs.push(reason.clone());
        }
    }
    assert!(connector(&catalog, "team-a/pull").credentials.is_err());
    // Load errors around Secrets.
    let broken = [
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {CANARY}\n"),
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ndata: [{CANARY}]\n"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {{password: [{CANARY}]}}\n"
        ),
        format!("{TOKEN_SECRET}---\n{TOKEN_SECRET}"),
        format!(
            "{CONNECTOR_HEAD}spec: {{connectorClassName: oci, address: 'https://u:{CANARY}@r'}}\n"
        ),
        format!(
            "{CONNECTOR_HEAD}spec: {{connectorClassName: oci, address: 'https://r?token={CANARY}'}}\n"
        ),
    ];
    for text in broken {
        let err = StaticCatalog::from_yaml(&text)
            .err()
            .unwrap_or_else(|| panic!("{text}"));
        outputs.push(err.to_string());
        outputs.push(format!("{err:?}"));
    }
    for out in outputs {
        assert!(!out.contains(CANARY), "{out}");
    }
}

#[tokio::test]
async fn the_watcher_reloads_on_change_and_survives_errors() {
    let dir = tempfile::tempdir().unwrap();
    let one = |name: &str| {
        format!(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: {name}, namespace: ns}}\nspec: {{connectorClassName: oci, address: 'https://r.example.com'}}\n"
        )
    };
    write(dir.path(), "a.yaml", &one("a"));
    let catalog = FileCatalog::load(dir.path()).unwrap();
    let watch = catalog.spawn_watch(Duration::from_millis(20));

    let wait_for = |want: usize| {
        let catalog = Arc::clone(&catalog);
        async move {
            for _ in 0..250 {
                if catalog.connectors().len() == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        }
    };

    write(dir.path(), "b.yaml", &one("b"));
    assert!(wait_for(2).await, "an added file is picked up");
    write(dir.path(), "c.yaml", "kind: [");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        catalog.connectors().len(),
        2,
        "a broken file keeps the last good state"
    );
    write(dir.path(), "c.yaml", &one("c"));
    assert!(wait_for(3).await, "a fixed file is picked up");
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    assert!(wait_for(2).await, "a removed file is picked up");
    assert!(catalog.connector(&r("ns/a")).is_none());

    // The task ends with the catalog.
    drop(catalog);
    tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watcher stops once the catalog is dropped")
        .unwrap();
}
