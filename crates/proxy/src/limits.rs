//! Request limits and input rules: what the proxy refuses before it does any work for a request, and the
//! timeouts that close connections nobody uses without ever cutting a transfer that is still moving.
//!
//! Every refusal is an answer with a status and a message that names the limit and the `connectors up`
//! flag that raises it; the connection (or, for hyper's own hard limits, the server) goes on serving.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ProxyError;

/// The limits of one proxy (all worker threads share the connection count).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request line plus header block, in bytes: 431 above it.
    pub max_header_bytes: usize,
    /// Number of request header fields: 431 above it.
    pub max_headers: usize,
    /// Length of the request target (path and query, or the absolute URL), in bytes: 414 above it.
    pub max_uri_bytes: usize,
    /// Length of the `Proxy-Authorization` value, in bytes: 407 above it.
    pub max_proxy_authorization_bytes: usize,
    /// Connectors named in one forward-proxy user name: 400 above it.
    pub max_connectors_per_request: usize,
    /// Open client connections across all worker threads: 503 (and close) above it.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a kept-alive connection may
    /// wait for its next request.
    pub header_read_timeout: Duration,
    /// How long a request body may send nothing, and a response may not be read, before the connection
    /// is closed. Only silence counts: a slow transfer that keeps moving is never cut.
    pub idle_timeout: Duration,
    /// The connection slots, made on first use from `max_connections` (set after `default()`) and
    /// shared by clones.
    connections: Arc<OnceLock<Arc<Semaphore>>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_uri_bytes: DEFAULT_MAX_URI_BYTES,
            max_proxy_authorization_bytes: connectors_identity::MAX_CREDENTIALS_LEN,
            max_connectors_per_request: DEFAULT_MAX_CONNECTORS_PER_REQUEST,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connections: Arc::default(),
        }
    }
}

/// 64 KiB: four times what nginx and Apache accept by default (8–16 KiB), because a forward-proxy user
/// name listing many connectors and a 16 KiB `Proxy-Authorization` must fit.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// 100: hyper's and Go's net/http's default; registry clients send about ten.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// 8 KiB: the minimum RFC 9112 §3 asks servers to support; OCI paths with a long repository, a
/// `?mount=…&from=…` query or a pagination `last=` stay well below it.
pub const DEFAULT_MAX_URI_BYTES: usize = 8 * 1024;
/// 32: a build that pushes to one registry and pulls from a few bases names two to five.
pub const DEFAULT_MAX_CONNECTORS_PER_REQUEST: usize = 32;
/// 4096: a busy build farm keeps a few connections per client open; each costs about one file
/// descriptor and a few KiB, so 4096 stays under a default `ulimit -n` of 1024×4 with room for upstreams.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// 30 s: hyper's default; a client on a slow link sends its headers in well under a second.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// 60 s of silence: nginx's `client_body_timeout` and `send_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// hyper refuses a header block larger than this many times the configured limit on its own, with a bare
/// 431 and a closed connection. Below that the proxy answers with a message.
const HARD_FACTOR: usize = 2;

impl Limits {
    /// What hyper enforces itself (bare 431, connection closed): twice the limits, so a request just over a
    /// limit gets a message that says which one.
    pub(crate) fn hyper_max_header_bytes(&self) -> usize {
        self.max_header_bytes.saturating_mul(HARD_FACTOR).max(8192)
    }

    pub(crate) fn hyper_max_headers(&self) -> usize {
        self.max_headers.saturating_mul(HARD_FACTOR).max(16)
    }

