//! Tunnels and intercepted connections obey the limits of the client connection they came from: they keep
//! its slot under `--max-connections`, are closed at the idle limit, and shutdown waits for them (within
//! the grace). The destinations are in-process FAKES: a TCP echo server for plain tunnels and a
//! [`FakeRegistry`] behind an intercepted connector.
//!
//! Sleeps only create slowness or silence; the time bounds are there to end a hung test, not limits.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use connectors_proxy::ForwardOptions;
use connectors_proxy::ca::ProxyCa;
use connectors_proxy::limits::Limits;
use connectors_registry::{ResolveOverrides, UpstreamAccess};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::{ConnectorSpec, Ctx, FakeRegistry, NS, ProxyUnderTest, Reply};

/// A host name for the fake registry, so that the intercepted TLS has a name to present.
const HOST: &str = "registry.test";

/// A registry that takes uploads of any size.
fn uploads(ctx: &Ctx) -> Reply {
    if ctx.req.path() == "/v2/" {
        return Reply::ok().json(serde_json::json!({}));
    }
    if ctx.req.path().contains("/blobs/uploads/") {
        return Reply::status(202)
            .header("location", "/v2/app/blobs/uploads/u1")
            .header("range", format!("0-{}", ctx.req.body_len.saturating_sub(1)));
    }
    Reply::status(404)
}

/// A TCP server that echoes what it reads: the destination of a plain tunnel (not a connector).
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn proxy_authorization(proxy: &ProxyUnderTest) -> String {
    let user_pass = format!("{NS}/reg:{}", proxy.token());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// `CONNECT target` with the proxy credentials; returns the stream once the proxy answered 200.
async fn open_tunnel(proxy: &ProxyUnderTest, target: &str) -> TcpStream {
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    let request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {}\r\n\r\n",
        proxy_authorization(proxy)
    );
    s.write_all(request.as_bytes())
        .await
        .expect("write CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut byte))
            .await
            .expect("no answer to CONNECT")
            .expect("read CONNECT answer");
        assert!(n > 0, "the proxy closed the CONNECT without an answer");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s
}

/// Sends `bytes` through an echo tunnel and reads them back.
async fn round_trip(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).await.expect("write into the tunnel");
    let mut back = vec![0u8; bytes.len()];
    tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut back))
        .await
        .expect("the tunnel did not echo")
        .expect("read from the tunnel");
    assert_eq!(back, bytes);
}

/// The status of `GET /healthz` on a new connection.
async fn healthz(proxy: &ProxyUnderTest) -> u16 {
    let r = connectors_testkit::http::send(
        "GET",
        &format!("http://{}/healthz", proxy.addr),
        &[],
        Bytes::new(),
    )
    .await
    .expect("GET /healthz");
    r.status.as_u16()
}

async fn start(limits: Limits) -> (FakeRegistry, ProxyUnderTest) {
    let fake = FakeRegistry::start(uploads).await;
    let proxy = ProxyUnderTest::start_limited(
        &[ConnectorSpec::new("reg", fake.origin())],
        UpstreamAccess::new(ResolveOverrides::default()),
        limits,
    )
    .await;
    (fake, proxy)
}

