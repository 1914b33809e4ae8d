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

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    #[error("cannot reach registry {host}: {reason}")]
    Connect { host: String, reason: String },
    #[error(
        "TLS to {host} failed: {reason}; if the registry uses a private CA, put it in the connector's caCertSecretRef"
    )]
    Tls { host: String, reason: String },
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

    /// Classifies a client error from hyper-util: TLS failures get their own message.
    pub(crate) fn from_send(host: &str, err: &hyper_util::client::legacy::Error) -> Self {
        let chain = error_chain(err);
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = source {
            if let Some(client) = e.downcast_ref::<ClientBodyError>() {
                return UpstreamError::ClientBody {
                    reason: client.to_string(),
                };
            }
            source = e.source();
        }
        let is_tls = {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
            let mut found = false;
            while let Some(e) = source {
                if e.downcast_ref::<rustls::Error>().is_some() {
                    found = true;
                    break;
                }
                if let Some(io) = e.downcast_ref::<std::io::Error>()
                    && io
                        .get_ref()
                        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
                {
                    found = true;
                    break;
                }
                source = e.source();
            }
            found
        };
        // hyper-rustls may hand the rustls error over as text inside an io::Error; the message tells.
        let is_tls = is_tls || chain.contains("certificate") || chain.contains("handshake");
        if is_tls {
            UpstreamError::Tls {
                host: host.to_owned(),
                reason: chain,
            }
        } else {
            UpstreamError::Connect {
                host: host.to_owned(),
                reason: chain,
            }
        }
    }
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
