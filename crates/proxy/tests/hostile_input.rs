//! Hostile input: every request limit and input rule of the proxy, each refused with the status and a
//! message that names the limit (and the flag that raises it), and each followed by a request that is
//! still served. The upstream is an in-process FAKE registry ([`FakeRegistry`]) that must never see a
//! refused request.
//!
//! Requests are written as raw bytes on a TCP connection where a client library would fix or refuse them.
//! Sleeps only create slowness or silence; no assertion depends on how long something took.

mod support;

use std::time::Duration;

use bytes::Bytes;
use connectors_proxy::limits::Limits;
use connectors_registry::{ResolveOverrides, UpstreamAccess};
use connectors_testkit::http::{self, StreamingBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{
    ConnectorSpec, Ctx, FakeRegistry, NS, ProxyUnderTest, Reply, assert_clean, oci_error,
};

/// A registry with an open `/v2/` whose manifests answer `{}` and whose uploads take any body.
fn open_registry(ctx: &Ctx) -> Reply {
    let path = ctx.req.path();
    if path == "/v2/" || path.ends_with("/manifests/v1") {
        return Reply::ok().json(serde_json::json!({}));
    }
    if path.contains("/blobs/uploads/") {
        return Reply::status(202)
            .header("location", "/v2/app/blobs/uploads/u1")
            .header("range", format!("0-{}", ctx.req.body_len.saturating_sub(1)));
    }
    if path.ends_with("/blobs/sha256:big") {
        return Reply::ok().slow_body(64 << 20, 1 << 20, Duration::ZERO);
    }
    Reply::status(404)
}

async fn setup(limits: Limits) -> (FakeRegistry, ProxyUnderTest) {
    let fake = FakeRegistry::start(open_registry).await;
    let proxy = ProxyUnderTest::start_limited(
        &[ConnectorSpec::new("reg", fake.origin())],
        UpstreamAccess::new(ResolveOverrides::default()),
        limits,
    )
    .await;
    (fake, proxy)
}

/// What came back on a raw connection: status, head (lower-cased) and body; `None` when the proxy closed
/// the connection without an answer.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    /// `(code, message)` of the OCI error body.
    fn error(&self) -> (String, String) {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        (
            v["errors"][0]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            v["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }
}

/// Writes `request` on a new connection and reads one response (up to its `Content-Length`, or to the
/// end of the connection).
async fn raw(proxy: &ProxyUnderTest, request: &[u8]) -> Option<Raw> {
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    // The proxy may answer before it has read everything; a failed write is fine then.
    let _ = s.write_all(request).await;
    read_response(&mut s).await
}

async fn read_response(s: &mut TcpStream) -> Option<Raw> {
    let mut buf = Vec::new();
    let mut piece = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                match tokio::time::timeout(Duration::from_secs(30), s.read(&mut piece)).await {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&piece[..n]),
                    _ => break,
                }
            }
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
            return Some(Raw { status, head, body });
        }
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut piece)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&piece[..n]),
            _ => return None,
        }
    }
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: proxy\r\n{extra}\r\n").into_bytes()
}

fn manifest_path() -> String {
    format!("/v2/namespaces/{NS}/connectors/reg/app/manifests/v1")
}

/// The proxy still serves: a good request right after the refusal reaches the registry and gets 200.
async fn still_serving(proxy: &ProxyUnderTest, fake: &FakeRegistry) {
    let before = fake.requests_to("/v2/app/manifests/v1").len();
    let r = proxy.get("reg", "app/manifests/v1").await;
    assert_eq!(r.status, 200, "the next request failed: {}", r.text());
    assert_eq!(fake.requests_to("/v2/app/manifests/v1").len(), before + 1);
}

fn auth(proxy: &ProxyUnderTest) -> String {
    format!("Authorization: {}\r\n", proxy.authorization())
}

