//! Support for the proxy's component tests (docs/testing.md, the component layer).
//!
//! * [`FakeRegistry`] — an in-process, **fake** upstream registry (a hyper server on `127.0.0.1:0`).
//!   Each test scripts its answers, including faults a real registry will not produce on demand:
//!   resets in the middle of a body, slow bodies, answers that never come, malformed challenges,
//!   broken token endpoints. It records every request it receives.
//! * [`ProxyUnderTest`] — the real [`connectors_proxy::Proxy`] serving on a loopback port, with a
//!   [`StaticCatalog`] built from manifests and locally signed proxy tokens.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use connectors_catalog::StaticCatalog;
use connectors_identity::{Allowed, LocalTokens};
use connectors_model::ConnectorRef;
use connectors_proxy::Proxy;
use connectors_registry::{ResolveOverrides, UpstreamAccess};
use connectors_testkit::http;
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type FakeBody = UnsyncBoxBody<Bytes, BoxError>;

/// The namespace of every connector in these tests.
pub const NS: &str = "team-a";
/// The connector's registry user.
pub const USER: &str = "robot";
/// The connector's registry password: a canary that must never reach a client.
pub const PASSWORD: &str = "Canary-Pw-fake-5b1e";

/// `Basic base64(USER:PASSWORD)`: what the proxy must send upstream (and only upstream).
pub fn connector_basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    )
}

/// The deterministic content of scripted bodies: byte `i` is `i % 251`.
pub fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// The fake registry
// ---------------------------------------------------------------------------------------------

/// How much of each request body the fake keeps (it counts all of it).
pub const KEPT_BODY: usize = 64 * 1024;

/// One request the fake received (its body was read to the end, or until the sender failed).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// Path and query, as received.
    pub target: String,
    pub headers: HeaderMap,
    pub body_len: u64,
    /// Whether the body ended as announced (false while it is coming in, or when it broke off).
    pub body_complete: bool,
    /// The first [`KEPT_BODY`] bytes of the body.
    pub body: Bytes,
}

impl Seen {
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p)
    }

    /// Every value of query parameter `name`, decoded, in order.
    pub fn query(&self, name: &str) -> Vec<String> {
        let q = self.target.split_once('?').map_or("", |(_, q)| q);
        url::form_urlencoded::parse(q.as_bytes())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    /// Every value of field `name` in an `application/x-www-form-urlencoded` body.
    pub fn form(&self, name: &str) -> Vec<String> {
        url::form_urlencoded::parse(&self.body)
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The Bearer token the request carries, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    }
}

/// What the script sees for each request.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub req: Seen,
    /// How many requests with the same method and path (query ignored) came before this one.
    pub earlier: usize,
    /// `http://127.0.0.1:<port>` of this fake.
    pub origin: String,
}

enum ReplyBody {
    Bytes(Bytes),
    /// `total` bytes of [`pattern`] in pieces of `piece` bytes, sleeping `pause` before each.
    Pieces {
        total: usize,
        piece: usize,
        pause: Duration,
    },
    /// Announces `Content-Length: declared`, sends `sent` bytes of [`pattern`], then fails the body,
    /// which makes hyper drop the connection.
    ResetAfter {
        declared: u64,
        sent: usize,
    },
}

/// A scripted answer.
pub struct Reply {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: ReplyBody,
    hang: bool,
    delay: Option<Duration>,
}

impl Reply {
    pub fn status(code: u16) -> Self {
        Reply {
            status: StatusCode::from_u16(code).expect("valid status"),
            headers: Vec::new(),
            body: ReplyBody::Bytes(Bytes::new()),
            hang: false,
            delay: None,
        }
    }

    pub fn ok() -> Self {
        Self::status(200)
    }

    /// Never answers (the connection stays open, no headers come).
    pub fn hang() -> Self {
        Reply {
            hang: true,
            ..Self::status(200)
        }
    }

