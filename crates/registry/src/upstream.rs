//! Sending one request to a connector's registry with the connector's credentials.
//!
//! The proxy hands over a request whose client credentials are already removed. This module learns how
//! the registry authenticates (`GET /v2/` → challenge, cached per connector), adds Basic or a Bearer
//! token for the scopes the request needs, sends it, and retries once on `401` when the body can be
//! sent again.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use connectors_model::{ConnectorRef, Endpoint, RegistryCredentials, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;

use crate::challenge::{BearerChallenge, Challenge, challenges_in, preferred};
use crate::client::{ResolveOverrides, UpstreamBody, UpstreamClient, build_client};
use crate::error::UpstreamError;
use crate::scope::{Scope, merge_scopes};
use crate::token::{Token, TokenCache, empty, fetch_token, full};

/// How long a learned authentication scheme is trusted before `/v2/` is asked again.
const AUTH_MODE_TTL: Duration = Duration::from_secs(600);
/// Clients (TLS setup included) are rebuilt at least this often, so CA changes apply.
const CLIENT_TTL: Duration = Duration::from_secs(300);
/// Bodiless requests that get no response headers within this time fail with 504. Requests that carry a
/// body have no such limit: a registry answers a large upload only after the last byte.
const HEADERS_TIMEOUT: Duration = Duration::from_secs(120);

/// What the proxy knows about one connector when it talks to its registry. Borrowed from the catalog.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub connector: &'a ConnectorRef,
    /// Changes whenever the connector's address, credentials or CAs change.
    pub fingerprint: u64,
    pub address: &'a Endpoint,
    pub extensions: &'a [(String, Endpoint)],
    pub credentials: &'a RegistryCredentials,
    pub ca_pems: &'a [String],
}

impl Target<'_> {
    fn key(&self) -> String {
        format!("{}#{}", self.connector, self.fingerprint)
    }

    /// Whether `url` is the connector's address or one of its extensions (same scheme, host and port).
    pub fn owns_url(&self, url: &url::Url) -> bool {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let Ok(scheme) = url.scheme().parse::<Scheme>() else {
            return false;
        };
        std::iter::once(self.address)
            .chain(self.extensions.iter().map(|(_, e)| e))
            .any(|e| e.matches(scheme, host, port))
    }
}

/// A request body: held bytes can be sent again after a `401`; a stream cannot.
pub enum RequestBody {
    Empty,
    Full(Bytes),
    Streaming(UpstreamBody),
}

impl RequestBody {
    fn replayable(&self) -> bool {
        !matches!(self, RequestBody::Streaming(_))
    }
}

/// A request for the upstream: absolute URL, headers without the client's credentials, body.
pub struct UpstreamRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: RequestBody,
}

#[derive(Clone, Debug)]
enum AuthMode {
    /// `/v2/` answered 200 without credentials.
    Open,
    Basic,
    Bearer(BearerChallenge),
}

/// Upstream access shared by all requests: clients per connector, learned auth schemes, tokens.
#[derive(Clone)]
pub struct UpstreamAccess {
    clients: moka::future::Cache<String, Arc<UpstreamClient>>,
    modes: moka::future::Cache<String, AuthMode>,
    tokens: TokenCache,
    overrides: Arc<ResolveOverrides>,
    headers_timeout: Duration,
}

impl UpstreamAccess {
    pub fn new(overrides: ResolveOverrides) -> Self {
        Self {
            clients: moka::future::Cache::builder()
                .max_capacity(4096)
                .time_to_live(CLIENT_TTL)
                .build(),
            modes: moka::future::Cache::builder()
                .max_capacity(4096)
                .time_to_live(AUTH_MODE_TTL)
                .build(),
            tokens: TokenCache::default(),
            overrides: Arc::new(overrides),
            headers_timeout: HEADERS_TIMEOUT,
        }
    }

    /// How long a bodiless request (and the `/v2/` probe) may wait for response headers before it
    /// fails with a timeout; 120 s unless set. Requests that carry a body are never limited.
    pub fn with_headers_timeout(mut self, timeout: Duration) -> Self {
        self.headers_timeout = timeout;
        self
    }