// ---------------------------------------------------------------------------------------------
// Header block size and count
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_header_block_over_the_limit_gets_431_naming_the_flag() {
    let (fake, proxy) = setup(Limits::default()).await;
    let pad = format!("X-Pad: {}\r\n", "p".repeat(70 * 1024));
    let r = raw(&proxy, &get(&manifest_path(), &(auth(&proxy) + &pad)))
        .await
        .expect("an answer");
    assert_eq!(r.status, 431, "{}", r.body);
    let (code, message) = r.error();
    assert_eq!(code, "UNSUPPORTED");
    assert!(
        message.contains("more than the 65536") && message.contains("--max-header-bytes"),
        "{message}"
    );
    assert!(fake.requests_to("/v2/app/manifests/v1").is_empty());
    still_serving(&proxy, &fake).await;

    // far over it (more than twice): hyper refuses on its own, without reading it all; still serving
    let pad = format!("X-Pad: {}\r\n", "p".repeat(300 * 1024));
    let r = raw(&proxy, &get(&manifest_path(), &pad)).await;
    if let Some(r) = r {
        assert_eq!(r.status, 431, "{}", r.head);
    }
    still_serving(&proxy, &fake).await;
}

#[tokio::test]
async fn too_many_header_fields_get_431_naming_the_flag() {
    let (fake, proxy) = setup(Limits::default()).await;
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(&proxy, &get(&manifest_path(), &(auth(&proxy) + &many)))
        .await
        .expect("an answer");
    assert_eq!(r.status, 431, "{}", r.body);
    let (_, message) = r.error();
    assert!(
        message.contains("152 header fields") && message.contains("--max-headers"),
        "{message}"
    );
    assert!(fake.requests_to("/v2/app/manifests/v1").is_empty());
    still_serving(&proxy, &fake).await;
}

// ---------------------------------------------------------------------------------------------
// URI length
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_long_uri_gets_414_naming_the_flag() {
    let (fake, proxy) = setup(Limits::default()).await;
    let path = format!("{}?n={}", manifest_path(), "1".repeat(9 * 1024));
    let r = raw(&proxy, &get(&path, &auth(&proxy)))
        .await
        .expect("an answer");
    assert_eq!(r.status, 414, "{}", r.body);
    let (_, message) = r.error();
    assert!(
        message.contains("more than the 8192") && message.contains("--max-uri-bytes"),
        "{message}"
    );
    assert!(fake.requests_to("/v2/app/manifests/v1").is_empty());
    still_serving(&proxy, &fake).await;
}

// ---------------------------------------------------------------------------------------------
// Forward mode: Proxy-Authorization length and connectors per proxy URL
// ---------------------------------------------------------------------------------------------

fn connect(target: &str, proxy_authorization: &str) -> Vec<u8> {
    format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {proxy_authorization}\r\n\r\n"
    )
    .into_bytes()
}

fn basic(user: &str, token: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
    )
}

#[tokio::test]
async fn a_long_proxy_authorization_gets_407_naming_the_flag() {
    let (fake, proxy) = setup(Limits::default()).await;
    let user = format!("{NS}%2Freg");
    let value = basic(&user, &"t".repeat(13 * 1024)); // 17+ KiB once encoded
    assert!(value.len() > 16 * 1024);
    let r = raw(&proxy, &connect("example.test:443", &value))
        .await
        .expect("an answer");
    assert_eq!(r.status, 407, "{}", r.body);
    assert!(r.head.contains("proxy-authenticate: basic"), "{}", r.head);
    let (_, message) = r.error();
    assert!(
        message.contains("more than the 16384")
            && message.contains("--max-proxy-authorization-bytes"),
        "{message}"
    );
    still_serving(&proxy, &fake).await;
}

#[tokio::test]
async fn more_connectors_than_allowed_in_one_proxy_url_get_400() {
    let mut limits = Limits::default();
    limits.max_connectors_per_request = 3;
    let (fake, proxy) = setup(limits).await;
    let four: Vec<String> = (0..4).map(|i| format!("{NS}%2Fc{i}")).collect();
    let r = raw(
        &proxy,
        &connect("example.test:443", &basic(&four.join(","), proxy.token())),
    )
    .await
    .expect("an answer");
    assert_eq!(r.status, 400, "{}", r.body);
    let (_, message) = r.error();
    assert!(
        message.contains("names 4 connectors, more than the 3")
            && message.contains("--max-connectors-per-request"),
        "{message}"
    );
    assert!(!r.body.contains(proxy.token()), "the token was echoed");
    // three is fine (they are refused later, for not existing, which proves the count passed)
    let three = four[..3].join(",");
    let r = raw(
        &proxy,
        &connect("example.test:443", &basic(&three, proxy.token())),
    )
    .await
    .expect("an answer");
    assert_ne!(r.status, 400, "{}", r.body);
    still_serving(&proxy, &fake).await;
}

