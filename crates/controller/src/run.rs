//! The kube-facing loop: watch Connectors, reconcile each one (class, Secrets, registry probe, the
//! proxy Service), write `status` with server-side apply, re-probe periodically.

use std::sync::Arc;
use std::time::Duration;

use connectors_model::{Connector, ConnectorClass, ConnectorRef, Secret};
use connectors_registry::UpstreamAccess;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Secret as K8sSecret, Service};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::conditions::{self, Condition};
use crate::proxy_service::{ProxyAddressing, Resolver, desired_service, proxy_url};
use crate::reconcile::{Observed, evaluate};
use crate::{ConnectorStatus, FIELD_MANAGER, HttpAddress, ProxyStatus, now_rfc3339};

/// What the controller needs to know about its cluster.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Where the proxy's Service lives (`connectors-system`).
    pub components_namespace: String,
    /// The proxy's Service in that namespace (`connectors-proxy-service`).
    pub proxy_service: String,
    /// `cluster.local` unless the cluster's DNS domain differs.
    pub cluster_domain: String,
    /// `domain[:port]` when the proxy is exposed outside the cluster.
    pub exposed: Option<String>,
    /// How often a Ready (or failing) Connector is probed again.
    pub reprobe: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            components_namespace: "connectors-system".into(),
            proxy_service: "connectors-proxy-service".into(),
            cluster_domain: "cluster.local".into(),
            exposed: None,
            reprobe: Duration::from_secs(300),
        }
    }
}

/// Why one reconcile failed; the controller retries it with a back-off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    #[error("API server: {0}")]
    Api(#[from] kube::Error),
    #[error("Connector {connector}: {message}")]
    Invalid { connector: String, message: String },
}

/// The Connector as a dynamic resource, for the controller's main watch. Deliberately untyped there: a Connector that
/// does not read as the typed resource must become an `Invalid` reconcile error for that one object, not a watch
/// error that stops the controller for all of them. Point reads and writes use the typed `connectors_crd` API.
pub(crate) fn connector_resource() -> ApiResource {
    ApiResource::erase::<connectors_crd::Connector>(&())
}

struct Context {
    client: Client,
    access: UpstreamAccess,
    config: ControllerConfig,
    /// The status this controller last wrote per Connector (uid): generation, status, when. A status
    /// write wakes the controller again for the same Connector; when the object still carries exactly
    /// what was written, that wake-up is skipped instead of probing the registry a second time.
    written: std::sync::Mutex<std::collections::HashMap<String, Written>>,
}

struct Written {
    generation: Option<i64>,
    status: serde_json::Value,
    at: std::time::Instant,
}

