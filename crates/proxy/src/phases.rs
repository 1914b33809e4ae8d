//! The phases of a request, shared by both modes, in the order they run. `reverse.rs` and `forward.rs`
//! are adapters: they read their mode's request (a path under `/v2/namespaces/…`, or `Proxy-Authorization`
//! and a CONNECT or absolute-form target) and call these; [`RequestContext`] carries what each phase
//! learns, and [`RequestContext::respond`] is the one response tail.
//!
//! 1. [`authenticate`] (reverse) / [`authenticate_proxy`] (forward): who is calling.
//! 2. [`authorize`]: may they use the connector.
//! 3. [`resolve_connector`]: the connector from the catacx.
//! 4. [`credentials`]: its registry credentials, or why it cannot be used.
//! 5. [`send_upstream`]: the request, cleaned, with its body, sent with the credentials.
//! 6. [`shape_response`] (or [`version_check`] for `GET /v2/`): the answer as the client gets it.
//! 7. [`RequestContext::respond`]: error → response, then the log line, metrics and audit record.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use connectors_catalog::ResolvedConnector;
use connectors_identity::{
    AuthError, Principal, parse_proxy_authorization_within, token_from_authorization,
};
use connectors_model::{ConnectorRef, RegistryCredentials};
use connectors_registry::{RequestBody, UpstreamRequest};
use http::{HeaderMap, HeaderValue, Response, Uri, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};

use crate::Proxy;
use crate::body::{ProxyBody, full};
use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::headers::{client_response_headers, upstream_request_headers};

/// Bodies up to this size are read whole, so the request can be sent again after a `401` (manifests,
/// small chunks). Larger bodies stream through.
const MAX_REPLAYABLE_BODY: u64 = 1 << 20;

/// Phase 1 (reverse mode): the principal behind the request's `Authorization` header.
pub(crate) async fn authenticate(
    proxy: &Proxy,
    headers: &HeaderMap,
    cx: &mut RequestContext,
) -> Result<Principal, ProxyError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        cx.auth_failure = Some("missing");
        ProxyError::Unauthenticated(
            "no proxy token: log in to the proxy with any user name and a proxy token as the password \
             (for example `connectors token issue --connectors <ns>/<name>`)"
                .to_owned(),
        )
    })?;
    let token = token_from_authorization(value.as_bytes()).map_err(|e| {
        cx.auth_failure = Some(auth_reason(&e));
        ProxyError::from_auth(e)
    })?;
    let principal = proxy.authn.authenticate(&token).await.map_err(|e| {
        cx.auth_failure = Some(auth_reason(&e));
        ProxyError::from_auth(e)
    })?;
    cx.set_principal(&principal);
    Ok(principal)
}

/// Phase 2: the principal may use `connector`.
pub(crate) async fn authorize(
    proxy: &Proxy,
    principal: &Principal,
    connector: &connectors_model::ConnectorRef,
    cx: &mut RequestContext,
) -> Result<(), ProxyError> {
    proxy
        .authz
        .authorize(principal, connector)
        .await
        .map_err(|e| {
            cx.auth_failure = Some(auth_reason(&e));
            ProxyError::from_auth(e)
        })
}

/// Phase 1 (forward mode): `Proxy-Authorization` names the connectors (the user name) and carries the
/// token (the password). Returns the principal and the connectors it named.
pub(crate) async fn authenticate_proxy(
    proxy: &Proxy,
    headers: &HeaderMap,
    cx: &mut RequestContext,
) -> Result<(Principal, Vec<ConnectorRef>), ProxyError> {
    cx.forward = true;
    let value = headers.get(header::PROXY_AUTHORIZATION).ok_or_else(|| {
        cx.auth_failure = Some("missing");
        ProxyError::ProxyUnauthenticated(
            "no proxy credentials: set HTTPS_PROXY=http://<namespace>%2F<connector>:<token>@<proxy>"
                .to_owned(),
        )
    })?;
    proxy.limits.check_proxy_authorization(value.as_bytes())?;
    let credentials = parse_proxy_authorization_within(
        value.as_bytes(),
        proxy.limits.max_proxy_authorization_bytes,
    )
    .map_err(|e| {
        cx.auth_failure = Some(auth_reason(&e));
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
            cx.auth_failure = Some(auth_reason(&e));
            ProxyError::from_proxy_auth(e)
        })?;
    cx.set_principal(&principal);
    cx.connector = credentials
        .connectors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    Ok((principal, credentials.connectors))
}

/// Phase 3: the connector `reference` names, as the catalog has it now (its credentials may have changed
/// since an intercepted connection opened).
pub(crate) fn resolve_connector(
    proxy: &Proxy,
    reference: &ConnectorRef,
) -> Result<Arc<ResolvedConnector>, ProxyError> {
    proxy
        .catalog
        .connector(reference)
        .ok_or_else(|| ProxyError::UnknownConnector(reference.to_string()))
}

/// Phase 4: the connector's registry credentials, or why it cannot be used (its Secret is missing or
/// wrong): 503.
pub(crate) fn credentials(
    connector: &ResolvedConnector,
) -> Result<&RegistryCredentials, ProxyError> {
    connector
        .credentials
        .as_ref()
        .map_err(|reason| ProxyError::ConnectorUnusable {
            connector: connector.reference.to_string(),
            reason: reason.clone(),
        })
}

/// Phase 5: the request without client credentials and hop-by-hop headers, its body held when small,
/// sent with the connector's credentials for `scopes`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_upstream(
    proxy: &Proxy,
    connector: &ResolvedConnector,
    credentials: &RegistryCredentials,
    parts: http::request::Parts,
    body: Incoming,
    uri: Uri,
    scopes: &[connectors_registry::Scope],
    cx: &mut RequestContext,
) -> Result<Response<Incoming>, ProxyError> {
    let body = request_body(&parts.headers, body, proxy.limits.idle_timeout, cx).await?;
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
    cx.upstream_ms = elapsed.as_millis() as u64;
    if let Some(ops) = &cx.ops {
        ops.metrics.upstream_latency(elapsed);
    }
    Ok(response)
}

/// A body that is known empty or small is held (and can be sent again); anything else streams. Either
/// way, a client that sends nothing for `idle` fails the request ([`crate::limits::IdleBody`]).
pub(crate) async fn request_body(
    headers: &HeaderMap,
    body: Incoming,
    idle: std::time::Duration,
    cx: &mut RequestContext,
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
            cx.bytes_in = bytes.len() as u64;
            Ok(RequestBody::Full(bytes))
        }
        _ => {
            let counter = Arc::new(AtomicU64::new(0));
            cx.bytes_in_stream = Some(counter.clone());
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

/// Phase 6: the registry's answer as the client gets it: without the registry's challenges, cookies and
/// hop-by-hop headers, the body streamed.
pub(crate) fn shape_response(response: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    client_response_headers(&mut parts.headers);
    Response::from_parts(parts, box_body(body))
}

/// Phase 6 for a destination that is not a connector (nothing of ours was added): only the hop-by-hop
/// headers go.
pub(crate) fn pass_through_response(response: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    crate::headers::strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, box_body(body))
}

fn box_body(body: Incoming) -> ProxyBody {
    body.map_err(|e| Box::new(e) as connectors_registry::BoxError)
        .boxed_unsync()
}

/// Phase 6 for `GET /v2/` (the API version check): answered by the proxy once the caller is known.
pub(crate) fn version_check() -> Response<ProxyBody> {
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

/// The `reason` label for a refused caller.
pub(crate) fn auth_reason(err: &AuthError) -> &'static str {
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
