//! Leader election on a `coordination.k8s.io/v1` Lease, so that any number of controller replicas
//! may run and exactly one reconciles.
//!
//! The holder renews the Lease every `renew` period; another replica takes it over only when the
//! holder has not renewed for `duration`. Every write carries the `resourceVersion` it read, so two
//! candidates racing for an expired Lease cannot both win (the loser gets 409 Conflict). A leader
//! that cannot renew for `duration` stops its work: by then another replica may have taken over.

use std::time::{Duration, SystemTime};

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// Which Lease, and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica: the pod name.
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews (well below `duration`).
    pub renew: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: "connectors-controller".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    #[error("lost the leader Lease {namespace}/{name}: it could not be renewed for {seconds} s")]
    Lost {
        namespace: String,
        name: String,
        seconds: u64,
    },
}

/// One replica's view of the Lease.
pub struct LeaderElector {
    api: Api<DynamicObject>,
    config: LeaseConfig,
}

fn lease_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
        "leases",
    )
}

fn micro_time(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced_with(client, &config.namespace, &lease_resource()),
            config,
        }
    }

    /// Takes the Lease if it is free or expired, renews it if we hold it. `Ok(true)` while we lead.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = SystemTime::now();
        let cfg = &self.config;
        let seconds = cfg.duration.as_secs().max(1);
        let Some(mut lease) = self.api.get_opt(&cfg.name).await? else {
            let object: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": {
                    "holderIdentity": cfg.identity,
                    "leaseDurationSeconds": seconds,
                    "acquireTime": micro_time(now),
                    "renewTime": micro_time(now),
                    "leaseTransitions": 0,
                },
            }))
            .map_err(kube::Error::SerdeError)?;
            return match self.api.create(&PostParams::default(), &object).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.data.get("spec").cloned().unwrap_or_default();
        let holder = spec["holderIdentity"].as_str().unwrap_or_default();
        let renewed = spec["renewTime"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        let held_for = spec["leaseDurationSeconds"]
            .as_u64()
            .map_or(cfg.duration, Duration::from_secs);
        let expired = renewed.is_none_or(|r| r + held_for < now);
        let ours = holder == cfg.identity;
        if !ours && !holder.is_empty() && !expired {
            return Ok(false);
        }
        let transitions = spec["leaseTransitions"].as_u64().unwrap_or(0);
        let acquire = if ours {
            spec["acquireTime"].clone()
        } else {
            json!(micro_time(now))
        };
        lease.data["spec"] = json!({
            "holderIdentity": cfg.identity,
            "leaseDurationSeconds": seconds,
            "acquireTime": acquire,
            "renewTime": micro_time(now),
            "leaseTransitions": if ours { transitions } else { transitions + 1 },
        });
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became the leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the leader Lease; retrying"),
            }
            tokio::time::sleep(self.config.renew).await;
        }
    }

    /// Renews the Lease until a renewal has failed for `duration`; then returns the error. Run it
    /// beside the leader's work and stop the work when it returns.
    pub async fn keep(&self) -> LeaseError {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.renew).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => break,
                Err(e) => tracing::warn!(error = %e, "cannot renew the leader Lease"),
            }
            if last_ok.elapsed() >= self.config.duration {
                break;
            }
        }
        LeaseError::Lost {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            seconds: self.config.duration.as_secs(),
        }
    }
}
