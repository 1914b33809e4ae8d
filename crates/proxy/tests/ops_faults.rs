//! Operability and faults: what `/metrics` and the audit log say about requests, and faults the
//! other fault tests (reverse_faults.rs) do not cover — an upstream reset in the middle of an upload, a
//! token endpoint that hangs, a registry that refuses a fresh token, a token endpoint that hands out
//! tokens the registry already considers expired, a client that vanishes mid-download. Each case: the
//! client gets a clear error, the proxy serves the next request, no connection, request or tunnel stays
//! open (`ProxyUnderTest::assert_settled`), and the audit log holds no secret.
//!
//! The upstreams are FAKES (in-process), because a real registry does not misbehave on cue.

mod support;

use std::time::Duration;

use bytes::Bytes;
use connectors_testkit::http::{self, StreamingBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::{
    ConnectorSpec, FakeRegistry, ProxyUnderTest, Reply, assert_audit_clean, bearer_challenge,
    grants, issue_token, oci_error, pattern,
};

const MIB: usize = 1 << 20;

/// The value of the metric line `series` (name plus labels, exactly as rendered).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn open_registry(
    route: impl Fn(&support::Ctx) -> Option<Reply> + Send + Sync + 'static,
) -> impl Fn(&support::Ctx) -> Reply + Send + Sync + 'static {
    move |ctx| {
        if ctx.req.path() == "/v2/" {
            return Reply::ok().json(serde_json::json!({}));
        }
        route(ctx).unwrap_or_else(|| Reply::status(404))
    }
}