// ---------------------------------------------------------------------------------------------
// Concurrent connections
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_connection_over_the_limit_gets_503_and_a_freed_slot_is_reused() {
    let mut limits = Limits::default();
    limits.max_connections = 2;
    let (fake, proxy) = setup(limits).await;
    let ping = get("/healthz", "");
    // two kept-alive connections, each proven accepted by an answer
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(&ping).await.unwrap();
        let r = read_response(&mut s).await.expect("answer");
        assert_eq!(r.status, 200);
        held.push(s);
    }
    let r = raw(&proxy, &get(&manifest_path(), &auth(&proxy)))
        .await
        .expect("an answer");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.head.contains("retry-after: 1"), "{}", r.head);
    let (code, message) = r.error();
    assert_eq!(code, "UNAVAILABLE");
    assert!(
        message.contains("2 client connections") && message.contains("--max-connections"),
        "{message}"
    );
    assert!(fake.requests_to("/v2/app/manifests/v1").is_empty());

    // close one: its slot comes back (the proxy notices the close on its own time)
    drop(held.pop());
    let mut served = false;
    for _ in 0..200 {
        let r = raw(&proxy, &get(&manifest_path(), &auth(&proxy)))
            .await
            .expect("an answer");
        if r.status == 200 {
            served = true;
            break;
        }
        assert_eq!(r.status, 503);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "the freed connection slot was never reused");
}

// ---------------------------------------------------------------------------------------------
// Timeouts: slowloris headers, silent uploads, unread responses; moving transfers are never cut
// ---------------------------------------------------------------------------------------------

fn short_timeouts() -> Limits {
    let mut limits = Limits::default();
    limits.header_read_timeout = Duration::from_millis(300);
    limits.idle_timeout = Duration::from_millis(300);
    limits
}

#[tokio::test]
async fn headers_that_never_finish_are_cut_at_the_header_read_timeout() {
    let (fake, proxy) = setup(short_timeouts()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: proxy\r\nX-Slow: a")
        .await
        .unwrap();
    // nothing more: the proxy closes the connection (the 30 s are a bound for a hung test, not a limit)
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("the proxy kept a slowloris connection open");
    assert!(
        matches!(n, Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408"),
        "{n:?}"
    );
    still_serving(&proxy, &fake).await;
}

#[tokio::test]
async fn an_upload_that_goes_silent_is_given_up_with_a_message() {
    let (fake, proxy) = setup(short_timeouts()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "PATCH /v2/namespaces/{NS}/connectors/reg/app/blobs/uploads/u1 HTTP/1.1\r\nHost: proxy\r\n{}\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        auth(&proxy),
        8 << 20
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![7u8; 2 << 20]).await.unwrap();
    // and then silence
    let r = read_response(&mut s).await.expect("an answer");
    assert_eq!(r.status, 400, "{}", r.body);
    let (_, message) = r.error();
    assert!(message.contains("--idle-timeout"), "{message}");
    let seen = fake.requests_to("/v2/app/blobs/uploads/u1");
    assert!(
        seen.iter().all(|s| !s.body_complete),
        "the registry took a cut-off upload as complete"
    );
    still_serving(&proxy, &fake).await;
}

#[tokio::test]
async fn a_slow_upload_that_keeps_moving_outlives_the_idle_timeout() {
    let (fake, proxy) = setup(short_timeouts()).await;
    // 24 pieces 100 ms apart: 2.4 s in all, eight times the idle timeout, never 300 ms silent
    let body = StreamingBody::new(24 * 4096)
        .chunk_size(4096)
        .delay(Duration::from_millis(100));
    let len = body.len();
    let r = http::send_streaming(
        "PATCH",
        &proxy.url("reg", "app/blobs/uploads/u1"),
        &[
            ("authorization", &proxy.authorization()),
            ("content-type", "application/octet-stream"),
        ],
        body,
    )
    .await
    .expect("the slow upload failed");
    assert_clean(&r);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("range"), Some(format!("0-{}", len - 1).as_str()));
    let seen = fake.requests_to("/v2/app/blobs/uploads/u1");
    assert!(seen.iter().any(|s| s.body_complete && s.body_len == len));
}

#[tokio::test]
async fn a_response_the_client_stops_reading_is_closed_at_the_idle_timeout() {
    let (fake, proxy) = setup(short_timeouts()).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let path = format!("/v2/namespaces/{NS}/connectors/reg/app/blobs/sha256:big");
    s.write_all(&get(&path, &auth(&proxy))).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let first = s.read(&mut buf).await.unwrap();
    assert!(buf[..first].starts_with(b"HTTP/1.1 200"));
    // stop reading until well after the idle timeout, then read what is left: the proxy closed the
    // connection, so less than the 64 MiB arrives
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut total = first;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("the proxy kept an unread response open"),
        }
    }
    assert!(total < 64 << 20, "all {total} bytes arrived");
    still_serving(&proxy, &fake).await;
}