    /// Counts the token cache's hits and misses in `counters` (shared with the proxy's `/metrics`).
    pub fn with_token_cache_counters(mut self, counters: crate::token::CacheCounters) -> Self {
        self.tokens.count_in(counters);
        self
    }

    /// The `--resolve` overrides, for tunnels that dial a host themselves.
    pub fn overrides(&self) -> &ResolveOverrides {
        &self.overrides
    }

    /// A pooled client trusting the system roots only, for requests that carry no credentials (forward
    /// mode to destinations that are not connectors).
    pub async fn plain_client(&self) -> Result<Arc<UpstreamClient>, UpstreamError> {
        let overrides = self.overrides.clone();
        self.clients
            .try_get_with(String::new(), async {
                build_client(&[], overrides)
                    .map(Arc::new)
                    .map_err(|e| UpstreamError::Setup {
                        connector: "(none)".into(),
                        reason: e.to_string(),
                    })
            })
            .await
            .map_err(unshare)
    }

    /// The pooled client for a connector (its CAs decide the trust).
    pub async fn client(&self, target: &Target<'_>) -> Result<Arc<UpstreamClient>, UpstreamError> {
        let overrides = self.overrides.clone();
        self.clients
            .try_get_with(target.key(), async {
                build_client(target.ca_pems, overrides)
                    .map(Arc::new)
                    .map_err(|e| UpstreamError::Setup {
                        connector: target.connector.to_string(),
                        reason: e.to_string(),
                    })
            })
            .await
            .map_err(unshare)
    }

    /// How long a bodiless request may wait for the response headers (see [`Self::with_headers_timeout`]).
    pub fn headers_timeout(&self) -> Duration {
        self.headers_timeout
    }

    /// The `Authorization` value [`Self::send`] would add to a request for `scopes` (the learned scheme:
    /// none, Basic, or a Bearer token from the cache or the realm), for callers that write the request
    /// themselves (the proxy's splice fast path). The value is marked sensitive; it must only go to
    /// `target`'s own address.
    pub async fn authorization_for(
        &self,
        target: &Target<'_>,
        scopes: &[Scope],
    ) -> Result<Option<HeaderValue>, UpstreamError> {
        let client = self.client(target).await?;
        let mode = self.auth_mode(target, &client).await?;
        self.authorization(target, &client, &mode, scopes, false)
            .await
    }

    /// Sends `request` with the connector's credentials for `scopes`.
    pub async fn send(
        &self,
        target: &Target<'_>,
        request: UpstreamRequest,
        scopes: &[Scope],
    ) -> Result<Response<Incoming>, UpstreamError> {
        let client = self.client(target).await?;
        let mut mode = self.auth_mode(target, &client).await?;
        let UpstreamRequest {
            method,
            uri,
            headers,
            body,
        } = request;
        let replayable = body.replayable();
        let (held, mut stream) = match body {
            RequestBody::Empty => (Some(Bytes::new()), None),
            RequestBody::Full(b) => (Some(b), None),
            RequestBody::Streaming(s) => (None, Some(s)),
        };
        let mut fresh_token = false;
        let mut scopes: Vec<Scope> = scopes.to_vec();
        for attempt in 0..2 {
            let authorization = self
                .authorization(target, &client, &mode, &scopes, fresh_token)
                .await?;
            let body = match (&held, stream.take()) {
                (Some(b), _) if b.is_empty() => empty(),
                (Some(b), _) => full(b.clone()),
                (None, Some(s)) => s,
                (None, None) => empty(), // unreachable: a stream is only sent once
            };
            let mut req = Request::builder()
                .method(method.clone())
                .uri(uri.clone())
                .body(body)
                .map_err(|e| UpstreamError::Setup {
                    connector: target.connector.to_string(),
                    reason: format!("building the request: {e}"),
                })?;
            *req.headers_mut() = headers.clone();
            if let Some(value) = authorization {
                req.headers_mut().insert(header::AUTHORIZATION, value);
            }
            let response = self
                .dispatch(
                    target,
                    &client,
                    req,
                    replayable && held.as_ref().is_some_and(Bytes::is_empty),
                )
                .await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let challenge = preferred(&challenges_in(response.headers())).cloned();
            if attempt == 1 || !replayable {
                return Err(self.rejected(target, &challenge, response.status()));
            }
            // Learn from the challenge and try once more.
            match challenge {
                Some(Challenge::Bearer(b)) => {
                    // The registry may name scopes we did not ask for (a mount's source, say): add them.
                    scopes.extend(b.scopes.iter().filter_map(|s| Scope::parse(s)));
                    mode = AuthMode::Bearer(BearerChallenge {
                        scopes: Vec::new(),
                        error: None,
                        ..b
                    });
                    self.modes.insert(target.key(), mode.clone()).await;
                    fresh_token = true;
                }
                Some(Challenge::Basic { .. }) if !matches!(mode, AuthMode::Basic) => {
                    mode = AuthMode::Basic;
                    self.modes.insert(target.key(), mode.clone()).await;
                }
                other => return Err(self.rejected(target, &other, StatusCode::UNAUTHORIZED)),
            }
        }
        Err(self.rejected(target, &None, StatusCode::UNAUTHORIZED))
    }

