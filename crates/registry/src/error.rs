//! Errors from talking to an upstream registry, classified so the proxy can answer with the right
//! status. Messages name hosts and connectors, never a credential.

/// Which side failed, and so which status a client should see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The client sent a broken request body: 400.
    Client,
    /// The registry (or its token realm) cannot be reached, or answered nonsense: 502.
    Unreachable,
    /// The registry did not answer in time: 504.
    Timeout,
    /// The registry refused the connector's credentials: 403 with a message saying so.
    Denied,
    /// The connector cannot be used as configured (bad CA, realm not allowed): 502 with the reason.
    Misconfigured,
}

/// The cause of an error, shared so that errors stay cloneable (the token cache keeps them) and keep
/// their chain.
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// `reason` is the one-line cause chain; `cause` the chain itself when there is one.
    #[error("cannot reach registry {host}: {reason}")]
    Connect {
        host: String,
        reason: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error(
        "TLS to {host} failed: {reason}; if the registry uses a private CA, put it in the connector's caCertSecretRef"
    )]
    Tls {
        host: String,
        reason: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("registry {host} did not answer within {seconds} s")]
    Timeout { host: String, seconds: u64 },
    #[error(
        "registry {host} rejected the credentials of connector {connector} (HTTP {status}){detail}; check the connector's secret"
    )]
    CredentialsRejected {
        host: String,
        connector: String,
        status: u16,
        detail: String,
    },
    #[error(
        "token endpoint {realm} rejected the credentials of connector {connector} (HTTP {status}); check the connector's secret"
    )]
    TokenRejected {
        realm: String,
        connector: String,
        status: u16,
    },
    #[error("token endpoint {realm} failed: {reason}")]
    TokenEndpoint { realm: String, reason: String },
    #[error(
        "registry {host} names token realm {realm}, which is plain HTTP on a host that is not one of connector {connector}'s addresses; the connector's credentials are not sent there. Add it to spec.addressExtensions to allow it"
    )]
    RealmNotAllowed {
        host: String,
        realm: String,
        connector: String,
    },
    #[error("registry {host} sent an unusable challenge: {reason}")]
    BadChallenge { host: String, reason: String },
    #[error(
        "registry {host} answered HTTP {status} to GET /v2/; is {address} the address of an OCI registry?"
    )]
    NotARegistry {
        host: String,
        address: String,
        status: u16,
    },
    #[error("connector {connector}: {reason}")]
    Setup { connector: String, reason: String },
    #[error("the client's request body broke off or is malformed: {reason}")]
    ClientBody { reason: String },
}

/// Wraps an error from the client's own request body on its way upstream, so that a failed send can be
/// blamed on the client (400) rather than on the registry (502).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientBodyError(pub Box<dyn std::error::Error + Send + Sync>);

impl UpstreamError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            UpstreamError::Connect { .. }
            | UpstreamError::TokenEndpoint { .. }
            | UpstreamError::BadChallenge { .. }
            | UpstreamError::NotARegistry { .. } => ErrorKind::Unreachable,
            UpstreamError::Timeout { .. } => ErrorKind::Timeout,
            UpstreamError::CredentialsRejected { .. } | UpstreamError::TokenRejected { .. } => {
                ErrorKind::Denied
            }
            UpstreamError::Tls { .. }
            | UpstreamError::RealmNotAllowed { .. }
            | UpstreamError::Setup { .. } => ErrorKind::Misconfigured,
            UpstreamError::ClientBody { .. } => ErrorKind::Client,
        }
    }

    /// The registry at `host` cannot be reached, for `reason` (no underlying error to keep).
    pub fn connect(host: impl Into<String>, reason: impl Into<String>) -> Self {
        UpstreamError::Connect {
            host: host.into(),
            reason: reason.into(),
            cause: None,
        }
    }

    /// Classifies a client error from hyper-util by the types in its cause chain (never by its text): the
    /// client's own body failing, TLS, or the connection.
    pub fn from_send(host: &str, err: hyper_util::client::legacy::Error) -> Self {
        if let Some(client) = find_in_chain::<ClientBodyError>(&err) {
            return UpstreamError::ClientBody {
                reason: client.to_string(),
            };
        }
        let reason = error_chain(&err);
        let is_tls = find_in_chain::<rustls::Error>(&err).is_some();
        let cause: Option<Cause> = Some(std::sync::Arc::new(err));
        if is_tls {
            UpstreamError::Tls {
                host: host.to_owned(),
                reason,
                cause,
            }
        } else {
            UpstreamError::Connect {
                host: host.to_owned(),
                reason,
                cause,
            }
        }
    }
}

/// The first error of type `T` in `err`'s cause chain. An `io::Error` that wraps another error hides it
/// from `source()` (it returns the wrapped error's source), so the wrapped error is looked at too.
pub fn find_in_chain<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            let inner: &(dyn std::error::Error + 'static) = inner;
            if let Some(found) = find_in_chain::<T>(inner) {
                return Some(found);
            }
        }
        source = e.source();
    }
    None
}

/// `outer: inner: innermost`, skipping repeats, for one-line error messages.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}
