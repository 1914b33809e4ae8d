//! [`KubeCatalog`]: the catalog read from the API server.
//!
//! - Connectors (in one namespace or all) and ConnectorClasses are followed with kube-rs reflectors: a list, then a
//!   watch from its `resourceVersion`; on `410 Gone` (history compacted) the watcher lists again, and on errors it
//!   retries with a capped exponential backoff. Each change wakes one rebuild task that waits a moment for more
//!   changes (debounce) and then resolves everything with [`StaticCatalog::from_resources`], the same resolution
//!   the file catalog uses, into a new snapshot swapped in whole. Lookups read the current snapshot without locks.
//!   A connector whose upstream access did not change (same spec and metadata, class, address, credentials, CAs)
//!   keeps its [`ResolvedConnector::fingerprint`] across rebuilds, so an unrelated change (another connector, a
//!   status update) leaves the upstream caches keyed by it warm.
//! - Secrets are read only when a connector references them (`spec.auth.secretRef`, `spec.caCertSecretRef`, in the
//!   connector's own namespace; a reference to another namespace is refused by the resolution and never fetched):
//!   a `get` as soon as a reference appears, then a `get` of every referenced Secret each
//!   [`KubeCatalogConfig::secret_refresh`]. A changed `resourceVersion`, a Secret that appeared or disappeared,
//!   triggers a rebuild.
//!
//!   Why get + refresh rather than watches: a field selector selects one name (`metadata.name=x`; there is no
//!   "name in (…)"), so following exactly the referenced Secrets by watch takes one long-lived watch connection per
//!   Secret, and a watch of a whole namespace would pull every Secret there (service-account tokens, TLS keys of
//!   other apps) into this process — the opposite of "only what connectors reference". Gets need only the `get`
//!   verb, cost one small request per referenced Secret per interval, and bound how long a rotated password takes to
//!   arrive (the interval, 10 s by default).
//! - When the API server cannot be reached, the watches retry and the Secret reads keep their last value: the last
//!   good snapshot keeps being served, and everything changed meanwhile arrives when the server is back (the
//!   watchers relist).
//! - A Connector or ConnectorClass that is invalid on its own (a bad address, say) is left out of the snapshot with a
//!   warning instead of failing the whole catalog, since one user's typo must not stop the other connectors.
//!   Connectors that resolve but cannot be used (class or Secret missing) stay in, with the reason; the reason is
//!   logged when it changes, not on every rebuild.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use connectors_catalog::{Catalog, CatalogError, ResolvedConnector, StaticCatalog};
use connectors_model::{Connector, ConnectorClass, ConnectorRef};
use futures_util::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;

use crate::KubeError;
use crate::error::scope;

const CONNECTORS: &str = "connectors.connectors.alauda.io";
const CLASSES: &str = "connectorclasses.connectors.alauda.io";
/// How long the rebuild task waits for more changes after one arrived.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How messages name the scope of ConnectorClasses.
const CLUSTER_WIDE: &str = "(cluster-scoped)";
/// The name resources carry in resolution errors.
const SOURCE: &str = "api-server";

/// How [`KubeCatalog`] reads the API server.
#[derive(Clone, Debug)]
pub struct KubeCatalogConfig {
    /// Watch Connectors in this namespace only; None = all namespaces.
    pub namespace: Option<String>,
    /// Also read the Secrets the connectors reference (the proxy: true; the CSI driver: false — it only renders,
    /// and its RBAC has no Secret access; then credentials resolve to Err but the connector, its class and address
    /// are there).
    pub secrets: bool,
    /// How long start() waits for the first complete list of each kind before failing.
    pub initial_sync_timeout: Duration,
    /// How often each referenced Secret is read again (the longest a rotated password takes to arrive).
    /// Default 10 s.
    pub secret_refresh: Duration,
}

impl Default for KubeCatalogConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            secrets: true,
            initial_sync_timeout: Duration::from_secs(30),
            secret_refresh: Duration::from_secs(10),
        }
    }
}

/// The catalog from the API server; see the module documentation. Dropping it stops its watches.
pub struct KubeCatalog {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::AbortHandle>,
}

