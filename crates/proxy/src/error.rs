//! Every failure the proxy answers, in one place: whose fault it is ([`Side`]), the status, the OCI error
//! code, a message that says what to fix, and the cause chain where there is one. Messages never contain a
//! token or a credential.

use std::sync::Arc;

use bytes::Bytes;
use connectors_identity::{AuthError, AuthErrorKind};
use connectors_registry::{ErrorKind, UpstreamError};
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{ProxyBody, full};

/// The realm clients see in our challenges.
pub const REALM: &str = "connectors";

/// The cause of an error, shared so that errors stay cloneable (for caches) and keep their chain.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's: a request it should change (4xx).
    Client,
    /// A service the proxy depends on: the registry, its token endpoint, the Kubernetes API server
    /// (502, 503, 504, or 403 when the registry refuses the connector's credentials).
    Upstream,
    /// The proxy's own: its configuration, its capacity or a bug (500, 501, 503).
    Internal,
}

/// How long a client should wait before it retries a request the authorizer could not decide.
const AUTH_RETRY_AFTER_S: &str = "5";

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// No or invalid proxy token (reverse mode): 401 with a Basic challenge.
    #[error("{0}")]
    Unauthenticated(String),
    /// No or invalid proxy credentials (forward mode): 407 with a Basic proxy challenge.
    #[error("{0}")]
    ProxyUnauthenticated(String),
    /// A forward-mode destination that is not a connector, with the deny policy: 403.
    #[error("{0}")]
    DestinationDenied(String),
    /// A valid token that may not use the connector: 403.
    #[error("{0}")]
    Forbidden(String),
    /// The authorizer could not decide (the Kubernetes API server is down and nothing is cached): 503
    /// with `Retry-After`, so that clients retry. Not a refusal.
    #[error(
        "the proxy could not check whether this caller may use the connector, so the request was not served (it \
         was not refused either; retry shortly): {0}"
    )]
    AuthUnavailable(String),
    #[error("connector {0} does not exist; check the namespace and name in the image reference")]
    UnknownConnector(String),
    /// The path breaks the path rules (`.`/`..`/empty segments, encoded separators, names that are not
    /// Kubernetes names): 400.
    #[error("{0}")]
    BadPath(String),
    /// A path under a connector that is not a distribution API path: 400.
    #[error(
        "{0:?} is not a distribution API path; expected <repository>/(manifests|blobs|tags|referrers)/…"
    )]
    NotRegistryPath(String),
    /// A forward-mode request target the proxy does not take (CONNECT without `host:port`, an absolute
    /// form that is not `http://`): 400.
    #[error("{0}")]
    BadTarget(String),
    /// A failure of the proxy itself (a certificate it could not mint, a request it could not build): 500.
    #[error("{context}: {source}")]
    Internal {
        context: String,
        #[source]
        source: Cause,
    },
    #[error(
        "not found: the proxy serves /v2/namespaces/<namespace>/connectors/<name>/<repository>/… (or /v2/… with Host c-<name>.<namespace>)"
    )]
    NotFound,
    #[error("connector {connector} cannot be used: {reason}")]
    ConnectorUnusable { connector: String, reason: String },
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("could not read the request body: {0}")]
    RequestBody(#[source] Cause),
    #[error("{0}")]
    NotImplemented(String),
    /// The header block is too large or has too many fields: 431.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// The request target is too long: 414.
    #[error("{0}")]
    UriTooLong(String),
    /// A header value the proxy does not accept (control characters): 400.
    #[error("{0}")]
    BadHeader(String),
    /// More connectors in one forward-proxy user name than allowed: 400.
    #[error("{0}")]
    TooManyConnectors(String),
    /// Too many client connections: 503 with `Retry-After`.
    #[error("{0}")]
    Overloaded(String),
}

impl ProxyError {
    /// Forward mode: an unauthenticated caller gets 407 rather than 401.
    pub fn from_proxy_auth(err: AuthError) -> Self {
        match err.kind() {
            AuthErrorKind::Unauthenticated => ProxyError::ProxyUnauthenticated(err.to_string()),
            _ => Self::from_auth(err),
        }
    }

    pub fn from_auth(err: AuthError) -> Self {
        match err.kind() {
            AuthErrorKind::Forbidden => ProxyError::Forbidden(err.to_string()),
            AuthErrorKind::Unavailable => ProxyError::AuthUnavailable(err.to_string()),
            _ => ProxyError::Unauthenticated(err.to_string()),
        }
    }