/// Runs the controller until `shutdown` completes. Call it only while holding the leader lease
/// (see [`crate::lease`]).
pub async fn run(
    client: Client,
    access: UpstreamAccess,
    config: ControllerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let resource = connector_resource();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let context = Arc::new(Context {
        client: client.clone(),
        access,
        config,
        written: Default::default(),
    });
    let controller = Controller::new_with(api, watcher::Config::default(), resource.clone());
    let connectors = controller.store();
    // The objects a Connector's status depends on, watched by their metadata only (no Secret value reaches this
    // process through a watch): a rotated or deleted Secret is re-probed at once, a deleted Service c-<name> comes
    // back. Each event also forgets the "own status write" marker of the Connectors it maps to, so that the next
    // reconcile is a full one.
    let secrets: Api<PartialObjectMeta<K8sSecret>> = Api::all(client.clone());
    let services: Api<PartialObjectMeta<Service>> = Api::all(client);
    let (for_secrets, for_services) = (context.clone(), context.clone());
    let (secret_resource, service_resource) = (resource.clone(), resource);
    controller
        .watches(secrets, watcher::Config::default(), move |secret| {
            let refs = connectors_using_secret(&connectors.state(), &secret, &secret_resource);
            for_secrets.forget_written(refs.iter().map(|(_, uid)| uid.as_str()));
            refs.into_iter().map(|(r, _)| r).collect::<Vec<_>>()
        })
        .watches(
            services,
            watcher::Config::default().labels(MANAGED_BY_SELECTOR),
            move |service| {
                let refs = owning_connectors(&service, &service_resource);
                for_services.forget_written(refs.iter().map(|(_, uid)| uid.as_str()));
                refs.into_iter().map(|(r, _)| r).collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(connector = %object, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
}

impl Context {
    /// Forgets the status-write markers of these Connectors (uids): their next reconcile probes again.
    fn forget_written<'a>(&self, uids: impl Iterator<Item = &'a str>) {
        if let Ok(mut written) = self.written.lock() {
            for uid in uids {
                written.remove(uid);
            }
        }
    }
}

/// The label selector of the Services this controller applies (see [`crate::proxy_service::desired_service`]).
const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=connectors-controller";

/// The Connectors (reference, uid) in `secret`'s namespace that name it as their auth or CA Secret.
fn connectors_using_secret(
    connectors: &[Arc<DynamicObject>],
    secret: &PartialObjectMeta<K8sSecret>,
    resource: &ApiResource,
) -> Vec<(ObjectRef<DynamicObject>, String)> {
    let (Some(name), Some(namespace)) = (&secret.metadata.name, &secret.metadata.namespace) else {
        return Vec::new();
    };
    connectors
        .iter()
        .filter(|c| c.metadata.namespace.as_ref() == Some(namespace))
        .filter(|c| {
            let spec = &c.data["spec"];
            spec["auth"]["secretRef"]["name"].as_str() == Some(name)
                || spec["caCertSecretRef"]["name"].as_str() == Some(name)
        })
        .filter_map(|c| {
            let own = c.metadata.name.clone()?;
            Some((
                ObjectRef::new_with(&own, resource.clone()).within(namespace),
                c.metadata.uid.clone().unwrap_or_default(),
            ))
        })
        .collect()
}

/// The Connector (reference, uid) that owns `service` (its Service `c-<name>`), if any.
fn owning_connectors(
    service: &PartialObjectMeta<Service>,
    resource: &ApiResource,
) -> Vec<(ObjectRef<DynamicObject>, String)> {
    let Some(namespace) = &service.metadata.namespace else {
        return Vec::new();
    };
    service
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == resource.kind && o.api_version == resource.api_version)
        .map(|o| {
            (
                ObjectRef::new_with(&o.name, resource.clone()).within(namespace),
                o.uid.clone(),
            )
        })
        .collect()
}

/// `Some(wait)` when this reconcile was caused by the controller's own status write: the object has the
/// same generation and exactly the status written less than half a re-probe interval ago. The next probe
/// then waits for the rest of the interval.
fn own_write_echo(
    ctx: &Context,
    uid: &str,
    generation: Option<i64>,
    stored: &Option<serde_json::Value>,
) -> Option<Duration> {
    let written = ctx.written.lock().ok()?;
    let last = written.get(uid)?;
    let elapsed = last.at.elapsed();
    let echo = last.generation == generation
        && stored.as_ref() == Some(&last.status)
        && elapsed < ctx.config.reprobe / 2;
    echo.then(|| ctx.config.reprobe.saturating_sub(elapsed))
}

fn error_policy(_: Arc<DynamicObject>, error: &ReconcileError, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "will retry");
    Action::requeue(Duration::from_secs(15))
}

