//! Reverse mode: a request for `/v2/namespaces/<ns>/connectors/<name>/<repo>/…` goes to the connector's
//! registry as `/v2/<repo>/…`, with the connector's credentials, and the answer comes back with
//! everything that points upstream rewritten into the proxy's namespace.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use connectors_catalog::ResolvedConnector;
use connectors_identity::{Principal, token_from_authorization};
use connectors_model::RegistryCredentials;
use connectors_registry::{OciEndpoint, RequestBody, UpstreamRequest, parse_oci_path, scopes_for};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};

use crate::Proxy;
use crate::body::{Counted, ProxyBody, full};
use crate::error::ProxyError;
use crate::headers::{client_response_headers, upstream_request_headers};
use crate::rewrite::{UpstreamBase, rewrite_link, rewrite_location, rewrite_mount_query};
use crate::route::Mount;

/// Bodies up to this size are read whole, so the request can be sent again after a `401` (manifests,
/// small chunks). Larger bodies stream through.
const MAX_REPLAYABLE_BODY: u64 = 1 << 20;

/// Phase 3: the principal behind the request's `Authorization` header.
pub(crate) async fn authenticate(
    proxy: &Proxy,
    headers: &HeaderMap,
    log: &mut AccessLog,
) -> Result<Principal, ProxyError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        log.auth_failure = Some("missing");
        ProxyError::Unauthenticated(
            "no proxy token: log in to the proxy with any user name and a proxy token as the password \
             (for example `connectors token issue --connectors <ns>/<name>`)"
                .to_owned(),
        )
    })?;
    let token = token_from_authorization(value.as_bytes()).map_err(|e| {
        log.auth_failure = Some(auth_reason(&e));
        ProxyError::from_auth(e)
    })?;
    let principal = proxy.authn.authenticate(&token).await.map_err(|e| {
        log.auth_failure = Some(auth_reason(&e));
        ProxyError::from_auth(e)
    })?;
    log.set_principal(&principal);
    Ok(principal)
}

/// Phase 4: the principal may use `connector`.
pub(crate) async fn authorize(
    proxy: &Proxy,
    principal: &Principal,
    connector: &connectors_model::ConnectorRef,
    log: &mut AccessLog,
) -> Result<(), ProxyError> {
    proxy
        .authz
        .authorize(principal, connector)
        .await
        .map_err(|e| {
            log.auth_failure = Some(auth_reason(&e));
            ProxyError::from_auth(e)
        })
}

/// Phases 3–7 for a registry request.
pub(crate) async fn handle(
    proxy: &Arc<Proxy>,
    req: Request<Incoming>,
    mount: Mount,
    rest: String,
    log: &mut AccessLog,
) -> Result<Response<ProxyBody>, ProxyError> {
    let principal = authenticate(proxy, req.headers(), log).await?;
    let connector_ref = mount.connector().clone();
    log.connector = connector_ref.to_string();
    authorize(proxy, &principal, &connector_ref, log).await?;
    let connector = proxy
        .catalog
        .connector(&connector_ref)
        .ok_or_else(|| ProxyError::UnknownConnector(connector_ref.to_string()))?;
    log.known = true;
    let credentials =
        connector
            .credentials
            .as_ref()
            .map_err(|reason| ProxyError::ConnectorUnusable {
                connector: connector_ref.to_string(),
                reason: reason.clone(),
            })?;

    let oci = parse_oci_path(&rest).ok_or_else(|| ProxyError::NotRegistryPath(rest.clone()))?;
    log.repository = oci.repository.to_owned();
    log.operation = oci.endpoint.name();
    log.reference = reference_of(&oci.endpoint, req.uri().query());

    let (parts, body) = req.into_parts();
    let mut query = parts.uri.query().map(str::to_owned);
    if parts.method == Method::POST
        && matches!(oci.endpoint, OciEndpoint::Upload { id: None })
        && let Some(q) = &query
        && let Some(rewritten) = rewrite_mount_query(q, &mount.repository_prefix())
    {
        query = (!rewritten.is_empty()).then_some(rewritten);
    }
    let scopes = scopes_for(&parts.method, &oci, query.as_deref());
    let uri = upstream_uri(&connector, &rest, query.as_deref())?;
    let response = send_upstream(
        proxy,
        &connector,
        credentials,
        parts,
        body,
        uri,
        &scopes,
        log,
    )
    .await?;
    Ok(client_response(response, &connector, &mount))
}