    /// Answers only after `delay` (a slow registry, not a hung one).
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = ReplyBody::Bytes(body.into());
        self
    }

    pub fn json(self, value: serde_json::Value) -> Self {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }

    /// A body of `total` pattern bytes in `piece`-sized writes with `pause` before each.
    pub fn slow_body(mut self, total: usize, piece: usize, pause: Duration) -> Self {
        self.body = ReplyBody::Pieces {
            total,
            piece,
            pause,
        };
        self.header("content-length", total.to_string())
    }

    /// A body of `total` pattern bytes in `piece`-sized writes without a length (`Transfer-Encoding:
    /// chunked`).
    pub fn chunked_body(mut self, total: usize, piece: usize) -> Self {
        self.body = ReplyBody::Pieces {
            total,
            piece,
            pause: Duration::ZERO,
        };
        self
    }

    /// Announces `declared` bytes, sends `sent`, then drops the connection.
    pub fn reset_after(mut self, declared: u64, sent: usize) -> Self {
        self.body = ReplyBody::ResetAfter { declared, sent };
        self.header("content-length", declared.to_string())
    }

    fn into_response(self) -> Response<FakeBody> {
        let body: FakeBody = match self.body {
            ReplyBody::Bytes(b) => Full::new(b).map_err(|never| match never {}).boxed_unsync(),
            ReplyBody::Pieces {
                total,
                piece,
                pause,
            } => {
                let (tx, rx) = mpsc::channel(2);
                tokio::spawn(async move {
                    let mut offset = 0;
                    while offset < total {
                        tokio::time::sleep(pause).await;
                        let n = piece.min(total - offset);
                        if tx.send(Ok(Bytes::from(pattern(offset, n)))).await.is_err() {
                            return;
                        }
                        offset += n;
                    }
                });
                ChannelBody { rx }.boxed_unsync()
            }
            ReplyBody::ResetAfter { declared, sent } => {
                assert!((sent as u64) < declared);
                let (tx, rx) = mpsc::channel(2);
                tokio::spawn(async move {
                    let piece = 64 * 1024;
                    let mut offset = 0;
                    while offset < sent {
                        let n = piece.min(sent - offset);
                        if tx.send(Ok(Bytes::from(pattern(offset, n)))).await.is_err() {
                            return;
                        }
                        offset += n;
                    }
                    let _ = tx.send(Err("fake registry: connection reset".into())).await;
                });
                ChannelBody { rx }.boxed_unsync()
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        for (k, v) in self.headers {
            response.headers_mut().append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                hyper::header::HeaderValue::from_str(&v).expect("header value"),
            );
        }
        response
    }
}

struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

/// A FAKE registry: answers as its script says and records what it gets. Stops when dropped.
pub struct FakeRegistry {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl FakeRegistry {
    pub async fn start(script: impl Fn(&Ctx) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let addr = listener.local_addr().expect("fake addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<dyn Fn(&Ctx) -> Reply + Send + Sync> = Arc::new(script);
        let origin = format!("http://{addr}");
        let log = seen.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in the set, so they end with the accept loop.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let (log, script, origin) = (log.clone(), script.clone(), origin.clone());
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (log, script, origin) = (log.clone(), script.clone(), origin.clone());
                        async move {
                            let reply = answer(req, &log, &*script, origin).await;
                            if reply.hang {
                                std::future::pending::<()>().await;
                            }
                            if let Some(delay) = reply.delay {
                                tokio::time::sleep(delay).await;
                            }
                            Ok::<_, Infallible>(reply.into_response())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeRegistry { addr, seen, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }

    /// The requests for `path` (query ignored).
    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| s.path() == path)
            .collect()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<Incoming>,
    log: &Mutex<Vec<Seen>>,
    script: &(dyn Fn(&Ctx) -> Reply + Send + Sync),
    origin: String,
) -> Reply {
    let (parts, mut body) = req.into_parts();
    let mut seen = Seen {
        method: parts.method,
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
        headers: parts.headers,
        body_len: 0,
        body_complete: false,
        body: Bytes::new(),
    };
    // Recorded on arrival, and updated while the body comes in: a request whose body never ends is
    // still in the log.
    let (index, earlier) = {
        let mut log = log.lock().expect("log");
        let earlier = log
            .iter()
            .filter(|s| s.method == seen.method && s.path() == seen.path())
            .count();
        log.push(seen.clone());
        (log.len() - 1, earlier)
    };
    // Read the whole request body first, as a registry does before it answers an upload.
    let mut kept = Vec::new();
    loop {
        match body.frame().await {
            None => {
                seen.body_complete = true;
                break;
            }
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    seen.body_len += d.len() as u64;
                    let room = KEPT_BODY.saturating_sub(kept.len());
                    kept.extend_from_slice(&d[..d.len().min(room)]);
                }
            }
            Some(Err(_)) => break,
        }
        log.lock().expect("log")[index].body_len = seen.body_len;
    }
    seen.body = Bytes::from(kept);
    log.lock().expect("log")[index] = seen.clone();
    script(&Ctx {
        req: seen,
        earlier,
        origin,
    })
}

// ---------------------------------------------------------------------------------------------
// Scripts for a distribution-style token-auth registry
// ---------------------------------------------------------------------------------------------

/// `Bearer realm="<origin>/token",service="svc"`.
pub fn bearer_challenge(origin: &str) -> String {
    format!(r#"Bearer realm="{origin}/token",service="svc""#)
}

/// A token endpoint answer. The token names what it grants: `t<n>|<scope>|<scope>…`, so the fake
/// registry can check a request's token without state.
pub fn issue_token(ctx: &Ctx) -> Reply {
    let mut token = format!("t{}", ctx.earlier + 1);
    for scope in ctx.req.query("scope") {
        token.push('|');
        token.push_str(&scope);
    }
    Reply::ok().json(serde_json::json!({ "token": token, "expires_in": 300 }))
}

/// Whether the request's Bearer token (from [`issue_token`]) grants `scope`.
pub fn grants(req: &Seen, scope: &str) -> bool {
    req.bearer()
        .is_some_and(|t| t.split('|').skip(1).any(|s| s == scope))
}

// ---------------------------------------------------------------------------------------------
// The proxy under test
// ---------------------------------------------------------------------------------------------

/// A Secret + Connector in [`NS`]; the secret holds [`USER`]/[`PASSWORD`].
pub struct ConnectorSpec {
    pub name: String,
    pub address: String,
    pub extensions: Vec<String>,
}

impl ConnectorSpec {
    pub fn new(name: &str, address: impl Into<String>) -> Self {
        ConnectorSpec {
            name: name.to_owned(),
            address: address.into(),
            extensions: Vec::new(),
        }
    }

    pub fn extension(mut self, url: impl Into<String>) -> Self {
        self.extensions.push(url.into());
        self
    }

    fn yaml(&self) -> String {
        let name = &self.name;
        let mut out = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-auth\n  namespace: {NS}\n\
             type: cpaas.io/distribution-registry-token\nstringData:\n  username: {USER}\n  password: {PASSWORD}\n---\n\
             apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: {name}\n  namespace: {NS}\n\
             spec:\n  connectorClassName: oci\n  address: {}\n",
            self.address
        );
        if !self.extensions.is_empty() {
            out.push_str("  addressExtensions:\n");
            for (i, e) in self.extensions.iter().enumerate() {
                out.push_str(&format!("  - name: ext{i}\n    value: {e}\n"));
            }
        }
        out.push_str(&format!(
            "  auth:\n    name: tokenAuth\n    secretRef:\n      name: {name}-auth\n---\n"
        ));
        out
    }
}

/// The proxy, serving on `127.0.0.1:<port>` until dropped.
pub struct ProxyUnderTest {
    pub addr: SocketAddr,
    /// Its metrics and audit log (written into `audit`).
    pub ops: connectors_proxy::Ops,
    audit: Arc<Mutex<Vec<u8>>>,
    token: String,
    state: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    serving: JoinHandle<std::io::Result<()>>,
    proxy: Arc<Proxy>,
}

impl ProxyUnderTest {
    pub async fn start(connectors: &[ConnectorSpec]) -> Self {
        Self::start_with(connectors, UpstreamAccess::new(ResolveOverrides::default())).await
    }

