//! Knative-style conditions on a Connector's status: the types, the reasons, and how a
//! freshly computed set is merged into the one already stored so that `lastTransitionTime` only
//! moves when a condition's status changes.

use serde::{Deserialize, Serialize};

/// `ConnectorClassReady`: the class named by `spec.connectorClassName` exists.
pub const CLASS_READY: &str = "ConnectorClassReady";
/// `SecretReady`: the Secret exists, has an accepted type and the keys the type needs.
pub const SECRET_READY: &str = "SecretReady";
/// `LivenessReady`: the registry answers `GET /v2/`.
pub const LIVENESS_READY: &str = "LivenessReady";
/// `AuthReady`: the registry accepts the connector's credentials.
pub const AUTH_READY: &str = "AuthReady";
/// `ProxyServiceReady`: the per-connector Service routes to the proxy.
pub const PROXY_SERVICE_READY: &str = "ProxyServiceReady";
/// `Ready`: every other condition is True.
pub const READY: &str = "Ready";

/// The order in which conditions are written (and shown by `kubectl describe`).
pub const CONDITION_TYPES: [&str; 6] = [
    CLASS_READY,
    SECRET_READY,
    LIVENESS_READY,
    AUTH_READY,
    PROXY_SERVICE_READY,
    READY,
];

pub mod reason {
    pub const CLASS_NOT_FOUND: &str = "ConnectorClassNotFound";
    pub const SECRET_OPTIONAL: &str = "SecretOptional";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// The Secret exists but its type or keys do not fit the class's auth type. The published API
    /// reports this as `SecretNotFound` too; we keep that reason for compatibility and say what is
    /// wrong in the message.
    pub const SECRET_INVALID: &str = SECRET_NOT_FOUND;
    pub const CONNECTION_FAILED: &str = "ConnectionFailed";
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    pub const PROXY_SERVICE_NOT_FOUND: &str = "ProxyServiceNotFound";
    /// A condition that could not be evaluated because an earlier one failed.
    pub const DEPENDENCY_NOT_READY: &str = "DependencyNotReady";
    /// `Ready` is False because of the named condition; the reason of the first failing one is
    /// copied, as the printer column `Reason` shows it.
    pub const NOT_PROBED: &str = "NotProbed";
}

/// `True`, `False` or `Unknown`, spelled as Kubernetes spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One entry of `status.conditions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// RFC 3339, seconds precision.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_transition_time: String,
    /// Empty means Error (Knative); informational conditions say `Info`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub severity: String,
}

impl Condition {
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.into(),
            last_transition_time: String::new(),
            severity: String::new(),
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// The `Ready` condition over `others`: True when all are True; otherwise it carries the status,
/// reason and message of the first one that is not (False before Unknown).
pub fn ready(others: &[Condition]) -> Condition {
    let first_false = others.iter().find(|c| c.status == ConditionStatus::False);
    let first_unknown = others.iter().find(|c| c.status == ConditionStatus::Unknown);
    match first_false.or(first_unknown) {
        None => Condition::new(READY, ConditionStatus::True, "", ""),
        Some(c) => Condition::new(
            READY,
            c.status,
            &c.reason,
            format!("{}: {}", c.type_, c.message),
        ),
    }
}

/// Merges `fresh` conditions into `stored` ones: a condition whose status did not change keeps its
/// `lastTransitionTime`; a changed or new one gets `now`. Conditions of types we do not manage
/// (written by someone else) are kept as they are, after ours.
pub fn merge(stored: &[Condition], fresh: Vec<Condition>, now: &str) -> Vec<Condition> {
    let mut out: Vec<Condition> = fresh
        .into_iter()
        .map(|mut c| {
            let previous = stored.iter().find(|s| s.type_ == c.type_);
            c.last_transition_time = match previous {
                Some(p) if p.status == c.status && !p.last_transition_time.is_empty() => {
                    p.last_transition_time.clone()
                }
                _ => now.to_owned(),
            };
            c
        })
        .collect();
    for s in stored {
        if !out.iter().any(|c| c.type_ == s.type_) && !CONDITION_TYPES.contains(&s.type_.as_str()) {
            out.push(s.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(type_: &str, status: ConditionStatus, reason: &str) -> Condition {
        Condition::new(type_, status, reason, format!("{type_} message"))
    }

    #[test]
    fn ready_is_true_only_when_all_are_true() {
        let all = [
            c(CLASS_READY, ConditionStatus::True, ""),
            c(SECRET_READY, ConditionStatus::True, reason::SECRET_OPTIONAL),
        ];
        assert!(ready(&all).is_true());
        let some = [
            c(CLASS_READY, ConditionStatus::True, ""),
            c(LIVENESS_READY, ConditionStatus::Unknown, reason::NOT_PROBED),
            c(
                AUTH_READY,
                ConditionStatus::False,
                reason::AUTHENTICATION_FAILED,
            ),
        ];
        let r = ready(&some);
        assert_eq!(r.status, ConditionStatus::False);
        assert_eq!(r.reason, reason::AUTHENTICATION_FAILED);
        assert_eq!(r.message, "AuthReady: AuthReady message");
        let unknown = [c(
            LIVENESS_READY,
            ConditionStatus::Unknown,
            reason::NOT_PROBED,
        )];
        assert_eq!(ready(&unknown).status, ConditionStatus::Unknown);
    }

    #[test]
    fn merge_keeps_transition_time_while_status_holds() {
        let mut old = c(SECRET_READY, ConditionStatus::True, "");
        old.last_transition_time = "2026-01-01T00:00:00Z".into();
        let mut foreign = c("CACertReady", ConditionStatus::True, "Valid");
        foreign.severity = "Info".into();
        let stored = vec![old, foreign.clone()];

        let merged = merge(
            &stored,
            vec![
                c(SECRET_READY, ConditionStatus::True, ""),
                c(
                    AUTH_READY,
                    ConditionStatus::False,
                    reason::AUTHENTICATION_FAILED,
                ),
            ],
            "2026-02-02T00:00:00Z",
        );
        assert_eq!(merged[0].last_transition_time, "2026-01-01T00:00:00Z");
        assert_eq!(merged[1].last_transition_time, "2026-02-02T00:00:00Z");
        assert_eq!(merged[2], foreign, "conditions we do not manage are kept");

        let flipped = merge(
            &merged,
            vec![c(
                SECRET_READY,
                ConditionStatus::False,
                reason::SECRET_NOT_FOUND,
            )],
            "2026-03-03T00:00:00Z",
        );
        assert_eq!(flipped[0].last_transition_time, "2026-03-03T00:00:00Z");
        assert_eq!(
            flipped.len(),
            2,
            "a managed condition no longer produced is dropped, the foreign one kept"
        );
    }

    #[test]
    fn serialises_like_kubernetes() {
        let mut cond = c(READY, ConditionStatus::True, "");
        cond.message.clear();
        cond.last_transition_time = "2026-01-01T00:00:00Z".into();
        assert_eq!(
            serde_json::to_string(&cond).unwrap(),
            r#"{"type":"Ready","status":"True","lastTransitionTime":"2026-01-01T00:00:00Z"}"#
        );
    }
}
