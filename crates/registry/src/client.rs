//! HTTP clients to upstream registries: verified TLS (system roots plus the connector's own CAs),
//! HTTP/1.1, pooled keep-alive connections, and an optional host:port → address override.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::bufio::{Coalesce, ReadAhead};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Errors boxed for bodies that stream from elsewhere.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type sent upstream: a client's request body streamed through, or bytes we hold.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;
/// A pooled client to one connector's registry (and its token realm).
pub type UpstreamClient = Client<Batching, UpstreamBody>;
/// A connection to a registry, as the pooled client holds it.
pub type UpstreamConnection =
    TokioIo<Coalesce<TokioIo<MaybeHttpsStream<TokioIo<ReadAhead<TcpStream>>>>>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// `HOST:PORT` → address overrides (`--resolve`), for tests and air-gapped setups.
#[derive(Debug, Clone, Default)]
pub struct ResolveOverrides(HashMap<(String, u16), SocketAddr>);

impl ResolveOverrides {
    /// Parses `HOST:PORT:ADDR` where ADDR is `IP` or `IP:PORT` (IPv6 in brackets).
    pub fn parse_entry(entry: &str) -> Result<((String, u16), SocketAddr), String> {
        let bad = || {
            format!(
                "--resolve {entry:?}: expected HOST:PORT:ADDR, e.g. registry.test:5443:127.0.0.1"
            )
        };
        let (host, rest) = entry.split_once(':').ok_or_else(bad)?;
        let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let sock = match addr.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => addr.parse::<SocketAddr>().map_err(|_| bad())?,
        };
        Ok(((host.to_ascii_lowercase(), port), sock))
    }

    pub fn insert(&mut self, host: &str, port: u16, addr: SocketAddr) {
        self.0.insert((host.to_ascii_lowercase(), port), addr);
    }

    pub fn lookup(&self, host: &str, port: u16) -> Option<SocketAddr> {
        self.0.get(&(host.to_ascii_lowercase(), port)).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Connects TCP like `HttpConnector`, but to the overridden address when one is set for the URI's
/// host and port. TLS above it still uses the URI's host name for SNI and verification.
#[derive(Clone)]
pub struct ResolvingConnector {
    inner: HttpConnector,
    overrides: Arc<ResolveOverrides>,
}

impl ResolvingConnector {
    pub fn new(overrides: Arc<ResolveOverrides>) -> Self {
        let mut inner = HttpConnector::new();
        inner.enforce_http(false);
        inner.set_nodelay(true);
        inner.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Self { inner, overrides }
    }

    fn target(&self, uri: &Uri) -> Uri {
        let (Some(host), Some(scheme)) = (uri.host(), uri.scheme_str()) else {
            return uri.clone();
        };
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match self.overrides.lookup(host, port) {
            Some(addr) => Uri::builder()
                .scheme("http")
                .authority(addr.to_string())
                .path_and_query("/")
                .build()
                .unwrap_or_else(|_| uri.clone()),
            None => uri.clone(),
        }
    }
}

impl tower_service::Service<Uri> for ResolvingConnector {
    type Response = TokioIo<ReadAhead<TcpStream>>;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let target = self.target(&uri);
        // rustls reads 4 KiB at a time: under TLS the socket is read ahead (see `bufio`); plain HTTP is
        // read by hyper itself, in pieces as large as its buffer.
        let read_ahead = if uri.scheme_str() == Some("https") {
            crate::bufio::READ_AHEAD
        } else {
            0
        };
        let fut = self.inner.call(target);
        Box::pin(async move {
            let tcp = fut.await?.into_inner();
            Ok(TokioIo::new(ReadAhead::with_capacity(tcp, read_ahead)))
        })
    }
}

/// The TLS-or-plain connector whose TLS connections hand hyper every record already received in one
/// read (`bufio::Coalesce`), and whose TLS buffers hold up to [`TLS_BUFFER_LIMIT`] of records to send.
#[derive(Clone)]
pub struct Batching {
    inner: HttpsConnector<ResolvingConnector>,
}