    pub async fn start_with(connectors: &[ConnectorSpec], upstream: UpstreamAccess) -> Self {
        Self::start_limited(
            connectors,
            upstream,
            connectors_proxy::limits::Limits::default(),
        )
        .await
    }

    /// The proxy with request `limits`.
    pub async fn start_limited(
        connectors: &[ConnectorSpec],
        upstream: UpstreamAccess,
        limits: connectors_proxy::limits::Limits,
    ) -> Self {
        Self::start_full(
            connectors,
            upstream,
            limits,
            |_| Default::default(),
            connectors_proxy::DEFAULT_SHUTDOWN_GRACE,
        )
        .await
    }

    /// The proxy with request `limits`, the forward-mode settings `forward` makes (given the proxy's state
    /// folder, where a CA can be created) and a shutdown `grace`.
    pub async fn start_full(
        connectors: &[ConnectorSpec],
        upstream: UpstreamAccess,
        limits: connectors_proxy::limits::Limits,
        forward: impl FnOnce(&std::path::Path) -> connectors_proxy::ForwardOptions,
        grace: Duration,
    ) -> Self {
        Self::start_spliced(
            connectors,
            upstream,
            limits,
            forward,
            grace,
            connectors_proxy::SpliceOptions::default(),
        )
        .await
    }

