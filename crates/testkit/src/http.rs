//! A tiny HTTP/1.1 client over plain TCP (no TLS) for hand-written requests in tests.
//!
//! Only IP-literal hosts and `localhost` are resolved (no DNS: TESTGROUND G2). To reach a
//! *name*, open a [`Connection`] to an explicit address and pass the name in the URL (it becomes
//! the `Host` header) — or use [`Connection::open_proxy`] / [`send_via_proxy`] to send
//! absolute-form requests to a forward proxy.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

pub use ::http::{HeaderMap, Method, StatusCode};

use crate::oci::PseudoRandom;

/// Default per-request timeout (connect + request + whole response).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

type ReqBody = UnsyncBoxBody<Bytes, Infallible>;

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL could not be used.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// TCP connect failed (e.g. connection refused after `Registry::stop`).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Target address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Building the request failed (bad method/header).
    #[error("invalid request: {0}")]
    Request(String),
    /// hyper reported an error (connection closed, parse error, …).
    #[error("HTTP error: {0}")]
    Hyper(#[from] hyper::Error),
    /// The request did not complete in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// A complete response.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Response {
    /// First value of header `name` (case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// A request body of `len` deterministic pseudo-random bytes, produced in chunks while it is
/// sent (never held in memory as a whole).
#[derive(Clone, Debug)]
pub struct StreamingBody {
    len: u64,
    chunk_size: usize,
    seed: u64,
    content_length: bool,
    delay: Option<Duration>,
}

impl StreamingBody {
    /// `len` bytes in 64 KiB chunks, seed 0, sent with `Content-Length`.
    pub fn new(len: u64) -> Self {
        StreamingBody {
            len,
            chunk_size: 64 * 1024,
            seed: 0,
            content_length: true,
            delay: None,
        }
    }

    /// Size of each chunk (frame) handed to the connection (min 1).
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.chunk_size = n.max(1);
        self
    }

    /// Seed of the pseudo-random content.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sends without a length, i.e. `Transfer-Encoding: chunked` (unless you pass a
    /// `Content-Length` header yourself).
    pub fn chunked(mut self) -> Self {
        self.content_length = false;
        self
    }

    /// Sleeps `delay` before each chunk (slow uploads).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The exact bytes that will be sent (materialised; for small bodies).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(usize::try_from(self.len).expect("body fits in memory"));
        let mut s = self.state();
        while let Some(chunk) = s.next_chunk() {
            out.extend_from_slice(&chunk);
        }
        Bytes::from(out)
    }

    /// `sha256:<hex>` of the content (computed by streaming it).
    pub fn digest(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut s = self.state();
        while let Some(chunk) = s.next_chunk() {
            ctx.update(&chunk);
        }
        format!("sha256:{}", crate::util::hex(ctx.finish().as_ref()))
    }

    fn state(&self) -> StreamState {
        StreamState {
            rng: PseudoRandom::new(self.seed),
            remaining: self.len,
            chunk_size: self.chunk_size,
            exact: self.content_length,
            delay: self.delay,
            sleep: None,
        }
    }
}

struct StreamState {
    rng: PseudoRandom,
    remaining: u64,
    chunk_size: usize,
    exact: bool,
    delay: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl StreamState {
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let n = self.remaining.min(self.chunk_size as u64) as usize;
        let mut buf = vec![0u8; n];
        self.rng.fill(&mut buf);
        self.remaining -= n as u64;
        Some(Bytes::from(buf))
    }
}

