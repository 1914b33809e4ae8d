//! The reverse-mode splice fast path (`crates/proxy/src/splice.rs`): blob GET bodies from a plain-HTTP
//! registry move upstream socket → pipe → client socket.
//!
//! Bodies come from a real CNCF Distribution registry (htpasswd: the proxy must inject the connector's
//! Basic credentials) and are compared byte for byte. The FAKE registry of `support` is used only for
//! faults a real registry will not produce on demand: a body cut short, a chunked answer. Counters from
//! [`connectors_proxy::SpliceStats`] say which path served a request; no assertion depends on timing.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use connectors_proxy::SpliceOptions;
use connectors_registry::{ResolveOverrides, UpstreamAccess};
use connectors_testkit::http::{self, StreamingBody};
use connectors_testkit::{Registry, sha256_digest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{
    ConnectorSpec, FakeRegistry, PASSWORD, ProxyUnderTest, Reply, USER, assert_audit_clean,
    assert_clean, connector_basic, pattern,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const REPO: &str = "team/app";
/// A bound on any single wait, so that a hang fails the test instead of blocking it forever. Never
/// reached when the proxy works; it measures nothing.
const HANG: Duration = Duration::from_secs(300);

/// The fast path on (it is off by default).
fn on() -> SpliceOptions {
    SpliceOptions {
        enabled: true,
        ..SpliceOptions::default()
    }
}

fn registry() -> Registry {
    Registry::builder().htpasswd(USER, PASSWORD).start()
}

async fn proxy_for(registry_url: &str, splice: SpliceOptions) -> ProxyUnderTest {
    ProxyUnderTest::start_spliced(
        &[ConnectorSpec::new("reg", registry_url)],
        UpstreamAccess::new(ResolveOverrides::default()),
        connectors_proxy::limits::Limits::default(),
        |_| Default::default(),
        connectors_proxy::DEFAULT_SHUTDOWN_GRACE,
        splice,
    )
    .await
}

/// Pushes `data` straight to the registry (monolithic upload) and returns its digest.
async fn push(registry: &Registry, data: Bytes) -> String {
    let digest = sha256_digest(&data);
    push_body(registry, &digest, |conn, url, headers| {
        Box::pin(async move { conn.send("PUT", &url, &headers, data).await })
    })
    .await;
    digest
}

/// Pushes a streamed pseudo-random body of `len` bytes (never held in memory).
async fn push_streaming(registry: &Registry, body: StreamingBody) -> String {
    let digest = body.digest();
    push_body(registry, &digest, |conn, url, headers| {
        Box::pin(async move { conn.send_streaming("PUT", &url, &headers, body).await })
    })
    .await;
    digest
}

type Sent<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<http::Response, http::HttpError>> + 'a>,
>;

async fn push_body(
    registry: &Registry,
    digest: &str,
    put: impl for<'a> FnOnce(&'a mut http::Connection, String, Vec<(&'a str, &'a str)>) -> Sent<'a>,
) {
    let basic = connector_basic();
    let auth = [("authorization", basic.as_str())];
    let started = http::send(
        "POST",
        &format!("{}/v2/{REPO}/blobs/uploads/", registry.url()),
        &auth,
        Bytes::new(),
    )
    .await
    .expect("start upload");
    assert_eq!(started.status, 202, "{}", started.text());
    let location = started.header("location").expect("upload location");
    let location = if location.starts_with('/') {
        format!("{}{location}", registry.url())
    } else {
        location.to_owned()
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = format!("{location}{sep}digest={digest}");
    let mut conn = http::Connection::open(registry.addr())
        .await
        .expect("connect to the registry");
    conn.set_timeout(HANG);
    let headers = vec![
        ("authorization", basic.as_str()),
        ("content-type", "application/octet-stream"),
    ];
    let done = put(&mut conn, url, headers).await.expect("upload");
    assert_eq!(done.status, 201, "{}", done.text());
}

fn blob_path(digest: &str) -> String {
    format!("{REPO}/blobs/{digest}")
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: sees exactly what the proxy wrote, and when it closed
// ---------------------------------------------------------------------------------------------

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The proxy closed the connection after this response.
    closed: bool,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends a GET with the proxy token and reads the response: the head, then the body until
/// `Content-Length` bytes came or the connection closed (a cut body), then whether it closed.
async fn raw_get(
    conn: &mut TcpStream,
    proxy: &ProxyUnderTest,
    rest: &str,
    extra: &[(&str, &str)],
) -> RawResponse {
    let path = proxy
        .url("reg", rest)
        .split_once(&proxy.addr.to_string())
        .map(|(_, p)| p.to_owned())
        .expect("path");
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nhost: {}\r\nauthorization: {}\r\n",
        proxy.addr,
        proxy.authorization()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await.expect("send request");
    let mut buf = Vec::new();
    let head_len = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(HANG, conn.read(&mut chunk))
            .await
            .expect("response head (hang)")
            .expect("read response head");
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let text = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .expect("content-length");
    let mut body = buf.split_off(head_len);
    let mut closed = false;
    let mut chunk = vec![0u8; 256 * KIB];
    while body.len() < length {
        let n = tokio::time::timeout(HANG, conn.read(&mut chunk))
            .await
            .expect("body (hang)")
            .unwrap_or(0);
        if n == 0 {
            closed = true;
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let response = RawResponse {
        status,
        headers,
        body,
        closed,
    };
    let close_asked = response
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if !response.closed && close_asked {
        let n = tokio::time::timeout(HANG, conn.read(&mut chunk))
            .await
            .expect("close (hang)")
            .unwrap_or(0);
        assert_eq!(n, 0, "bytes after a response that said close");
        return RawResponse {
            closed: true,
            ..response
        };
    }
    response
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr)
        .await
        .expect("connect to the proxy")
}

/// Waits until the audit log has `n` records (the record of a cut response is written when the proxy
/// notices).
async fn audit_records(proxy: &ProxyUnderTest, n: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let records = proxy.audit_records();
        if records.len() >= n {
            return records;
        }
        assert!(tokio::time::Instant::now() < deadline, "audit: {records:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Byte-exact bodies
// ---------------------------------------------------------------------------------------------

/// Every size around a boundary of the path (empty, one byte, the splice threshold, the pipe size)
/// arrives byte for byte, on one kept-alive connection, with the exact `Content-Length`; the registry
/// only answers because the proxy injected the connector's Basic credentials, and the client never
/// sees them. Each response is logged and audited with the bytes sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_bodies_are_byte_exact_around_every_boundary() {
    let registry = registry();
    let pipe = 256 * KIB;
    let proxy = proxy_for(
        &registry.url(),
        SpliceOptions {
            enabled: true,
            pipe_size: pipe,
        },
    )
    .await;
    let sizes = [
        0,
        1,
        64 * KIB - 1,
        64 * KIB,
        64 * KIB + 1,
        pipe - 1,
        pipe,
        pipe + 1,
        MIB - 1,
        MIB,
        MIB + 1,
        5 * MIB + 3,
    ];
    let mut blobs = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let data = Bytes::from(connectors_testkit::PseudoRandom::new(i as u64 + 1).bytes(*size));
        let digest = push(&registry, data.clone()).await;
        blobs.push((data, digest));
    }
    let mut conn = connect(proxy.addr).await;
    for (i, (data, digest)) in blobs.iter().enumerate() {
        let before = proxy.splice_stats();
        let r = raw_get(&mut conn, &proxy, &blob_path(digest), &[]).await;
        // The counters move before the record is written.
        audit_records(&proxy, i + 1).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(!r.closed, "the connection stays open after a complete body");
        assert_eq!(
            r.header("content-length"),
            Some(data.len().to_string().as_str())
        );
        assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
        assert!(r.header("www-authenticate").is_none());
        assert!(r.body == data[..], "{} bytes differ", data.len());
        let after = proxy.splice_stats();
        assert_eq!(
            after.responses,
            before.responses + 1,
            "served by the fast path"
        );
        assert_eq!(after.fallbacks, before.fallbacks);
        if data.len() >= 64 * KIB {
            assert!(
                after.spliced_bytes > before.spliced_bytes,
                "a body of {} bytes is spliced",
                data.len()
            );
        } else {
            assert_eq!(after.spliced_bytes, before.spliced_bytes);
        }
    }
    drop(conn);
    let records = audit_records(&proxy, blobs.len()).await;
    for ((data, digest), record) in blobs.iter().zip(&records) {
        assert_eq!(record["operation"], "pull", "{record}");
        assert_eq!(record["reference"], digest.as_str(), "{record}");
        assert_eq!(record["status"], 200, "{record}");
        assert_eq!(record["bytes_out"], data.len() as u64, "{record}");
        assert_eq!(record["complete"], true, "{record}");
        assert_eq!(record["connector"], "team-a/reg", "{record}");
    }
    assert_audit_clean(&proxy);
    proxy.assert_settled().await;
}

/// 1 GiB, streamed from the registry to a client that hashes it as it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_blob_is_byte_exact() {
    let registry = registry();
    let proxy = proxy_for(&registry.url(), on()).await;
    let len = 1u64 << 30;
    let digest = push_streaming(&registry, StreamingBody::new(len).seed(7).chunk_size(MIB)).await;

    let mut conn = connect(proxy.addr).await;
    let path = format!(
        "/v2/namespaces/team-a/connectors/reg/{}",
        blob_path(&digest)
    );
    let head = format!(
        "GET {path} HTTP/1.1\r\nhost: proxy\r\nauthorization: {}\r\n\r\n",
        proxy.authorization()
    );
    conn.write_all(head.as_bytes()).await.expect("send");
    let mut buf = vec![0u8; MIB];
    let mut got = Vec::new();
    let head_len = loop {
        let n = conn.read(&mut buf).await.expect("head");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_len]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {len}")), "{head}");
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    hash.update(&got[head_len..]);
    let mut total = (got.len() - head_len) as u64;
    while total < len {
        let n = tokio::time::timeout(HANG, conn.read(&mut buf))
            .await
            .expect("body (hang)")
            .expect("body");
        assert!(n > 0, "closed after {total} bytes");
        hash.update(&buf[..n]);
        total += n as u64;
    }
    assert_eq!(total, len);
    let hex: String = hash
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(format!("sha256:{hex}"), digest);
    audit_records(&proxy, 1).await;
    let stats = proxy.splice_stats();
    assert_eq!(stats.responses, 1);
    assert!(stats.spliced_bytes > len - 64 * KIB as u64, "{stats:?}");
    drop(conn);
    let records = audit_records(&proxy, 1).await;
    assert_eq!(records[0]["bytes_out"], len);
    assert_eq!(records[0]["complete"], true);
}

/// `Range` goes to the registry; its `206` and exact slice come back, spliced when large.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_get_the_exact_slice() {
    let registry = registry();
    let proxy = proxy_for(&registry.url(), on()).await;
    let data = Bytes::from(connectors_testkit::PseudoRandom::new(42).bytes(3 * MIB + 5));
    let digest = push(&registry, data.clone()).await;
    let mut conn = connect(proxy.addr).await;
    for (range, from, to) in [
        ("bytes=0-0", 0, 1),
        ("bytes=100-70099", 100, 70_100),
        (
            "bytes=1048575-3145730",
            1_048_575,
            3_145_731.min(data.len()),
        ),
        ("bytes=-65537", data.len() - 65_537, data.len()),
    ] {
        let r = raw_get(&mut conn, &proxy, &blob_path(&digest), &[("range", range)]).await;
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {from}-{}/{}", to - 1, data.len()).as_str()),
            "{range}"
        );
        assert!(r.body == data[from..to], "{range}: bytes differ");
        assert!(!r.closed);
    }
    audit_records(&proxy, 4).await;
    assert_eq!(proxy.splice_stats().responses, 4);
    assert!(proxy.splice_stats().spliced_bytes > 0);
}

/// Many transfers at once, each byte-exact, on their own connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parallel_transfers_are_each_byte_exact() {
    let registry = registry();
    let proxy = std::sync::Arc::new(proxy_for(&registry.url(), on()).await);
    let mut blobs = Vec::new();
    for i in 0..4u64 {
        let data = Bytes::from(
            connectors_testkit::PseudoRandom::new(100 + i).bytes(3 * MIB + i as usize * 4099),
        );
        let digest = push(&registry, data.clone()).await;
        blobs.push((data, digest));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..24usize {
        let (data, digest) = blobs[n % blobs.len()].clone();
        let proxy = proxy.clone();
        tasks.spawn(async move {
            let mut conn = connect(proxy.addr).await;
            for _ in 0..2 {
                let r = raw_get(&mut conn, &proxy, &blob_path(&digest), &[]).await;
                assert_eq!(r.status, 200);
                assert!(r.body == data[..], "transfer {n}: bytes differ");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("transfer");
    }
    audit_records(&proxy, 48).await;
    let stats = proxy.splice_stats();
    assert_eq!(stats.responses, 48, "{stats:?}");
    assert_eq!(stats.fallbacks, 0, "{stats:?}");
    proxy.assert_settled().await;
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

/// A FAKE registry on a raw socket, for one fault: it answers `/v2/` with 200 and a blob GET with a head
/// announcing `declared` bytes, then sends the first `sent(path)` bytes of [`pattern`] and closes the
/// connection (FIN).
async fn fake_registry_closing_early(
    declared: u64,
    sent: impl Fn(&str) -> usize + Send + Sync + 'static,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let addr = listener.local_addr().expect("fake addr");
    let sent = std::sync::Arc::new(sent);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let path = text.split(' ').nth(1).unwrap_or("").to_owned();
                if path == "/v2/" {
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                        )
                        .await;
                    return;
                }
                let n = sent(&path);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {declared}\r\ncontent-type: application/octet-stream\r\n\r\n"
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.write_all(&pattern(0, n)).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

/// A registry that announces more than it sends and closes the connection (after part of the body, or
/// right after the head): the client gets exactly the bytes that came, then the connection closes (never
/// a hang); the record says incomplete, with those bytes.
#[tokio::test]
async fn an_upstream_that_closes_early_cuts_the_body_and_closes_the_connection() {
    let declared = 4 * MIB as u64;
    let cases = [
        ("sha256:a", MIB + 1),
        ("sha256:b", 0),
        ("sha256:c", 64 * KIB - 1),
    ];
    let addr = fake_registry_closing_early(declared, move |path| {
        cases
            .iter()
            .find(|(d, _)| path.ends_with(d))
            .map_or(0, |(_, n)| *n)
    })
    .await;
    let proxy = proxy_for(&format!("http://{addr}"), on()).await;
    for (digest, sent) in cases {
        let mut conn = connect(proxy.addr).await;
        let r = raw_get(&mut conn, &proxy, &blob_path(digest), &[]).await;
        assert_eq!(r.status, 200, "{digest}");
        assert_eq!(
            r.header("content-length"),
            Some(declared.to_string().as_str())
        );
        assert!(r.closed, "{digest}: the connection closes after a cut body");
        assert_eq!(r.body.len(), sent, "{digest}");
        assert!(r.body == pattern(0, sent), "{digest}: bytes differ");
    }
    let records = audit_records(&proxy, 3).await;
    for (record, (_, sent)) in records.iter().zip(cases) {
        assert_eq!(record["complete"], false, "{record}");
        assert_eq!(record["bytes_out"], sent as u64, "{record}");
    }
    assert_eq!(proxy.splice_stats().responses, 3);
    proxy.assert_settled().await;
}

/// A client that reads part of a large body and goes away: the proxy notices, records an incomplete
/// transfer with the bytes it sent, closes the upstream connection, and serves the next client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_mid_body_is_noticed() {
    let registry = registry();
    let proxy = proxy_for(&registry.url(), on()).await;
    let data = Bytes::from(connectors_testkit::PseudoRandom::new(9).bytes(64 * MIB));
    let digest = push(&registry, data.clone()).await;

    let mut conn = connect(proxy.addr).await;
    let head = format!(
        "GET /v2/namespaces/team-a/connectors/reg/{} HTTP/1.1\r\nhost: p\r\nauthorization: {}\r\n\r\n",
        blob_path(&digest),
        proxy.authorization()
    );
    conn.write_all(head.as_bytes()).await.expect("send");
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * KIB];
    while got < 2 * MIB {
        let n = conn.read(&mut buf).await.expect("read");
        assert!(n > 0);
        got += n;
    }
    drop(conn);

    let records = audit_records(&proxy, 1).await;
    assert_eq!(records[0]["complete"], false, "{}", records[0]);
    let sent = records[0]["bytes_out"].as_u64().expect("bytes_out");
    assert!(
        sent >= (2 * MIB - 4096) as u64 && sent < data.len() as u64,
        "{sent}"
    );
    proxy.assert_settled().await;

    // The next client is served in full.
    let mut conn = connect(proxy.addr).await;
    let r = raw_get(&mut conn, &proxy, &blob_path(&digest), &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body == data[..]);
    audit_records(&proxy, 2).await;
    assert_eq!(proxy.splice_stats().responses, 2);
}

/// `Connection: close` from the client: the whole body, then the proxy closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_is_honoured_after_the_body() {
    let registry = registry();
    let proxy = proxy_for(&registry.url(), on()).await;
    let data = Bytes::from(connectors_testkit::PseudoRandom::new(3).bytes(MIB + 7));
    let digest = push(&registry, data.clone()).await;
    let mut conn = connect(proxy.addr).await;
    let r = raw_get(
        &mut conn,
        &proxy,
        &blob_path(&digest),
        &[("connection", "close")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body == data[..]);
    assert!(r.closed);
    assert_eq!(proxy.splice_stats().responses, 1);
}

// ---------------------------------------------------------------------------------------------
// Fallbacks: the ordinary path serves, with the same answer
// ---------------------------------------------------------------------------------------------

/// The path off (the default), and a worker that cannot make a pipe (a fault: pipe size 0): the ordinary path serves
/// the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_splice_or_without_pipes_the_ordinary_path_serves() {
    let registry = registry();
    let data = Bytes::from(connectors_testkit::PseudoRandom::new(5).bytes(2 * MIB + 1));
    let digest = push(&registry, data.clone()).await;
    for (options, fallbacks) in [
        (
            SpliceOptions {
                enabled: false,
                ..on()
            },
            0,
        ),
        (
            SpliceOptions {
                enabled: true,
                pipe_size: 0,
            },
            1,
        ),
    ] {
        let proxy = proxy_for(&registry.url(), options).await;
        let mut conn = connect(proxy.addr).await;
        for _ in 0..2 {
            let r = raw_get(&mut conn, &proxy, &blob_path(&digest), &[]).await;
            assert_eq!(r.status, 200, "{options:?}");
            assert!(r.body == data[..], "{options:?}");
            assert!(!r.closed, "{options:?}");
        }
        let stats = proxy.splice_stats();
        assert_eq!(stats.responses, 0, "{options:?}");
        // The second request arrives on a connection hyper already serves.
        assert_eq!(stats.fallbacks, fallbacks, "{options:?}");
        let records = audit_records(&proxy, 2).await;
        assert_eq!(records.len(), 2, "one record per request: {records:?}");
        assert!(records.iter().all(|r| r["complete"] == true));
    }
}

/// A wrong proxy token (401 from the proxy; the registry is never asked) falls back to the ordinary path,
/// with one answer; a missing blob (the registry's 404 with a length) is relayed by this path, like any
/// answer with a length. Requests that are not blob GETs (a manifest, a HEAD) on a connection that a blob
/// GET opened go to hyper with the bytes already read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_it_does_not_serve_fall_back_to_the_ordinary_path() {
    let registry = registry();
    let proxy = proxy_for(&registry.url(), on()).await;
    let data = Bytes::from(connectors_testkit::PseudoRandom::new(11).bytes(300 * KIB));
    let digest = push(&registry, data.clone()).await;

    // A missing blob: the registry's 404, relayed.
    let missing = format!("sha256:{}", "0".repeat(64));
    let r = proxy.get("reg", &blob_path(&missing)).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("BLOB_UNKNOWN"), "{}", r.text());
    audit_records(&proxy, 1).await;
    assert_eq!(proxy.splice_stats().responses, 1);

    // A wrong token: 401 from the proxy itself (not audited: nobody was authenticated).
    let r = http::send(
        "GET",
        &proxy.url("reg", &blob_path(&digest)),
        &[("authorization", "Bearer not-a-token")],
        Bytes::new(),
    )
    .await
    .expect("send");
    assert_eq!(r.status, 401);
    assert_clean(&r);
    assert_eq!(proxy.splice_stats().fallbacks, 1);

    // A blob GET, then a manifest GET and a HEAD on the same connection: the first is spliced, the
    // others go to hyper with the bytes already read.
    let mut conn = http::Connection::open(proxy.addr).await.expect("connect");
    let auth = proxy.authorization();
    let r = conn
        .send(
            "GET",
            &proxy.url("reg", &blob_path(&digest)),
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await
        .expect("blob");
    assert_eq!(r.status, 200);
    assert!(r.body == data);
    audit_records(&proxy, 2).await;
    assert_eq!(proxy.splice_stats().responses, 2);
    let r = conn
        .send(
            "GET",
            &proxy.url("reg", &format!("{REPO}/manifests/latest")),
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await
        .expect("manifest");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = conn
        .send(
            "HEAD",
            &proxy.url("reg", &blob_path(&digest)),
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await
        .expect("head");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("307200"));
    let r = conn
        .send(
            "GET",
            &proxy.url("reg", &blob_path(&digest)),
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await
        .expect("blob again");
    assert!(r.body == data, "hyper serves the blob on its connection");
    assert_eq!(proxy.splice_stats().responses, 2);

    let records = audit_records(&proxy, 5).await;
    assert_eq!(records.len(), 5, "one record per request: {records:#?}");
    let statuses: Vec<u64> = records
        .iter()
        .map(|r| r["status"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(statuses, [404, 200, 404, 200, 200]);
    assert_audit_clean(&proxy);
}

/// A FAKE registry that answers a blob GET with a chunked body (no length): the ordinary path serves it.
#[tokio::test]
async fn a_chunked_answer_falls_back() {
    let fake = FakeRegistry::start(|ctx| {
        if ctx.req.path() == "/v2/" {
            return Reply::ok();
        }
        Reply::ok().chunked_body(200 * KIB + 3, 16 * KIB)
    })
    .await;
    let proxy = proxy_for(&fake.origin(), on()).await;
    let r = proxy.get("reg", &blob_path("sha256:c")).await;
    assert_eq!(r.status, 200);
    assert!(r.body == pattern(0, 200 * KIB + 3));
    let stats = proxy.splice_stats();
    assert_eq!((stats.responses, stats.fallbacks), (0, 1), "{stats:?}");
    // The path asked once, then the ordinary path asked again.
    assert_eq!(fake.requests_to("/v2/team/app/blobs/sha256:c").len(), 2);
    let records = audit_records(&proxy, 1).await;
    assert_eq!(records.len(), 1);
}

/// What the registry receives from this path: the connector's credentials, its own `Host`, no client
/// token, and `Connection: close`.
#[tokio::test]
async fn the_upstream_request_carries_only_the_connectors_credentials() {
    let fake = FakeRegistry::start(|ctx| {
        if ctx.req.header("authorization") != Some(connector_basic().as_str()) {
            return Reply::status(401).header("www-authenticate", r#"Basic realm="fake""#);
        }
        if ctx.req.path() == "/v2/" {
            return Reply::ok();
        }
        Reply::ok()
            .header("set-cookie", "s=1")
            .body(Bytes::from(pattern(0, 100 * KIB)))
    })
    .await;
    let proxy = proxy_for(&fake.origin(), on()).await;
    let mut conn = connect(proxy.addr).await;
    let r = raw_get(
        &mut conn,
        &proxy,
        &blob_path("sha256:d"),
        &[("cookie", "c=1"), ("x-forwarded-host", "evil")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body == pattern(0, 100 * KIB));
    assert!(r.header("set-cookie").is_none());
    audit_records(&proxy, 1).await;
    assert_eq!(proxy.splice_stats().responses, 1);
    let seen = fake.requests_to("/v2/team/app/blobs/sha256:d");
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.header("authorization"), Some(connector_basic().as_str()));
    assert_eq!(s.header("host"), Some(fake.addr().to_string().as_str()));
    assert!(s.header("cookie").is_none());
    assert!(s.header("x-forwarded-host").is_none());
    assert!(!closed_too_early(&mut conn).await);
}

/// The connection is still open and usable (nothing was left on it).
async fn closed_too_early(conn: &mut TcpStream) -> bool {
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: p\r\nconnection: close\r\n\r\n")
        .await
        .is_err()
        || {
            let mut s = String::new();
            let _ = tokio::time::timeout(HANG, conn.read_to_string(&mut s)).await;
            !s.starts_with("HTTP/1.1 200")
        }
}