    /// [`Self::start_full`] with the splice fast path set up as `splice` says.
    pub async fn start_spliced(
        connectors: &[ConnectorSpec],
        upstream: UpstreamAccess,
        limits: connectors_proxy::limits::Limits,
        forward: impl FnOnce(&std::path::Path) -> connectors_proxy::ForwardOptions,
        grace: Duration,
        splice: connectors_proxy::SpliceOptions,
    ) -> Self {
        let yaml: String = connectors.iter().map(ConnectorSpec::yaml).collect();
        let catalog = StaticCatalog::from_yaml(&yaml).expect("catalog from test manifests");
        let state = tempfile::tempdir().expect("tempdir");
        let tokens = Arc::new(LocalTokens::load_or_create(state.path()).expect("signing key"));
        let allowed = connectors
            .iter()
            .map(|c| ConnectorRef::new(NS, c.name.as_str()).expect("connector ref"))
            .collect();
        let token = tokens
            .issue(
                "component-test",
                &Allowed::Only(allowed),
                Duration::from_secs(600),
            )
            .expect("issue proxy token")
            .expose()
            .to_owned();
        let audit = Arc::new(Mutex::new(Vec::new()));
        let ops = connectors_proxy::Ops {
            metrics: Default::default(),
            audit: Some(Arc::new(connectors_proxy::audit::AuditLog::to_writer(
                SharedBuf(audit.clone()),
            ))),
        };
        let proxy = Proxy::with_options(
            Arc::new(catalog),
            tokens.clone(),
            tokens,
            upstream,
            forward(state.path()),
            limits,
            ops.clone(),
        );
        proxy.set_splice(splice);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (tx, rx) = oneshot::channel::<()>();
        let serving = tokio::spawn(proxy.clone().serve_with_grace(
            listener,
            async {
                let _ = rx.await;
            },
            grace,
        ));
        ProxyUnderTest {
            addr,
            ops,
            audit,
            token,
            state,
            shutdown: Some(tx),
            serving,
            proxy,
        }
    }

    /// What the splice fast path did so far.
    pub fn splice_stats(&self) -> connectors_proxy::SpliceStats {
        self.proxy.splice_stats()
    }

    /// The proxy's state folder (signing key, CA when the test made one).
    pub fn state_dir(&self) -> &std::path::Path {
        self.state.path()
    }

    /// Starts the shutdown, as SIGTERM does in the binary: no new connection; what is open may finish
    /// within the grace.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Whether `serve` is still running (in the binary, the process exits when it returns).
    pub fn is_serving(&self) -> bool {
        !self.serving.is_finished()
    }

    /// The audit log so far, as text.
    pub fn audit_text(&self) -> String {
        String::from_utf8_lossy(&self.audit.lock().expect("audit")).into_owned()
    }

    /// The audit records so far; each line must be one JSON object.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        self.audit_text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
            .collect()
    }

    /// `/metrics` as the admin listener would serve it.
    pub fn metrics_text(&self) -> String {
        self.ops.metrics.render()
    }

    /// Waits until no client connection, request or tunnel is open any more, and panics with the
    /// counts if that does not happen within a minute (a leak, not a slow machine).
    pub async fn assert_settled(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let open = self.ops.metrics.open();
            if open == (0, 0, 0) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still open (connections, requests, tunnels): {open:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://<proxy>/v2/namespaces/team-a/connectors/<connector>/<rest>`
    pub fn url(&self, connector: &str, rest: &str) -> String {
        format!(
            "http://{}/v2/namespaces/{NS}/connectors/{connector}/{rest}",
            self.addr
        )
    }

    /// The client's `Authorization` header value (the proxy token).
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Sends a request with the proxy token and `extra` headers.
    pub async fn send(
        &self,
        method: &str,
        connector: &str,
        rest: &str,
        extra: &[(&str, &str)],
        body: Bytes,
    ) -> Result<http::Response, http::HttpError> {
        let auth = self.authorization();
        let mut headers: Vec<(&str, &str)> = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        http::send(method, &self.url(connector, rest), &headers, body).await
    }

    /// A GET that must get a response (any status).
    pub async fn get(&self, connector: &str, rest: &str) -> http::Response {
        let r = self
            .send("GET", connector, rest, &[], Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("GET {rest} through the proxy: {e}"));
        assert_clean(&r);
        r
    }
}

/// Panics if a response shows the connector's password, plain or in Basic form.
#[track_caller]
pub fn assert_clean(r: &http::Response) {
    let mut all = format!("{}\n", r.status);
    for (k, v) in &r.headers {
        all.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    all.push_str(&r.text());
    let basic = connector_basic();
    let b64 = basic.trim_start_matches("Basic ");
    assert!(
        !all.contains(PASSWORD) && !all.contains(b64),
        "the registry password reached the client:\n{all}"
    );
}

/// The first OCI error of a proxy response: `(code, message)`.
#[track_caller]
pub fn oci_error(r: &http::Response) -> (String, String) {
    let v = r.json();
    let e = &v["errors"][0];
    (
        e["code"].as_str().unwrap_or_default().to_owned(),
        e["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A writer into a shared buffer (the audit log of a [`ProxyUnderTest`]).
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("audit").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Panics if the audit log shows the connector's password (plain or Basic) or the proxy token.
#[track_caller]
pub fn assert_audit_clean(proxy: &ProxyUnderTest) {
    let text = proxy.audit_text();
    let basic = connector_basic();
    let b64 = basic.trim_start_matches("Basic ");
    assert!(
        !text.contains(PASSWORD) && !text.contains(b64) && !text.contains(proxy.token()),
        "a secret reached the audit log:\n{text}"
    );
}
