//! [`Principal`]: the authenticated caller, as the authorizer sees it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use connectors_model::ConnectorRef;

/// Which connectors a credential itself limits its holder to. An [`crate::Authorizer`] may apply further checks
/// (the Kubernetes one asks the API server), so `Any` means "the token does not restrict", not "everything is
/// permitted".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    Any,
    Only(Vec<ConnectorRef>),
}

impl Allowed {
    /// Whether the credential's own scope includes `connector`.
    pub fn permits(&self, connector: &ConnectorRef) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Only(list) => list.contains(connector),
        }
    }
}

/// An authenticated caller. Holds no credential, so it can be logged and cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Who the token was issued to: the `sub` of a local token, the user name of a Kubernetes TokenReview.
    pub subject: String,
    pub allowed: Allowed,
    /// When the credential stops being valid; decisions about this principal must not be cached past it.
    pub expires_at: Option<SystemTime>,
    /// The user's groups, uid and extra attributes as the authenticator reported them. Local tokens leave them
    /// empty; a Kubernetes authorizer must pass them on in its SubjectAccessReview, because RBAC bindings to
    /// groups (e.g. `system:serviceaccounts:<ns>`) only match when the review carries them.
    pub groups: Vec<String>,
    pub uid: Option<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Principal {
    /// A principal with no groups, uid or extra attributes.
    pub fn new(
        subject: impl Into<String>,
        allowed: Allowed,
        expires_at: Option<SystemTime>,
    ) -> Self {
        Self {
            subject: subject.into(),
            allowed,
            expires_at,
            groups: Vec::new(),
            uid: None,
            extra: BTreeMap::new(),
        }
    }

    /// Whether the credential has expired at `now`: `now` at or past [`Principal::expires_at`].
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn r(s: &str) -> ConnectorRef {
        s.parse().unwrap()
    }

    #[test]
    fn allowed_permits() {
        let only = Allowed::Only(vec![r("a/b"), r("c/d")]);
        let cases = [
            (&Allowed::Any, "x/y", true),
            (&only, "a/b", true),
            (&only, "c/d", true),
            (&only, "a/d", false),
            (&only, "c/b", false),
            (&Allowed::Only(vec![]), "a/b", false),
        ];
        for (allowed, connector, want) in cases {
            assert_eq!(
                allowed.permits(&r(connector)),
                want,
                "{allowed:?} {connector}"
            );
        }
    }

    #[test]
    fn expiry_is_inclusive() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let p = Principal::new("me", Allowed::Any, Some(at));
        let cases = [(999, false), (1000, true), (1001, true)];
        for (now, want) in cases {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
            assert_eq!(p.is_expired_at(now), want, "{now:?}");
        }
        let forever = Principal::new("me", Allowed::Any, None);
        assert!(!forever.is_expired_at(SystemTime::now()));
    }
}
