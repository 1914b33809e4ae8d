//! Reverse mode's fast path for large blob bodies: the body goes upstream socket → pipe → client socket
//! with `splice(2)`, so its bytes never enter user space.
//!
//! # Design
//!
//! hyper owns a connection from its first byte to its last and cannot hand a socket over between a
//! response head and its body. So the choice is made *before* hyper sees the connection, at the accept
//! level ([`serve`]):
//!
//! 1. The proxy reads the connection's first request head itself (httparse, the parser hyper uses). A
//!    request that is not a candidate — anything but an origin-form `GET` of a blob under a connector's
//!    mount, HTTP/1.1, without a body, `Expect` or `Upgrade`, within the request limits — and everything
//!    after it go to hyper unchanged: the connection is wrapped in [`Prefixed`], which replays the bytes
//!    already read, and served by hyper exactly as before (the rest of the connection stays with hyper).
//! 2. A candidate runs the same phases as every request ([`crate::phases`]: authenticate, authorize,
//!    resolve the connector, its credentials), then this module does the upstream HTTP/1.1 exchange
//!    itself: it connects to the connector's own address (or its `--resolve` override), writes the
//!    request with the client's headers cleaned as in phase 5 and the `Authorization` that
//!    [`connectors_registry::UpstreamAccess::authorization_for`] gives (credentials only ever go to the
//!    connector's address), and reads the response head with httparse.
//! 3. **Fallback.** Until the first byte of the response is written to the client, any reason not to go
//!    on — a phase refuses the caller, the connector is HTTPS, no pipe, the upstream cannot be reached,
//!    the answer is not `200`/`206` with a `Content-Length` (a `401` that needs a fresh token, a
//!    redirect, chunked) — drops what was done and hands the connection, with the request's bytes, to
//!    hyper, which serves it on the ordinary path from the start (its phases write the log line and
//!    audit record then; this path wrote none).
//! 4. Otherwise the response head (phase 6: hop-by-hop headers, challenges and cookies removed, `Location`
//!    and `Link` rewritten) is written by this module, then the body bytes that came with the upstream
//!    head, then the rest: with `splice(2)` when the body has at least [`MIN_SPLICE_BODY`] bytes, else
//!    copied. Exactly `Content-Length` bytes are moved, never more.
//! 5. Phase 7 is [`RequestContext::record`] with the body bytes the client was sent, counted from the
//!    pipe → client splices. Only after a body that was sent completely does the client connection stay
//!    open (keep-alive: the next request head is read as in step 1); after any error both connections are
//!    closed, so a client of a body cut short sees a short body and a closed connection, never a hang.
//!    The upstream connection is never reused (`Connection: close`).
//!
//! Pipes come from a small pool per worker thread (the binary runs one single-threaded runtime per
//! worker), sized with `F_SETPIPE_SZ`. The upstream socket is spliced into a pipe only when the pipe is
//! empty, so `EAGAIN` there can only mean "no bytes yet"; a pipe that may hold bytes after an error is
//! dropped, not pooled. The syscalls go through `rustix`, so the crate stays `forbid(unsafe_code)`.
//! The path is **off by default** and turned on with `--splice` ([`SpliceOptions::enabled`]); off,
//! every connection goes straight to hyper. On the 2-CPU VMs of `bench/`, splicing did not lower the
//! CPU per GiB of a transfer: the relay's own cost stayed where the copying path has it (its kernel time
//! is per-packet TCP work and wake-ups, not the copies), and the client and the registry spent more
//! (bench/ANALYSIS.md has the figures). It stays as an option for machines where that is not so.
//!
//! Known limit: a connection that was handed to hyper stays with hyper, so a blob GET that follows a
//! manifest request on the same kept-alive connection takes the ordinary (copying) path.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use connectors_registry::{OciEndpoint, parse_oci_path, scopes_for};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header};
use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::context::RequestContext;
use crate::headers::{client_response_headers, upstream_request_headers};
use crate::route::{Mount, Route, route};
use crate::{ConnectionLease, Proxy, phases, reverse};

