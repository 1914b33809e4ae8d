//! Connector and ConnectorClass as users write them for `kubectl apply`.
//!
//! The CRDs require almost nothing, so every field is optional with a default, unknown fields are
//! ignored (manifests may carry fields we do not use, such as `authProbes`), and an explicit `null`
//! reads like an absent field. The types also serialize (lower camel case, empty fields left out):
//! templates see `.connector` in exactly that JSON shape.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::serde_util::{is_false, null_default};

/// API group of Connector and ConnectorClass.
pub const API_GROUP: &str = "connectors.alauda.io";
/// The version of Connector and ConnectorClass.
pub const VERSION: &str = "v1alpha1";
/// The `apiVersion` users write for Connector and ConnectorClass.
pub const API_VERSION: &str = "connectors.alauda.io/v1alpha1";
/// Kind and plural (the REST resource name) of a Connector.
pub const CONNECTOR_KIND: (&str, &str) = ("Connector", "connectors");
/// Kind and plural (the REST resource name) of a ConnectorClass.
pub const CONNECTOR_CLASS_KIND: (&str, &str) = ("ConnectorClass", "connectorclasses");
/// ConnectorClass annotation that says how the proxy finds the connector in a request: `path`
/// (`/namespaces/<ns>/connectors/<name>/…`) or `host` (`c-<name>.<ns>…`).
pub const PROXY_RESOLVER_ANNOTATION: &str = "connectors.cpaas.io/proxy-resolver";
/// Name of the built-in class for OCI registries.
pub const OCI_CLASS_NAME: &str = "oci";
/// Name of the `oci` class's (only) auth type.
pub const OCI_TOKEN_AUTH: &str = "tokenAuth";

/// The part of Kubernetes `metadata` we use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

impl ObjectMeta {
    /// The namespace, with Kubernetes' rule that a namespaced resource written without one lands in
    /// `default`.
    pub fn namespace_or_default(&self) -> &str {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => "default",
        }
    }
}

/// A `connectors.alauda.io/v1alpha1` Connector: one registry integration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Connector {
    #[serde(deserialize_with = "null_default")]
    pub api_version: String,
    #[serde(deserialize_with = "null_default")]
    pub kind: String,
    #[serde(deserialize_with = "null_default")]
    pub metadata: ObjectMeta,
    #[serde(deserialize_with = "null_default")]
    pub spec: ConnectorSpec,
    /// Kept opaque: we never read a status from a manifest, but a dump of a live cluster has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectorSpec {
    #[serde(deserialize_with = "null_default")]
    pub connector_class_name: String,
    /// The registry URL, e.g. `https://registry.example.com`; parse it with
    /// [`Endpoint::parse`](crate::Endpoint::parse).
    #[serde(deserialize_with = "null_default")]
    pub address: String,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub address_extensions: Vec<AddressExtension>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<ConnectorAuth>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub params: Vec<Param>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert_secret_ref: Option<LocalRef>,
}

/// A further URL that belongs to a connector (a token realm, a blob host) and so may receive its
/// credentials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct AddressExtension {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    /// `any` in the CRD; in practice a URL string. See [`AddressExtension::string_value`].
    pub value: serde_json::Value,
}

impl AddressExtension {
    /// The value as text, if it is a string (or a number/bool, which YAML may produce from an
    /// unquoted scalar).
    pub fn string_value(&self) -> Option<String> {
        scalar_to_string(&self.value)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectorAuth {
    /// Must be one of the class's `auth.types[].name` (`tokenAuth` for `oci`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Absent means anonymous upstream access, allowed only when the auth type is optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub params: Vec<Param>,
}

/// The subset of a Kubernetes ObjectReference that points at a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct SecretRef {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    /// Allowed by the schema, but the secret must be in the connector's own namespace; anything
    /// else would let a connector borrow another team's credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to a resource in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct LocalRef {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
}

/// A `{name, value}` parameter. `value` is a Tekton-style ParamValue (string, array or object);
/// only strings are used today.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Param {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    pub value: serde_json::Value,
}

