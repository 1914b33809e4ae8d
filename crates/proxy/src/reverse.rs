//! Reverse mode: a request for `/v2/namespaces/<ns>/connectors/<name>/<repo>/…` goes to the connector's
//! registry as `/v2/<repo>/…`, with the connector's credentials, and the answer comes back with
//! everything that points upstream rewritten into the proxy's namespace.

use std::sync::Arc;

use connectors_catalog::ResolvedConnector;
use connectors_registry::{OciEndpoint, parse_oci_path, scopes_for};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, header};
use hyper::body::Incoming;

use crate::Proxy;
use crate::body::ProxyBody;
use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::phases;
use crate::rewrite::{UpstreamBase, rewrite_link, rewrite_location, rewrite_mount_query};
use crate::route::Mount;

/// A registry request under a connector's mount, through the phases.
pub(crate) async fn handle(
    proxy: &Arc<Proxy>,
    req: Request<Incoming>,
    mount: Mount,
    rest: String,
    cx: &mut RequestContext,
) -> Result<Response<ProxyBody>, ProxyError> {
    let principal = phases::authenticate(proxy, req.headers(), cx).await?;
    let connector_ref = mount.connector().clone();
    cx.connector = connector_ref.to_string();
    phases::authorize(proxy, &principal, &connector_ref, cx).await?;
    let connector = phases::resolve_connector(proxy, &connector_ref)?;
    cx.known = true;
    let credentials = phases::credentials(&connector)?;

    let oci = parse_oci_path(&rest).ok_or_else(|| ProxyError::NotRegistryPath(rest.clone()))?;
    cx.repository = oci.repository.to_owned();
    cx.operation = oci.endpoint.name();
    cx.reference = reference_of(&oci.endpoint, req.uri().query());

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
    let response = phases::send_upstream(
        proxy,
        &connector,
        credentials,
        parts,
        body,
        uri,
        &scopes,
        cx,
    )
    .await?;
    let mut response = phases::shape_response(response);
    rewrite_upstream_links(response.headers_mut(), &connector, &mount);
    Ok(response)
}

pub(crate) fn upstream_uri(
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

/// Reverse mode's part of shaping the response: `Location` and `Link` that point at the registry point
/// into the connector's mount instead.
pub(crate) fn rewrite_upstream_links(
    headers: &mut HeaderMap,
    connector: &ResolvedConnector,
    mount: &Mount,
) {
    let address = &connector.address;
    let base = UpstreamBase {
        scheme: address.scheme().as_str(),
        host: address.host(),
        port: address.port(),
        path_prefix: address.path_prefix(),
    };
    let v2_base = mount.v2_base();
    if let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok())
        && let Some(new) = rewrite_location(location, &base, &v2_base)
        && let Ok(value) = HeaderValue::from_str(&new)
    {
        headers.insert(header::LOCATION, value);
    }
    let links: Vec<HeaderValue> = headers
        .get_all(header::LINK)
        .iter()
        .map(|v| match v.to_str() {
            Ok(s) => HeaderValue::from_str(&rewrite_link(s, &base, &v2_base))
                .unwrap_or_else(|_| v.clone()),
            Err(_) => v.clone(),
        })
        .collect();
    if !links.is_empty() {
        headers.remove(header::LINK);
        for l in links {
            headers.append(header::LINK, l);
        }
    }
}

/// `GET /v2/`: 200 for a valid token (and, with a connector named, one allowed to use it).
pub(crate) async fn ping(
    proxy: &Arc<Proxy>,
    headers: &HeaderMap,
    mount: Option<Mount>,
    cx: &mut RequestContext,
) -> Result<Response<ProxyBody>, ProxyError> {
    cx.operation = "ping";
    let principal = phases::authenticate(proxy, headers, cx).await?;
    if let Some(mount) = mount {
        cx.connector = mount.connector().to_string();
        phases::authorize(proxy, &principal, mount.connector(), cx).await?;
        phases::resolve_connector(proxy, mount.connector())?;
        cx.known = true;
    }
    Ok(phases::version_check())
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
