//! The distribution token flow: ask the realm for a Bearer token for a set of scopes (GET with Basic,
//! or the OAuth2 password-grant POST when the realm wants it), and cache tokens until shortly before
//! they expire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use connectors_model::{RegistryCredentials, SecretString};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use moka::Expiry;
use prometheus_client::metrics::counter::Counter;

use crate::challenge::BearerChallenge;
use crate::client::{UpstreamBody, UpstreamClient};
use crate::error::{UpstreamError, error_chain};
use crate::scope::Scope;

/// How long a token lives when the realm does not say (the distribution spec's default).
const DEFAULT_EXPIRES_IN: u64 = 60;
/// The largest token response we read.
const MAX_TOKEN_RESPONSE: usize = 1 << 20;
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A Bearer token and when to stop using it.
#[derive(Clone, Debug)]
pub struct Token {
    pub value: SecretString,
    pub use_until: Instant,
}

/// Tokens keyed by connector, its configuration fingerprint, realm, service and scope set.
#[derive(Clone)]
pub struct TokenCache {
    cache: moka::future::Cache<String, Token>,
    counters: CacheCounters,
}

/// How often a cache had what was asked (`hits`) and did not (`misses`). The counters are shared by
/// clones: whoever reports them (the proxy's `/metrics`) hands the same pair to every cache it counts.
#[derive(Clone, Debug, Default)]
pub struct CacheCounters {
    pub hits: Counter,
    pub misses: Counter,
}

struct UntilUseBy;

impl Expiry<String, Token> for UntilUseBy {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Token,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.use_until.saturating_duration_since(created_at))
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl TokenCache {
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: moka::future::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilUseBy)
                .build(),
            counters: CacheCounters::default(),
        }
    }

    /// Counts this cache's lookups in `counters` from now on.
    pub fn count_in(&mut self, counters: CacheCounters) {
        self.counters = counters;
    }

    /// This cache's lookups so far.
    pub fn counters(&self) -> &CacheCounters {
        &self.counters
    }

    pub fn key(
        connector: &str,
        fingerprint: u64,
        challenge: &BearerChallenge,
        scopes: &[Scope],
    ) -> String {
        let scopes: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        format!(
            "{connector}\n{fingerprint}\n{}\n{}\n{}",
            challenge.realm,
            challenge.service.as_deref().unwrap_or(""),
            scopes.join(" ")
        )
    }

    pub async fn get(&self, key: &str) -> Option<Token> {
        self.cache
            .get(key)
            .await
            .filter(|t| t.use_until > Instant::now())
    }

    pub async fn insert(&self, key: String, token: Token) {
        self.cache.insert(key, token).await;
    }

    pub async fn invalidate(&self, key: &str) {
        self.cache.invalidate(key).await;
    }

    /// The cached token, or one fetched once for all concurrent callers with the same key.
    pub async fn get_or_fetch<F>(&self, key: String, fetch: F) -> Result<Token, Arc<UpstreamError>>
    where
        F: Future<Output = Result<Token, UpstreamError>>,
    {
        match self.cache.get(&key).await {
            Some(t) if t.use_until > Instant::now() => {
                self.counters.hits.inc();
                return Ok(t);
            }
            // Past its use-by time but not yet evicted: drop it, or `try_get_with` would return it.
            Some(_) => self.cache.invalidate(&key).await,
            None => {}
        }
        self.counters.misses.inc();
        self.cache.try_get_with(key, fetch).await
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Fetches a token from `challenge.realm` for `scopes`, with the connector's credentials if it has any.
/// Tries `GET` first (what every distribution registry serves); falls back to the OAuth2 `POST` form
/// when the realm answers that GET is not supported (404/405) or the request is bad (400).
pub async fn fetch_token(
    client: &UpstreamClient,
    connector: &str,
    credentials: &RegistryCredentials,
    challenge: &BearerChallenge,
    scopes: &[Scope],
) -> Result<Token, UpstreamError> {
    let realm = challenge.realm.as_str();
    let started = Instant::now();
    let get = get_request(challenge, credentials, scopes)?;
    let (status, body) = send(client, realm, get).await?;
    let (status, body) = if matches!(
        status,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::BAD_REQUEST
    ) {
        tracing::debug!(
            realm,
            status = status.as_u16(),
            "token GET not supported; trying the OAuth2 POST form"
        );
        send(client, realm, post_request(challenge, credentials, scopes)?).await?
    } else {
        (status, body)
    };
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(UpstreamError::TokenRejected {
            realm: realm.to_owned(),
            connector: connector.to_owned(),
            status: status.as_u16(),
        });
    }
    if !status.is_success() {
        return Err(UpstreamError::TokenEndpoint {
            realm: realm.to_owned(),
            reason: format!("HTTP {status}"),
        });
    }
    let parsed: TokenResponse =
        serde_json::from_slice(&body).map_err(|e| UpstreamError::TokenEndpoint {
            realm: realm.to_owned(),
            reason: format!("response is not token JSON: {e}"),
        })?;
    let value = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| UpstreamError::TokenEndpoint {
            realm: realm.to_owned(),
            reason: "response has no token".into(),
        })?;
    let lifetime = Duration::from_secs(
        parsed
            .expires_in
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_EXPIRES_IN),
    );
    // Stop using a token a little before it expires: 10 % of its life, at most 30 s.
    let margin = (lifetime / 10).min(Duration::from_secs(30));
    Ok(Token {
        value: SecretString::new(value),
        use_until: started + lifetime - margin,
    })
}