/// One referenced Secret as last read.
#[derive(Clone)]
enum Cached {
    /// Read, with its `resourceVersion`.
    Present(Box<connectors_model::Secret>, Option<String>),
    /// The API server said 404.
    Missing,
    /// Never read successfully (API server unreachable, forbidden, unreadable): resolves as missing.
    Unknown,
}

struct SecretEntry {
    value: Cached,
    /// The last read error, to log each new one once.
    error: Option<String>,
}

struct Shared {
    client: kube::Client,
    config: KubeCatalogConfig,
    current: ArcSwap<Snapshot>,
    /// "Left out" warnings last logged (invalid resources), to log each once while it lasts.
    left_out: Mutex<BTreeSet<String>>,
    connectors: Store<DynamicObject>,
    classes: Store<DynamicObject>,
    /// Referenced Secrets by (namespace, name).
    secrets: Mutex<HashMap<(String, String), SecretEntry>>,
    /// Unusable reasons last logged, by connector.
    reasons: Mutex<BTreeMap<ConnectorRef, String>>,
    /// Last watch error per resource, for the initial-sync error.
    last_errors: Mutex<HashMap<&'static str, String>>,
    synced: AtomicBool,
    changed: Notify,
}

fn connector_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            connectors_model::API_GROUP,
            connectors_model::VERSION,
            connectors_model::CONNECTOR_KIND.0,
        ),
        connectors_model::CONNECTOR_KIND.1,
    )
}

pub(crate) fn secret_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Secret"), "secrets")
}

fn class_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            connectors_model::API_GROUP,
            connectors_model::VERSION,
            connectors_model::CONNECTOR_CLASS_KIND.0,
        ),
        connectors_model::CONNECTOR_CLASS_KIND.1,
    )
}

impl KubeCatalog {
    /// Lists Connectors and ConnectorClasses (and the referenced Secrets), builds the first snapshot and keeps
    /// following changes in background tasks. Fails when the first lists do not arrive within
    /// `initial_sync_timeout`, with the last error (an RBAC rule to add, an unreachable server).
    pub async fn start(
        client: kube::Client,
        config: KubeCatalogConfig,
    ) -> Result<Arc<KubeCatalog>, KubeError> {
        let connector_ar = connector_resource();
        let class_ar = class_resource();
        let connector_api: Api<DynamicObject> = match &config.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &connector_ar),
            None => Api::all_with(client.clone(), &connector_ar),
        };
        let class_api: Api<DynamicObject> = Api::all_with(client.clone(), &class_ar);
        let connector_writer = reflector::store::Writer::new(connector_ar);
        let class_writer = reflector::store::Writer::new(class_ar);
        let empty = StaticCatalog::from_resources(SOURCE, Vec::new(), Vec::new(), Vec::new())
            .map_err(|e| KubeError::Catalog(e.to_string()))?;
        let empty = Snapshot::new(&empty, &[], None);
        let shared = Arc::new(Shared {
            client,
            connectors: connector_writer.as_reader(),
            classes: class_writer.as_reader(),
            config,
            current: ArcSwap::from_pointee(empty),
            left_out: Mutex::new(BTreeSet::new()),
            secrets: Mutex::new(HashMap::new()),
            reasons: Mutex::new(BTreeMap::new()),
            last_errors: Mutex::new(HashMap::new()),
            synced: AtomicBool::new(false),
            changed: Notify::new(),
        });
        let namespace = shared.config.namespace.clone();
        let mut catalog = KubeCatalog {
            tasks: vec![
                tokio::spawn(follow(
                    Arc::clone(&shared),
                    connector_api,
                    connector_writer,
                    CONNECTORS,
                    scope(namespace.as_deref()),
                ))
                .abort_handle(),
                tokio::spawn(follow(
                    Arc::clone(&shared),
                    class_api,
                    class_writer,
                    CLASSES,
                    CLUSTER_WIDE.to_owned(),
                ))
                .abort_handle(),
            ],
            shared: Arc::clone(&shared),
        };

        let timeout = shared.config.initial_sync_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        for (store, resource, scope) in [
            (&shared.connectors, CONNECTORS, scope(namespace.as_deref())),
            (&shared.classes, CLASSES, CLUSTER_WIDE.to_owned()),
        ] {
            let ready = tokio::time::timeout_at(deadline, store.wait_until_ready()).await;
            if !matches!(ready, Ok(Ok(()))) {
                let last_error = shared
                    .last_error(resource)
                    .unwrap_or_else(|| "no answer and no error reported".to_owned());
                return Err(KubeError::InitialSync {
                    resource,
                    scope,
                    timeout,
                    last_error,
                });
            }
        }
        shared.rebuild().await;
        shared.synced.store(true, Ordering::Release);
        catalog
            .tasks
            .push(tokio::spawn(rebuilds(Arc::clone(&shared))).abort_handle());
        if shared.config.secrets {
            catalog
                .tasks
                .push(tokio::spawn(refresh_secrets(Arc::clone(&shared))).abort_handle());
        }
        tracing::info!(
            connectors = shared.current.load().ordered.len(),
            scope = %scope(namespace.as_deref()),
            secrets = shared.config.secrets,
            "catalog synced from the API server"
        );
        Ok(Arc::new(catalog))
    }

    /// True once the first lists arrived and while the watches are healthy-or-retrying (for /readyz we only need:
    /// initial sync done).
    pub fn is_synced(&self) -> bool {
        self.shared.synced.load(Ordering::Acquire)
    }

    /// How many referenced Secrets are currently followed (the proxy's metrics, tests).
    pub fn followed_secrets(&self) -> usize {
        self.shared.secrets().len()
    }
}

