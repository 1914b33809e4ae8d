//! The Connectors proxy server: one listener for reverse mode (origin-form requests under
//! `/v2/namespaces/<ns>/connectors/<name>/`) and forward mode (`CONNECT` and absolute-form requests from
//! clients that set `HTTPS_PROXY`).
//!
//! Every request runs through the same phases ([`phases`]: authenticate → authorize → resolve the
//! connector → its credentials → send upstream → shape the response → respond, which writes the log line,
//! metrics and audit record) with one per-request context ([`context::RequestContext`]); `reverse.rs` and
//! `forward.rs` only read their mode's request and call them.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod body;
/// The proxy CA, in a crate of its own (`connectors-ca`) so that its users need not depend on the server.
pub use connectors_ca as ca;
mod context;
pub mod error;
mod forward;
pub mod headers;
pub mod limits;
pub mod metrics;
mod phases;
mod reverse;
pub mod rewrite;
pub mod route;
mod splice;

pub use splice::{SpliceOptions, SpliceStats};

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use connectors_catalog::Catalog;
use connectors_identity::{Authenticator, Authorizer};
use connectors_registry::UpstreamAccess;
use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;

use crate::body::{ProxyBody, full};
use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::limits::Limits;
use crate::route::{Route, route};

/// How long in-flight requests may take to finish after a shutdown signal, by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What one client connection holds until its last use ends: its HTTP requests and, after a CONNECT, the
/// tunnel or intercepted TLS connection it became. That is the connection slot (`--max-connections`),
/// its place among the connections shutdown waits for (`--shutdown-grace`: a `hyper_util` graceful
/// [`Watcher`]), the open-connections gauge, and the activity that the idle limit (`--idle-timeout`)
/// watches. Cloned into each request's extensions.
#[derive(Clone)]
pub(crate) struct ConnectionLease(Arc<LeaseInner>);

struct LeaseInner {
    _slot: limits::ConnectionSlot,
    _open: metrics::GaugeGuard,
    /// Held, it keeps the shutdown waiting for this connection; an intercepted connection takes it to
    /// watch its inner HTTP connection (told to finish its request and close when shutdown starts).
    watcher: std::sync::Mutex<Option<Watcher>>,
    activity: Arc<limits::Activity>,
    idle: Duration,
}

impl ConnectionLease {
    /// Completes when the connection has moved no byte for the idle limit while no request was being
    /// handled.
    pub(crate) async fn stalled(&self) {
        self.0.activity.stalled(self.0.idle).await;
    }

    /// Marks a request (inside an intercepted connection) as being handled until the guard drops.
    pub(crate) fn handling(&self) -> limits::HandlingGuard {
        self.0.activity.handling()
    }

    /// The shutdown watcher of this connection, for the one connection it becomes (an intercepted TLS
    /// connection); `None` once taken.
    pub(crate) fn take_watcher(&self) -> Option<Watcher> {
        self.0
            .watcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    pub(crate) fn idle(&self) -> Duration {
        self.0.idle
    }
}

/// The upstream view of a resolved connector whose credentials could be read.
pub fn upstream_target<'a>(
    connector: &'a connectors_catalog::ResolvedConnector,
    credentials: &'a connectors_model::RegistryCredentials,
) -> connectors_registry::Target<'a> {
    connectors_registry::Target {
        connector: &connector.reference,
        fingerprint: connector.fingerprint,
        address: &connector.address,
        extensions: &connector.extensions,
        credentials,
        ca_pems: &connector.ca_pems,
    }
}

/// What forward mode does with destinations that are not connectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardPolicy {
    /// Tunnel the bytes untouched: no interception, no credentials. Clients that set `HTTPS_PROXY` send all
    /// their traffic through the proxy, not only the connectors'; refusing the rest would break them.
    #[default]
    Tunnel,
    /// Refuse them with 403.
    Deny,
}

/// Forward-mode settings.
#[derive(Debug, Clone, Default)]
pub struct ForwardOptions {
    /// The CA that signs intercepted connections; without one, CONNECT to a connector is refused.
    pub ca: Option<Arc<ca::ProxyCa>>,
    pub policy: ForwardPolicy,
}

/// What the proxy reports to its operator: metrics (shared by all workers) and the optional audit log.
#[derive(Clone, Default)]
pub struct Ops {
    pub metrics: Arc<metrics::Metrics>,
    pub audit: Option<Arc<audit::AuditLog>>,
}

