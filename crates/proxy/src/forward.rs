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
use connectors_identity::{Principal, parse_proxy_authorization_within};
use connectors_model::{ConnectorRef, Endpoint, Scheme};
use connectors_registry::{ResolveOverrides, parse_oci_path, scopes_for};
use http::{HeaderValue, Method, Request, Response, Uri, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::body::{ProxyBody, empty, full};
use crate::error::ProxyError;
use crate::headers::{client_response_headers, upstream_request_headers};
use crate::reverse::{AccessLog, send_upstream};
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

/// Phase 2–3 for forward mode: `Proxy-Authorization` names the connectors and carries the token; every
/// named connector must be allowed and must exist.
async fn identify(
    proxy: &Proxy,
    headers: &http::HeaderMap,
    log: &mut AccessLog,
) -> Result<ForwardCaller, ProxyError> {
    log.forward = true;
    let value = headers.get(header::PROXY_AUTHORIZATION).ok_or_else(|| {
        log.auth_failure = Some("missing");
        ProxyError::ProxyUnauthenticated(
            "no proxy credentials: set HTTPS_PROXY=http://<namespace>%2F<connector>:<token>@<proxy>".to_owned(),
        )
    })?;
    proxy.limits.check_proxy_authorization(value.as_bytes())?;
    let credentials = parse_proxy_authorization_within(
        value.as_bytes(),
        proxy.limits.max_proxy_authorization_bytes,
    )
    .map_err(|e| {
        log.auth_failure = Some(crate::reverse::auth_reason(&e));
        ProxyError::from_proxy_auth(e)
    })?;
    proxy
        .limits
        .check_connector_count(credentials.connectors.len())?;
    let principal = proxy
        .authn
        .authenticate(&credentials.token)
        .await
        .map_err(|e| {
            log.auth_failure = Some(crate::reverse::auth_reason(&e));
            ProxyError::from_proxy_auth(e)
        })?;
    log.set_principal(&principal);
    log.connector = credentials
        .connectors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut connectors = Vec::with_capacity(credentials.connectors.len());
    for reference in &credentials.connectors {
        crate::reverse::authorize(proxy, &principal, reference, log).await?;
        let connector = proxy
            .catalog
            .connector(reference)
            .ok_or_else(|| ProxyError::UnknownConnector(reference.to_string()))?;
        connectors.push(connector);
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
    log: &mut AccessLog,
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
    log.path = format!("{host}:{port}");
    let caller = identify(proxy, req.headers(), log).await?;
    // The tunnel or intercepted connection keeps the client connection's slot, shutdown guard and idle
    // limit until it ends (the HTTP connection itself is done once it is upgraded).
    let lease = req.extensions_mut().remove::<ConnectionLease>();
    let on_upgrade = hyper::upgrade::on(&mut req);

    if let Some((connector, endpoint)) = select(&caller.connectors, None, &host, port) {
        log.connector = connector.reference.to_string();
        log.known = true;
        log.operation = "intercept";
        if let Err(reason) = &connector.credentials {
            return Err(ProxyError::ConnectorUnusable {
                connector: connector.reference.to_string(),
                reason: reason.clone(),
            });
        }
        let ca = proxy.forward.ca.clone().ok_or_else(|| {
            ProxyError::NotImplemented(
                "this proxy has no CA, so it cannot intercept TLS for connectors".to_owned(),
            )
        })?;
        let tls_config = ca.server_config(&host).map_err(|e| {
            ProxyError::internal(format!("cannot make a TLS certificate for {host}"), e)
        })?;
        let ctx = Arc::new(Intercepted {
            connector: connector.reference.clone(),
            endpoint,
            host: host.clone(),
            port,
            principal_expires: caller.principal.expires_at,
            principal: caller.principal.subject.clone(),
            pod: log.pod.clone(),
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
            log.connector
        )));
    }
    log.operation = "tunnel";
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

/// What an intercepted connection is for.
struct Intercepted {
    connector: ConnectorRef,
    /// The connector endpoint the client connected to (its address or an extension).
    endpoint: Endpoint,
    host: String,
    port: u16,
    principal: String,
    pod: Option<String>,
    principal_expires: Option<SystemTime>,
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
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
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
        tracing::warn!(connect_host = %ctx.host, sni, connector = %ctx.connector, "refused TLS: the SNI differs from the CONNECT host");
        return;
    }
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(tls_config)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(host = %ctx.host, error = %e, "TLS handshake with the client failed (does it trust the proxy CA?)");
            return;
        }
        Err(_) => return,
    };
    let limits = proxy.limits.clone();
    let ctx_host = ctx.host.clone();
    let handling = lease.clone();
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        let ctx = ctx.clone();
        let guard = handling.as_ref().map(ConnectionLease::handling);
        async move {
            let _guard = guard;
            let started = Instant::now();
            let mut log = AccessLog::start(
                &proxy.ops,
                req.method().to_string(),
                format!("{}:{}{}", ctx.host, ctx.port, req.uri().path()),
            );
            log.connector = ctx.connector.to_string();
            log.known = true;
            log.principal = ctx.principal.clone();
            log.pod = ctx.pod.clone();
            log.forward = true;
            let response = inner_request(&proxy, &ctx, req, &mut log).await.unwrap_or_else(|e| {
                if e.side() != crate::error::Side::Client {
                    tracing::warn!(connector = %log.connector, side = ?e.side(), error = %e.chain(), "request failed");
                }
                e.into_response()
            });
            Ok::<_, std::convert::Infallible>(log.finish(response, started))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .max_headers(limits.hyper_max_headers())
        .max_buf_size(limits.hyper_max_header_bytes().max(64 * 1024))
        .max_header_size(limits.hyper_max_header_bytes())
        .header_read_timeout(INNER_HEADER_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let Some(lease) = lease else {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "intercepted connection ended with an error");
        }
        return;
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = lease.stalled() => {
            tracing::info!(host = %ctx_host, idle_s = lease.idle().as_secs(), "closing an intercepted connection that moved no byte for the idle timeout");
            return;
        }
        () = lease.stopping() => {
            // Finish the request in progress, then close instead of keeping alive.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                () = lease.stalled() => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "intercepted connection ended with an error");
    }
}

