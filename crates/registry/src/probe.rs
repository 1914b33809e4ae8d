//! Probes of a connector's registry: is it reachable, and are the connector's credentials accepted.
//! Used by `connectors check` and by the controller's conditions.

use http::{HeaderMap, Method, StatusCode, Uri};

use connectors_model::RegistryCredentials;

use crate::error::UpstreamError;
use crate::scope::Scope;
use crate::upstream::{RequestBody, Target, UpstreamAccess, UpstreamRequest, base_url};

/// The outcome of probing one connector.
#[derive(Debug)]
pub struct ProbeReport {
    /// `GET /v2/` answered (200 or 401).
    pub liveness: Result<(), UpstreamError>,
    /// The credentials were accepted: a token was issued (for `repository`, if given) and `/v2/` answered
    /// 200 with it. `Ok` carries a short description of how.
    pub auth: Result<String, UpstreamError>,
}

impl ProbeReport {
    pub fn ok(&self) -> bool {
        self.liveness.is_ok() && self.auth.is_ok()
    }
}

/// Probes `target`; with `repository`, asks for `repository:<repository>:pull` as the auth probe does.
pub async fn probe(
    access: &UpstreamAccess,
    target: &Target<'_>,
    repository: Option<&str>,
) -> ProbeReport {
    access.forget(target).await;
    let uri: Uri = match format!("{}/v2/", base_url(target.address)).parse() {
        Ok(u) => u,
        Err(e) => {
            let err = UpstreamError::Setup {
                connector: target.connector.to_string(),
                reason: format!("address: {e}"),
            };
            return ProbeReport {
                liveness: Err(err.clone()),
                auth: Err(err),
            };
        }
    };
    let scopes: Vec<Scope> = repository
        .map(|r| vec![Scope::repository(r, &["pull"])])
        .unwrap_or_default();
    let request = UpstreamRequest {
        method: Method::GET,
        uri,
        headers: HeaderMap::new(),
        body: RequestBody::Empty,
    };
    match access.send(target, request, &scopes).await {
        Ok(response) if response.status() == StatusCode::OK => {
            let how = match target.credentials {
                RegistryCredentials::Anonymous => {
                    "anonymous access works (the connector has no secret)".to_string()
                }
                RegistryCredentials::Basic { username, .. } => {
                    format!("credentials of user {username:?} accepted")
                }
            };
            ProbeReport {
                liveness: Ok(()),
                auth: Ok(how),
            }
        }
        Ok(response) => {
            let err = UpstreamError::NotARegistry {
                host: target.address.authority(),
                address: base_url(target.address),
                status: response.status().as_u16(),
            };
            ProbeReport {
                liveness: Err(err.clone()),
                auth: Err(err),
            }
        }
        Err(e) if matches!(e.kind(), crate::ErrorKind::Denied) => ProbeReport {
            liveness: Ok(()),
            auth: Err(e),
        },
        Err(e) => ProbeReport {
            liveness: Err(e.clone()),
            auth: Err(e),
        },
    }
}