/// Bodies from this size on are spliced; smaller ones are copied (a pipe round trip costs more than it
/// saves).
pub const MIN_SPLICE_BODY: u64 = 64 * 1024;
/// The pipe size asked for with `F_SETPIPE_SZ` by default (the default `/proc/sys/fs/pipe-max-size`).
pub const DEFAULT_PIPE_SIZE: usize = 1 << 20;
/// The smallest pipe size used: when a larger size is refused (the user's pipe budget), this is tried.
const MIN_PIPE_SIZE: usize = 256 * 1024;
/// Pipes kept per worker thread for the next transfers.
const POOL_PER_WORKER: usize = 8;
/// The largest upstream response head read.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// The buffer of the user-space copy of small bodies.
const COPY_BUFFER: usize = 64 * 1024;
/// Connecting to the registry, as the pooled client does.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the fast path is set up (`connectors up --splice` turns it on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpliceOptions {
    /// Whether large blob GET bodies from plain-HTTP registries are spliced.
    pub enabled: bool,
    /// The pipe size asked for with `F_SETPIPE_SZ` (the kernel rounds it up to a power of two pages).
    /// `0` is a fault for tests: every pipe "cannot be made", so the fast path falls back.
    pub pipe_size: usize,
}

impl Default for SpliceOptions {
    /// Off (see the module documentation for why), with [`DEFAULT_PIPE_SIZE`] pipes when turned on.
    fn default() -> Self {
        SpliceOptions {
            enabled: false,
            pipe_size: DEFAULT_PIPE_SIZE,
        }
    }
}

/// What the fast path did since the proxy started (for tests and the operator's curiosity).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpliceStats {
    /// Responses this path wrote (complete or cut short), counted before their log line and audit record.
    pub responses: u64,
    /// Body bytes moved by pipe → client splices.
    pub spliced_bytes: u64,
    /// Candidates handed to hyper before their first byte.
    pub fallbacks: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    responses: AtomicU64,
    spliced_bytes: AtomicU64,
    fallbacks: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> SpliceStats {
        SpliceStats {
            responses: self.responses.load(Ordering::Relaxed),
            spliced_bytes: self.spliced_bytes.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pipes
// ---------------------------------------------------------------------------------------------

/// A non-blocking pipe of `size` bytes; empty whenever it is in the pool.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
    asked: usize,
}

impl Pipe {
    fn new(asked: usize) -> io::Result<Pipe> {
        if asked == 0 {
            return Err(io::Error::other("pipes are switched off (test fault)"));
        }
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let size = match rustix::pipe::fcntl_setpipe_size(&write, asked) {
            Ok(size) => size,
            Err(_) => rustix::pipe::fcntl_setpipe_size(&write, asked.min(MIN_PIPE_SIZE))?,
        };
        Ok(Pipe {
            read,
            write,
            size,
            asked,
        })
    }
}

thread_local! {
    /// The worker's empty pipes.
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// An empty pipe of the asked size from this worker's pool, or a new one.
fn take_pipe(asked: usize) -> Option<Pipe> {
    let pooled = POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.retain(|p| p.asked == asked);
        pool.pop()
    });
    if let Some(pipe) = pooled {
        return Some(pipe);
    }
    match Pipe::new(asked) {
        Ok(pipe) => Some(pipe),
        Err(e) => {
            tracing::debug!(error = %e, "no pipe for the splice path; using the ordinary path");
            None
        }
    }
}