    /// The HTTP/1.1 server settings of client connections (and of the connections inside intercepted
    /// TLS): hyper's hard limits at twice ours, and `header_read_timeout` for the request headers and for
    /// the wait between kept-alive requests.
    pub(crate) fn http1_builder(
        &self,
        header_read_timeout: Duration,
    ) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_headers(self.hyper_max_headers())
            .max_buf_size(self.hyper_max_header_bytes().max(64 * 1024))
            .max_header_size(self.hyper_max_header_bytes())
            .keep_alive(true);
        builder
    }

    fn slots(&self) -> &Arc<Semaphore> {
        self.connections
            .get_or_init(|| Arc::new(Semaphore::new(self.slot_count())))
    }

    fn slot_count(&self) -> usize {
        self.max_connections.min(Semaphore::MAX_PERMITS)
    }

    /// A connection slot, or `None` when `max_connections` are open.
    pub(crate) fn try_connection(&self) -> Option<ConnectionSlot> {
        self.slots()
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|permit| ConnectionSlot { _permit: permit })
    }

    /// Open client connections, across the worker threads that share these limits.
    pub fn open_connections(&self) -> usize {
        self.connections
            .get()
            .map_or(0, |slots| self.slot_count() - slots.available_permits())
    }

    /// The answer to a connection over `max_connections`.
    pub(crate) fn overloaded(&self) -> ProxyError {
        ProxyError::Overloaded(format!(
            "the proxy has {} client connections open, its limit; retry shortly, or raise it with \
             --max-connections (CONNECTORS_MAX_CONNECTIONS)",
            self.max_connections
        ))
    }

    /// The checks every request passes before it is routed: header block size and count, target length,
    /// and header values free of control characters.
    pub fn check_request<B>(&self, req: &Request<B>) -> Result<(), ProxyError> {
        let target_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len())
            + req.uri().authority().map_or(0, |a| a.as_str().len())
            + req.uri().scheme_str().map_or(0, |s| s.len() + 3);
        if target_len > self.max_uri_bytes {
            return Err(ProxyError::UriTooLong(format!(
                "the request target is {target_len} bytes, more than the {} this proxy accepts; raise it \
                 with --max-uri-bytes (CONNECTORS_MAX_URI_BYTES)",
                self.max_uri_bytes
            )));
        }
        let count = req.headers().len();
        if count > self.max_headers {
            return Err(ProxyError::HeadersTooLarge(format!(
                "the request has {count} header fields, more than the {} this proxy accepts; raise it with \
                 --max-headers (CONNECTORS_MAX_HEADERS)",
                self.max_headers
            )));
        }
        let bytes = header_block_len(req);
        if bytes > self.max_header_bytes {
            return Err(ProxyError::HeadersTooLarge(format!(
                "the request line and headers are {bytes} bytes, more than the {} this proxy accepts; raise \
                 it with --max-header-bytes (CONNECTORS_MAX_HEADER_BYTES)",
                self.max_header_bytes
            )));
        }
        check_header_values(req.headers())
    }

    /// The forward-mode `Proxy-Authorization` length, checked before it is decoded.
    pub(crate) fn check_proxy_authorization(&self, value: &[u8]) -> Result<(), ProxyError> {
        if value.len() > self.max_proxy_authorization_bytes {
            return Err(ProxyError::ProxyUnauthenticated(format!(
                "the Proxy-Authorization header is {} bytes, more than the {} this proxy accepts; name fewer \
                 connectors in the proxy URL, or raise it with --max-proxy-authorization-bytes \
                 (CONNECTORS_MAX_PROXY_AUTHORIZATION_BYTES)",
                value.len(),
                self.max_proxy_authorization_bytes
            )));
        }
        Ok(())
    }

    /// How many connectors one forward-proxy user name may list.
    pub(crate) fn check_connector_count(&self, count: usize) -> Result<(), ProxyError> {
        if count > self.max_connectors_per_request {
            return Err(ProxyError::TooManyConnectors(format!(
                "the proxy user name names {count} connectors, more than the {} this proxy accepts in one \
                 proxy URL; use fewer, or raise it with --max-connectors-per-request \
                 (CONNECTORS_MAX_CONNECTORS_PER_REQUEST)",
                self.max_connectors_per_request
            )));
        }
        Ok(())
    }
}

/// The request line and header block as they came on the wire, to within a few bytes: `METHOD target
/// HTTP/1.1\r\n`, then `name: value\r\n` per field, then `\r\n`.
fn header_block_len<B>(req: &Request<B>) -> usize {
    let target = req.uri().to_string().len();
    let line = req.method().as_str().len() + 1 + target + 1 + 8 + 2;
    let fields: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
        .sum();
    line + fields + 2
}