/// A pull and a push are counted by connector, mode, operation and status, with their bytes and
/// upstream latencies, and each leaves one audit record with who, what and how it ended.
#[tokio::test]
async fn metrics_and_audit_records_follow_pulls_and_pushes() {
    let manifest = r#"{"schemaVersion":2}"#;
    let fake = FakeRegistry::start(open_registry(move |ctx| match ctx.req.path() {
        "/v2/team/app/manifests/v1" => Some(Reply::ok().body(manifest)),
        "/v2/team/app/blobs/uploads/u-1" => Some(Reply::status(201)),
        _ => None,
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let r = proxy.get("reg", "team/app/manifests/v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let upload = Bytes::from(pattern(0, 3 * MIB));
    let r = proxy
        .send(
            "PUT",
            "reg",
            "team/app/blobs/uploads/u-1?digest=sha256%3Aabc",
            &[("content-type", "application/octet-stream")],
            upload.clone(),
        )
        .await
        .expect("push");
    assert_eq!(r.status, 201, "{}", r.text());
    let r = proxy.get("reg", "team/app/manifests/missing").await;
    assert_eq!(r.status, 404);
    proxy.assert_settled().await;

    let text = proxy.metrics_text();
    let series = |op: &str, status: u16| {
        format!(
            "connectors_requests_total{{connector=\"team-a/reg\",mode=\"reverse\",operation=\"{op}\",status=\"{status}\"}}"
        )
    };
    assert_eq!(metric(&text, &series("pull", 200)), Some(1.0), "{text}");
    assert_eq!(metric(&text, &series("pull", 404)), Some(1.0), "{text}");
    assert_eq!(metric(&text, &series("push", 201)), Some(1.0), "{text}");
    assert_eq!(
        metric(
            &text,
            "connectors_bytes_total{connector=\"team-a/reg\",direction=\"in\"}"
        ),
        Some(upload.len() as f64),
        "{text}"
    );
    let out = metric(
        &text,
        "connectors_bytes_total{connector=\"team-a/reg\",direction=\"out\"}",
    )
    .expect("bytes out");
    assert!(out >= manifest.len() as f64, "{text}");
    assert_eq!(
        metric(&text, "connectors_upstream_duration_seconds_count"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "connectors_upstream_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(3.0)
    );

    let records = proxy.audit_records();
    assert_eq!(records.len(), 3, "{}", proxy.audit_text());
    let pull = &records[0];
    assert_eq!(pull["mode"], "reverse");
    assert_eq!(pull["principal"], "component-test");
    assert_eq!(pull["connector"], "team-a/reg");
    assert_eq!(pull["repository"], "team/app");
    assert_eq!(pull["reference"], "v1");
    assert_eq!(pull["operation"], "pull");
    assert_eq!(pull["method"], "GET");
    assert_eq!(pull["status"], 200);
    assert_eq!(pull["bytes_out"], manifest.len());
    assert_eq!(pull["complete"], true);
    assert!(pull["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let push = &records[1];
    assert_eq!(push["operation"], "push");
    assert_eq!(push["reference"], "sha256:abc");
    assert_eq!(push["status"], 201);
    assert_eq!(push["bytes_in"], upload.len());
    assert_eq!(records[2]["status"], 404);
    assert_audit_clean(&proxy);
}

/// Refused callers are counted by reason; a refusal is audited without the token.
#[tokio::test]
async fn authentication_failures_are_counted_by_reason() {
    let fake = FakeRegistry::start(open_registry(|_| Some(Reply::ok()))).await;
    let proxy = ProxyUnderTest::start(&[
        ConnectorSpec::new("reg", fake.origin()),
        ConnectorSpec::new("other", fake.origin()),
    ])
    .await;
    let url = proxy.url("reg", "team/app/manifests/v1");

    let r = http::send("GET", &url, &[], Bytes::new())
        .await
        .expect("send");
    assert_eq!(r.status, 401);
    let r = http::send(
        "GET",
        &url,
        &[("authorization", "Bearer not-a-token")],
        Bytes::new(),
    )
    .await
    .expect("send");
    assert_eq!(r.status, 401);
    // A well-formed token whose signature does not match: the real token with its last part changed.
    let mut forged = proxy.token().to_owned();
    let last = forged.pop().expect("token");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let r = http::send(
        "GET",
        &url,
        &[("authorization", &format!("Bearer {forged}"))],
        Bytes::new(),
    )
    .await
    .expect("send");
    assert_eq!(r.status, 401, "{}", r.text());
    proxy.assert_settled().await;

    let text = proxy.metrics_text();
    let reason = |r: &str| {
        metric(
            &text,
            &format!("connectors_auth_failures_total{{reason=\"{r}\"}}"),
        )
    };
    assert_eq!(reason("missing"), Some(1.0), "{text}");
    assert_eq!(
        reason("malformed").unwrap_or(0.0) + reason("bad_signature").unwrap_or(0.0),
        2.0,
        "{text}"
    );
    assert_eq!(reason("not_allowed"), Some(0.0), "{text}");
    // Refused before the path was read: no connector label, operation `other`.
    assert_eq!(
        metric(
            &text,
            "connectors_requests_total{connector=\"\",mode=\"reverse\",operation=\"other\",status=\"401\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert!(!proxy.audit_text().contains("not-a-token"));
    assert!(!proxy.audit_text().contains(&forged));
    assert_audit_clean(&proxy);
}

/// A FAKE registry on raw TCP: answers every request `200 {}` and closes, except a `PATCH`, of
/// which it reads `read_before_reset` body bytes and then drops the connection (a reset, as the
/// unread data is discarded).
async fn resetting_registry(read_before_reset: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                if head.starts_with(b"PATCH ") {
                    let mut body = vec![0u8; read_before_reset];
                    let _ = s.read_exact(&mut body).await;
                    return; // dropped with unread data: the kernel sends a reset
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    addr
}

/// The registry drops the connection 1 MiB into an 8 MiB upload: the client gets a clear 502 (or
/// its connection closed), never a success; the proxy then serves the next request.
#[tokio::test]
async fn an_upstream_reset_mid_upload_is_a_clear_error() {
    let addr = resetting_registry(MIB).await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", format!("http://{addr}"))]).await;
    let auth = proxy.authorization();
    let url = proxy.url("reg", "team/app/blobs/uploads/u-1");
    let outcome = http::send_streaming(
        "PATCH",
        &url,
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/octet-stream"),
        ],
        StreamingBody::new(8 * MIB as u64),
    )
    .await;
    match &outcome {
        Ok(r) => {
            assert_eq!(r.status, 502, "{}", r.text());
            let (code, message) = oci_error(r);
            assert_eq!(code, "UNAVAILABLE", "{message}");
            assert!(message.contains(&addr.to_string()), "{message}");
        }
        Err(e) => eprintln!("the client's connection was closed, as it may be: {e}"),
    }
    let r = proxy.get("reg", "team/app/manifests/v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    proxy.assert_settled().await;
    let records = proxy.audit_records();
    assert!(
        records
            .iter()
            .any(|r| r["operation"] == "push" && r["status"] != 202 && r["status"] != 201),
        "{}",
        proxy.audit_text()
    );
    assert_audit_clean(&proxy);
}

/// The token endpoint never answers the first time: after the token timeout the client gets 504
/// naming the realm; the next request gets a token and goes through.
#[tokio::test]
async fn a_token_endpoint_that_hangs_gives_a_timeout_then_recovers() {
    let fake = FakeRegistry::start(|ctx| match ctx.req.path() {
        "/token" if ctx.earlier == 0 => Reply::hang(),
        "/token" => issue_token(ctx),
        "/v2/team/app/manifests/v1" if grants(&ctx.req, "repository:team/app:pull") => {
            Reply::ok().body("fine")
        }
        _ => Reply::status(401).header("www-authenticate", bearer_challenge(&ctx.origin)),
    })
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let r = proxy.get("reg", "team/app/manifests/v1").await;
    assert!(
        r.status == 504 || r.status == 502,
        "{} {}",
        r.status,
        r.text()
    );
    let (_, message) = oci_error(&r);
    assert!(
        message.contains(&format!("{}/token", fake.origin())),
        "{message}"
    );

    let r = proxy.get("reg", "team/app/manifests/v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "fine");
    proxy.assert_settled().await;
    assert_audit_clean(&proxy);
}

/// The registry refuses every token the realm issues (a fresh one included): the proxy fetches a new
/// one at most once, then answers a clear error instead of looping; other requests still work.
#[tokio::test]
async fn a_registry_that_refuses_fresh_tokens_gets_no_retry_loop() {
    let fake = FakeRegistry::start(|ctx| match ctx.req.path() {
        "/token" => issue_token(ctx),
        "/v2/team/app/manifests/ok" if grants(&ctx.req, "repository:team/app:pull") => {
            Reply::ok().body("fine")
        }
        _ => Reply::status(401).header(
            "www-authenticate",
            format!(
                r#"{},scope="repository:team/app:pull",error="invalid_token""#,
                bearer_challenge(&ctx.origin)
            ),
        ),
    })
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let r = proxy.get("reg", "team/app/manifests/refused").await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.text());
    let (code, message) = oci_error(&r);
    assert!(!code.is_empty() && !message.is_empty(), "{}", r.text());
    let attempts = fake.requests_to("/v2/team/app/manifests/refused").len();
    assert!(
        (1..=3).contains(&attempts),
        "{attempts} attempts: a retry loop"
    );

    let r = proxy.get("reg", "team/app/manifests/ok").await;
    assert_eq!(r.status, 200, "{}", r.text());
    proxy.assert_settled().await;
    assert_audit_clean(&proxy);
}

/// The realm first hands out a token the registry already considers expired (it answers 401 with
/// `error="invalid_token"`): the proxy does not keep using it; a later token works.
#[tokio::test]
async fn an_expired_token_from_the_realm_is_not_kept() {
    let fake = FakeRegistry::start(|ctx| match ctx.req.path() {
        "/token" if ctx.earlier == 0 => {
            Reply::ok().json(serde_json::json!({"token": "expired-1", "expires_in": 300}))
        }
        "/token" => issue_token(ctx),
        "/v2/team/app/manifests/v1" if grants(&ctx.req, "repository:team/app:pull") => {
            Reply::ok().body("fine")
        }
        _ => Reply::status(401).header(
            "www-authenticate",
            format!(
                r#"{},scope="repository:team/app:pull",error="invalid_token""#,
                bearer_challenge(&ctx.origin)
            ),
        ),
    })
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            proxy
                .get("reg", "team/app/manifests/v1")
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    let bearers: Vec<String> = fake
        .requests_to("/v2/team/app/manifests/v1")
        .iter()
        .filter_map(|s| s.bearer().map(str::to_owned))
        .collect();
    assert!(
        bearers.iter().filter(|b| *b == "expired-1").count() <= 1,
        "the expired token was used again: {bearers:?}"
    );
    proxy.assert_settled().await;
    assert_audit_clean(&proxy);
}

/// A client that reads the headers of a 16 MiB download and goes away: the request ends (audited as
/// incomplete), nothing stays open, the next request is served.
#[tokio::test]
async fn a_client_that_vanishes_mid_download_leaves_nothing_open() {
    let fake = FakeRegistry::start(open_registry(|ctx| match ctx.req.path() {
        "/v2/team/app/blobs/sha256:big" => Some(
            Reply::ok()
                .header("content-type", "application/octet-stream")
                .slow_body(16 * MIB, 64 * 1024, Duration::from_millis(5)),
        ),
        "/v2/team/app/manifests/v1" => Some(Reply::ok().body("fine")),
        _ => None,
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let mut client = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let head = format!(
        "GET /v2/namespaces/team-a/connectors/reg/team/app/blobs/sha256:big HTTP/1.1\r\n\
         Host: {}\r\nAuthorization: {}\r\n\r\n",
        proxy.addr,
        proxy.authorization()
    );
    client.write_all(head.as_bytes()).await.expect("head");
    let mut first = vec![0u8; 64 * 1024];
    let n = client.read(&mut first).await.expect("read");
    assert!(
        String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n.min(200)])
    );
    drop(client);

    proxy.assert_settled().await;
    let r = proxy.get("reg", "team/app/manifests/v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let records = proxy.audit_records();
    let big = records
        .iter()
        .find(|r| r["reference"] == "sha256:big")
        .expect("audited");
    assert_eq!(big["complete"], false, "{big}");
    assert!(
        big["bytes_out"]
            .as_u64()
            .is_some_and(|b| b < 16 * MIB as u64)
    );
    proxy.assert_settled().await;
    assert_audit_clean(&proxy);
}

/// Sends raw HTTP/1.1 bytes to the proxy and reads until it closes.
async fn raw(proxy: &ProxyUnderTest, request: String) -> String {
    let mut s = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Forward mode: an absolute-form request for the connector and a tunnel to another destination are
/// counted (mode `forward`), the request is audited, and the tunnel is closed and counted afterwards.
#[tokio::test]
async fn forward_requests_and_tunnels_are_counted_audited_and_closed() {
    use base64::Engine;
    let fake = FakeRegistry::start(open_registry(|ctx| match ctx.req.path() {
        "/v2/team/app/manifests/v1" => Some(Reply::ok().body("fine")),
        _ => None,
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("team-a/reg:{}", proxy.token()));

    let answer = raw(
        &proxy,
        format!(
            "GET {}/v2/team/app/manifests/v1 HTTP/1.1\r\nHost: {}\r\nProxy-Authorization: Basic {basic}\r\n\
             Connection: close\r\n\r\n",
            fake.origin(),
            fake.addr()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("fine"), "{answer}");

    // a tunnel to an echo server that is not a connector
    let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let echo_addr = echo.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Ok((mut s, _)) = echo.accept().await {
            let mut buf = [0u8; 4];
            if s.read_exact(&mut buf).await.is_ok() {
                let _ = s.write_all(&buf).await;
            }
        }
    });
    let mut s = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    s.write_all(
        format!(
            "CONNECT {echo_addr} HTTP/1.1\r\nHost: {echo_addr}\r\nProxy-Authorization: Basic {basic}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.expect("CONNECT answer");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(b"ping").await.expect("through the tunnel");
    let mut echoed = [0u8; 4];
    s.read_exact(&mut echoed).await.expect("echo");
    assert_eq!(&echoed, b"ping");
    drop(s);

    proxy.assert_settled().await;
    let text = proxy.metrics_text();
    assert_eq!(
        metric(
            &text,
            "connectors_requests_total{connector=\"team-a/reg\",mode=\"forward\",operation=\"pull\",status=\"200\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "connectors_requests_total{connector=\"\",mode=\"forward\",operation=\"tunnel\",status=\"200\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "connectors_tunnel_bytes_total{direction=\"up\"}"),
        Some(4.0),
        "{text}"
    );
    let records = proxy.audit_records();
    let pull = records
        .iter()
        .find(|r| r["operation"] == "pull")
        .unwrap_or_else(|| panic!("{}", proxy.audit_text()));
    assert_eq!(pull["mode"], "forward");
    assert_eq!(pull["connector"], "team-a/reg");
    assert_eq!(pull["reference"], "v1");
    assert_eq!(pull["principal"], "component-test");
    assert!(!proxy.audit_text().contains(&basic));
    assert_audit_clean(&proxy);
}