impl Param {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: serde_json::Value::String(value.into()),
        }
    }

    /// The value as text: a string as is, an unquoted YAML number or bool as written, `None` for
    /// null, arrays and objects.
    pub fn string_value(&self) -> Option<String> {
        scalar_to_string(&self.value)
    }
}

fn scalar_to_string(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A cluster-scoped `connectors.alauda.io/v1alpha1` ConnectorClass: defines a kind of connector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectorClass {
    #[serde(deserialize_with = "null_default")]
    pub api_version: String,
    #[serde(deserialize_with = "null_default")]
    pub kind: String,
    #[serde(deserialize_with = "null_default")]
    pub metadata: ObjectMeta,
    #[serde(deserialize_with = "null_default")]
    pub spec: ConnectorClassSpec,
}

impl ConnectorClass {
    /// The `connectors.cpaas.io/proxy-resolver` annotation (`path` or `host`); the published API
    /// defaults to `host` when it is absent.
    pub fn proxy_resolver(&self) -> &str {
        self.metadata
            .annotations
            .get(PROXY_RESOLVER_ANNOTATION)
            .map_or("host", String::as_str)
    }

    /// The auth type called `name`, if the class declares one.
    pub fn auth_type(&self, name: &str) -> Option<&AuthType> {
        self.auth_types().iter().find(|t| t.name == name)
    }

    /// All declared auth types (empty when the class has no `auth`).
    pub fn auth_types(&self) -> &[AuthType] {
        self.spec.auth.as_ref().map_or(&[], |a| a.types.as_slice())
    }

    pub fn configuration(&self, name: &str) -> Option<&Configuration> {
        self.spec.configurations.iter().find(|c| c.name == name)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectorClassSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<ParamSpec>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub address_extensions: Vec<ParamSpec>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub params: Vec<ParamSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<ClassAuth>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub configurations: Vec<Configuration>,
    /// `ref`/`uri` of the class's proxy Service; opaque because our proxy does not route by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<serde_json::Value>,
}

/// Declares one parameter (of the address, an extension, the class, an auth type or a
/// configuration).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ParamSpec {
    /// Required by the CRD everywhere except in practice on `spec.address`, which users often
    /// write as just `{type: string}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A parameter with a default may be left out by the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ClassAuth {
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub types: Vec<AuthType>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthType {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    /// The Secret type this auth type expects, e.g. `cpaas.io/distribution-registry-token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    /// When true a connector may leave out `auth.secretRef` and talk to the upstream anonymously.
    #[serde(deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub optional: bool,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub params: Vec<ParamSpec>,
}

/// A named set of files (file name → template) a workload can have rendered for a connector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Configuration {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub data: BTreeMap<String, String>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub params: Vec<ParamSpec>,
}

/// `config.json` (Docker/Podman/Buildah/crane auth file) of the built-in `registry-config` and
/// `docker-config` configurations: one `auths` entry per distinct proxy host among the mounted
/// connectors, each with `base64("connectors:<token>")`. The proxy ignores the user name in
/// reverse mode (only the token counts); `connectors` just says where the entry comes from.
const OCI_REGISTRY_CONFIG_JSON: &str = r#"{{- /* One auths entry per distinct proxy host; the proxy reads only the password (the token). */ -}}
{{- $auth := printf "connectors:%s" .context.token | b64enc -}}
{{- $auths := dict -}}
{{- range .connectors -}}
{{- $_ := set $auths (urlParse .status.proxyAddress).host (dict "auth" $auth) -}}
{{- end -}}
{{ dict "auths" $auths | toJson }}
"#;

/// `buildkitd.toml` of the built-in `buildkitd` configuration: the entitlements BuildKit needs in
/// CI and one `[registry."<proxy-host>"]` table per distinct proxy host, marking the proxy as a
/// plain-HTTP registry.
const OCI_BUILDKITD_TOML: &str = r#"{{- /* One registry table per distinct proxy host (sorted). */ -}}
insecure-entitlements = [ "network.host", "security.insecure" ]
{{- $hosts := dict }}
{{- range .connectors }}
{{- $_ := set $hosts (urlParse .status.proxyAddress).host true }}
{{- end }}
{{- range $host, $_ := $hosts }}

[registry.{{ quote $host }}]
  http = true
{{- end }}
"#;

fn oci_configuration(name: &str, file: &str, template: &str) -> Configuration {
    Configuration {
        name: name.to_owned(),
        data: BTreeMap::from([(file.to_owned(), template.to_owned())]),
        params: Vec::new(),
    }
}

/// The `oci` class the product ships, so users need not define it.
///
/// This function is the single definition of the built-in class: the catalog, the renderer and
/// the Kubernetes installer all take it from here, so they cannot drift apart.
pub fn builtin_oci_class() -> ConnectorClass {
    ConnectorClass {
        api_version: API_VERSION.to_owned(),
        kind: "ConnectorClass".to_owned(),
        metadata: ObjectMeta {
            name: OCI_CLASS_NAME.to_owned(),
            annotations: BTreeMap::from([(
                PROXY_RESOLVER_ANNOTATION.to_owned(),
                "path".to_owned(),
            )]),
            ..ObjectMeta::default()
        },
        spec: ConnectorClassSpec {
            address: Some(ParamSpec {
                name: None,
                type_: Some("string".to_owned()),
                description: Some(
                    "URL of the OCI registry, e.g. https://registry.example.com".to_owned(),
                ),
                default: None,
            }),
            auth: Some(ClassAuth {
                types: vec![AuthType {
                    name: OCI_TOKEN_AUTH.to_owned(),
                    secret_type: Some(crate::SECRET_TYPE_DISTRIBUTION_TOKEN.to_owned()),
                    optional: true,
                    params: Vec::new(),
                }],
            }),
            configurations: vec![
                oci_configuration("registry-config", "config.json", OCI_REGISTRY_CONFIG_JSON),
                oci_configuration("buildkitd", "buildkitd.toml", OCI_BUILDKITD_TOML),
                // The legacy name of registry-config.
                oci_configuration("docker-config", "config.json", OCI_REGISTRY_CONFIG_JSON),
            ],
            ..ConnectorClassSpec::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_connector_shapes() {
        // (yaml, check)
        type Check = fn(&Connector);
        let cases: Vec<(&str, Check)> = vec![
            (
                r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {name: oci-connector, namespace: oci-connector-demo}
spec:
  connectorClassName: oci
  address: "https://registry.example.com"
  auth:
    name: tokenAuth
    secretRef:
      name: registry-auth
"#,
                |c| {
                    assert_eq!(c.metadata.name, "oci-connector");
                    assert_eq!(c.metadata.namespace_or_default(), "oci-connector-demo");
                    assert_eq!(c.spec.connector_class_name, "oci");
                    let auth = c.spec.auth.as_ref().unwrap();
                    assert_eq!(auth.name.as_deref(), Some("tokenAuth"));
                    assert_eq!(auth.secret_ref.as_ref().unwrap().name, "registry-auth");
                },
            ),
            (
                // nulls, unknown fields, no namespace
                r#"
kind: Connector
metadata: {name: x, labels: null}
spec:
  address: https://r
  params:
  addressExtensions:
    - {name: realm, value: "https://auth.example.com"}
  somethingNew: true
  auth: {name: tokenAuth, params: [{name: repository, value: library/alpine}]}
  caCertSecretRef: {name: ca}
"#,
                |c| {
                    assert!(c.metadata.labels.is_empty());
                    assert_eq!(c.metadata.namespace_or_default(), "default");
                    assert!(c.spec.params.is_empty());
                    assert_eq!(
                        c.spec.address_extensions[0].string_value().as_deref(),
                        Some("https://auth.example.com")
                    );
                    let auth = c.spec.auth.as_ref().unwrap();
                    assert!(auth.secret_ref.is_none());
                    assert_eq!(
                        auth.params[0].string_value().as_deref(),
                        Some("library/alpine")
                    );
                    assert_eq!(c.spec.ca_cert_secret_ref.as_ref().unwrap().name, "ca");
                },
            ),
            ("kind: Connector\nspec: null\n", |c| {
                assert_eq!(c.spec, ConnectorSpec::default());
            }),
        ];
        for (yaml, check) in cases {
            let c: Connector = serde_yaml_ng::from_str(yaml).unwrap();
            check(&c);
        }
    }

    #[test]
    fn param_string_value() {
        let cases = [
            (serde_json::json!("abc"), Some("abc")),
            (serde_json::json!(5), Some("5")),
            (serde_json::json!(true), Some("true")),
            (serde_json::json!(null), None),
            (serde_json::json!(["a"]), None),
            (serde_json::json!({"a": 1}), None),
        ];
        for (value, want) in cases {
            let p = Param {
                name: "p".into(),
                value: value.clone(),
            };
            assert_eq!(p.string_value().as_deref(), want, "{value}");
        }
    }

    #[test]
    fn reads_class_shapes() {
        let yaml = r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: ConnectorClass
metadata:
  name: oci
  annotations:
    connectors.cpaas.io/proxy-resolver: path
spec:
  address:
    type: string
  addressExtensions:
    - name: realm
      default: ""
  auth:
    types:
      - name: tokenAuth
        secretType: cpaas.io/distribution-registry-token
        optional: true
  authProbes: [{authName: tokenAuth}]
  configurations:
    - name: registry-config
      data:
        config.json: '{"auths":{}}'
      params:
        - name: x
          type: string
          default: "1"
  proxy:
    ref: {kind: Service, name: p}
"#;
        let class: ConnectorClass = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(class.proxy_resolver(), "path");
        assert!(class.spec.address.as_ref().unwrap().name.is_none());
        assert_eq!(
            class.spec.address.as_ref().unwrap().type_.as_deref(),
            Some("string")
        );
        let t = class.auth_type("tokenAuth").unwrap();
        assert!(t.optional);
        assert_eq!(
            t.secret_type.as_deref(),
            Some("cpaas.io/distribution-registry-token")
        );
        let conf = class.configuration("registry-config").unwrap();
        assert_eq!(conf.data["config.json"], r#"{"auths":{}}"#);
        assert_eq!(conf.params[0].default, Some(serde_json::json!("1")));
        assert!(class.spec.proxy.is_some());
        assert!(class.auth_type("basicAuth").is_none());
    }

    #[test]
    fn class_without_annotation_resolves_by_host() {
        assert_eq!(ConnectorClass::default().proxy_resolver(), "host");
    }

    #[test]
    fn builtin_oci_class_matches_the_published_one() {
        let class = builtin_oci_class();
        assert_eq!(class.metadata.name, "oci");
        assert_eq!(class.proxy_resolver(), "path");
        let t = class.auth_type("tokenAuth").unwrap();
        assert!(t.optional);
        assert_eq!(
            t.secret_type.as_deref(),
            Some("cpaas.io/distribution-registry-token")
        );
        assert_eq!(class.auth_types().len(), 1);
        for (conf, file) in [
            ("registry-config", "config.json"),
            ("buildkitd", "buildkitd.toml"),
            ("docker-config", "config.json"),
        ] {
            let c = class.configuration(conf).unwrap();
            assert!(c.data.contains_key(file), "{conf}");
            assert!(c.params.is_empty());
        }
        assert_eq!(
            class.configuration("docker-config").unwrap().data,
            class.configuration("registry-config").unwrap().data
        );
        // It round-trips through its own JSON shape.
        let json = serde_json::to_string(&class).unwrap();
        let back: ConnectorClass = serde_json::from_str(&json).unwrap();
        assert_eq!(back, class);
    }

    #[test]
    fn connector_serializes_lower_camel_without_empty_fields() {
        let c = Connector {
            api_version: API_VERSION.into(),
            kind: "Connector".into(),
            metadata: ObjectMeta {
                name: "a".into(),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            spec: ConnectorSpec {
                connector_class_name: "oci".into(),
                address: "https://r".into(),
                ca_cert_secret_ref: Some(LocalRef { name: "ca".into() }),
                ..ConnectorSpec::default()
            },
            status: None,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "connectors.alauda.io/v1alpha1",
                "kind": "Connector",
                "metadata": {"name": "a", "namespace": "ns"},
                "spec": {"connectorClassName": "oci", "address": "https://r", "caCertSecretRef": {"name": "ca"}}
            })
        );
    }
}