async fn reconcile(
    object: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let stored_status = object.data.get("status").cloned();
    let connector: Connector =
        serde_json::from_value(serde_json::to_value(object.as_ref()).map_err(|e| {
            ReconcileError::Invalid {
                connector: object.metadata.name.clone().unwrap_or_default(),
                message: e.to_string(),
            }
        })?)
        .map_err(|e| ReconcileError::Invalid {
            connector: object.metadata.name.clone().unwrap_or_default(),
            message: format!("cannot read it: {e}"),
        })?;
    let namespace = connector.metadata.namespace_or_default().to_owned();
    let reference = ConnectorRef::new(&namespace, &connector.metadata.name).map_err(|e| {
        ReconcileError::Invalid {
            connector: format!("{namespace}/{}", connector.metadata.name),
            message: e.to_string(),
        }
    })?;

    let uid = object.metadata.uid.clone().unwrap_or_default();
    if let Some(wait) = own_write_echo(&ctx, &uid, connector.metadata.generation, &stored_status) {
        return Ok(Action::requeue(wait));
    }

    let class = get_class(&ctx.client, &connector.spec.connector_class_name).await?;
    let secrets = get_secrets(&ctx.client, &connector).await?;
    let resolver = class
        .as_ref()
        .map(|c| Resolver::from_annotation(c.proxy_resolver()))
        .unwrap_or(Resolver::Path);
    let proxy_service = ensure_service(&ctx, &reference, &uid).await;

    let fresh = evaluate(
        &ctx.access,
        Observed {
            connector: &connector,
            class: class.as_ref(),
            secrets,
            proxy_service: proxy_service.clone(),
        },
    )
    .await;
    let stored: Vec<Condition> = stored_status
        .as_ref()
        .and_then(|s| s.get("conditions"))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let addressing = ProxyAddressing {
        resolver,
        cluster_domain: ctx.config.cluster_domain.clone(),
        exposed: ctx.config.exposed.clone(),
    };
    let status = ConnectorStatus {
        conditions: conditions::merge(&stored, fresh, &now_rfc3339()),
        observed_generation: connector.metadata.generation,
        proxy: proxy_service.is_ok().then(|| ProxyStatus {
            http_address: HttpAddress {
                url: proxy_url(&reference, &addressing),
            },
        }),
    };
    // Writing an unchanged status would only wake this controller again.
    let status_value = serde_json::to_value(&status).unwrap_or_default();
    let unchanged = stored_status.as_ref().is_some_and(|s| *s == status_value);
    if let Ok(mut written) = ctx.written.lock() {
        // Only entries younger than half an interval are ever used; older ones (deleted Connectors) go.
        let keep = ctx.config.reprobe;
        written.retain(|_, w| w.at.elapsed() < keep);
        written.insert(
            uid.clone(),
            Written {
                generation: connector.metadata.generation,
                status: status_value,
                at: std::time::Instant::now(),
            },
        );
    }
    if !unchanged {
        let api: Api<connectors_crd::Connector> = Api::namespaced(ctx.client.clone(), &namespace);
        api.patch_status(
            &reference.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(status.apply_patch(&namespace, &reference.name)),
        )
        .await?;
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::READY);
        tracing::info!(connector = %reference, ready = ?ready.map(|c| c.status), reason = ready.map_or("", |c| c.reason.as_str()), "status written");
    }
    Ok(Action::requeue(ctx.config.reprobe))
}

async fn get_class(client: &Client, name: &str) -> Result<Option<ConnectorClass>, ReconcileError> {
    let api: Api<connectors_crd::ConnectorClass> = Api::all(client.clone());
    let Some(object) = api.get_opt(name).await? else {
        return Ok(None);
    };
    Ok(object.to_model().ok())
}

/// The Secrets the Connector names (auth and CA), from its own namespace; missing ones are left
/// out and the catalog's resolution says so.
async fn get_secrets(
    client: &Client,
    connector: &Connector,
) -> Result<Vec<Secret>, ReconcileError> {
    let namespace = connector.metadata.namespace_or_default();
    // Read untyped: when a Secret does not parse into the typed struct (say, `data` that is not base64),
    // kube-rs logs the raw response body, which would put the Secret's values into the log.
    let resource = kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&());
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &resource);
    let names = connector
        .spec
        .auth
        .as_ref()
        .and_then(|a| a.secret_ref.as_ref())
        .map(|r| r.name.clone())
        .into_iter()
        .chain(
            connector
                .spec
                .ca_cert_secret_ref
                .as_ref()
                .map(|r| r.name.clone()),
        );
    let mut out = Vec::new();
    for name in names.filter(|n| !n.is_empty()) {
        if let Some(secret) = api.get_opt(&name).await? {
            let value = serde_json::to_value(secret).unwrap_or_default();
            if let Ok(secret) = serde_json::from_value::<Secret>(value) {
                out.push(secret);
            }
        }
    }
    Ok(out)
}

/// Applies the Service `c-<name>` after checking that the proxy's own Service exists; `Err` is the
/// `ProxyServiceReady` message.
async fn ensure_service(ctx: &Context, connector: &ConnectorRef, uid: &str) -> Result<(), String> {
    let cfg = &ctx.config;
    let system: Api<Service> = Api::namespaced(ctx.client.clone(), &cfg.components_namespace);
    match system.get_opt(&cfg.proxy_service).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(format!(
                "Service {} not found in namespace {}",
                cfg.proxy_service, cfg.components_namespace
            ));
        }
        Err(e) => return Err(format!("cannot read Service {}: {e}", cfg.proxy_service)),
    }
    let target = format!(
        "{}.{}.svc.{}",
        cfg.proxy_service, cfg.components_namespace, cfg.cluster_domain
    );
    let body = desired_service(connector, uid, &target)?;
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &connector.namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        format!(
            "cannot apply Service {name} in namespace {}: {e}",
            connector.namespace
        )
    })
}