    /// A failure of the proxy itself, with what it was doing.
    pub fn internal(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ProxyError::Internal {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// Whose fault it is.
    pub fn side(&self) -> Side {
        match self {
            ProxyError::AuthUnavailable(_) => Side::Upstream,
            ProxyError::Overloaded(_)
            | ProxyError::ConnectorUnusable { .. }
            | ProxyError::NotImplemented(_)
            | ProxyError::Internal { .. } => Side::Internal,
            ProxyError::Upstream(e) => match e.kind() {
                ErrorKind::Client => Side::Client,
                _ => Side::Upstream,
            },
            _ => Side::Client,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::AuthUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::NotRegistryPath(_) | ProxyError::BadTarget(_) => StatusCode::BAD_REQUEST,
            ProxyError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ProxyError::ProxyUnauthenticated(_) => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ProxyError::Forbidden(_) | ProxyError::DestinationDenied(_) => StatusCode::FORBIDDEN,
            ProxyError::UnknownConnector(_) | ProxyError::NotFound => StatusCode::NOT_FOUND,
            ProxyError::BadPath(_)
            | ProxyError::RequestBody(_)
            | ProxyError::BadHeader(_)
            | ProxyError::TooManyConnectors(_) => StatusCode::BAD_REQUEST,
            ProxyError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ProxyError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ConnectorUnusable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::Upstream(e) => match e.kind() {
                ErrorKind::Denied => StatusCode::FORBIDDEN,
                ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::Client => StatusCode::BAD_REQUEST,
                ErrorKind::Unreachable | ErrorKind::Misconfigured => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// The OCI distribution error code.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::Unauthenticated(_) | ProxyError::ProxyUnauthenticated(_) => "UNAUTHORIZED",
            ProxyError::Forbidden(_) | ProxyError::DestinationDenied(_) => "DENIED",
            ProxyError::UnknownConnector(_)
            | ProxyError::BadPath(_)
            | ProxyError::NotRegistryPath(_) => "NAME_UNKNOWN",
            ProxyError::BadTarget(_) => "UNSUPPORTED",
            ProxyError::Internal { .. } => "UNKNOWN",
            ProxyError::NotFound => "NOT_FOUND",
            ProxyError::NotImplemented(_) => "UNSUPPORTED",
            ProxyError::HeadersTooLarge(_)
            | ProxyError::UriTooLong(_)
            | ProxyError::BadHeader(_)
            | ProxyError::TooManyConnectors(_) => "UNSUPPORTED",
            ProxyError::Upstream(e) if e.kind() == ErrorKind::Denied => "DENIED",
            ProxyError::RequestBody(_) => "BLOB_UPLOAD_INVALID",
            ProxyError::Upstream(e) if e.kind() == ErrorKind::Client => "BLOB_UPLOAD_INVALID",
            _ => "UNAVAILABLE",
        }
    }

    /// The message with its cause chain, for a log line.
    pub fn chain(&self) -> String {
        connectors_registry::error::error_chain(self)
    }

    /// The response: OCI error JSON, plus the challenge on 401 and `Retry-After` on the 503s a retry
    /// cures.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let body = serde_json::json!({
            "errors": [{ "code": self.code(), "message": self.to_string(), "detail": null }]
        });
        let mut response = Response::new(full(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        if matches!(self, ProxyError::Overloaded(_)) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, ProxyError::AuthUnavailable(_)) {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(AUTH_RETRY_AFTER_S),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"connectors\""),
            );
        }
        if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            headers.insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"connectors\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let cases = [
            (ProxyError::Unauthenticated("x".into()), 401, "UNAUTHORIZED"),
            (ProxyError::Forbidden("x".into()), 403, "DENIED"),
            (
                ProxyError::UnknownConnector("a/b".into()),
                404,
                "NAME_UNKNOWN",
            ),
            (
                ProxyError::Upstream(UpstreamError::connect("h", "refused")),
                502,
                "UNAVAILABLE",
            ),
            (
                ProxyError::Upstream(UpstreamError::Timeout {
                    host: "h".into(),
                    seconds: 1,
                }),
                504,
                "UNAVAILABLE",
            ),
            (
                ProxyError::Upstream(UpstreamError::TokenRejected {
                    realm: "r".into(),
                    connector: "a/b".into(),
                    status: 401,
                }),
                403,
                "DENIED",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!((err.status().as_u16(), err.code()), (status, code), "{err}");
        }
    }

    #[test]
    fn every_error_says_whose_fault_it_is() {
        let io = std::io::Error::other("key file unreadable");
        let cases = [
            (ProxyError::BadPath("..".into()), Side::Client, 400),
            (ProxyError::NotRegistryPath("x".into()), Side::Client, 400),
            (ProxyError::BadTarget("x".into()), Side::Client, 400),
            (
                ProxyError::Upstream(UpstreamError::Timeout {
                    host: "h".into(),
                    seconds: 1,
                }),
                Side::Upstream,
                504,
            ),
            (ProxyError::AuthUnavailable("x".into()), Side::Upstream, 503),
            (
                ProxyError::internal("minting a leaf", io),
                Side::Internal,
                500,
            ),
        ];
        for (err, side, status) in cases {
            assert_eq!((err.side(), err.status().as_u16()), (side, status), "{err}");
        }
    }

    #[test]
    fn internal_errors_keep_their_cause_and_stay_cloneable_causes() {
        let err = ProxyError::internal(
            "cannot mint a certificate for registry.test",
            std::io::Error::other("disk on fire"),
        );
        let source = std::error::Error::source(&err).expect("a cause");
        assert_eq!(source.to_string(), "disk on fire");
        assert!(err.chain().contains("disk on fire"), "{}", err.chain());
        let copy = err.clone();
        assert_eq!(copy.chain(), err.chain());
    }

    #[test]
    fn an_authorizer_that_cannot_decide_gets_503_with_retry_after_not_403() {
        let err = ProxyError::from_auth(AuthError::Unavailable(
            "the Kubernetes API server did not answer the SubjectAccessReview".into(),
        ));
        let message = err.to_string();
        assert!(message.contains("could not check"), "{message}");
        assert!(message.contains("API server"), "{message}");
        let r = err.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], AUTH_RETRY_AFTER_S);
        // forward mode too
        let r = ProxyError::from_proxy_auth(AuthError::Unavailable("down".into())).into_response();
        assert_eq!(r.status(), 503);
    }

    #[test]
    fn unauthorized_carries_a_basic_challenge() {
        let r = ProxyError::Unauthenticated("no token".into()).into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"connectors\""
        );
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