#[tokio::test]
async fn a_tunnel_keeps_its_connection_slot_until_it_closes() {
    let echo = echo_server().await;
    let mut limits = Limits::default();
    limits.max_connections = 1;
    let (_fake, proxy) = start(limits).await;
    let mut tunnel = open_tunnel(&proxy, &echo.to_string()).await;
    round_trip(&mut tunnel, b"through the tunnel").await;

    // the tunnel is the one connection allowed: another gets 503
    assert_eq!(
        healthz(&proxy).await,
        503,
        "a tunnel did not count against --max-connections"
    );
    // the tunnel still works, and once it closes its slot comes back
    round_trip(&mut tunnel, b"still open").await;
    drop(tunnel);
    let mut served = false;
    for _ in 0..500 {
        if healthz(&proxy).await == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "the slot of a closed tunnel was never reused");
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_at_the_idle_limit_but_a_busy_one_is_not() {
    let echo = echo_server().await;
    let mut limits = Limits::default();
    limits.idle_timeout = Duration::from_millis(300);
    let (_fake, proxy) = start(limits).await;

    // busy: a few bytes every 100 ms for 2 s, more than six times the idle limit
    let mut busy = open_tunnel(&proxy, &echo.to_string()).await;
    for i in 0..20u8 {
        round_trip(&mut busy, &[i; 16]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // quiet: the proxy closes it (the 30 s only end a hung test; the tunnels' old limit was 600 s)
    let mut quiet = open_tunnel(&proxy, &echo.to_string()).await;
    round_trip(&mut quiet, b"once").await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(30), quiet.read(&mut buf))
        .await
        .expect("an idle tunnel was kept open past the idle limit");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(busy);
    proxy.assert_settled().await;
}

/// A client TLS config that trusts only `ca_pem`.
fn client_tls(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_a_forward_mode_upload_in_flight_finish_within_the_grace() {
    let fake = FakeRegistry::start(uploads).await;
    let port = fake.addr().port();
    let mut overrides = ResolveOverrides::default();
    overrides.insert(HOST, port, fake.addr());
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(ProxyCa::load_or_create(ca_dir.path()).expect("proxy CA"));
    let forward_ca = ca.clone();
    let mut proxy = ProxyUnderTest::start_full(
        &[ConnectorSpec::new("reg", format!("http://{HOST}:{port}"))],
        UpstreamAccess::new(overrides),
        Limits::default(),
        move |_| ForwardOptions {
            ca: Some(forward_ca),
            ..ForwardOptions::default()
        },
        Duration::from_secs(120),
    )
    .await;

    // HTTPS_PROXY style: CONNECT, TLS with the proxy CA, then HTTP/1.1 inside
    let stream = open_tunnel(&proxy, &format!("{HOST}:{port}")).await;
    let tls = client_tls(ca.cert_pem())
        .connect(
            rustls_pki_types::ServerName::try_from(HOST).expect("server name"),
            stream,
        )
        .await
        .expect("TLS with the proxy CA");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, BodyOf>(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("HTTP/1.1 inside the intercepted connection");
    tokio::spawn(conn);

    // 48 pieces of 16 KiB, 50 ms apart: about 2.4 s on the wire
    const PIECES: usize = 48;
    const PIECE: usize = 16 * 1024;
    let pieces = futures_util::stream::unfold(0usize, |i| async move {
        if i == PIECES {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some((
            Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(vec![7u8; PIECE]))),
            i + 1,
        ))
    });
    let body: BodyOf = http_body_util::StreamBody::new(pieces).boxed();
    let request = http::Request::patch("/v2/app/blobs/uploads/u1")
        .header("host", format!("{HOST}:{port}"))
        .header("content-type", "application/octet-stream")
        .header("content-length", (PIECES * PIECE).to_string())
        .body(body)
        .expect("request");
    let upload = tokio::spawn(sender.send_request(request));

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !upload.is_finished(),
        "the upload ended before the shutdown"
    );
    proxy.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        proxy.is_serving(),
        "the proxy stopped serving (the process would exit) with an upload in flight in an \
         intercepted connection"
    );

    let response = tokio::time::timeout(Duration::from_secs(60), upload)
        .await
        .expect("the upload did not finish")
        .expect("upload task")
        .expect("the upload in flight failed");
    assert_eq!(response.status(), 202);
    let seen = fake.requests_to("/v2/app/blobs/uploads/u1");
    assert!(
        seen.iter()
            .any(|s| s.body_complete && s.body_len == (PIECES * PIECE) as u64),
        "the registry did not get the whole upload"
    );
    // the intercepted connection then closes, and serving ends well within the grace
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while proxy.is_serving() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy still serves 30 s after the last request finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type BodyOf = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;