// ---------------------------------------------------------------------------------------------
// Path rules, Kubernetes names, header values
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn traversal_and_empty_segments_are_refused_before_routing() {
    let (fake, proxy) = setup(Limits::default()).await;
    let cases = [
        (
            format!("/v2/namespaces/{NS}/connectors/reg/../reg/app/manifests/v1"),
            "\"..\" segment",
        ),
        (
            format!("/v2/namespaces/{NS}/connectors/reg/%2e%2e/app/manifests/v1"),
            "percent-encoded \"%2e\"",
        ),
        (
            format!("/v2/namespaces/{NS}/connectors/reg/app%2F..%2Fx/manifests/v1"),
            "percent-encoded \"%2f\"",
        ),
        (
            format!("/v2/namespaces/{NS}/connectors/reg//app/manifests/v1"),
            "empty segment",
        ),
        (
            format!("/v2/namespaces/{NS}/./connectors/reg/app/manifests/v1"),
            "\".\" segment",
        ),
    ];
    for (path, why) in cases {
        let r = raw(&proxy, &get(&path, &auth(&proxy)))
            .await
            .expect("an answer");
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let (_, message) = r.error();
        assert!(message.contains(why), "{path}: {message}");
    }
    assert!(
        fake.requests().iter().all(|s| s.path() == "/v2/"),
        "a refused path reached the registry: {:?}",
        fake.requests()
            .iter()
            .map(|s| s.target.clone())
            .collect::<Vec<_>>()
    );
    still_serving(&proxy, &fake).await;
}

#[tokio::test]
async fn namespaces_and_connector_names_must_be_kubernetes_names() {
    let (fake, proxy) = setup(Limits::default()).await;
    let long = "a".repeat(64);
    let cases = [
        (
            "/v2/namespaces/team.a/connectors/reg/app/manifests/v1".to_owned(),
            "DNS-1123 label",
        ),
        (
            format!("/v2/namespaces/{long}/connectors/reg/app/manifests/v1"),
            "DNS-1123 label",
        ),
        (
            format!("/v2/namespaces/{NS}/connectors/Reg/app/manifests/v1"),
            "DNS-1123 subdomain",
        ),
        (
            format!("/v2/namespaces/{NS}/connectors/reg..x/app/manifests/v1"),
            "DNS-1123 subdomain",
        ),
    ];
    for (path, rule) in cases {
        let r = raw(&proxy, &get(&path, &auth(&proxy)))
            .await
            .expect("an answer");
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let (_, message) = r.error();
        assert!(message.contains(rule), "{path}: {message}");
    }
    still_serving(&proxy, &fake).await;
}

