//! A **fake** Kubernetes API server, in process, for tests.
//!
//! No real API server can run on the machines this project is built and tested on, so the kube-facing code
//! (identity, catalog, controller, CSI) is tested against this fake. It listens on `127.0.0.1` over plain HTTP and
//! speaks the real JSON of the endpoints our code uses, so `kube::Client` built from
//! `kube::Config::new(url)` talks to it unchanged:
//!
//! - get, list and watch (`?watch=true`, `resourceVersion`, newline-delimited watch events) of the resources in
//!   [`FAKE_RESOURCES`]: Connectors (namespaced) and ConnectorClasses (cluster) of `connectors.alauda.io/v1alpha1`,
//!   core/v1 Secrets, ConfigMaps, Services and Namespaces, `coordination.k8s.io/v1` Leases; label selectors (`k=v`, `k!=v`,
//!   `k`) and field selectors on `metadata.name` / `metadata.namespace`;
//! - create, replace (with `resourceVersion` conflicts → 409), JSON merge patch, delete, and the `/status`
//!   subresource (writes to the main resource keep the stored status, writes to `/status` change only the status,
//!   as for CRDs with a status subresource);
//! - server-side apply (`application/apply-patch+yaml`), **approximated**: the body is merged into the stored object
//!   like a JSON merge patch (the object is created when missing) and the `fieldManager` is recorded in
//!   `metadata.managedFields`. There is no field ownership and so no apply conflicts. Strategic merge patches are
//!   treated the same way as merge patches; JSON patches are refused (415);
//! - `authentication.k8s.io/v1` TokenReview and `authorization.k8s.io/v1` SubjectAccessReview, answered from tables
//!   the test programs ([`FakeHandle::add_token`], [`FakeHandle::allow`]);
//! - `GET /version`. Discovery (`/api`, `/apis`) is not served: kube-rs does not need it when the resource is given.
//!
//! Watches start from the given `resourceVersion` by replaying the event history; a version older than the
//! history kept (see [`FakeHandle::compact`]) gets `410 Gone` as an `ERROR` event, like a real server.
//!
//! The [`FakeHandle`] puts and deletes objects directly, switches the server "down" (new connections closed at once,
//! requests on open connections aborted, open watches cut) and counts requests per kind of call (`"list connectors"`, `"create tokenreviews"`, …)
//! so that a test can prove a cache hit.
#![forbid(unsafe_code)]

mod fake_http;
mod merge;
mod review;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

pub use review::{FakeRule, FakeUser};
use store::Store;

/// One kind of resource the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeResource {
    /// Empty for core/v1.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Whether `/status` is a separate subresource (main writes keep the status).
    pub status_subresource: bool,
}

impl FakeResource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// The resources the fake stores. Anything else is a 404, as on a server without that API.
pub const FAKE_RESOURCES: &[FakeResource] = &[
    FakeResource {
        group: "connectors.alauda.io",
        version: "v1alpha1",
        plural: "connectors",
        kind: "Connector",
        namespaced: true,
        status_subresource: true,
    },
    FakeResource {
        group: "connectors.alauda.io",
        version: "v1alpha1",
        plural: "connectorclasses",
        kind: "ConnectorClass",
        namespaced: false,
        status_subresource: true,
    },
    FakeResource {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
        status_subresource: false,
    },
    FakeResource {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        status_subresource: false,
    },
    FakeResource {
        group: "",
        version: "v1",
        plural: "services",
        kind: "Service",
        namespaced: true,
        status_subresource: true,
    },
    FakeResource {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        status_subresource: false,
    },
    // Namespaces: their labels decide connector scopes.
    FakeResource {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        status_subresource: false,
    },
];

/// Finds a served resource by `apiVersion` and `kind`.
pub fn fake_resource_for(api_version: &str, kind: &str) -> Option<&'static FakeResource> {
    FAKE_RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// Errors of the handle's direct object operations.
#[derive(Debug, PartialEq, Eq)]
pub struct FakeError(pub String);

impl std::fmt::Display for FakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FakeError {}

pub(crate) struct State {
    pub store: Mutex<Store>,
    pub reviews: Mutex<review::Tables>,
    pub counts: Mutex<BTreeMap<String, u64>>,
    /// Kinds of call answered 403 (see [`FakeHandle::forbid_call`]).
    pub forbidden: Mutex<BTreeSet<String>>,
    /// Live watch events, after they are in the store's history.
    pub events: broadcast::Sender<Arc<store::Event>>,
    /// `true` while the fake is "down".
    pub down: watch::Sender<bool>,
}

impl State {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn reviews(&self) -> MutexGuard<'_, review::Tables> {
        self.reviews.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn forbidden(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.forbidden.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count(&self, call: String) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(call)
            .or_default() += 1;
    }
}

/// The running fake API server. Dropping it stops it.
pub struct FakeApiServer {
    addr: SocketAddr,
    handle: FakeHandle,
    task: tokio::task::JoinHandle<()>,
}