/// Returns a pipe known to be empty to this worker's pool.
fn pool_pipe(pipe: Pipe) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_PER_WORKER {
            pool.push(pipe);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The connection, before hyper
// ---------------------------------------------------------------------------------------------

/// A connection whose first bytes were already read: they are read again first, then the socket.
pub(crate) struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Prefixed<T> {
    pub(crate) fn new(prefix: Bytes, inner: T) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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

/// What the request head in the buffer is.
enum Head {
    /// More bytes are needed.
    Partial,
    /// Not for this path: hyper serves it.
    Other,
    /// A blob GET: its head is `len` bytes.
    Candidate(Box<Candidate>),
}

struct Candidate {
    len: usize,
    request: Request<()>,
    mount: Mount,
    rest: String,
    close: bool,
}

/// Serves the connection's requests while they are candidates for the fast path; returns the
/// connection (with the bytes read and not answered) for hyper at the first one that is not, or `None`
/// when the connection is done (closed by the client, after an error, or at shutdown).
pub(crate) async fn serve(
    proxy: &Arc<Proxy>,
    mut stream: TcpStream,
    lease: &ConnectionLease,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Option<Prefixed<TcpStream>> {
    let mut stopping = stop.clone();
    let options = proxy.splice_options();
    let _handling = lease.0.activity.handling();
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let deadline = tokio::time::Instant::now() + proxy.limits.header_read_timeout;
        let candidate = loop {
            match parse_head(proxy, &buf) {
                Head::Candidate(c) => break *c,
                Head::Other => return Some(Prefixed::new(buf.freeze(), stream)),
                Head::Partial => {}
            }
            if buf.len() >= proxy.limits.hyper_max_header_bytes() {
                return Some(Prefixed::new(buf.freeze(), stream));
            }
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => read,
                _ = stopping.wait_for(|s| *s), if buf.is_empty() => return None,
            };
            match read {
                // The header-read timeout (slowloris), as hyper has it: close.
                Err(_) => return None,
                Ok(Ok(0)) if buf.is_empty() => return None,
                // A head cut short, or a read error: hyper answers or closes as it would.
                Ok(Ok(0)) | Ok(Err(_)) => return Some(Prefixed::new(buf.freeze(), stream)),
                Ok(Ok(_)) => {}
            }
        };
        if !options.enabled {
            return Some(Prefixed::new(buf.freeze(), stream));
        }
        let head_len = candidate.len;
        let close = candidate.close;
        let outcome = exchange(proxy, &mut stream, candidate, options, stop).await;
        if let Outcome::Fallback = outcome {
            proxy
                .splice_counters
                .fallbacks
                .fetch_add(1, Ordering::Relaxed);
        }
        match outcome {
            Outcome::Fallback => return Some(Prefixed::new(buf.freeze(), stream)),
            Outcome::Closed => return None,
            Outcome::Complete => {
                if close || *stop.borrow() {
                    let _ = stream.shutdown().await;
                    return None;
                }
                buf.advance(head_len);
            }
        }
    }
}

/// Reads the request head in `buf`, if it is complete, and says whether it is a fast-path candidate.
fn parse_head(proxy: &Proxy, buf: &[u8]) -> Head {
    const GET: &[u8] = b"GET /";
    let n = buf.len().min(GET.len());
    if buf[..n] != GET[..n] {
        return Head::Other;
    }
    if n < GET.len() {
        return Head::Partial;
    }
    let mut headers = vec![httparse::EMPTY_HEADER; proxy.limits.max_headers.max(1)];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    if parsed.version != Some(1) || parsed.method != Some("GET") {
        return Head::Other;
    }
    let Some(Ok(uri)) = parsed.path.map(str::parse::<Uri>) else {
        return Head::Other;
    };
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Head::Other;
    }
    let mut map = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Head::Other;
        };
        map.append(name, value);
    }
    // A GET with a body, or one that asks for something else than a plain answer, is hyper's.
    for name in [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::EXPECT,
        header::UPGRADE,
    ] {
        if map.contains_key(name) {
            return Head::Other;
        }
    }
    let close = map
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"));
    let host = map
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let Route::Registry { mount, rest } = route(uri.path(), host.as_deref()) else {
        return Head::Other;
    };
    if !matches!(
        parse_oci_path(&rest).map(|o| o.endpoint),
        Some(OciEndpoint::Blob { .. })
    ) {
        return Head::Other;
    }
    let mut request = Request::new(());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = map;
    if proxy.limits.check_request(&request).is_err() {
        return Head::Other;
    }
    Head::Candidate(Box::new(Candidate {
        len,
        request,
        mount,
        rest,
        close,
    }))
}

// ---------------------------------------------------------------------------------------------
// One request
// ---------------------------------------------------------------------------------------------

enum Outcome {
    /// Nothing was written to the client: hyper serves the request from the start.
    Fallback,
    /// The whole body was sent; the connection may serve the next request.
    Complete,
    /// The response was cut short (or its head could not be written): close the connection.
    Closed,
}