fn basic(credentials: &RegistryCredentials) -> Option<(String, String)> {
    match credentials {
        RegistryCredentials::Basic { username, password } => Some((
            username.clone(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()))
            ),
        )),
        _ => None,
    }
}

fn get_request(
    challenge: &BearerChallenge,
    credentials: &RegistryCredentials,
    scopes: &[Scope],
) -> Result<Request<UpstreamBody>, UpstreamError> {
    let mut url = url::Url::parse(&challenge.realm).map_err(|e| UpstreamError::TokenEndpoint {
        realm: challenge.realm.clone(),
        reason: format!("realm is not a URL: {e}"),
    })?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(service) = &challenge.service {
            q.append_pair("service", service);
        }
        for s in scopes {
            q.append_pair("scope", &s.to_string());
        }
        if let Some((user, _)) = basic(credentials) {
            q.append_pair("account", &user);
        }
    }
    let mut req = Request::builder().method(Method::GET).uri(url.as_str());
    if let Some((_, auth)) = basic(credentials) {
        req = req.header(header::AUTHORIZATION, auth);
    }
    req.body(empty()).map_err(|e| UpstreamError::TokenEndpoint {
        realm: challenge.realm.clone(),
        reason: e.to_string(),
    })
}

fn post_request(
    challenge: &BearerChallenge,
    credentials: &RegistryCredentials,
    scopes: &[Scope],
) -> Result<Request<UpstreamBody>, UpstreamError> {
    let scope_list: Vec<String> = scopes.iter().map(ToString::to_string).collect();
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("client_id", "connectors");
    if let Some(service) = &challenge.service {
        form.append_pair("service", service);
    }
    form.append_pair("scope", &scope_list.join(" "));
    match credentials {
        RegistryCredentials::Basic { username, password } => {
            form.append_pair("grant_type", "password");
            form.append_pair("username", username);
            form.append_pair("password", password.expose());
        }
        _ => {
            form.append_pair("grant_type", "client_credentials");
        }
    }
    let body = SecretString::new(form.finish());
    Request::builder()
        .method(Method::POST)
        .uri(&challenge.realm)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(full(Bytes::copy_from_slice(body.expose().as_bytes())))
        .map_err(|e| UpstreamError::TokenEndpoint {
            realm: challenge.realm.clone(),
            reason: e.to_string(),
        })
}

async fn send(
    client: &UpstreamClient,
    realm: &str,
    req: Request<UpstreamBody>,
) -> Result<(StatusCode, Bytes), UpstreamError> {
    let fail = |reason: String| UpstreamError::TokenEndpoint {
        realm: realm.to_owned(),
        reason,
    };
    let response = tokio::time::timeout(TOKEN_TIMEOUT, client.request(req))
        .await
        .map_err(|_| fail(format!("no answer within {} s", TOKEN_TIMEOUT.as_secs())))?
        .map_err(|e| fail(error_chain(&e)))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_TOKEN_RESPONSE)
        .collect()
        .await
        .map_err(|e| fail(format!("reading the response: {e}")))?
        .to_bytes();
    Ok((status, body))
}

pub(crate) fn empty() -> UpstreamBody {
    full(Bytes::new())
}

pub(crate) fn full(bytes: Bytes) -> UpstreamBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge() -> BearerChallenge {
        BearerChallenge {
            realm: "https://auth.test/token".into(),
            service: Some("reg".into()),
            scopes: vec![],
            error: None,
        }
    }

    #[test]
    fn get_request_carries_service_scopes_and_account() {
        let creds = RegistryCredentials::Basic {
            username: "u".into(),
            password: SecretString::new("p@ss"),
        };
        let req = get_request(
            &challenge(),
            &creds,
            &[
                Scope::repository("a/b", &["pull", "push"]),
                Scope::repository("c", &["pull"]),
            ],
        )
        .unwrap();
        assert_eq!(
            req.uri().to_string(),
            "https://auth.test/token?service=reg&scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=repository%3Ac%3Apull&account=u"
        );
        assert_eq!(req.headers()[header::AUTHORIZATION], "Basic dTpwQHNz");
        let anon = get_request(&challenge(), &RegistryCredentials::Anonymous, &[]).unwrap();
        assert!(anon.headers().get(header::AUTHORIZATION).is_none());
        assert!(!anon.uri().to_string().contains("account"));
    }

    #[test]
    fn post_request_is_an_oauth2_form() {
        let creds = RegistryCredentials::Basic {
            username: "u".into(),
            password: SecretString::new("p"),
        };
        let req = post_request(&challenge(), &creds, &[Scope::repository("a", &["pull"])]).unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            req.headers()[header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
    }

    #[test]
    fn cache_keys_separate_connectors_fingerprints_and_scopes() {
        let c = challenge();
        let a = TokenCache::key("ns/a", 1, &c, &[Scope::repository("x", &["pull"])]);
        assert_ne!(
            a,
            TokenCache::key("ns/b", 1, &c, &[Scope::repository("x", &["pull"])])
        );
        assert_ne!(
            a,
            TokenCache::key("ns/a", 2, &c, &[Scope::repository("x", &["pull"])])
        );
        assert_ne!(
            a,
            TokenCache::key("ns/a", 1, &c, &[Scope::repository("x", &["pull", "push"])])
        );
    }

    #[tokio::test]
    async fn cached_tokens_expire() {
        let cache = TokenCache::new(10);
        cache
            .insert(
                "k".into(),
                Token {
                    value: "t".into(),
                    use_until: Instant::now() + Duration::from_millis(50),
                },
            )
            .await;
        assert!(cache.get("k").await.is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(cache.get("k").await.is_none());
    }
}
