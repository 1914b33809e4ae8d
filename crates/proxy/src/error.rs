//! Every failure the proxy answers, in one place: status, OCI error code, and a message that says what
//! to fix. Messages never contain a token or a credential.

use bytes::Bytes;
use connectors_identity::{AuthError, AuthErrorKind};
use connectors_registry::{ErrorKind, UpstreamError};
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{ProxyBody, full};

/// The realm clients see in our challenges.
pub const REALM: &str = "connectors";

#[derive(Debug, thiserror::Error)]
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
    #[error("connector {0} does not exist; check the namespace and name in the image reference")]
    UnknownConnector(String),
    #[error("{0}")]
    BadPath(String),
    #[error(
        "not found: the proxy serves /v2/namespaces/<namespace>/connectors/<name>/<repository>/… (or /v2/… with Host c-<name>.<namespace>)"
    )]
    NotFound,
    #[error("connector {connector} cannot be used: {reason}")]
    ConnectorUnusable { connector: String, reason: String },
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("could not read the request body: {0}")]
    RequestBody(String),
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
            AuthErrorKind::Unavailable => {
                ProxyError::Forbidden(format!("{err}; access is denied until it can be decided"))
            }
            _ => ProxyError::Unauthenticated(err.to_string()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
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
            ProxyError::UnknownConnector(_) | ProxyError::BadPath(_) => "NAME_UNKNOWN",
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

    /// The response: OCI error JSON, plus the challenge on 401.
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
        if status == StatusCode::SERVICE_UNAVAILABLE && matches!(self, ProxyError::Overloaded(_)) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
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
                ProxyError::Upstream(UpstreamError::Connect {
                    host: "h".into(),
                    reason: "refused".into(),
                }),
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