/// The proxy and everything it needs; cheap to share.
pub struct Proxy {
    catalog: Arc<dyn Catalog>,
    authn: Arc<dyn Authenticator>,
    authz: Arc<dyn Authorizer>,
    upstream: UpstreamAccess,
    forward: ForwardOptions,
    ops: Ops,
    limits: Limits,
    /// The reverse-mode splice fast path ([`splice`]): on, and its pipe size.
    splice_enabled: std::sync::atomic::AtomicBool,
    splice_pipe_size: std::sync::atomic::AtomicUsize,
    splice_counters: splice::Counters,
}

impl Proxy {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        authn: Arc<dyn Authenticator>,
        authz: Arc<dyn Authorizer>,
        upstream: UpstreamAccess,
    ) -> Arc<Self> {
        Self::with_forward(catalog, authn, authz, upstream, ForwardOptions::default())
    }

    /// A proxy that also serves forward mode with `forward`.
    pub fn with_forward(
        catalog: Arc<dyn Catalog>,
        authn: Arc<dyn Authenticator>,
        authz: Arc<dyn Authorizer>,
        upstream: UpstreamAccess,
        forward: ForwardOptions,
    ) -> Arc<Self> {
        Self::with_options(
            catalog,
            authn,
            authz,
            upstream,
            forward,
            Limits::default(),
            Ops::default(),
        )
    }

    /// A proxy with `forward` settings, request `limits` and reporting to `ops` (metrics, audit cx).
    /// Proxies built from clones of one `Limits` share its connection count (one per worker thread,
    /// one limit in all).
    #[allow(clippy::too_many_arguments)]
    pub fn with_options(
        catalog: Arc<dyn Catalog>,
        authn: Arc<dyn Authenticator>,
        authz: Arc<dyn Authorizer>,
        upstream: UpstreamAccess,
        forward: ForwardOptions,
        limits: Limits,
        ops: Ops,
    ) -> Arc<Self> {
        let upstream = upstream.with_token_cache_counters(ops.metrics.token_cache());
        Arc::new(Self {
            catalog,
            authn,
            authz,
            upstream,
            forward,
            limits,
            ops,
            splice_enabled: std::sync::atomic::AtomicBool::new(SpliceOptions::default().enabled),
            splice_pipe_size: std::sync::atomic::AtomicUsize::new(
                SpliceOptions::default().pipe_size,
            ),
            splice_counters: splice::Counters::default(),
        })
    }

    /// Sets up the reverse-mode splice fast path (off by default; `--splice` turns it on). Applies to
    /// connections accepted afterwards.
    pub fn set_splice(&self, options: SpliceOptions) {
        use std::sync::atomic::Ordering;
        self.splice_enabled
            .store(options.enabled, Ordering::Relaxed);
        self.splice_pipe_size
            .store(options.pipe_size, Ordering::Relaxed);
    }

    /// What the splice fast path did so far.
    pub fn splice_stats(&self) -> SpliceStats {
        self.splice_counters.snapshot()
    }

    /// The splice fast path's settings.
    pub fn splice_options(&self) -> SpliceOptions {
        use std::sync::atomic::Ordering;
        SpliceOptions {
            enabled: self.splice_enabled.load(Ordering::Relaxed),
            pipe_size: self.splice_pipe_size.load(Ordering::Relaxed),
        }
    }

    /// Its metrics and audit log.
    pub fn ops(&self) -> &Ops {
        &self.ops
    }

    /// Accepts connections until `shutdown` completes, then waits for the connections in flight.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.serve_with_grace(listener, shutdown, DEFAULT_SHUTDOWN_GRACE)
            .await
    }

    /// Accepts connections until `shutdown` completes; then stops accepting, lets each connection finish
    /// the request it is serving (an upload of any size included) and close, for at most `grace`.
    /// Tunnels and intercepted connections are waited for too: an intercepted connection finishes its
    /// request in progress and closes; a tunnel goes on until it ends or the grace is over.
    ///
    /// The waiting is `hyper_util`'s [`GracefulShutdown`]: every connection's lease holds one of its
    /// watchers, and the inner HTTP connection of an intercepted CONNECT is watched with it. The client
    /// connection itself (HTTP/1.1 with upgrades, for CONNECT) is told through a watch channel instead:
    /// hyper-util can watch an upgradeable connection only through its `auto` server, which sniffs for
    /// HTTP/2 prior knowledge (even when told HTTP/1 only) and reads that preface without the header-read
    /// timeout.
    pub async fn serve_with_grace(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        let graceful = GracefulShutdown::new();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Running out of file descriptors must not stop the proxy; wait and go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let Some(slot) = self.limits.try_connection() else {
                tracing::warn!(%peer, limit = self.limits.max_connections, "connection limit reached; answering 503");
                tokio::spawn(refuse_overloaded(stream, self.limits.overloaded()));
                continue;
            };
            let lease = ConnectionLease(Arc::new(LeaseInner {
                _slot: slot,
                _open: self.ops.metrics.connection(),
                watcher: std::sync::Mutex::new(Some(graceful.watcher())),
                activity: limits::Activity::new(),
                idle: self.limits.idle_timeout,
            }));
            tokio::spawn(
                self.clone()
                    .serve_connection(stream, peer, lease, stop_rx.clone()),
            );
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let in_flight = graceful.count();
        if in_flight > 0 {
            tracing::info!(
                connections = in_flight,
                grace_s = grace.as_secs(),
                "stopped accepting; waiting for requests in flight"
            );
        }
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("grace period over; closing the remaining connections");
        }
        Ok(())
    }

    /// Serves the HTTP/1.1 requests of one client connection. The connection's `lease` goes with each
    /// request, so that a CONNECT that becomes a tunnel or an intercepted connection keeps it.
    async fn serve_connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        lease: ConnectionLease,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        // Blob GETs from plain-HTTP registries are served below hyper while they come (see `splice`); the
        // connection goes to hyper, with the bytes already read, at the first other request.
        let stream = if self.splice_options().enabled {
            match splice::serve(&self, stream, &lease, &stop).await {
                Some(stream) => stream,
                None => return,
            }
        } else {
            splice::Prefixed::new(Bytes::new(), stream)
        };
        let activity = lease.0.activity.clone();
        let idle = self.limits.idle_timeout;
        let builder = self.limits.http1_builder(self.limits.header_read_timeout);
        let proxy = self.clone();
        let handling = activity.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            let proxy = proxy.clone();
            let guard = handling.handling();
            req.extensions_mut().insert(lease.clone());
            async move {
                let response = proxy.handle(req).await;
                drop(guard);
                Ok::<_, Infallible>(response)
            }
        });
        let conn = builder
            .serve_connection(
                TokioIo::new(limits::Watched::new(stream, activity.clone())),
                service,
            )
            .with_upgrades();
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = activity.stalled(idle) => {
                tracing::info!(%peer, idle_s = idle.as_secs(), "closing a connection that moved no byte for the idle timeout");
                return;
            }
            () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                // Finish the response in progress, then close instead of keeping alive.
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    result = conn.as_mut() => result,
                    () = activity.stalled(idle) => return,
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }

    /// The limits this proxy enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Classifies a request by its mode and hands it to the mode's adapter, which runs the phases
    /// ([`phases`]); never fails: [`RequestContext::respond`] turns errors into responses.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        let mut cx = RequestContext::start(
            &self.ops,
            req.method().to_string(),
            req.uri().path().to_owned(),
        );
        let result = self.dispatch(req, &mut cx).await;
        cx.respond(result)
    }

    async fn dispatch(
        self: &Arc<Self>,
        req: Request<Incoming>,
        cx: &mut RequestContext,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        self.limits.check_request(&req)?;
        if req.method() == Method::CONNECT {
            return forward::connect(self, req, cx).await;
        }
        if req.uri().scheme().is_some() {
            return forward::absolute(self, req, cx).await;
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        match route(req.uri().path(), host.as_deref()) {
            Route::Health => Ok(Response::new(full(Bytes::from_static(b"ok\n")))),
            Route::NotFound => Err(ProxyError::NotFound),
            Route::BadConnectorPath(why) => Err(ProxyError::BadPath(why)),
            Route::Ping(mount) => reverse::ping(self, req.headers(), mount, cx).await,
            Route::Registry { mount, rest } => reverse::handle(self, req, mount, rest, cx).await,
        }
    }
}

/// Answers the one request of a connection over the limit with 503 and closes it. Such a connection is
/// not counted, and gets a short header-read timeout so it cannot be held open.
async fn refuse_overloaded(stream: tokio::net::TcpStream, error: ProxyError) {
    let message = error.to_string();
    let service = service_fn(move |_req| {
        let response = ProxyError::Overloaded(message.clone()).into_response();
        async move { Ok::<_, Infallible>(response) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5))
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
