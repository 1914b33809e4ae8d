//! `FileCatalog`: the catalog read from a manifest file or folder, reloaded when it changes.

use std::collections::hash_map::RandomState;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use connectors_model::{ConnectorClass, ConnectorRef};

use crate::load::{self, FileStamp};
use crate::resolve::Snapshot;
use crate::{Catalog, CatalogError, Current, ResolvedConnector};

/// What the files looked like at the last (re)load attempt. An error is kept as its text so
/// that a path that stays broken is not retried (and warned about) on every poll.
type Stamp = Result<Vec<FileStamp>, String>;

/// Connectors, classes and Secrets from a YAML file, or from the `*.yaml`/`*.yml` files of a
/// folder (not recursive, in name order).
///
/// Files may hold several documents (`---`) and `kind: List`s; kinds other than Connector,
/// ConnectorClass and Secret are skipped, so a whole quick-start manifest (Namespace, Job, …) can
/// be used as is. A resource without `metadata.namespace` is in `default`, as with kubectl.
///
/// The built-in `oci` class is always there; a ConnectorClass named `oci` in the files replaces
/// it (decision: operators can tighten or extend the class without a new release).
pub struct FileCatalog {
    path: PathBuf,
    /// One hashing key for the life of the catalog: fingerprints stay comparable across reloads.
    hash_state: RandomState,
    current: Current,
    /// Held for the whole of a reload, so that concurrent reloads cannot store an older result
    /// over a newer one.
    stamp: Mutex<Stamp>,
}

impl FileCatalog {
    /// Loads `path` (a file or a folder). Fails if anything in it is invalid.
    pub fn load(path: &Path) -> Result<Arc<Self>, CatalogError> {
        let hash_state = RandomState::new();
        let files = load::manifest_files(path)?;
        let snapshot = build(&files, &hash_state)?;
        if files.is_empty() {
            tracing::warn!(path = %path.display(), "no *.yaml or *.yml files found; the catalog has no connectors");
        }
        tracing::info!(path = %path.display(), connectors = snapshot.ordered.len(), "catalog loaded");
        Ok(Arc::new(Self {
            path: path.to_owned(),
            hash_state,
            current: Current(ArcSwap::from_pointee(snapshot)),
            stamp: Mutex::new(Ok(files)),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the files again. On success the new state replaces the old one at once and the
    /// result says whether anything changed; on error the last good state stays in place.
    pub fn reload(&self) -> Result<bool, CatalogError> {
        let mut stamp = self.lock_stamp();
        self.reload_locked(&mut stamp)
    }

    /// Polls the files every `every` and reloads when their set, sizes or modification times
    /// change. Failures are logged and the last good state is kept. The task ends when the
    /// catalog is dropped (or when the handle is aborted).
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate; the state is fresh from load
            loop {
                ticks.tick().await;
                let Some(this) = weak.upgrade() else { break };
                // File I/O: keep it off the async workers.
                let outcome = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
                match outcome {
                    Ok(Some(Ok(changed))) => {
                        if let Some(this) = weak.upgrade() {
                            tracing::info!(
                                path = %this.path.display(),
                                connectors = this.current.0.load().ordered.len(),
                                changed,
                                "catalog reloaded"
                            );
                        }
                    }
                    Ok(Some(Err(e))) => {
                        tracing::warn!(error = %e, "catalog reload failed; keeping the last good state");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "catalog reload task failed; keeping the last good state");
                    }
                }
            }
        })
    }

    /// `None` when the files look unchanged since the last attempt.
    fn reload_if_changed(&self) -> Option<Result<bool, CatalogError>> {
        let mut stamp = self.lock_stamp();
        let now = current_stamp(&self.path);
        if now == *stamp {
            return None;
        }
        Some(self.reload_locked(&mut stamp))
    }

    fn reload_locked(&self, stamp: &mut Stamp) -> Result<bool, CatalogError> {
        let files = load::manifest_files(&self.path);
        // Remember this attempt even if it fails: the watcher retries only after a further edit.
        *stamp = files
            .as_ref()
            .map(Clone::clone)
            .map_err(ToString::to_string);
        let snapshot = build(&files?, &self.hash_state)?;
        let changed = snapshot.digest != self.current.0.load().digest;
        self.current.0.store(Arc::new(snapshot));
        Ok(changed)
    }

    fn lock_stamp(&self) -> std::sync::MutexGuard<'_, Stamp> {
        // A panic while holding the lock leaves only a stale stamp behind, which at worst causes
        // one extra reload.
        self.stamp
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn current_stamp(path: &Path) -> Stamp {
    load::manifest_files(path).map_err(|e| e.to_string())
}

fn build(files: &[FileStamp], hash_state: &RandomState) -> Result<Snapshot, CatalogError> {
    let resources = load::read_files(files)?;
    Snapshot::build(resources, hash_state)
}

impl Catalog for FileCatalog {
    fn connector(&self, r: &ConnectorRef) -> Option<Arc<ResolvedConnector>> {
        self.current.connector(r)
    }

    fn connectors(&self) -> Vec<Arc<ResolvedConnector>> {
        self.current.connectors()
    }

    fn class(&self, name: &str) -> Option<Arc<ConnectorClass>> {
        self.current.class(name)
    }
}