impl FakeApiServer {
    /// Starts a fake on a free port of 127.0.0.1. Needs a Tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(16 * 1024);
        let state = Arc::new(State {
            store: Mutex::new(Store::default()),
            reviews: Mutex::new(review::Tables::default()),
            counts: Mutex::new(BTreeMap::new()),
            forbidden: Mutex::new(BTreeSet::new()),
            events,
            down: watch::channel(false).0,
        });
        let task = tokio::spawn(fake_http::serve(listener, Arc::clone(&state)));
        Ok(Self {
            addr,
            handle: FakeHandle { state },
            task,
        })
    }

    /// `http://127.0.0.1:<port>`, for `kube::Config::new(url.parse()?)`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to program and inspect the fake; clones share the same server.
    pub fn handle(&self) -> FakeHandle {
        self.handle.clone()
    }
}

impl std::ops::Deref for FakeApiServer {
    type Target = FakeHandle;
    fn deref(&self) -> &FakeHandle {
        &self.handle
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
        self.handle.state.down.send_replace(true);
    }
}

/// Programs and inspects a [`FakeApiServer`].
#[derive(Clone)]
pub struct FakeHandle {
    state: Arc<State>,
}

impl FakeHandle {
    /// Creates or replaces an object given as its full JSON (with `apiVersion`, `kind`, `metadata.name` and, for
    /// namespaced kinds, `metadata.namespace`, default `default`). Watchers see ADDED or MODIFIED. Returns the
    /// stored object (with `resourceVersion`, `uid`, …).
    pub fn put(&self, object: Value) -> Result<Value, FakeError> {
        let res = resource_of(&object)?;
        let (ns, name) = ident(res, &object)?;
        let mut store = self.state.store();
        let stored = store.upsert(res, &ns, &name, object, &self.state.events);
        Ok(stored)
    }

    /// The stored object, if any. `namespace` is ignored for cluster-scoped kinds.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let res = fake_resource_for(api_version, kind)?;
        let ns = if res.namespaced { namespace } else { "" };
        self.state.store().get(res, ns, name).cloned()
    }

    /// All stored objects of a kind (every namespace), sorted by namespace and name.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let Some(res) = fake_resource_for(api_version, kind) else {
            return Vec::new();
        };
        self.state
            .store()
            .list(res, None)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Deletes an object; watchers see DELETED. Returns whether it existed.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> bool {
        let Some(res) = fake_resource_for(api_version, kind) else {
            return false;
        };
        let ns = if res.namespaced { namespace } else { "" };
        self.state
            .store()
            .delete(res, ns, name, &self.state.events)
            .is_some()
    }

    /// Switches the fake down (`true`: connections are closed without an answer, open watches end) or back up.
    pub fn set_down(&self, down: bool) {
        self.state.down.send_replace(down);
    }

    pub fn is_down(&self) -> bool {
        *self.state.down.borrow()
    }

    /// Forgets the watch history up to now: a watch from an older `resourceVersion` gets 410 Gone.
    pub fn compact(&self) {
        self.state.store().compact();
    }

    /// Makes `token` authenticate as `user` in TokenReviews.
    pub fn add_token(&self, token: impl Into<String>, user: FakeUser) {
        self.state.reviews().tokens.insert(token.into(), user);
    }

    pub fn remove_token(&self, token: &str) {
        self.state.reviews().tokens.remove(token);
    }

    /// The audiences a TokenReview without `spec.audiences` is checked against (the API server's own; default
    /// `["https://kubernetes.default.svc.cluster.local"]`).
    pub fn set_default_audiences(&self, audiences: Vec<String>) {
        self.state.reviews().default_audiences = Some(audiences);
    }

    /// Adds an allow rule for SubjectAccessReviews. Nothing is allowed without a matching rule.
    pub fn allow(&self, rule: FakeRule) {
        self.state.reviews().rules.push(rule);
    }

    pub fn clear_rules(&self) {
        self.state.reviews().rules.clear();
    }

    /// The `spec` of every TokenReview and SubjectAccessReview received, oldest first.
    pub fn reviews_received(&self) -> Vec<Value> {
        self.state.reviews().received.clone()
    }

    /// How many requests of one kind of call arrived (also while down): `"<verb> <plural>[/<subresource>]"` with
    /// verb one of `get list watch create update patch apply delete`, e.g. `"create subjectaccessreviews"`,
    /// `"watch connectors"`, `"patch connectors/status"`.
    pub fn request_count(&self, call: &str) -> u64 {
        self.request_counts().get(call).copied().unwrap_or(0)
    }

    /// Answers every request of one kind of call (as named by [`FakeHandle::request_count`], e.g.
    /// `"list connectors"`) with 403 Forbidden, as for a ServiceAccount missing that RBAC verb.
    pub fn forbid_call(&self, call: &str) {
        self.state.forbidden().insert(call.to_owned());
    }

    /// Undoes every [`FakeHandle::forbid_call`].
    pub fn clear_forbidden_calls(&self) {
        self.state.forbidden().clear();
    }

    /// All request counts by kind of call.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.state
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn resource_of(object: &Value) -> Result<&'static FakeResource, FakeError> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    fake_resource_for(api_version, kind).ok_or_else(|| {
        FakeError(format!(
            "the fake API server does not serve apiVersion {api_version:?} kind {kind:?}"
        ))
    })
}

fn ident(res: &FakeResource, object: &Value) -> Result<(String, String), FakeError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        return Err(FakeError("metadata.name is required".into()));
    }
    let ns = if res.namespaced {
        object["metadata"]["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
    } else {
        ""
    };
    Ok((ns.to_owned(), name.to_owned()))
}

#[cfg(test)]
mod tests;
