//! Errors. Every message says what to fix and none contains a token: callers put them into HTTP bodies and logs.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use connectors_model::ConnectorRef;

use crate::time::format_utc;

/// Why a request's credentials were not accepted.
///
/// The messages do not name a header, because the same errors come from reverse mode (`Authorization`) and
/// forward mode (`Proxy-Authorization`); the proxy adds that context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error(
        "no proxy token: send it as the password of HTTP Basic credentials (user name: any, or the connectors in forward mode)"
    )]
    Missing,
    /// The reason says what is wrong with the credentials; it never quotes the token.
    #[error("malformed proxy credentials: {0}")]
    Malformed(String),
    #[error(
        "proxy token expired at {}; issue a new one with `connectors token issue`",
        format_utc(*.expired_at)
    )]
    Expired { expired_at: SystemTime },
    #[error(
        "proxy token signature does not verify: it was signed by another key (was the state folder recreated?)"
    )]
    BadSignature,
    #[error("token for {subject} may not use connector {connector}")]
    NotAllowed {
        subject: String,
        connector: ConnectorRef,
    },
    /// The backend could not decide (e.g. the Kubernetes API server did not answer). Callers fail closed.
    #[error("cannot check the proxy token right now: {0}")]
    Unavailable(String),
}

/// How the proxy should answer an [`AuthError`] (the table in README.md, "Errors the workload sees").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthErrorKind {
    /// Missing or invalid credentials: 401 in reverse mode, 407 in forward mode.
    Unauthenticated,
    /// Valid credentials that may not use this connector: 403.
    Forbidden,
    /// The backend could not decide; the request is refused (fail closed), typically with 503.
    Unavailable,
}

impl AuthError {
    pub fn kind(&self) -> AuthErrorKind {
        match self {
            AuthError::Missing
            | AuthError::Malformed(_)
            | AuthError::Expired { .. }
            | AuthError::BadSignature => AuthErrorKind::Unauthenticated,
            AuthError::NotAllowed { .. } => AuthErrorKind::Forbidden,
            AuthError::Unavailable(_) => AuthErrorKind::Unavailable,
        }
    }
}

/// Errors of the embedded token authority: loading the signing key and issuing tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("cannot create the state folder {}: {source}", path.display())]
    StateDir { path: PathBuf, source: io::Error },
    #[error("{} exists but is not a folder; point the state folder somewhere else", path.display())]
    StateDirNotADir { path: PathBuf },
    #[error("cannot read the signing key {}: {source}", path.display())]
    KeyRead { path: PathBuf, source: io::Error },
    #[error("cannot write the signing key {}: {source}", path.display())]
    KeyWrite { path: PathBuf, source: io::Error },
    #[error(
        "the signing key {} can be read or changed by other users (mode {mode:03o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error(
        "the signing key {} is corrupt ({reason}); move it away to create a new key (tokens signed with the old key stop working)",
        path.display()
    )]
    KeyCorrupt { path: PathBuf, reason: String },
    #[error("token lifetime {ttl:?} must be more than zero and at most {max:?}")]
    InvalidTtl { ttl: Duration, max: Duration },
    #[error("token subject is invalid: {0}")]
    InvalidSubject(String),
    #[error("a token must allow at least one connector (or all of them)")]
    NoConnectors,
    #[error(
        "the token would be {len} bytes, more than the {max} that fit in a request header; allow fewer connectors"
    )]
    TokenTooLarge { len: usize, max: usize },
    #[error("the system clock is before 1970; fix the clock")]
    Clock,
    #[error("the system random number generator failed")]
    Random,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_statuses() {
        let connector: ConnectorRef = "a/b".parse().unwrap();
        let cases = [
            (AuthError::Missing, AuthErrorKind::Unauthenticated),
            (
                AuthError::Malformed("x".into()),
                AuthErrorKind::Unauthenticated,
            ),
            (
                AuthError::Expired {
                    expired_at: SystemTime::UNIX_EPOCH,
                },
                AuthErrorKind::Unauthenticated,
            ),
            (AuthError::BadSignature, AuthErrorKind::Unauthenticated),
            (
                AuthError::NotAllowed {
                    subject: "me".into(),
                    connector,
                },
                AuthErrorKind::Forbidden,
            ),
            (
                AuthError::Unavailable("x".into()),
                AuthErrorKind::Unavailable,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.kind(), want, "{err}");
        }
    }

    #[test]
    fn messages_say_what_to_fix() {
        let connector: ConnectorRef = "team-a/prod".parse().unwrap();
        let cases = [
            (
                AuthError::Expired {
                    expired_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                },
                "proxy token expired at 2023-11-14T22:13:20Z; issue a new one with `connectors token issue`",
            ),
            (
                AuthError::NotAllowed {
                    subject: "ci".into(),
                    connector,
                },
                "token for ci may not use connector team-a/prod",
            ),
            (
                AuthError::BadSignature,
                "proxy token signature does not verify: it was signed by another key (was the state folder recreated?)",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
        let perms = IdentityError::KeyPermissions {
            path: "/s/signing.key".into(),
            mode: 0o644,
        };
        assert_eq!(
            perms.to_string(),
            "the signing key /s/signing.key can be read or changed by other users (mode 644); run `chmod 600 /s/signing.key`"
        );
    }
}
