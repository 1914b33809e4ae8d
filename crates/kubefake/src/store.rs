//! The fake's object store: objects by (resource, namespace, name), one resourceVersion counter for everything,
//! and the history of watch events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::FakeResource;

/// One watch event, as stored in the history and sent to live watchers.
pub(crate) struct Event {
    pub rv: u64,
    pub plural: &'static str,
    pub namespace: String,
    /// ADDED, MODIFIED or DELETED.
    pub kind: &'static str,
    pub object: Value,
}

#[derive(Default)]
pub(crate) struct Store {
    objects: BTreeMap<(&'static str, String, String), Value>,
    rv: u64,
    uids: u64,
    history: Vec<Arc<Event>>,
    /// Watches from a version below this get 410 Gone.
    compacted_at: u64,
}

/// Whether a watch from a resourceVersion can be served.
pub(crate) enum Replay {
    Events(Vec<Arc<Event>>),
    Gone,
}

impl Store {
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, res: &FakeResource, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(res.plural, ns.to_owned(), name.to_owned()))
    }

    /// Objects of `res`, in `ns` or everywhere.
    pub fn list(&self, res: &FakeResource, ns: Option<&str>) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|((plural, o_ns, _), _)| *plural == res.plural && ns.is_none_or(|n| n == o_ns))
            .map(|(_, v)| v)
            .collect()
    }

    /// Stores `object` under a new resourceVersion, filling in the server-set metadata, and records the event.
    /// Creates when missing; otherwise keeps `uid` and `creationTimestamp` and bumps `generation` when anything
    /// but metadata and status changed.
    pub fn upsert(
        &mut self,
        res: &'static FakeResource,
        ns: &str,
        name: &str,
        mut object: Value,
        events: &broadcast::Sender<Arc<Event>>,
    ) -> Value {
        let key = (res.plural, ns.to_owned(), name.to_owned());
        let old = self.objects.get(&key);
        self.rv += 1;
        let rv = self.rv;
        if !object.is_object() {
            object = json!({});
        }
        object["apiVersion"] = json!(res.api_version());
        object["kind"] = json!(res.kind);
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        let (uid, created, generation) = match old {
            Some(old) => {
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let generation = if spec_of(old) != spec_of(&object) {
                    generation + 1
                } else {
                    generation
                };
                (
                    old["metadata"]["uid"].clone(),
                    old["metadata"]["creationTimestamp"].clone(),
                    generation,
                )
            }
            None => {
                self.uids += 1;
                (
                    json!(format!("fake-uid-{:08}", self.uids)),
                    json!(rfc3339_now()),
                    1,
                )
            }
        };
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        let meta = &mut object["metadata"];
        meta["name"] = json!(name);
        if res.namespaced {
            meta["namespace"] = json!(ns);
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        meta["uid"] = uid;
        meta["creationTimestamp"] = created;
        meta["resourceVersion"] = json!(rv.to_string());
        meta["generation"] = json!(generation);
        self.objects.insert(key, object.clone());
        self.record(rv, res, ns, kind, object.clone(), events);
        object
    }

    pub fn delete(
        &mut self,
        res: &'static FakeResource,
        ns: &str,
        name: &str,
        events: &broadcast::Sender<Arc<Event>>,
    ) -> Option<Value> {
        let mut object = self
            .objects
            .remove(&(res.plural, ns.to_owned(), name.to_owned()))?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(self.rv, res, ns, "DELETED", object.clone(), events);
        Some(object)
    }

    fn record(
        &mut self,
        rv: u64,
        res: &'static FakeResource,
        ns: &str,
        kind: &'static str,
        object: Value,
        events: &broadcast::Sender<Arc<Event>>,
    ) {
        let event = Arc::new(Event {
            rv,
            plural: res.plural,
            namespace: ns.to_owned(),
            kind,
            object,
        });
        self.history.push(Arc::clone(&event));
        // No receivers is fine: nobody watches.
        let _ = events.send(event);
    }

    /// The events after `rv` for `res` (optionally one namespace).
    pub fn replay(&self, res: &FakeResource, ns: Option<&str>, rv: u64) -> Replay {
        if rv < self.compacted_at {
            return Replay::Gone;
        }
        Replay::Events(
            self.history
                .iter()
                .filter(|e| {
                    e.rv > rv && e.plural == res.plural && ns.is_none_or(|n| n == e.namespace)
                })
                .cloned()
                .collect(),
        )
    }

    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_at = self.rv;
    }
}

/// Everything but `metadata` and `status`: what bumps `generation`.
fn spec_of(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}