impl Drop for KubeCatalog {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Catalog for KubeCatalog {
    fn connector(&self, r: &ConnectorRef) -> Option<Arc<ResolvedConnector>> {
        self.shared.current.load().connectors.get(r).cloned()
    }

    fn connectors(&self) -> Vec<Arc<ResolvedConnector>> {
        self.shared.current.load().ordered.clone()
    }

    fn class(&self, name: &str) -> Option<Arc<ConnectorClass>> {
        self.shared.current.load().classes.get(name).cloned()
    }
}

/// Runs one reflector until aborted: every change wakes the rebuild task.
async fn follow(
    shared: Arc<Shared>,
    api: Api<DynamicObject>,
    writer: reflector::store::Writer<DynamicObject>,
    resource: &'static str,
    scope: String,
) {
    let stream = watcher(api, watcher::Config::default())
        .backoff(CappedBackoff::default())
        .reflect(writer);
    let mut stream = pin!(stream);
    let mut failing = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Ok(_) => {
                if failing {
                    tracing::info!(resource, "watch of {resource} works again");
                    failing = false;
                }
                shared.changed.notify_one();
            }
            Err(e) => {
                let hint = watch_hint(&e, resource, &scope);
                if is_gone(&e) {
                    tracing::info!(resource, "{hint}");
                } else {
                    tracing::warn!(resource, "{hint}");
                    failing = true;
                }
                shared
                    .last_errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(resource, hint);
            }
        }
    }
}

fn is_gone(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchError(status) if status.code == 410)
}

/// What a watch error means and what to do about it.
fn watch_hint(e: &watcher::Error, resource: &str, where_: &str) -> String {
    let status = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.as_ref()),
        watcher::Error::WatchError(s) => Some(s.as_ref()),
        _ => None,
    };
    match status.map(|s| s.code) {
        Some(403) => format!(
            "forbidden: this ServiceAccount may not list and watch {resource} {where_}; grant verbs get, list, watch on it in its ClusterRole (deploy/) — retrying"
        ),
        Some(404) => format!(
            "{resource} is not served by this API server: install the CRDs (kubectl apply -f deploy/crds/) — retrying"
        ),
        Some(410) => {
            format!("watch history of {resource} compacted (410 Gone); listing again")
        }
        _ => format!(
            "watch of {resource} {where_} failed: {e}; retrying, serving the last snapshot meanwhile"
        ),
    }
}

/// Watch retry delays: 250 ms doubling to 8 s, back to the start after a success.
struct CappedBackoff {
    next: Duration,
}

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

impl Default for CappedBackoff {
    fn default() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }
}

impl Iterator for CappedBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        Some(now)
    }
}

