//! The token-cache and certificate-cache counters of `/metrics`: the proxy's own (nothing is process-wide),
//! counted as its requests use the token cache and its intercepted connections the certificate cache.

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use connectors_proxy::ForwardOptions;
use connectors_proxy::ca::ProxyCa;
use connectors_proxy::limits::Limits;
use connectors_registry::{ResolveOverrides, UpstreamAccess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{
    ConnectorSpec, FakeRegistry, NS, ProxyUnderTest, Reply, bearer_challenge, grants, issue_token,
};

/// A host name for the fake registry, so that the intercepted TLS has a name to present.
const HOST: &str = "registry.test";

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn token_cache_hits_and_misses_are_counted() {
    let fake = FakeRegistry::start(|ctx| match ctx.req.path() {
        "/token" => issue_token(ctx),
        "/v2/team/app/manifests/v1" if grants(&ctx.req, "repository:team/app:pull") => {
            Reply::ok().body("fine")
        }
        _ => Reply::status(401).header("www-authenticate", bearer_challenge(&ctx.origin)),
    })
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    assert_eq!(proxy.get("reg", "team/app/manifests/v1").await.status, 200);
    let first = proxy.metrics_text();
    let misses = metric(&first, "connectors_token_cache_misses_total");
    assert!(misses >= 1.0, "{first}");
    assert_eq!(fake.requests_to("/token").len(), 1);

    assert_eq!(proxy.get("reg", "team/app/manifests/v1").await.status, 200);
    let second = proxy.metrics_text();
    assert_eq!(
        fake.requests_to("/token").len(),
        1,
        "the token was fetched again"
    );
    assert!(
        metric(&second, "connectors_token_cache_hits_total")
            > metric(&first, "connectors_token_cache_hits_total"),
        "{second}"
    );
    assert_eq!(
        metric(&second, "connectors_token_cache_misses_total"),
        misses
    );
}

/// `CONNECT host:port` through the proxy, then a TLS handshake with the proxy CA's leaf for `host`.
async fn intercept(proxy: &ProxyUnderTest, ca_pem: &str, host: &str, port: u16) {
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{NS}/reg:{}", proxy.token()));
    let request = format!(
        "CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nProxy-Authorization: Basic {basic}\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .await
        .expect("write CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.expect("read CONNECT answer");
        assert!(n > 0, "the proxy closed the CONNECT without an answer");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from(host.to_owned()).expect("server name"),
            s,
        )
        .await
        .expect("TLS with the proxy CA");
}

#[tokio::test]
async fn intercepted_connections_count_minted_and_cached_leaf_certificates() {
    let fake = FakeRegistry::start(|_| Reply::ok()).await;
    let port = fake.addr().port();
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(ProxyCa::load_or_create(ca_dir.path()).expect("proxy CA"));
    let forward_ca = ca.clone();
    let proxy = ProxyUnderTest::start_full(
        &[ConnectorSpec::new("reg", format!("http://{HOST}:{port}"))],
        UpstreamAccess::new(ResolveOverrides::default()),
        Limits::default(),
        move |_| ForwardOptions {
            ca: Some(forward_ca),
            ..ForwardOptions::default()
        },
        Duration::from_secs(5),
    )
    .await;
    let before = proxy.metrics_text();
    assert_eq!(
        metric(&before, "connectors_certificate_cache_misses_total"),
        0.0
    );

    intercept(&proxy, ca.cert_pem(), HOST, port).await;
    let minted = proxy.metrics_text();
    assert_eq!(
        metric(&minted, "connectors_certificate_cache_misses_total"),
        1.0
    );
    assert_eq!(
        metric(&minted, "connectors_certificate_cache_hits_total"),
        0.0
    );
    intercept(&proxy, ca.cert_pem(), &HOST.to_ascii_uppercase(), port).await;
    let reused = proxy.metrics_text();
    assert_eq!(
        metric(&reused, "connectors_certificate_cache_misses_total"),
        1.0
    );
    assert_eq!(
        metric(&reused, "connectors_certificate_cache_hits_total"),
        1.0
    );
}