impl http_body::Body for StreamState {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        if let Some(delay) = this.delay {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        Poll::Ready(this.next_chunk().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}

struct Target {
    addr: Option<SocketAddr>,
    authority: Option<String>,
    origin: String,
    absolute: String,
}

fn parse_url(url: &str) -> Result<Target, HttpError> {
    let bad = |reason: &str| HttpError::InvalidUrl {
        url: url.into(),
        reason: reason.into(),
    };
    if url.starts_with('/') {
        return Ok(Target {
            addr: None,
            authority: None,
            origin: url.into(),
            absolute: url.into(),
        });
    }
    let uri: ::http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(bad("this client speaks plain HTTP only (no TLS)")),
        _ => return Err(bad("expected http://host:port/path or /path")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let ip = if host.eq_ignore_ascii_case("localhost") {
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
    } else {
        host.parse::<IpAddr>().ok()
    };
    Ok(Target {
        addr: ip.map(|ip| SocketAddr::new(ip, port)),
        authority: Some(authority.as_str().to_owned()),
        origin: uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into()),
        absolute: url.into(),
    })
}

/// One HTTP/1.1 connection (keep-alive: several requests may be sent in turn).
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<ReqBody>,
    addr: SocketAddr,
    proxy_mode: bool,
    timeout: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("proxy_mode", &self.proxy_mode)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr`; requests use origin-form targets (`GET /v2/ HTTP/1.1`).
    pub async fn open(addr: SocketAddr) -> Result<Connection, HttpError> {
        Self::connect(addr, false).await
    }

    /// Connects to a forward proxy at `proxy`; requests use absolute-form targets
    /// (`GET http://registry.test:5000/v2/ HTTP/1.1`).
    pub async fn open_proxy(proxy: SocketAddr) -> Result<Connection, HttpError> {
        Self::connect(proxy, true).await
    }

    async fn connect(addr: SocketAddr, proxy_mode: bool) -> Result<Connection, HttpError> {
        let fut = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|source| HttpError::Connect { addr, source })?;
            let _ = tcp.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            let task = tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, HttpError>(Connection {
                sender,
                addr,
                proxy_mode,
                timeout: DEFAULT_TIMEOUT,
                task,
            })
        };
        tokio::time::timeout(DEFAULT_TIMEOUT, fut)
            .await
            .map_err(|_| HttpError::Timeout(DEFAULT_TIMEOUT))?
    }

    /// Per-request timeout (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The address connected to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends a request with a complete body. `url` is `http://host:port/path?query` (its
    /// authority becomes the `Host` header unless you pass one) or just `/path?query` (then
    /// `Host` is the connected address).
    pub async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, HttpError> {
        let body = Full::new(body).boxed_unsync();
        self.send_body(method, url, headers, body).await
    }

    /// Sends a request whose body is produced in chunks while sending.
    pub async fn send_streaming(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: StreamingBody,
    ) -> Result<Response, HttpError> {
        self.send_body(method, url, headers, body.state().boxed_unsync())
            .await
    }

    async fn send_body(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: ReqBody,
    ) -> Result<Response, HttpError> {
        let target = parse_url(url)?;
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|e| HttpError::Request(format!("method {method:?}: {e}")))?;
        let request_target = if self.proxy_mode {
            if target.authority.is_none() {
                return Err(HttpError::InvalidUrl {
                    url: url.into(),
                    reason: "a proxy connection needs an absolute http:// URL".into(),
                });
            }
            target.absolute.clone()
        } else {
            target.origin.clone()
        };
        let mut builder = ::http::Request::builder()
            .method(method)
            .uri(request_target);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            let host = target
                .authority
                .clone()
                .unwrap_or_else(|| self.addr.to_string());
            builder = builder.header(::http::header::HOST, host);
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(body)
            .map_err(|e| HttpError::Request(e.to_string()))?;
        let timeout = self.timeout;
        let fut = async {
            self.sender.ready().await?;
            let resp = self.sender.send_request(request).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, HttpError>(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| HttpError::Timeout(timeout))?
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn open_for(url: &str) -> Result<Connection, HttpError> {
    let target = parse_url(url)?;
    let addr = target.addr.ok_or_else(|| HttpError::InvalidUrl {
        url: url.into(),
        reason: "host must be an IP literal or localhost (no DNS here); use \
                 Connection::open(addr) and keep the name in the URL for the Host header"
            .into(),
    })?;
    Connection::open(addr).await
}

/// Sends one request on a new connection and reads the whole response.
///
/// `headers` are added as given; `Host` is added from the URL unless present. A body with a
/// length gets `Content-Length` (hyper adds it), an empty one none for GET/HEAD.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Response, HttpError> {
    open_for(url).await?.send(method, url, headers, body).await
}