impl Backoff for CappedBackoff {
    fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

/// Rebuilds after changes, until aborted.
async fn rebuilds(shared: Arc<Shared>) {
    loop {
        shared.changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
        shared.rebuild().await;
    }
}

/// Reads every referenced Secret again each interval, until aborted.
async fn refresh_secrets(shared: Arc<Shared>) {
    // `interval` refuses zero.
    let every = shared.config.secret_refresh.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let keys: Vec<(String, String)> = shared.secrets().keys().cloned().collect();
        let mut changed = false;
        for (namespace, name) in keys {
            match shared.fetch_secret(&namespace, &name).await {
                Fetched::Changed => changed = true,
                Fetched::Same => {}
                // The API server is unreachable: the other reads would fail the same way.
                Fetched::Unreachable => break,
            }
        }
        if changed {
            shared.changed.notify_one();
        }
    }
}

enum Fetched {
    Changed,
    Same,
    Unreachable,
}

impl Shared {
    fn secrets(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), SecretEntry>> {
        self.secrets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn last_error(&self, resource: &str) -> Option<String> {
        self.last_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(resource)
            .cloned()
    }

    /// Reads one Secret into the cache; says whether what the catalog sees changed.
    async fn fetch_secret(&self, namespace: &str, name: &str) -> Fetched {
        // As a DynamicObject: any JSON object parses, so a malformed Secret never reaches kube-rs's own warning,
        // which would log the response body (the Secret's values) verbatim. The model's Secret parser names keys
        // only.
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &secret_resource());
        let (value, error, unreachable) = match api.get_opt(name).await {
            Ok(Some(secret)) => {
                let version = secret.metadata.resource_version.clone();
                match serde_json::to_value(secret)
                    .and_then(serde_json::from_value::<connectors_model::Secret>)
                {
                    Ok(secret) => (
                        Some(Cached::Present(Box::new(secret), version)),
                        None,
                        false,
                    ),
                    // The model's deserializer names the key, never the value.
                    Err(e) => (
                        Some(Cached::Unknown),
                        Some(format!("Secret {namespace}/{name} cannot be read: {e}")),
                        false,
                    ),
                }
            }
            Ok(None) => (Some(Cached::Missing), None, false),
            Err(kube::Error::Api(status)) if status.code == 403 => (
                None,
                Some(format!(
                    "forbidden: this ServiceAccount may not get secrets in namespace {namespace} (Secret {name}, referenced by a Connector); grant verb get on secrets in its ClusterRole (deploy/proxy.yaml)"
                )),
                false,
            ),
            Err(kube::Error::Api(status)) => (
                None,
                Some(format!(
                    "reading Secret {namespace}/{name}: the API server answered {} {}; keeping the last value read",
                    status.code, status.reason
                )),
                false,
            ),
            Err(e) => (
                None,
                Some(format!(
                    "reading Secret {namespace}/{name}: {e}; is the API server reachable? keeping the last value read"
                )),
                true,
            ),
        };
        let mut secrets = self.secrets();
        let Some(entry) = secrets.get_mut(&(namespace.to_owned(), name.to_owned())) else {
            // No longer referenced.
            return Fetched::Same;
        };
        if entry.error != error {
            match &error {
                Some(message) => tracing::warn!("{message}"),
                None if entry.error.is_some() => {
                    tracing::info!(secret = %format!("{namespace}/{name}"), "Secret read again")
                }
                None => {}
            }
            entry.error = error;
        }
        if unreachable {
            return Fetched::Unreachable;
        }
        let Some(value) = value else {
            return Fetched::Same;
        };
        let changed = !same(&entry.value, &value);
        entry.value = value;
        if changed {
            Fetched::Changed
        } else {
            Fetched::Same
        }
    }

