//! Forward mode: `CONNECT host:port` and absolute-form `http://` requests from clients that set
//! `HTTPS_PROXY=http://<ns>%2F<name>[,…]:<token>@<proxy>`.
//!
//! A destination that is one of the named connectors' addresses (or extensions) is intercepted: TLS is
//! terminated with a leaf certificate from the proxy CA, and each inner request goes through the same
//! upstream path as reverse mode, with the connector's credentials. Any other destination is tunnelled
//! untouched (or refused with the deny policy): it never receives credentials.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use connectors_catalog::ResolvedConnector;
use connectors_identity::Principal;
use connectors_model::{ConnectorRef, Endpoint, Scheme};
use connectors_registry::bufio::{Coalesce, ReadAhead};
use connectors_registry::client::TLS_BUFFER_LIMIT;
use connectors_registry::{ResolveOverrides, parse_oci_path, scopes_for};
use http::{Method, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::{ProxyBody, empty};
use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::headers::upstream_request_headers;
use crate::phases;
use crate::{ConnectionLease, ForwardPolicy, Proxy};

/// How long a client may take to finish the TLS handshake inside a tunnel.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long dialling a tunnel's destination may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the requests inside an intercepted connection may take to arrive.
const INNER_HEADER_TIMEOUT: Duration = Duration::from_secs(120);

/// Who is calling, and the connectors they named and may use.
struct ForwardCaller {
    principal: Principal,
    connectors: Vec<Arc<ResolvedConnector>>,
}

/// Phases 1–3 for forward mode: `Proxy-Authorization` names the connectors and carries the token; every
/// named connector must be allowed and must exist.
async fn identify(
    proxy: &Proxy,
    headers: &http::HeaderMap,
    cx: &mut RequestContext,
) -> Result<ForwardCaller, ProxyError> {
    let (principal, named) = phases::authenticate_proxy(proxy, headers, cx).await?;
    let mut connectors = Vec::with_capacity(named.len());
    for reference in &named {
        phases::authorize(proxy, &principal, reference, cx).await?;
        connectors.push(phases::resolve_connector(proxy, reference)?);
    }
    Ok(ForwardCaller {
        principal,
        connectors,
    })
}

/// The first named connector that owns `host:port` (with `scheme`, when the request says which), and the
/// endpoint that matched.
fn select(
    connectors: &[Arc<ResolvedConnector>],
    scheme: Option<Scheme>,
    host: &str,
    port: u16,
) -> Option<(Arc<ResolvedConnector>, Endpoint)> {
    connectors.iter().find_map(|c| {
        c.endpoints()
            .find(|e| match scheme {
                Some(s) => e.matches(s, host, port),
                None => e.matches_authority(host, port),
            })
            .map(|e| (c.clone(), e.clone()))
    })
}

/// `CONNECT host:port`.
pub(crate) async fn connect(
    proxy: &Arc<Proxy>,
    mut req: Request<Incoming>,
    cx: &mut RequestContext,
) -> Result<Response<ProxyBody>, ProxyError> {
    let authority = req
        .uri()
        .authority()
        .cloned()
        .ok_or_else(|| ProxyError::BadTarget("CONNECT needs a host:port target".to_owned()))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = authority.port_u16().unwrap_or(443);
    cx.path = format!("{host}:{port}");
    let caller = identify(proxy, req.headers(), cx).await?;
    // The tunnel or intercepted connection keeps the client connection's slot, shutdown guard and idle
    // limit until it ends (the HTTP connection itself is done once it is upgraded).
    let lease = req.extensions_mut().remove::<ConnectionLease>();
    let on_upgrade = hyper::upgrade::on(&mut req);

    if let Some((connector, endpoint)) = select(&caller.connectors, None, &host, port) {
        cx.connector = connector.reference.to_string();
        cx.known = true;
        cx.operation = "intercept";
        phases::credentials(&connector)?;
        let ca = proxy.forward.ca.clone().ok_or_else(|| {
            ProxyError::NotImplemented(
                "this proxy has no CA, so it cannot intercept TLS for connectors".to_owned(),
            )
        })?;
        let leaf = ca.leaf(&host).map_err(|e| {
            ProxyError::internal(format!("cannot make a TLS certificate for {host}"), e)
        })?;
        proxy.ops.metrics.certificate(leaf.minted);
        let tls_config = leaf.config;
        let ctx = Arc::new(Intercepted {
            destination: Destination {
                connector: connector.reference.clone(),
                endpoint,
                principal_expires: caller.principal.expires_at,
            },
            host: host.clone(),
            port,
            principal: caller.principal.subject.clone(),
            pod: cx.pod.clone(),
        });
        let proxy = proxy.clone();
        let open = proxy.ops.metrics.tunnel();
        tokio::spawn(async move {
            let _open = open;
            match on_upgrade.await {
                Ok(upgraded) => {
                    intercept(proxy, TokioIo::new(upgraded), tls_config, ctx, lease).await
                }
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        return Ok(Response::new(empty()));
    }

    if proxy.forward.policy == ForwardPolicy::Deny {
        return Err(ProxyError::DestinationDenied(format!(
            "{host}:{port} is not the address of connector {}; this proxy only forwards to connectors",
            cx.connector
        )));
    }
    cx.operation = "tunnel";
    let upstream = dial(proxy.upstream.overrides(), &host, port).await?;
    let principal = caller.principal.subject.clone();
    let metrics = proxy.ops.metrics.clone();
    let open = metrics.tunnel();
    tokio::spawn(async move {
        let _open = open;
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let (up, down) = tunnel(
            TokioIo::new(upgraded),
            upstream,
            &host,
            port,
            &principal,
            lease,
        )
        .await;
        metrics.tunnel_bytes(up, down);
    });
    Ok(Response::new(empty()))
}

/// Opens the TCP connection of a tunnel (honouring `--resolve`) before the client is told `200`.
async fn dial(
    overrides: &ResolveOverrides,
    host: &str,
    port: u16,
) -> Result<TcpStream, ProxyError> {
    let unreachable = |reason: String| {
        ProxyError::Upstream(connectors_registry::UpstreamError::connect(
            format!("{host}:{port}"),
            reason,
        ))
    };
    let addrs: Vec<SocketAddr> = match overrides.lookup(host, port) {
        Some(addr) => vec![addr],
        None => tokio::time::timeout(DIAL_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| unreachable("name lookup timed out".into()))?
            .map_err(|e| unreachable(format!("name lookup: {e}")))?
            .collect(),
    };
    let stream = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&addrs[..]))
        .await
        .map_err(|_| unreachable("connect timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Copies a tunnel both ways until both sides are done, or until the client connection moved no byte for
/// the idle limit (the client's bytes go through its connection's activity watch in both directions).
async fn tunnel(
    mut client: TokioIo<hyper::upgrade::Upgraded>,
    mut upstream: TcpStream,
    host: &str,
    port: u16,
    principal: &str,
    lease: Option<ConnectionLease>,
) -> (u64, u64) {
    let started = Instant::now();
    let stalled = async {
        match &lease {
            Some(lease) => lease.stalled().await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => result,
        () = stalled => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no traffic for {} s (--idle-timeout)",
                lease.as_ref().map_or(0, |l| l.idle().as_secs())
            ),
        )),
    };
    let (up, down, complete) = match result {
        Ok((up, down)) => (up, down, true),
        Err(e) => {
            tracing::debug!(error = %e, "tunnel ended");
            (0, 0, false)
        }
    };
    tracing::info!(
        target: "connectors::access",
        method = "CONNECT",
        path = %format!("{host}:{port}"),
        operation = "tunnel",
        principal,
        bytes_up = up,
        bytes = down,
        complete,
        total_ms = started.elapsed().as_millis() as u64,
        "tunnel closed"
    );
    (up, down)
}

/// Where the requests of a connector destination go: an intercepted connection's, or one absolute-form
/// request's.
struct Destination {
    connector: ConnectorRef,
    /// The connector endpoint the client named (its address or an extension).
    endpoint: Endpoint,
    /// When the caller's proxy token expires: requests after that are refused.
    principal_expires: Option<SystemTime>,
}

/// What an intercepted connection is for, and who opened it.
struct Intercepted {
    destination: Destination,
    host: String,
    port: u16,
    principal: String,
    pod: Option<String>,
}

/// Terminates the client's TLS with a leaf for the CONNECT host (refusing another SNI) and serves the
/// HTTP/1.1 requests inside.
async fn intercept(
    proxy: Arc<Proxy>,
    io: TokioIo<hyper::upgrade::Upgraded>,
    tls_config: Arc<rustls::ServerConfig>,
    ctx: Arc<Intercepted>,
    lease: Option<ConnectionLease>,
) {
    // Under rustls the socket is read ahead, above it hyper gets every record at hand in one read, and
    // the records to send may queue up to a few hundred KiB so one writev carries many (see
    // `connectors_registry::bufio`).
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(
        rustls::server::Acceptor::default(),
        ReadAhead::new(io),
    );
    let start = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            tracing::info!(host = %ctx.host, error = %e, "intercepted connection: no TLS client hello");
            return;
        }
        Err(_) => {
            tracing::info!(host = %ctx.host, "intercepted connection: TLS client hello timed out");
            return;
        }
    };
    if let Some(sni) = start.client_hello().server_name()
        && !sni.eq_ignore_ascii_case(&ctx.host)
    {
        tracing::warn!(connect_host = %ctx.host, sni, connector = %ctx.destination.connector, "refused TLS: the SNI differs from the CONNECT host");
        return;
    }
    let tls_config = connectors_ca::for_client(&tls_config, start.client_hello().cipher_suites());
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(tls_config)).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(host = %ctx.host, error = %e, "TLS handshake with the client failed (does it trust the proxy CA?)");
            return;
        }
        Err(_) => return,
    };
    tls.get_mut().1.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
    let limits = proxy.limits.clone();
    let ctx_host = ctx.host.clone();
    let handling = lease.clone();
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        let ctx = ctx.clone();
        let guard = handling.as_ref().map(ConnectionLease::handling);
        async move {
            let _guard = guard;
            let mut cx = RequestContext::start(
                &proxy.ops,
                req.method().to_string(),
                format!("{}:{}{}", ctx.host, ctx.port, req.uri().path()),
            );
            cx.connector = ctx.destination.connector.to_string();
            cx.known = true;
            cx.principal = ctx.principal.clone();
            cx.pod = ctx.pod.clone();
            cx.forward = true;
            let result = inner_request(&proxy, &ctx.destination, req, &mut cx).await;
            Ok::<_, std::convert::Infallible>(cx.respond(result))
        }
    });
    let conn = limits
        .http1_builder(INNER_HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(Coalesce::new(tls)), service);
    let Some(lease) = lease else {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "intercepted connection ended with an error");
        }
        return;
    };
    // Watched, the connection finishes its request in progress and closes when shutdown starts (and the
    // shutdown waits for that); the idle limit applies all along.
    let conn = match lease.take_watcher() {
        Some(watcher) => futures_util::future::Either::Left(watcher.watch(conn)),
        None => futures_util::future::Either::Right(conn),
    };
    let result = tokio::select! {
        result = conn => result,
        () = lease.stalled() => {
            tracing::info!(host = %ctx_host, idle_s = lease.idle().as_secs(), "closing an intercepted connection that moved no byte for the idle timeout");
            return;
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "intercepted connection ended with an error");
    }
}