/// Why a body transfer stopped early.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("the registry closed the connection {missing} bytes before the end of the body")]
    UpstreamClosed { missing: u64 },
    #[error("reading the body from the registry: {0}")]
    Upstream(#[source] io::Error),
    #[error("sending the body to the client: {0}")]
    Client(#[source] io::Error),
    #[error("no byte moved for {0:?}")]
    Idle(Duration),
}

/// The upstream response head, when it is one this path serves.
struct UpstreamHead {
    status: StatusCode,
    headers: HeaderMap,
    length: u64,
    /// Body bytes read with the head.
    early: Bytes,
}

async fn exchange(
    proxy: &Arc<Proxy>,
    client: &mut TcpStream,
    candidate: Candidate,
    options: SpliceOptions,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Outcome {
    let Candidate {
        request,
        mount,
        rest,
        close,
        ..
    } = candidate;
    let ops = proxy.ops.clone();
    let mut cx = RequestContext::start(&ops, "GET".to_owned(), request.uri().path().to_owned());
    // Phases 1–4, as for every request; a refusal is hyper's to answer (it runs them again).
    let Ok(principal) = phases::authenticate(proxy, request.headers(), &mut cx).await else {
        return Outcome::Fallback;
    };
    let connector_ref = mount.connector().clone();
    cx.connector = connector_ref.to_string();
    if phases::authorize(proxy, &principal, &connector_ref, &mut cx)
        .await
        .is_err()
    {
        return Outcome::Fallback;
    }
    let Ok(connector) = phases::resolve_connector(proxy, &connector_ref) else {
        return Outcome::Fallback;
    };
    cx.known = true;
    let Ok(credentials) = phases::credentials(&connector) else {
        return Outcome::Fallback;
    };
    if connector.address.scheme() != connectors_model::Scheme::Http {
        return Outcome::Fallback;
    }
    let Some(oci) = parse_oci_path(&rest) else {
        return Outcome::Fallback;
    };
    let query = request.uri().query();
    cx.repository = oci.repository.to_owned();
    cx.operation = oci.endpoint.name();
    cx.reference = reverse::reference_of(&oci.endpoint, query);
    let scopes = scopes_for(&Method::GET, &oci, query);
    let Ok(uri) = reverse::upstream_uri(&connector, &rest, query) else {
        return Outcome::Fallback;
    };
    let Some(pipe) = take_pipe(options.pipe_size) else {
        return Outcome::Fallback;
    };

    // Phase 5, written here: the client's headers cleaned, the connector's credentials, only to the
    // connector's own address.
    let target = crate::upstream_target(&connector, credentials);
    let upstream_started = Instant::now();
    let authorization = match proxy.upstream.authorization_for(&target, &scopes).await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(error = %e, "splice path: no upstream authorization; using the ordinary path");
            pool_pipe(pipe);
            return Outcome::Fallback;
        }
    };
    let head = upstream_request_head(
        &uri,
        &connector.address,
        request.headers().clone(),
        authorization,
    );
    let timeout = proxy.upstream.headers_timeout();
    let started = tokio::time::timeout(timeout, async {
        let mut upstream = connect(proxy, &connector.address).await?;
        upstream.write_all(&head).await?;
        let head = read_response_head(&mut upstream).await?;
        Ok::<_, io::Error>((upstream, head))
    })
    .await;
    let (mut upstream, head) = match started {
        Ok(Ok((upstream, Some(head)))) => (upstream, head),
        Ok(Ok((_, None))) => {
            // Not an answer this path serves (a challenge, chunked, no body): the ordinary path asks
            // again and handles it.
            pool_pipe(pipe);
            return Outcome::Fallback;
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "splice path: upstream exchange failed; using the ordinary path");
            pool_pipe(pipe);
            return Outcome::Fallback;
        }
        Err(_) => {
            pool_pipe(pipe);
            return Outcome::Fallback;
        }
    };
    let elapsed = upstream_started.elapsed();
    cx.upstream_ms = elapsed.as_millis() as u64;
    ops.metrics.upstream_latency(elapsed);

    // Phase 6: the head as the client gets it.
    let UpstreamHead {
        status,
        mut headers,
        length,
        early,
    } = head;
    client_response_headers(&mut headers);
    reverse::rewrite_upstream_links(&mut headers, &connector, &mount);
    let keep_alive = !close && !*stop.borrow();
    let response_head = response_head(status, &headers, length, keep_alive);
    if client.write_all(&response_head).await.is_err() {
        proxy
            .splice_counters
            .responses
            .fetch_add(1, Ordering::Relaxed);
        cx.record(status, 0, false);
        pool_pipe(pipe);
        return Outcome::Closed;
    }

    // The body: exactly `length` bytes.
    let idle = proxy.limits.idle_timeout;
    let mut sent = 0u64;
    let early = early.slice(..early.len().min(length as usize));
    let result = async {
        if !early.is_empty() {
            write_idle(client, &early, idle).await?;
            sent += early.len() as u64;
        }
        let remaining = length - early.len() as u64;
        if remaining == 0 {
            Ok(())
        } else if length >= MIN_SPLICE_BODY {
            let before = sent;
            let spliced = splice_body(&upstream, client, &pipe, remaining, idle, &mut sent).await;
            proxy
                .splice_counters
                .spliced_bytes
                .fetch_add(sent - before, Ordering::Relaxed);
            spliced
        } else {
            copy_body(&mut upstream, client, remaining, idle, &mut sent).await
        }
    }
    .await;
    match result {
        Ok(()) => {
            proxy
                .splice_counters
                .responses
                .fetch_add(1, Ordering::Relaxed);
            cx.record(status, sent, true);
            pool_pipe(pipe);
            Outcome::Complete
        }
        Err(e) => {
            tracing::info!(connector = %cx.connector, sent, length, error = %e, "blob body cut short; closing the connection");
            proxy
                .splice_counters
                .responses
                .fetch_add(1, Ordering::Relaxed);
            cx.record(status, sent, false);
            // The pipe may hold bytes: dropped, not pooled.
            drop(pipe);
            Outcome::Closed
        }
    }
}