    fn rejected(
        &self,
        target: &Target<'_>,
        challenge: &Option<Challenge>,
        status: StatusCode,
    ) -> UpstreamError {
        let detail = match challenge {
            Some(Challenge::Bearer(b)) => b
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default(),
            Some(Challenge::Other { scheme }) => {
                format!(": it asks for {scheme} authentication, which is not supported")
            }
            _ => String::new(),
        };
        let detail = match target.credentials {
            RegistryCredentials::Anonymous => {
                format!("{detail}; the connector has no secret, so access is anonymous")
            }
            _ => detail,
        };
        UpstreamError::CredentialsRejected {
            host: target.address.authority(),
            connector: target.connector.to_string(),
            status: status.as_u16(),
            detail,
        }
    }

    async fn dispatch(
        &self,
        target: &Target<'_>,
        client: &UpstreamClient,
        req: Request<UpstreamBody>,
        bodiless: bool,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let host = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_else(|| target.address.authority());
        let fut = client.request(req);
        let result = if bodiless {
            tokio::time::timeout(self.headers_timeout, fut)
                .await
                .map_err(|_| UpstreamError::Timeout {
                    host: host.clone(),
                    seconds: self.headers_timeout.as_secs(),
                })?
        } else {
            fut.await
        };
        result.map_err(|e| UpstreamError::from_send(&host, e))
    }

    /// How the registry authenticates, learned from `GET <address>/v2/` and cached.
    async fn auth_mode(
        &self,
        target: &Target<'_>,
        client: &UpstreamClient,
    ) -> Result<AuthMode, UpstreamError> {
        let client = client.clone();
        let timeout = self.headers_timeout;
        self.modes
            .try_get_with(target.key(), async move {
                learn_auth_mode(target, &client, timeout).await
            })
            .await
            .map_err(unshare)
    }