    /// Resolves the reflectors' objects and the cached Secrets into a new snapshot.
    async fn rebuild(&self) {
        let connectors: Vec<Connector> = self
            .connectors
            .state()
            .iter()
            .filter_map(|o| convert(o, "Connector"))
            .collect();
        let classes: Vec<ConnectorClass> = self
            .classes
            .state()
            .iter()
            .filter_map(|o| convert(o, "ConnectorClass"))
            .collect();

        let secrets = if self.config.secrets {
            self.follow_references(&connectors).await
        } else {
            Vec::new()
        };
        let class_names: Vec<String> = classes.iter().map(|c| c.metadata.name.clone()).collect();
        let mut left_out = BTreeSet::new();
        let built = build(connectors, classes, secrets, &mut left_out);
        {
            let mut logged = self.left_out.lock().unwrap_or_else(|p| p.into_inner());
            for message in left_out.difference(&logged) {
                tracing::warn!("{message}");
            }
            *logged = left_out;
        }
        let Some(catalog) = built else {
            return;
        };
        let previous = self.current.load_full();
        let snapshot = Snapshot::new(&catalog, &class_names, Some(&previous));
        if self.config.secrets {
            self.log_reasons(&snapshot);
        }
        self.current.store(Arc::new(snapshot));
    }

    /// Makes the Secret cache hold exactly the referenced Secrets (reading new ones now) and returns them.
    async fn follow_references(&self, connectors: &[Connector]) -> Vec<connectors_model::Secret> {
        let wanted: BTreeSet<(String, String)> = connectors.iter().flat_map(references).collect();
        let new: Vec<(String, String)> = {
            let mut secrets = self.secrets();
            secrets.retain(|k, _| wanted.contains(k));
            wanted
                .iter()
                .filter(|k| !secrets.contains_key(*k))
                .cloned()
                .collect()
        };
        // All in the cache first: those not read now are read by the next refresh.
        self.secrets().extend(new.iter().map(|k| {
            (
                k.clone(),
                SecretEntry {
                    value: Cached::Unknown,
                    error: None,
                },
            )
        }));
        for (namespace, name) in new {
            if let Fetched::Unreachable = self.fetch_secret(&namespace, &name).await {
                // The refresh task reads it once the API server answers again.
                break;
            }
        }
        self.secrets()
            .values()
            .filter_map(|e| match &e.value {
                Cached::Present(secret, _) => Some(secret.as_ref().clone()),
                Cached::Missing | Cached::Unknown => None,
            })
            .collect()
    }

    /// Logs each connector's unusable reason when it appears or changes, and when it is fixed.
    fn log_reasons(&self, snapshot: &Snapshot) {
        let mut logged = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = BTreeMap::new();
        for c in &snapshot.ordered {
            match &c.credentials {
                Err(reason) => {
                    if logged.get(&c.reference) != Some(reason) {
                        tracing::warn!(connector = %c.reference, %reason, "connector is unusable until this is fixed; requests through it are refused");
                    }
                    now.insert(c.reference.clone(), reason.clone());
                }
                Ok(_) => {
                    if logged.contains_key(&c.reference) {
                        tracing::info!(connector = %c.reference, "connector is usable again");
                    }
                }
            }
        }
        *logged = now;
    }
}

fn same(a: &Cached, b: &Cached) -> bool {
    match (a, b) {
        (Cached::Present(_, va), Cached::Present(_, vb)) => va.is_some() && va == vb,
        (Cached::Missing, Cached::Missing) | (Cached::Unknown, Cached::Unknown) => true,
        _ => false,
    }
}

/// The Secrets a connector names in its own namespace.
fn references(connector: &Connector) -> Vec<(String, String)> {
    let namespace = connector.metadata.namespace_or_default();
    let auth = connector
        .spec
        .auth
        .as_ref()
        .and_then(|a| a.secret_ref.as_ref())
        // A reference into another namespace is refused by the resolution; never read that Secret.
        .filter(|r| {
            r.namespace
                .as_deref()
                .is_none_or(|ns| ns.is_empty() || ns == namespace)
        })
        .map(|r| r.name.clone());
    let ca = connector
        .spec
        .ca_cert_secret_ref
        .as_ref()
        .map(|r| r.name.clone());
    auth.into_iter()
        .chain(ca)
        .filter(|n| !n.is_empty())
        .map(|n| (namespace.to_owned(), n))
        .collect()
}

fn convert<T: serde::de::DeserializeOwned>(object: &DynamicObject, kind: &str) -> Option<T> {
    let name = format!(
        "{}{}",
        object
            .metadata
            .namespace
            .as_deref()
            .map(|ns| format!("{ns}/"))
            .unwrap_or_default(),
        object.metadata.name.as_deref().unwrap_or_default()
    );
    match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::warn!("{kind} {name} is left out of the catalog until fixed: {e}");
            None
        }
    }
}