/// Like [`send`] but the body is produced in chunks while sending (e.g. a large `PATCH` with
/// `Content-Range`, or `Transfer-Encoding: chunked` with [`StreamingBody::chunked`]).
pub async fn send_streaming(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: StreamingBody,
) -> Result<Response, HttpError> {
    open_for(url)
        .await?
        .send_streaming(method, url, headers, body)
        .await
}

/// Sends one absolute-form request (`GET http://name:port/path`) to the forward proxy at
/// `proxy`. The URL's host is never resolved here.
pub async fn send_via_proxy(
    proxy: SocketAddr,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Response, HttpError> {
    Connection::open_proxy(proxy)
        .await?
        .send(method, url, headers, body)
        .await
}

/// [`send`] for sync tests: runs it on a private current-thread runtime. Panics when called
/// from inside a tokio runtime (use `send(..).await` there).
pub fn send_blocking(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Response, HttpError> {
    assert!(
        tokio::runtime::Handle::try_current().is_err(),
        "http::send_blocking called inside a tokio runtime; use http::send(..).await"
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime")
        .block_on(send(method, url, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_body_bytes_and_digest_agree() {
        let b = StreamingBody::new(100_003).chunk_size(1000).seed(5);
        let bytes = b.to_bytes();
        assert_eq!(bytes.len(), 100_003);
        assert_eq!(b.digest(), crate::sha256_digest(&bytes));
        assert_ne!(
            StreamingBody::new(10).seed(6).to_bytes(),
            StreamingBody::new(10).seed(5).to_bytes()
        );
    }

    #[test]
    fn url_parsing() {
        let t = parse_url("http://127.0.0.1:5000/v2/?x=1").unwrap();
        assert_eq!(t.addr, Some("127.0.0.1:5000".parse().unwrap()));
        assert_eq!(t.origin, "/v2/?x=1");
        assert_eq!(t.authority.as_deref(), Some("127.0.0.1:5000"));
        let t = parse_url("http://registry.test:5000/v2/").unwrap();
        assert_eq!(t.addr, None);
        let t = parse_url("http://[::1]:8080/").unwrap();
        assert_eq!(t.addr, Some("[::1]:8080".parse().unwrap()));
        assert!(parse_url("https://127.0.0.1/").is_err());
        assert!(parse_url("/v2/").unwrap().authority.is_none());
    }

    #[tokio::test]
    async fn send_and_stream_against_a_tiny_server() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            // Echo the request head back, then read a chunked body to its end.
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut tmp = [0u8; 4096];
            loop {
                let n = s.read(&mut tmp).await.unwrap();
                buf.extend_from_slice(&tmp[..n]);
                if buf.ends_with(b"0\r\n\r\n") || n == 0 {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let body = head.split("\r\n\r\n").next().unwrap().to_owned();
            let resp = format!(
                "HTTP/1.1 201 Created\r\nContent-Length: {}\r\nX-Seen: yes\r\n\r\n{}",
                body.len(),
                body
            );
            s.write_all(resp.as_bytes()).await.unwrap();
            buf.len()
        });
        let url = format!("http://{addr}/v2/x/blobs/uploads/abc?y=1");
        let resp = send_streaming(
            "PATCH",
            &url,
            &[("Content-Type", "application/octet-stream")],
            StreamingBody::new(10_000).chunk_size(777).chunked(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status, StatusCode::CREATED);
        assert_eq!(resp.header("x-seen"), Some("yes"));
        let head = resp.text();
        assert!(
            head.starts_with("PATCH /v2/x/blobs/uploads/abc?y=1 HTTP/1.1"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        assert!(head.contains(&format!("host: {addr}")), "{head}");
        assert!(server.await.unwrap() > 10_000);

        // Nothing listens any more → connect error.
        let err = send("GET", &url, &[], Bytes::new()).await.unwrap_err();
        assert!(matches!(err, HttpError::Connect { .. }), "{err}");
    }
}