    /// The `Authorization` header value for this request, if the registry needs one.
    async fn authorization(
        &self,
        target: &Target<'_>,
        client: &UpstreamClient,
        mode: &AuthMode,
        scopes: &[Scope],
        fresh: bool,
    ) -> Result<Option<HeaderValue>, UpstreamError> {
        match mode {
            AuthMode::Open => Ok(None),
            AuthMode::Basic => Ok(basic_header(target.credentials)),
            AuthMode::Bearer(challenge) => {
                let token = self.token(target, client, challenge, scopes, fresh).await?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.value.expose()))
                    .map_err(|_| UpstreamError::TokenEndpoint {
                        realm: challenge.realm.clone(),
                        reason: "token is not a valid header value".into(),
                    })?;
                value.set_sensitive(true);
                Ok(Some(value))
            }
        }
    }

    async fn token(
        &self,
        target: &Target<'_>,
        client: &UpstreamClient,
        challenge: &BearerChallenge,
        scopes: &[Scope],
        fresh: bool,
    ) -> Result<Token, UpstreamError> {
        let scopes = merge_scopes(scopes.iter().cloned());
        let credentials = self.credentials_for_realm(target, &challenge.realm)?;
        let key = TokenCache::key(
            &target.connector.to_string(),
            target.fingerprint,
            challenge,
            &scopes,
        );
        if fresh {
            self.tokens.invalidate(&key).await;
        }
        let connector = target.connector.to_string();
        self.tokens
            .get_or_fetch(key, async move {
                fetch_token(client, &connector, credentials, challenge, &scopes).await
            })
            .await
            .map_err(unshare)
    }

    /// The credentials that may go to `realm`: the connector's, when the realm is HTTPS or one of the
    /// connector's own addresses; otherwise none may, and that is an error rather than a silent
    /// anonymous request.
    fn credentials_for_realm<'a>(
        &self,
        target: &Target<'a>,
        realm: &str,
    ) -> Result<&'a RegistryCredentials, UpstreamError> {
        if matches!(target.credentials, RegistryCredentials::Anonymous) {
            return Ok(target.credentials);
        }
        let url = url::Url::parse(realm).map_err(|e| UpstreamError::BadChallenge {
            host: target.address.authority(),
            reason: format!("realm {realm:?} is not a URL: {e}"),
        })?;
        if url.scheme() == "https" || target.owns_url(&url) {
            Ok(target.credentials)
        } else {
            Err(UpstreamError::RealmNotAllowed {
                host: target.address.authority(),
                realm: realm.to_owned(),
                connector: target.connector.to_string(),
            })
        }
    }

    /// Forgets what was learned about a connector (after its configuration changed, or for tests).
    pub async fn forget(&self, target: &Target<'_>) {
        self.modes.invalidate(&target.key()).await;
        self.clients.invalidate(&target.key()).await;
    }
}

async fn learn_auth_mode(
    target: &Target<'_>,
    client: &UpstreamClient,
    timeout: Duration,
) -> Result<AuthMode, UpstreamError> {
    let host = target.address.authority();
    let uri: Uri = format!("{}/v2/", base_url(target.address))
        .parse()
        .map_err(|e| UpstreamError::Setup {
            connector: target.connector.to_string(),
            reason: format!("address: {e}"),
        })?;
    let req = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .body(empty())
        .map_err(|e| UpstreamError::Setup {
            connector: target.connector.to_string(),
            reason: e.to_string(),
        })?;
    let response = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| UpstreamError::Timeout {
            host: host.clone(),
            seconds: timeout.as_secs(),
        })?
        .map_err(|e| UpstreamError::from_send(&host, e))?;
    let status = response.status();
    let challenges = challenges_in(response.headers());
    drop(response);
    match status {
        s if s.is_success() => Ok(AuthMode::Open),
        StatusCode::UNAUTHORIZED => match preferred(&challenges) {
            Some(Challenge::Bearer(b)) => Ok(AuthMode::Bearer(BearerChallenge {
                scopes: Vec::new(),
                error: None,
                ..b.clone()
            })),
            Some(Challenge::Basic { .. }) => Ok(AuthMode::Basic),
            Some(Challenge::Other { scheme }) => Err(UpstreamError::BadChallenge {
                host,
                reason: format!(
                    "it asks for {scheme} authentication; only Basic and Bearer are supported"
                ),
            }),
            None => Err(UpstreamError::BadChallenge {
                host,
                reason: "401 without a usable WWW-Authenticate header".into(),
            }),
        },
        other => Err(UpstreamError::NotARegistry {
            host,
            address: base_url(target.address),
            status: other.as_u16(),
        }),
    }
}

fn basic_header(credentials: &RegistryCredentials) -> Option<HeaderValue> {
    match credentials {
        RegistryCredentials::Basic { username, password } => {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose()));
            let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
            value.set_sensitive(true);
            Some(value)
        }
        RegistryCredentials::Anonymous => None,
    }
}

/// `scheme://host[:port][/prefix]`: what `/v2/…` is appended to.
pub fn base_url(address: &Endpoint) -> String {
    format!("{}{}", address.origin(), address.path_prefix())
}

/// moka shares one error between all waiters.
fn unshare(e: Arc<UpstreamError>) -> UpstreamError {
    Arc::try_unwrap(e).unwrap_or_else(|shared| (*shared).clone())
}