/// One request inside an intercepted connection (or an absolute-form request for a connector): sent to
/// the same origin, with the connector's credentials when it goes to the connector's address.
async fn inner_request(
    proxy: &Proxy,
    ctx: &Intercepted,
    req: Request<Incoming>,
    log: &mut AccessLog,
) -> Result<Response<ProxyBody>, ProxyError> {
    if ctx
        .principal_expires
        .is_some_and(|t| t <= SystemTime::now())
    {
        return Err(ProxyError::Unauthenticated(
            "the proxy token of this connection has expired; reconnect with a fresh token"
                .to_owned(),
        ));
    }
    // Look the connector up again: its credentials may have changed since the tunnel opened.
    let connector = proxy
        .catalog
        .connector(&ctx.connector)
        .ok_or_else(|| ProxyError::UnknownConnector(ctx.connector.to_string()))?;
    let credentials =
        connector
            .credentials
            .as_ref()
            .map_err(|reason| ProxyError::ConnectorUnusable {
                connector: ctx.connector.to_string(),
                reason: reason.clone(),
            })?;
    proxy.limits.check_request(&req)?;
    let path = req.uri().path().to_owned();
    crate::route::check_path(&path).map_err(ProxyError::BadPath)?;
    let query = req.uri().query().map(str::to_owned);
    let mut target = format!("{}{}", ctx.endpoint.origin(), path);
    if let Some(q) = &query {
        target.push('?');
        target.push_str(q);
    }
    let uri: Uri = target
        .parse()
        .map_err(|e| ProxyError::internal("cannot build the upstream URL", e))?;

    let is_address = ctx.endpoint == connector.address;
    let (parts, body) = req.into_parts();
    let response = if is_address {
        let rest = path
            .strip_prefix(connector.address.path_prefix())
            .and_then(|p| p.strip_prefix("/v2/"));
        if rest.is_none_or(str::is_empty) && parts.method == Method::GET {
            // The API version check: the caller already proved itself on CONNECT.
            return Ok(version_check());
        }
        let scopes = match rest.and_then(parse_oci_path) {
            Some(oci) => {
                log.repository = oci.repository.to_owned();
                log.operation = oci.endpoint.name();
                log.reference = crate::reverse::reference_of(&oci.endpoint, query.as_deref());
                scopes_for(&parts.method, &oci, query.as_deref())
            }
            None => Vec::new(),
        };
        send_upstream(
            proxy,
            &connector,
            credentials,
            parts,
            body,
            uri,
            &scopes,
            log,
        )
        .await?
    } else {
        // An address extension (blob storage, a token realm): forwarded over the connector's trust, but
        // without registry credentials, which belong to the registry's API.
        log.operation = "extension";
        let target = crate::upstream_target(&connector, credentials);
        let client = proxy.upstream.client(&target).await?;
        let body = crate::limits::IdleBody::new(body, proxy.limits.idle_timeout);
        send_plain(&client, parts, body, uri, &ctx.endpoint.authority()).await?
    };
    let (mut parts, body) = response.into_parts();
    client_response_headers(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        body.map_err(|e| Box::new(e) as connectors_registry::BoxError)
            .boxed_unsync(),
    ))
}

fn version_check() -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from_static(b"{}")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
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
    log: &mut AccessLog,
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
    let caller = identify(proxy, req.headers(), log).await?;
    if let Some((connector, endpoint)) = select(&caller.connectors, Some(Scheme::Http), &host, port)
    {
        log.connector = connector.reference.to_string();
        log.known = true;
        let ctx = Intercepted {
            connector: connector.reference.clone(),
            endpoint,
            host,
            port,
            principal: caller.principal.subject.clone(),
            pod: log.pod.clone(),
            principal_expires: caller.principal.expires_at,
        };
        let mut req = req;
        // the inner handler works on origin-form targets
        let origin_form: Uri = uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        *req.uri_mut() = origin_form;
        return inner_request(proxy, &ctx, req, log).await;
    }
    if proxy.forward.policy == ForwardPolicy::Deny {
        return Err(ProxyError::DestinationDenied(format!(
            "{host}:{port} is not the address of connector {}; this proxy only forwards to connectors",
            log.connector
        )));
    }
    log.operation = "forward";
    let client = proxy.upstream.plain_client().await?;
    let (parts, body) = req.into_parts();
    let body = crate::limits::IdleBody::new(body, proxy.limits.idle_timeout);
    let response = send_plain(&client, parts, body, uri, &format!("{host}:{port}")).await?;
    let (mut parts, body) = response.into_parts();
    crate::headers::strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        body.map_err(|e| Box::new(e) as connectors_registry::BoxError)
            .boxed_unsync(),
    ))
}
