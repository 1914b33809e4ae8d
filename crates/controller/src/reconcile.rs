//! One Connector's conditions, from what the API server holds (the Connector, its class, the
//! Secrets it names) and what the registry answers.
//!
//! Resolution — class, Secret type and keys, address extensions, CAs — is the catalog's, the same
//! code the proxy serves from, so the controller never calls a connector Ready that the proxy would
//! refuse. The registry probe is the one `connectors check` runs.

use connectors_catalog::{Catalog, ResolvedConnector, StaticCatalog};
use connectors_model::{Connector, ConnectorClass, ConnectorRef, RegistryCredentials, Secret};
use connectors_registry::UpstreamAccess;
use connectors_registry::probe::{ProbeReport, probe};

use crate::conditions::{
    AUTH_READY, CLASS_READY, Condition, ConditionStatus, LIVENESS_READY, PROXY_SERVICE_READY,
    SECRET_READY, ready, reason,
};

/// What the controller knows about one Connector before it probes the registry.
pub struct Observed<'a> {
    pub connector: &'a Connector,
    /// The class named by `spec.connectorClassName`, if it exists.
    pub class: Option<&'a ConnectorClass>,
    /// The Secrets of the connector's namespace that it names (auth and CA); missing ones are
    /// simply absent.
    pub secrets: Vec<Secret>,
    /// Whether the per-connector proxy Service is in place: `Err` says why not.
    pub proxy_service: Result<(), String>,
}

/// Computes the six conditions ([`crate::conditions`]), in [`crate::conditions::CONDITION_TYPES`] order, without
/// transition times (see [`crate::conditions::merge`]). Probes the registry only when the class and
/// Secret allow it.
pub async fn evaluate(access: &UpstreamAccess, observed: Observed<'_>) -> Vec<Condition> {
    let mut out = Vec::with_capacity(6);
    let blocked = |type_: &str, why: &str| {
        Condition::new(
            type_,
            ConditionStatus::Unknown,
            reason::DEPENDENCY_NOT_READY,
            format!("not checked: {why}"),
        )
    };
    let proxy_condition = match &observed.proxy_service {
        Ok(()) => Condition::new(PROXY_SERVICE_READY, ConditionStatus::True, "", ""),
        Err(why) => Condition::new(
            PROXY_SERVICE_READY,
            ConditionStatus::False,
            reason::PROXY_SERVICE_NOT_FOUND,
            why.clone(),
        ),
    };

    let class_name = &observed.connector.spec.connector_class_name;
    let Some(class) = observed.class else {
        out.push(Condition::new(
            CLASS_READY,
            ConditionStatus::False,
            reason::CLASS_NOT_FOUND,
            format!("connectorclass.connectors.alauda.io {class_name:?} not found"),
        ));
        let why = "the ConnectorClass is missing";
        out.push(blocked(SECRET_READY, why));
        out.push(blocked(LIVENESS_READY, why));
        out.push(blocked(AUTH_READY, why));
        out.push(proxy_condition);
        out.push(ready(&out));
        return out;
    };
    out.push(Condition::new(CLASS_READY, ConditionStatus::True, "", ""));

    let resolved = match resolve(observed.connector, class, observed.secrets) {
        Ok(r) => r,
        Err(message) => {
            // An address that cannot be parsed, a name Kubernetes would not accept: nothing can be
            // dialled, so liveness fails with the reason.
            out.push(blocked(SECRET_READY, "the Connector spec is invalid"));
            out.push(Condition::new(
                LIVENESS_READY,
                ConditionStatus::False,
                reason::CONNECTION_FAILED,
                message,
            ));
            out.push(blocked(AUTH_READY, "the Connector spec is invalid"));
            out.push(proxy_condition);
            out.push(ready(&out));
            return out;
        }
    };

    let credentials = match &resolved.credentials {
        Ok(c) => c,
        Err(why) => {
            out.push(Condition::new(
                SECRET_READY,
                ConditionStatus::False,
                reason::SECRET_INVALID,
                why.clone(),
            ));
            out.push(blocked(LIVENESS_READY, "the Secret is not usable"));
            out.push(blocked(AUTH_READY, "the Secret is not usable"));
            out.push(proxy_condition);
            out.push(ready(&out));
            return out;
        }
    };
    out.push(secret_condition(&resolved, credentials));

    let report = probe_connector(access, &resolved, credentials).await;
    out.extend(probe_conditions(report));
    out.push(proxy_condition);
    out.push(ready(&out));
    out
}

/// Probes one resolved connector's registry as `connectors check` does: `GET /v2/`, then the
/// credentials, for `repository:<auth.params.repository>:pull` when that parameter is set.
pub async fn probe_connector(
    access: &UpstreamAccess,
    connector: &ResolvedConnector,
    credentials: &RegistryCredentials,
) -> ProbeReport {
    let target = connectors_registry::Target {
        connector: &connector.reference,
        fingerprint: connector.fingerprint,
        address: &connector.address,
        extensions: &connector.extensions,
        credentials,
        ca_pems: &connector.ca_pems,
    };
    let repository = connector
        .connector
        .spec
        .auth
        .as_ref()
        .and_then(|a| a.params.iter().find(|p| p.name == "repository"))
        .and_then(|p| p.string_value());
    probe(access, &target, repository.as_deref()).await
}

fn resolve(
    connector: &Connector,
    class: &ConnectorClass,
    secrets: Vec<Secret>,
) -> Result<std::sync::Arc<ResolvedConnector>, String> {
    let namespace = connector.metadata.namespace_or_default();
    let reference = ConnectorRef::new(namespace, &connector.metadata.name)
        .map_err(|e| format!("Connector {namespace}/{}: {e}", connector.metadata.name))?;
    let catalog = StaticCatalog::from_resources(
        "<api-server>",
        vec![connector.clone()],
        vec![class.clone()],
        secrets,
    )
    .map_err(|e| e.to_string())?;
    catalog
        .connector(&reference)
        .ok_or_else(|| format!("Connector {reference} could not be resolved"))
}

fn secret_condition(resolved: &ResolvedConnector, credentials: &RegistryCredentials) -> Condition {
    let has_ref = resolved
        .connector
        .spec
        .auth
        .as_ref()
        .is_some_and(|a| a.secret_ref.is_some());
    match (credentials, has_ref) {
        (RegistryCredentials::Anonymous, false) => Condition::new(
            SECRET_READY,
            ConditionStatus::True,
            reason::SECRET_OPTIONAL,
            "no spec.auth.secretRef: the registry is accessed anonymously",
        ),
        _ => Condition::new(SECRET_READY, ConditionStatus::True, "", ""),
    }
}

fn probe_conditions(report: ProbeReport) -> [Condition; 2] {
    match (report.liveness, report.auth) {
        (Err(e), _) => [
            Condition::new(
                LIVENESS_READY,
                ConditionStatus::False,
                reason::CONNECTION_FAILED,
                e.to_string(),
            ),
            Condition::new(
                AUTH_READY,
                ConditionStatus::Unknown,
                reason::DEPENDENCY_NOT_READY,
                "not checked: the registry is not reachable",
            ),
        ],
        (Ok(()), Err(e)) => [
            Condition::new(LIVENESS_READY, ConditionStatus::True, "", ""),
            Condition::new(
                AUTH_READY,
                ConditionStatus::False,
                reason::AUTHENTICATION_FAILED,
                format!("Authentication failed: {e}"),
            ),
        ],
        (Ok(()), Ok(how)) => [
            Condition::new(LIVENESS_READY, ConditionStatus::True, "", ""),
            Condition::new(AUTH_READY, ConditionStatus::True, "", how),
        ],
    }
}