/// `GET <path> HTTP/1.1` to the registry, with the client's headers as phase 5 cleans them.
fn upstream_request_head(
    uri: &Uri,
    address: &connectors_model::Endpoint,
    headers: HeaderMap,
    authorization: Option<HeaderValue>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(address.host_header().as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut headers = upstream_request_headers(headers);
    if let Some(value) = authorization {
        headers.insert(header::AUTHORIZATION, value);
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    write_headers(&mut out, &headers);
    out.extend_from_slice(b"\r\n");
    out
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The response head for the client: the registry's status, the shaped headers, the exact length.
fn response_head(
    status: StatusCode,
    headers: &HeaderMap,
    length: u64,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut headers = headers.clone();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if !keep_alive {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    write_headers(&mut out, &headers);
    out.extend_from_slice(b"\r\n");
    out
}

/// A TCP connection to the connector's address (or its `--resolve` override).
async fn connect(proxy: &Proxy, address: &connectors_model::Endpoint) -> io::Result<TcpStream> {
    let host = address.host();
    let port = address.port();
    let connecting = async {
        match proxy.upstream.overrides().lookup(host, port) {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect((host, port)).await,
        }
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads the registry's response head; `None` when it has no `Content-Length`, is chunked, or is a
/// `401`, `1xx`, `204` or `304` (the ordinary path serves those).
async fn read_response_head(upstream: &mut TcpStream) -> io::Result<Option<UpstreamHead>> {
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        if upstream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the registry closed the connection before its response head",
            ));
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Response::new(&mut headers);
        let len = match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => continue,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Ok(None),
        };
        let Some(Ok(status)) = parsed.code.map(StatusCode::from_u16) else {
            return Ok(None);
        };
        // A 401 needs the ordinary path's retry with a fresh token; 1xx, 204 and 304 have no body
        // whatever their headers say. Everything else with a length (200, 206, a redirect to object
        // storage, a 404) is relayed as the ordinary path relays it.
        if status == StatusCode::UNAUTHORIZED
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(None);
        }
        let mut map = HeaderMap::with_capacity(parsed.headers.len());
        for h in parsed.headers.iter() {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) else {
                return Ok(None);
            };
            map.append(name, value);
        }
        if map.contains_key(header::TRANSFER_ENCODING) {
            return Ok(None);
        }
        let mut lengths = map.get_all(header::CONTENT_LENGTH).iter();
        let length = match (lengths.next(), lengths.next()) {
            (Some(v), None) => v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()),
            _ => None,
        };
        let Some(length) = length else {
            return Ok(None);
        };
        let early = buf.split_off(len).freeze();
        return Ok(Some(UpstreamHead {
            status,
            headers: map,
            length,
            early,
        }));
    }
}

