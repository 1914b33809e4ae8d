//! The proxy address a Connector gets (`status.proxy.httpAddress.url`) and the Service
//! `c-<name>` in its namespace that makes `c-<name>.<ns>.svc.cluster.local` reach the proxy.

use connectors_model::ConnectorRef;
use serde_json::{Value, json};

/// Where the proxy is reached from inside the cluster, and how connectors are told apart.
#[derive(Clone, Debug)]
pub struct ProxyAddressing {
    /// `path` (the `oci` class) or `host`: the class's `connectors.cpaas.io/proxy-resolver`.
    pub resolver: Resolver,
    /// The cluster DNS domain, `cluster.local` unless the cluster says otherwise.
    pub cluster_domain: String,
    /// `domain[:port]` when the proxy is exposed outside the cluster (NodePort, Ingress); the
    /// status URL then uses it instead of the per-connector Service name.
    pub exposed: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolver {
    Path,
    Host,
}

impl Resolver {
    /// From the class annotation; the published API defaults to `host`.
    pub fn from_annotation(value: &str) -> Self {
        if value.eq_ignore_ascii_case("path") {
            Self::Path
        } else {
            Self::Host
        }
    }
}

/// The name of the per-connector Service: `c-<name>`, which must be a DNS-1035 label (at most 63
/// characters, no dots, starting with a letter) for `c-<name>.<ns>.svc` to resolve.
pub fn service_name(connector: &ConnectorRef) -> Result<String, String> {
    let name = format!("c-{}", connector.name);
    let ok = name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "the proxy Service for Connector {connector} would be named {name:?}, which is not a DNS-1035 label \
             (at most 63 characters of a-z, 0-9 and '-', no dots): rename the Connector to at most 61 such characters"
        ))
    }
}

/// `status.proxy.httpAddress.url`.
pub fn proxy_url(connector: &ConnectorRef, addressing: &ProxyAddressing) -> String {
    let host = match &addressing.exposed {
        Some(domain) => domain.clone(),
        None => format!(
            "c-{}.{}.svc.{}",
            connector.name, connector.namespace, addressing.cluster_domain
        ),
    };
    match addressing.resolver {
        Resolver::Path => format!(
            "http://{host}/namespaces/{}/connectors/{}",
            connector.namespace, connector.name
        ),
        Resolver::Host if addressing.exposed.is_some() => format!(
            "http://{host}/namespaces/{}/connectors/{}",
            connector.namespace, connector.name
        ),
        Resolver::Host => format!("http://{host}"),
    }
}

/// The Service `c-<name>` as a server-side-apply body: an `ExternalName` Service pointing at the
/// proxy's Service in the components namespace, owned by the Connector (deleted with it).
///
/// `ExternalName` keeps the `Host` header the client used (`c-<name>.<ns>.svc…`), which is what the
/// proxy's host-format routing reads, and needs no endpoints of its own in every namespace.
pub fn desired_service(
    connector: &ConnectorRef,
    connector_uid: &str,
    proxy_service_host: &str,
) -> Result<Value, String> {
    let name = service_name(connector)?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": connector.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "connectors-controller",
                "connectors.alauda.io/connector": connector.name,
            },
            "ownerReferences": [{
                "apiVersion": connectors_model::API_VERSION,
                "kind": "Connector",
                "name": connector.name,
                "uid": connector_uid,
                "controller": true,
                "blockOwnerDeletion": false,
            }],
        },
        "spec": {
            "type": "ExternalName",
            "externalName": proxy_service_host,
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ns: &str, name: &str) -> ConnectorRef {
        ConnectorRef::new(ns, name).unwrap()
    }

    fn addressing(resolver: Resolver, exposed: Option<&str>) -> ProxyAddressing {
        ProxyAddressing {
            resolver,
            cluster_domain: "cluster.local".into(),
            exposed: exposed.map(str::to_owned),
        }
    }

    #[test]
    fn urls_follow_the_resolver() {
        let c = r("oci-connector-demo", "oci-connector");
        assert_eq!(
            proxy_url(&c, &addressing(Resolver::Path, None)),
            "http://c-oci-connector.oci-connector-demo.svc.cluster.local/namespaces/oci-connector-demo/connectors/oci-connector"
        );
        assert_eq!(
            proxy_url(&c, &addressing(Resolver::Host, None)),
            "http://c-oci-connector.oci-connector-demo.svc.cluster.local"
        );
        assert_eq!(
            proxy_url(&c, &addressing(Resolver::Path, Some("192.0.2.10:31567"))),
            "http://192.0.2.10:31567/namespaces/oci-connector-demo/connectors/oci-connector"
        );
        assert_eq!(Resolver::from_annotation("path"), Resolver::Path);
        assert_eq!(Resolver::from_annotation(""), Resolver::Host);
    }

    #[test]
    fn service_names_must_be_dns_labels() {
        assert_eq!(service_name(&r("ns", "harbor")).unwrap(), "c-harbor");
        let long = "a".repeat(62);
        let err = service_name(&r("ns", &long)).unwrap_err();
        assert!(err.contains("at most 61"), "{err}");
        assert!(service_name(&r("ns", "with.dot")).is_err());
    }

    #[test]
    fn service_points_at_the_proxy_and_is_owned_by_the_connector() {
        let svc = desired_service(
            &r("team-a", "harbor"),
            "uid-1",
            "connectors-proxy-service.connectors-system.svc.cluster.local",
        )
        .unwrap();
        assert_eq!(svc["metadata"]["name"], "c-harbor");
        assert_eq!(svc["metadata"]["namespace"], "team-a");
        assert_eq!(svc["spec"]["type"], "ExternalName");
        assert_eq!(
            svc["spec"]["externalName"],
            "connectors-proxy-service.connectors-system.svc.cluster.local"
        );
        assert_eq!(svc["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(svc["metadata"]["ownerReferences"][0]["kind"], "Connector");
    }
}