#[tokio::test]
async fn header_values_with_control_or_non_ascii_bytes_are_refused() {
    let (fake, proxy) = setup(Limits::default()).await;
    // obsolete text (UTF-8 here): the parser lets it through, the proxy refuses it with a message
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: proxy\r\n{}",
        manifest_path(),
        auth(&proxy)
    )
    .into_bytes();
    request.extend_from_slice(b"X-Note: caf\xc3\xa9\r\n\r\n");
    let r = raw(&proxy, &request).await.expect("an answer");
    assert_eq!(r.status, 400, "{}", r.body);
    let (_, message) = r.error();
    assert!(
        message.contains("x-note") && message.contains("not visible ASCII"),
        "{message}"
    );
    // control characters, a bare CR among them: the HTTP parser refuses them (400, no body) before the
    // proxy sees them
    for bad in [
        &b"X-Note: a\x01b\r\n"[..],
        b"X-Note: a\rInjected: 1\r\n",
        b"X-Note: a\x7fb\r\n",
    ] {
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: proxy\r\n{}",
            manifest_path(),
            auth(&proxy)
        )
        .into_bytes();
        request.extend_from_slice(bad);
        request.extend_from_slice(b"\r\n");
        if let Some(r) = raw(&proxy, &request).await {
            assert_eq!(
                r.status,
                400,
                "{:?}: {}",
                String::from_utf8_lossy(bad),
                r.head
            );
        }
    }
    assert!(fake.requests_to("/v2/app/manifests/v1").is_empty());
    still_serving(&proxy, &fake).await;
}

// ---------------------------------------------------------------------------------------------
// Backpressure: a registry that stops reading stops the client
// ---------------------------------------------------------------------------------------------

/// The proxy holds no more of an upload than its buffers while the registry does not read: a client
/// that has a 512 MiB body ready can write only a bounded part of it. The bound (64 MiB) is far above
/// what the socket buffers on both sides of the proxy hold and far below the body.
#[tokio::test]
async fn an_upload_streams_with_backpressure() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    // a FAKE registry that accepts the connection and never reads the request
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            open.push(s);
        }
    });
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("stuck", origin)]).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let total: u64 = 512 << 20;
    let head = format!(
        "PATCH /v2/namespaces/{NS}/connectors/stuck/app/blobs/uploads/u1 HTTP/1.1\r\nHost: proxy\r\n{}\
         Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n",
        auth(&proxy)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let writer = tokio::spawn(async move {
        let piece = vec![1u8; 1 << 20];
        while counter.load(Ordering::SeqCst) < total {
            if s.write_all(&piece).await.is_err() {
                return;
            }
            counter.fetch_add(piece.len() as u64, Ordering::SeqCst);
        }
    });
    // wait until the writer is stuck: no progress over several looks
    let mut last = u64::MAX;
    let mut same = 0;
    while same < 10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = written.load(Ordering::SeqCst);
        if now == last {
            same += 1;
        } else {
            same = 0;
            last = now;
        }
        assert!(
            now < total,
            "all of the body went through a registry that reads nothing"
        );
    }
    assert!(last < 64 << 20, "the client could write {last} bytes");
    writer.abort();
    held.abort();
}

#[tokio::test]
async fn a_refused_request_does_not_leak_the_token_or_the_password() {
    // the canary check over every refusal message above happens in each case through `error()`; here, the
    // refusals that quote input (names, paths) are checked not to quote a token put where a name goes
    let (_fake, proxy) = setup(Limits::default()).await;
    let path = format!(
        "/v2/namespaces/{}/connectors/reg/app/manifests/v1",
        proxy.token()
    );
    let r = raw(&proxy, &get(&path, &auth(&proxy)))
        .await
        .expect("an answer");
    assert_eq!(r.status, 400);
    assert!(
        !r.body.contains(proxy.token()),
        "the token was quoted: {}",
        r.body
    );
    let r2 = http::send(
        "GET",
        &format!(
            "http://{}/v2/namespaces/{NS}/connectors/reg/app/manifests/v1",
            proxy.addr
        ),
        &[
            ("authorization", &proxy.authorization()),
            ("x-pad", &"p".repeat(70 * 1024)),
        ],
        Bytes::new(),
    )
    .await
    .expect("an answer");
    assert_clean(&r2);
    assert_eq!(r2.status, 431);
    let (_, message) = oci_error(&r2);
    assert!(!message.contains(proxy.token()));
}