/// One request for a connector destination (inside an intercepted connection, or absolute-form), through
/// the phases: sent to the same origin, with the connector's credentials when it goes to the connector's
/// address.
async fn inner_request(
    proxy: &Proxy,
    destination: &Destination,
    req: Request<Incoming>,
    cx: &mut RequestContext,
) -> Result<Response<ProxyBody>, ProxyError> {
    if destination
        .principal_expires
        .is_some_and(|t| t <= SystemTime::now())
    {
        return Err(ProxyError::Unauthenticated(
            "the proxy token of this connection has expired; reconnect with a fresh token"
                .to_owned(),
        ));
    }
    // Looked up again for each request: the credentials may have changed since the connection opened.
    let connector = phases::resolve_connector(proxy, &destination.connector)?;
    let credentials = phases::credentials(&connector)?;
    proxy.limits.check_request(&req)?;
    let path = req.uri().path().to_owned();
    crate::route::check_path(&path).map_err(ProxyError::BadPath)?;
    let query = req.uri().query().map(str::to_owned);
    let mut target = format!("{}{}", destination.endpoint.origin(), path);
    if let Some(q) = &query {
        target.push('?');
        target.push_str(q);
    }
    let uri: Uri = target
        .parse()
        .map_err(|e| ProxyError::internal("cannot build the upstream URL", e))?;

    let (parts, body) = req.into_parts();
    let response = if destination.endpoint == connector.address {
        let rest = path
            .strip_prefix(connector.address.path_prefix())
            .and_then(|p| p.strip_prefix("/v2/"));
        if rest.is_none_or(str::is_empty) && parts.method == Method::GET {
            // The API version check: the caller already proved itself with Proxy-Authorization.
            return Ok(phases::version_check());
        }
        let scopes = match rest.and_then(parse_oci_path) {
            Some(oci) => {
                cx.repository = oci.repository.to_owned();
                cx.operation = oci.endpoint.name();
                cx.reference = crate::reverse::reference_of(&oci.endpoint, query.as_deref());
                scopes_for(&parts.method, &oci, query.as_deref())
            }
            None => Vec::new(),
        };
        phases::send_upstream(
            proxy,
            &connector,
            credentials,
            parts,
            body,
            uri,
            &scopes,
            cx,
        )
        .await?
    } else {
        // An address extension (blob storage, a token realm): forwarded over the connector's trust, but
        // without registry credentials, which belong to the registry's API.
        cx.operation = "extension";
        let target = crate::upstream_target(&connector, credentials);
        let client = proxy.upstream.client(&target).await?;
        let body = crate::limits::IdleBody::new(body, proxy.limits.idle_timeout);
        send_plain(&client, parts, body, uri, &destination.endpoint.authority()).await?
    };
    Ok(phases::shape_response(response))
}