/// How many bytes of encrypted records a TLS connection may queue before its writer waits: big enough
/// that one `writev` carries many 16 KiB records.
pub const TLS_BUFFER_LIMIT: usize = 256 * 1024;

impl tower_service::Service<Uri> for Batching {
    type Response = UpstreamConnection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let fut = self.inner.call(uri);
        Box::pin(async move {
            let mut stream = fut.await?;
            let tls = match &mut stream {
                MaybeHttpsStream::Https(tls) => {
                    tls.inner_mut()
                        .get_mut()
                        .1
                        .set_buffer_limit(Some(TLS_BUFFER_LIMIT));
                    true
                }
                MaybeHttpsStream::Http(_) => false,
            };
            Ok(TokioIo::new(Coalesce::with_enabled(
                TokioIo::new(stream),
                tls,
            )))
        })
    }
}
/// The machine's trusted roots, read once.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for err in &found.errors {
            tracing::warn!(error = %err, "could not read some system CA certificates");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system CA certificates loaded");
        roots
    })
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    #[error("connector CA certificate #{index} is not valid PEM: {reason}")]
    BadPem { index: usize, reason: String },
    #[error("connector CA certificate #{index} was not accepted as a trust anchor: {reason}")]
    BadCa { index: usize, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A rustls client configuration trusting the system roots plus `extra_ca_pems`, HTTP/1.1 only.
pub fn tls_config(extra_ca_pems: &[String]) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut roots = system_roots().clone();
    for (index, pem) in extra_ca_pems.iter().enumerate() {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| TlsSetupError::BadPem {
                index,
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsSetupError::BadPem {
                index,
                reason: "no CERTIFICATE block".into(),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|e| TlsSetupError::BadCa {
                index,
                reason: e.to_string(),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // ALPN is left to the connector builder (`enable_http1` offers http/1.1 only).
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Builds a pooled client for one trust configuration.
pub fn build_client(
    extra_ca_pems: &[String],
    overrides: Arc<ResolveOverrides>,
) -> Result<UpstreamClient, TlsSetupError> {
    let https = Batching {
        inner: HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(extra_ca_pems)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(ResolvingConnector::new(overrides)),
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(64)
        .build(https))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resolve_entries() {
        let (key, addr) = ResolveOverrides::parse_entry("Registry.Test:5443:127.0.0.1").unwrap();
        assert_eq!(key, ("registry.test".to_string(), 5443));
        assert_eq!(addr, "127.0.0.1:5443".parse().unwrap());
        let (_, addr) = ResolveOverrides::parse_entry("r.test:443:127.0.0.1:8443").unwrap();
        assert_eq!(addr, "127.0.0.1:8443".parse().unwrap());
        let (_, addr) = ResolveOverrides::parse_entry("r.test:443:[::1]").unwrap();
        assert_eq!(addr, "[::1]:443".parse().unwrap());
        for bad in [
            "",
            "r.test",
            "r.test:x:127.0.0.1",
            ":443:127.0.0.1",
            "r.test:443:nothere",
        ] {
            assert!(ResolveOverrides::parse_entry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overrides_only_the_named_host_and_port() {
        let mut o = ResolveOverrides::default();
        o.insert("registry.test", 5443, "127.0.0.1:6000".parse().unwrap());
        let c = ResolvingConnector::new(Arc::new(o));
        let t = |s: &str| c.target(&s.parse().unwrap()).to_string();
        assert_eq!(
            t("https://registry.test:5443/v2/"),
            "http://127.0.0.1:6000/"
        );
        assert_eq!(
            t("https://REGISTRY.test:5443/v2/"),
            "http://127.0.0.1:6000/"
        );
        assert_eq!(t("https://registry.test/v2/"), "https://registry.test/v2/");
        assert_eq!(
            t("https://other.test:5443/v2/"),
            "https://other.test:5443/v2/"
        );
    }

    #[test]
    fn rejects_bad_ca_pem() {
        let err = tls_config(&["not a pem".into()]).unwrap_err();
        assert!(err.to_string().contains("#0"), "{err}");
    }
}