/// Header values may hold visible ASCII, spaces and tabs, nothing else. Control characters (CR and LF
/// included) are already refused by the HTTP parser with a bare 400; this also refuses DEL and the bytes
/// above 0x7f that RFC 9110 still tolerates as obsolete text: no registry client sends them, and they only
/// serve to smuggle something past a log reader or a downstream parser.
pub fn check_header_values(headers: &HeaderMap) -> Result<(), ProxyError> {
    for (name, value) in headers {
        if let Some(at) = value
            .as_bytes()
            .iter()
            .position(|b| (*b < 0x20 && *b != b'\t') || *b >= 0x7f)
        {
            return Err(ProxyError::BadHeader(format!(
                "header {name} contains a byte that is not visible ASCII (0x{:02x} at position {at}); header \
                 values may only hold visible ASCII characters, spaces and tabs",
                value.as_bytes()[at]
            )));
        }
    }
    Ok(())
}

/// One open client connection, counted until dropped.
pub(crate) struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
}

// ---------------------------------------------------------------------------------------------
// Idle detection on a client connection
// ---------------------------------------------------------------------------------------------

/// What a connection has been doing: when a byte last moved, and how many requests are being handled
/// (from the moment their headers arrived until the handler answered).
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    handling: AtomicUsize,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Marks a request as being handled until the guard is dropped.
    pub(crate) fn handling(self: &Arc<Self>) -> HandlingGuard {
        self.handling.fetch_add(1, Ordering::SeqCst);
        HandlingGuard(self.clone())
    }

    /// Completes when the connection has moved no byte for `idle` while no handler was running: a
    /// response the client stopped reading. Between requests, hyper's header-read timeout applies; while a
    /// handler runs, the request body's own idle limit ([`IdleBody`]) and the upstream timeouts do.
    ///
    /// One timer, re-armed for the rest of the idle limit after the last byte moved (not a tick).
    pub(crate) async fn stalled(&self, idle: Duration) {
        loop {
            if self.handling.load(Ordering::SeqCst) > 0 {
                self.touch();
            }
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet = self.start.elapsed().saturating_sub(last);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    }
}

pub(crate) struct HandlingGuard(Arc<Activity>);

impl Drop for HandlingGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.handling.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A client connection that records when bytes move.
pub(crate) struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that fails when the client sends nothing for `idle` while the proxy waits for it. Time
/// the proxy spends not asking (the upstream is slow to take the bytes: backpressure) does not count.
pub struct IdleBody<B> {
    inner: B,
    idle: Duration,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleBody {
            inner,
            idle,
            waiting: None,
        }
    }
}

/// The request body stopped: nothing came for the idle limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "the client sent no byte of the request body for {0} s; the upload was abandoned (the limit is \
     --idle-timeout, CONNECTORS_IDLE_TIMEOUT)"
)]
pub struct BodyStalled(pub u64);

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<connectors_registry::BoxError>,
{
    type Data = Bytes;
    type Error = connectors_registry::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let sleep = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.waiting = None;
                        Poll::Ready(Some(Err(Box::new(BodyStalled(idle.as_secs())))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_are_shared_and_returned() {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let copy = limits.clone();
        let a = limits.try_connection().expect("first");
        let _b = copy.try_connection().expect("second, through a clone");
        assert!(limits.try_connection().is_none());
        assert_eq!(limits.open_connections(), 2);
        drop(a);
        assert_eq!(copy.open_connections(), 1);
        assert!(copy.try_connection().is_some());
    }

    #[test]
    fn header_values_with_control_characters_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(
            "user-agent",
            http::HeaderValue::from_static("skopeo/1.14\t(linux)"),
        );
        assert!(check_header_values(&h).is_ok());
        h.insert(
            "x-note",
            http::HeaderValue::from_bytes("caf\u{e9}".as_bytes()).expect("obs-text value"),
        );
        let err = check_header_values(&h).unwrap_err().to_string();
        assert!(err.contains("x-note") && err.contains("0xc3"), "{err}");
    }

    #[tokio::test]
    async fn an_idle_body_fails_only_while_waited_for() {
        use http_body_util::BodyExt;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stream = http_body_util::StreamBody::new(tokio_stream_like(rx));
        let mut body = IdleBody::new(stream, Duration::from_millis(50));
        tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        // not polled for longer than the limit (backpressure): the next frame is still fine
        tokio::time::sleep(Duration::from_millis(120)).await;
        tx.send(Ok(Frame::data(Bytes::from_static(b"y"))))
            .await
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        // waited for, nothing comes: it fails and says why
        let err = body.frame().await.unwrap().unwrap_err().to_string();
        assert!(err.contains("--idle-timeout"), "{err}");
        drop(tx);
    }

    fn tokio_stream_like<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