/// Sends a request with no credentials added (client credentials and hop-by-hop headers removed).
async fn send_plain(
    client: &connectors_registry::client::UpstreamClient,
    parts: http::request::Parts,
    body: crate::limits::IdleBody<Incoming>,
    uri: Uri,
    host: &str,
) -> Result<Response<Incoming>, ProxyError> {
    let body = if body.is_end_stream() {
        http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync()
    } else {
        body.boxed_unsync()
    };
    let mut request = Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(body)
        .map_err(|e| ProxyError::internal("cannot build the upstream request", e))?;
    *request.headers_mut() = upstream_request_headers(parts.headers);
    client
        .request(request)
        .await
        .map_err(|e| ProxyError::Upstream(connectors_registry::UpstreamError::from_send(host, e)))
}

/// Absolute-form `http://host:port/path` requests.
pub(crate) async fn absolute(
    proxy: &Arc<Proxy>,
    req: Request<Incoming>,
    cx: &mut RequestContext,
) -> Result<Response<ProxyBody>, ProxyError> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("http") {
        return Err(ProxyError::BadTarget(format!(
            "absolute-form requests must be http://; for https use CONNECT (got {:?})",
            uri.scheme_str().unwrap_or("")
        )));
    }
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(80);
    let caller = identify(proxy, req.headers(), cx).await?;
    if let Some((connector, endpoint)) = select(&caller.connectors, Some(Scheme::Http), &host, port)
    {
        cx.connector = connector.reference.to_string();
        cx.known = true;
        let destination = Destination {
            connector: connector.reference.clone(),
            endpoint,
            principal_expires: caller.principal.expires_at,
        };
        let mut req = req;
        // the phases work on origin-form targets
        let origin_form: Uri = uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        *req.uri_mut() = origin_form;
        return inner_request(proxy, &destination, req, cx).await;
    }
    if proxy.forward.policy == ForwardPolicy::Deny {
        return Err(ProxyError::DestinationDenied(format!(
            "{host}:{port} is not the address of connector {}; this proxy only forwards to connectors",
            cx.connector
        )));
    }
    cx.operation = "forward";
    let client = proxy.upstream.plain_client().await?;
    let (parts, body) = req.into_parts();
    let body = crate::limits::IdleBody::new(body, proxy.limits.idle_timeout);
    let response = send_plain(&client, parts, body, uri, &format!("{host}:{port}")).await?;
    Ok(phases::pass_through_response(response))
}