async fn write_idle(client: &mut TcpStream, data: &[u8], idle: Duration) -> Result<(), BodyError> {
    tokio::time::timeout(idle, client.write_all(data))
        .await
        .map_err(|_| BodyError::Idle(idle))?
        .map_err(BodyError::Client)
}

/// Copies exactly `len` bytes through user space (bodies below [`MIN_SPLICE_BODY`]).
async fn copy_body(
    upstream: &mut TcpStream,
    client: &mut TcpStream,
    len: u64,
    idle: Duration,
    sent: &mut u64,
) -> Result<(), BodyError> {
    let mut buf = vec![0u8; COPY_BUFFER.min(len as usize)];
    let mut remaining = len;
    while remaining > 0 {
        let want = buf.len().min(remaining as usize);
        let n = tokio::time::timeout(idle, upstream.read(&mut buf[..want]))
            .await
            .map_err(|_| BodyError::Idle(idle))?
            .map_err(BodyError::Upstream)?;
        if n == 0 {
            return Err(BodyError::UpstreamClosed { missing: remaining });
        }
        write_idle(client, &buf[..n], idle).await?;
        *sent += n as u64;
        remaining -= n as u64;
    }
    Ok(())
}

/// Moves exactly `len` bytes upstream → pipe → client with `splice(2)`. The pipe is filled only when it
/// is empty, so `EAGAIN` from the upstream side means "no bytes yet"; `sent` counts what the pipe →
/// client splices moved. On an error the pipe may still hold bytes.
async fn splice_body(
    upstream: &TcpStream,
    client: &TcpStream,
    pipe: &Pipe,
    len: u64,
    idle: Duration,
    sent: &mut u64,
) -> Result<(), BodyError> {
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    let mut remaining = len;
    while remaining > 0 {
        let want = remaining.min(pipe.size as u64) as usize;
        let filled = loop {
            tokio::time::timeout(idle, upstream.readable())
                .await
                .map_err(|_| BodyError::Idle(idle))?
                .map_err(BodyError::Upstream)?;
            let spliced = upstream.try_io(Interest::READABLE, || {
                rustix::pipe::splice(upstream, None, &pipe.write, None, want, flags)
                    .map_err(io::Error::from)
            });
            match spliced {
                Ok(0) => return Err(BodyError::UpstreamClosed { missing: remaining }),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(BodyError::Upstream(e)),
            }
        };
        remaining -= filled as u64;
        let mut in_pipe = filled;
        while in_pipe > 0 {
            tokio::time::timeout(idle, client.writable())
                .await
                .map_err(|_| BodyError::Idle(idle))?
                .map_err(BodyError::Client)?;
            let spliced = client.try_io(Interest::WRITABLE, || {
                rustix::pipe::splice(&pipe.read, None, client, None, in_pipe, flags)
                    .map_err(io::Error::from)
            });
            match spliced {
                Ok(0) => return Err(BodyError::Client(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    in_pipe -= n;
                    *sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(BodyError::Client(e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prefixed_replays_its_prefix_then_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.unwrap();
        drop(a);
        let mut p = Prefixed::new(Bytes::from_static(b"hello"), b);
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[test]
    fn a_pipe_gets_at_least_the_smallest_size() {
        let pipe = Pipe::new(DEFAULT_PIPE_SIZE).unwrap();
        assert!(pipe.size >= MIN_PIPE_SIZE, "{}", pipe.size);
        assert!(Pipe::new(0).is_err());
    }
}