/// Resolves with the catalog's own rules. A resource that is invalid on its own is dropped (with a warning) and
/// the rest resolved again; `None` only for errors that name no resource.
fn build(
    mut connectors: Vec<Connector>,
    mut classes: Vec<ConnectorClass>,
    mut secrets: Vec<connectors_model::Secret>,
    left_out: &mut BTreeSet<String>,
) -> Option<StaticCatalog> {
    loop {
        // The resolution warns about every unusable connector on every build; `log_reasons` logs changes only.
        let built =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                StaticCatalog::from_resources(
                    SOURCE,
                    connectors.clone(),
                    classes.clone(),
                    secrets.clone(),
                )
            });
        let error = match built {
            Ok(catalog) => return Some(catalog),
            Err(e) => e,
        };
        let resource = match &error {
            CatalogError::Invalid { resource, .. }
            | CatalogError::Schema { resource, .. }
            | CatalogError::Duplicate { resource, .. } => resource.clone(),
            _ => {
                left_out.insert(format!(
                    "cannot build the catalog, keeping the last one: {error}"
                ));
                return None;
            }
        };
        let before = connectors.len() + classes.len() + secrets.len();
        connectors.retain(|c| {
            format!(
                "Connector {}/{}",
                c.metadata.namespace_or_default(),
                c.metadata.name
            ) != resource
        });
        classes.retain(|c| format!("ConnectorClass {}", c.metadata.name) != resource);
        secrets.retain(|s| format!("Secret {}", s.display_name()) != resource);
        if connectors.len() + classes.len() + secrets.len() == before {
            left_out.insert(format!(
                "cannot build the catalog, keeping the last one: {error}"
            ));
            return None;
        }
        left_out.insert(format!(
            "{resource} is left out of the catalog until fixed: {error}"
        ));
    }
}

/// What lookups read: the resolution's result, with fingerprints carried over from the previous snapshot where the
/// upstream access did not change.
struct Snapshot {
    connectors: HashMap<ConnectorRef, Arc<ResolvedConnector>>,
    /// Sorted by reference.
    ordered: Vec<Arc<ResolvedConnector>>,
    classes: HashMap<String, Arc<ConnectorClass>>,
}

impl Snapshot {
    fn new(catalog: &StaticCatalog, class_names: &[String], previous: Option<&Snapshot>) -> Self {
        let classes: HashMap<String, Arc<ConnectorClass>> = class_names
            .iter()
            .map(String::as_str)
            .chain([connectors_model::OCI_CLASS_NAME])
            .filter_map(|name| Some((name.to_owned(), catalog.class(name)?)))
            .collect();
        let ordered: Vec<Arc<ResolvedConnector>> = catalog
            .connectors()
            .into_iter()
            .map(|new| {
                let Some(old) = previous.and_then(|p| {
                    let old = p.connectors.get(&new.reference)?;
                    let same_class =
                        p.classes.get(new.class_name()) == classes.get(new.class_name());
                    (same_class && same_access(old, &new)).then_some(old)
                }) else {
                    return new;
                };
                if old.fingerprint == new.fingerprint {
                    return new;
                }
                Arc::new(ResolvedConnector {
                    reference: new.reference.clone(),
                    connector: new.connector.clone(),
                    address: new.address.clone(),
                    extensions: new.extensions.clone(),
                    credentials: new.credentials.clone(),
                    ca_pems: new.ca_pems.clone(),
                    fingerprint: old.fingerprint,
                })
            })
            .collect();
        let connectors = ordered
            .iter()
            .map(|c| (c.reference.clone(), Arc::clone(c)))
            .collect();
        Self {
            connectors,
            ordered,
            classes,
        }
    }
}

/// Everything the fingerprint stands for, except the class (compared by the caller). The status is left out: the
/// controller writes it, and it does not change how the upstream is reached.
fn same_access(old: &ResolvedConnector, new: &ResolvedConnector) -> bool {
    old.connector.spec == new.connector.spec
        && old.connector.metadata == new.connector.metadata
        && old.address == new.address
        && old.extensions == new.extensions
        && old.credentials == new.credentials
        && old.ca_pems == new.ca_pems
}