/// Phases 5–6, shared by both modes: the request without client credentials and hop-by-hop headers,
/// its body held when small, sent with the connector's credentials for `scopes`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_upstream(
    proxy: &Proxy,
    connector: &ResolvedConnector,
    credentials: &RegistryCredentials,
    parts: http::request::Parts,
    body: Incoming,
    uri: Uri,
    scopes: &[connectors_registry::Scope],
    log: &mut AccessLog,
) -> Result<Response<Incoming>, ProxyError> {
    let body = request_body(&parts.headers, body, proxy.limits.idle_timeout, log).await?;
    let headers = upstream_request_headers(parts.headers);
    let target = crate::upstream_target(connector, credentials);
    let upstream_started = Instant::now();
    let response = proxy
        .upstream
        .send(
            &target,
            UpstreamRequest {
                method: parts.method,
                uri,
                headers,
                body,
            },
            scopes,
        )
        .await?;
    let elapsed = upstream_started.elapsed();
    log.upstream_ms = elapsed.as_millis() as u64;
    if let Some(ops) = &log.ops {
        ops.metrics.upstream_latency(elapsed);
    }
    Ok(response)
}

fn upstream_uri(
    connector: &ResolvedConnector,
    rest: &str,
    query: Option<&str>,
) -> Result<Uri, ProxyError> {
    let mut s = format!(
        "{}/v2/{}",
        connectors_registry::base_url(&connector.address),
        rest
    );
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    s.parse()
        .map_err(|e| ProxyError::internal("cannot build the upstream URL", e))
}

/// A body that is known empty or small is held (and can be sent again); anything else streams. Either
/// way, a client that sends nothing for `idle` fails the request ([`crate::limits::IdleBody`]).
pub(crate) async fn request_body(
    headers: &HeaderMap,
    body: Incoming,
    idle: std::time::Duration,
    log: &mut AccessLog,
) -> Result<RequestBody, ProxyError> {
    if body.is_end_stream() {
        return Ok(RequestBody::Empty);
    }
    let body = crate::limits::IdleBody::new(body, idle);
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(0) => Ok(RequestBody::Empty),
        Some(n) if n <= MAX_REPLAYABLE_BODY => {
            let bytes = Limited::new(body, MAX_REPLAYABLE_BODY as usize)
                .collect()
                .await
                .map_err(|e| ProxyError::RequestBody(Arc::from(e)))?
                .to_bytes();
            log.bytes_in = bytes.len() as u64;
            Ok(RequestBody::Full(bytes))
        }
        _ => {
            let counter = Arc::new(AtomicU64::new(0));
            log.bytes_in_stream = Some(counter.clone());
            Ok(RequestBody::Streaming(
                body.map_frame(move |frame| {
                    if let Some(data) = frame.data_ref() {
                        counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    frame
                })
                .map_err(|e| {
                    Box::new(connectors_registry::error::ClientBodyError(e))
                        as connectors_registry::BoxError
                })
                .boxed_unsync(),
            ))
        }
    }
}

/// Phase 7: rewrite what points upstream, drop what must not reach the client, stream the body.
fn client_response(
    response: Response<Incoming>,
    connector: &ResolvedConnector,
    mount: &Mount,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    client_response_headers(&mut parts.headers);
    let address = &connector.address;
    let base = UpstreamBase {
        scheme: address.scheme().as_str(),
        host: address.host(),
        port: address.port(),
        path_prefix: address.path_prefix(),
    };
    let v2_base = mount.v2_base();
    if let Some(location) = parts
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        && let Some(new) = rewrite_location(location, &base, &v2_base)
        && let Ok(value) = HeaderValue::from_str(&new)
    {
        parts.headers.insert(header::LOCATION, value);
    }
    let links: Vec<HeaderValue> = parts
        .headers
        .get_all(header::LINK)
        .iter()
        .map(|v| match v.to_str() {
            Ok(s) => HeaderValue::from_str(&rewrite_link(s, &base, &v2_base))
                .unwrap_or_else(|_| v.clone()),
            Err(_) => v.clone(),
        })
        .collect();
    if !links.is_empty() {
        parts.headers.remove(header::LINK);
        for l in links {
            parts.headers.append(header::LINK, l);
        }
    }
    Response::from_parts(
        parts,
        body.map_err(|e| Box::new(e) as connectors_registry::BoxError)
            .boxed_unsync(),
    )
}

/// `GET /v2/`: 200 for a valid token (and, with a connector named, one allowed to use it).
pub(crate) async fn ping(
    proxy: &Arc<Proxy>,
    headers: &HeaderMap,
    mount: Option<Mount>,
    log: &mut AccessLog,
) -> Result<Response<ProxyBody>, ProxyError> {
    log.operation = "ping";
    let principal = authenticate(proxy, headers, log).await?;
    if let Some(mount) = mount {
        log.connector = mount.connector().to_string();
        authorize(proxy, &principal, mount.connector(), log).await?;
        if proxy.catalog.connector(mount.connector()).is_none() {
            return Err(ProxyError::UnknownConnector(mount.connector().to_string()));
        }
        log.known = true;
    }
    let mut response = Response::new(full(Bytes::from_static(b"{}")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    Ok(response)
}

/// Phase 8: one line per request, written when the response body ends (or the client goes away), and
/// the request's metrics and audit record. Never a credential or a token.
#[derive(Default)]
pub(crate) struct AccessLog {
    pub method: String,
    pub path: String,
    pub principal: String,
    /// The pod the principal stands for, when the authenticator says.
    pub pod: Option<String>,
    pub connector: String,
    /// The catalog knows `connector` (only then is it a metrics label).
    pub known: bool,
    pub repository: String,
    /// The tag or digest the request names.
    pub reference: String,
    pub operation: &'static str,
    /// Forward mode (CONNECT, intercepted, absolute-form) rather than reverse.
    pub forward: bool,
    pub upstream_ms: u64,
    /// Request body bytes: counted here when held, in `bytes_in_stream` when streamed.
    pub bytes_in: u64,
    pub bytes_in_stream: Option<Arc<AtomicU64>>,
    /// Why the caller was refused, when it was (a [`crate::metrics::AUTH_REASONS`] entry).
    pub auth_failure: Option<&'static str>,
    pub ops: Option<crate::Ops>,
    pub _in_flight: Option<crate::metrics::GaugeGuard>,
}

impl AccessLog {
    /// A log for a request, counted as in flight until it is written.
    pub(crate) fn start(ops: &crate::Ops, method: String, path: String) -> Self {
        AccessLog {
            method,
            path,
            _in_flight: Some(ops.metrics.request()),
            ops: Some(ops.clone()),
            ..AccessLog::default()
        }
    }

    pub(crate) fn set_principal(&mut self, principal: &Principal) {
        self.principal = principal.subject.clone();
        self.pod = principal
            .extra
            .get("authentication.kubernetes.io/pod-name")
            .and_then(|v| v.first())
            .cloned();
    }

    pub(crate) fn finish(
        self,
        response: Response<ProxyBody>,
        started: Instant,
    ) -> Response<ProxyBody> {
        let status = response.status();
        if response.body().is_end_stream() || self.method == "HEAD" {
            self.write(status, 0, true, started);
            return response;
        }
        let (parts, body) = response.into_parts();
        let counted = Counted::new(body, move |bytes, complete| {
            self.write(status, bytes, complete, started)
        });
        Response::from_parts(parts, counted.boxed_unsync())
    }

    fn write(&self, status: StatusCode, bytes: u64, complete: bool, started: Instant) {
        let bytes_in = self.bytes_in
            + self
                .bytes_in_stream
                .as_ref()
                .map_or(0, |n| n.load(Ordering::Relaxed));
        let total_ms = started.elapsed().as_millis() as u64;
        let mode = if self.forward { "forward" } else { "reverse" };
        let operation = crate::metrics::operation(&self.method, self.operation);
        tracing::info!(
            target: "connectors::access",
            mode,
            method = %self.method,
            path = %self.path,
            status = status.as_u16(),
            connector = %self.connector,
            repository = %self.repository,
            reference = %self.reference,
            operation,
            principal = %self.principal,
            bytes_in,
            bytes,
            complete,
            upstream_ms = self.upstream_ms,
            total_ms,
            "request"
        );
        let Some(ops) = &self.ops else { return };
        let connector = if self.known {
            self.connector.as_str()
        } else {
            ""
        };
        ops.metrics
            .request_done(connector, mode, operation, status.as_u16(), bytes_in, bytes);
        if let Some(reason) = self.auth_failure {
            ops.metrics.auth_failure(reason);
        }
        if let Some(audit) = &ops.audit
            && (!self.repository.is_empty() || matches!(operation, "ping" | "intercept"))
        {
            audit.write(&crate::audit::AuditRecord {
                time: crate::audit::timestamp(std::time::SystemTime::now()),
                mode,
                principal: &self.principal,
                pod: self.pod.as_deref(),
                connector: &self.connector,
                repository: &self.repository,
                reference: &self.reference,
                operation,
                method: &self.method,
                status: status.as_u16(),
                bytes_in,
                bytes_out: bytes,
                complete,
                duration_ms: total_ms,
            });
        }
    }
}

/// The tag or digest a distribution request names (for an upload: the digest it finishes with).
pub(crate) fn reference_of(endpoint: &OciEndpoint<'_>, query: Option<&str>) -> String {
    match endpoint {
        OciEndpoint::Manifest { reference } => (*reference).to_owned(),
        OciEndpoint::Blob { digest } | OciEndpoint::Referrers { digest } => (*digest).to_owned(),
        OciEndpoint::Upload { .. } => query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("digest="))
            .map(|d| d.replace("%3A", ":").replace("%3a", ":"))
            .unwrap_or_default(),
        OciEndpoint::TagsList => String::new(),
    }
}

/// The `reason` label for a refused caller.
pub(crate) fn auth_reason(err: &connectors_identity::AuthError) -> &'static str {
    use connectors_identity::AuthError as E;
    match err {
        E::Missing => "missing",
        E::Malformed(_) => "malformed",
        E::Expired { .. } => "expired",
        E::BadSignature => "bad_signature",
        E::NotAllowed { .. } => "not_allowed",
        E::Unavailable(_) => "unavailable",
        #[allow(unreachable_patterns)]
        _ => "malformed",
    }
}
