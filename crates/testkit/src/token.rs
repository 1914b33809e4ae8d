//! A Distribution ("Docker") token-auth server, as the registry's `auth.token.realm`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData as _};
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde::{Deserialize, Serialize};

/// Actions granted to a user configured without explicit actions.
pub const DEFAULT_USER_ACTIONS: &[&str] = &["pull", "push", "delete"];

/// One entry of the JWT `access` claim (and what a scope asked for).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `repository`, `registry`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// e.g. `test/small`
    pub name: String,
    /// e.g. `["pull", "push"]`
    pub actions: Vec<String>,
}

impl Access {
    /// `Access { kind: "repository", name, actions }`.
    pub fn repository(name: &str, actions: &[&str]) -> Self {
        Access {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }
}

/// What the token server saw in one request (every request is recorded, including failures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target (path and query).
    pub uri: String,
    /// The `service` parameter.
    pub service: Option<String>,
    /// Individual scopes (`repository:test/x:pull,push`), GET's repeated `scope=` and POST's
    /// space-separated `scope` split apart.
    pub scopes: Vec<String>,
    /// GET's `account` parameter.
    pub account: Option<String>,
    /// `client_id` parameter.
    pub client_id: Option<String>,
    /// POST's `grant_type`.
    pub grant_type: Option<String>,
    /// The user name presented: Basic auth on GET, the `username` form field on POST.
    pub username: Option<String>,
    /// Whether a user name was presented and its password matched.
    pub password_ok: bool,
    /// The HTTP status answered.
    pub status: u16,
    /// The access granted in the issued token (empty if none was issued).
    pub granted: Vec<Access>,
}

#[derive(Clone, Debug)]
struct User {
    password: String,
    actions: Vec<String>,
}

#[derive(Clone, Debug)]
struct Config {
    users: BTreeMap<String, User>,
    anonymous_pull: bool,
    post_only: bool,
    expires_in: u64,
}

/// Builder for [`TokenServer`].
#[derive(Clone, Debug)]
pub struct TokenServerBuilder {
    config: Config,
    service: String,
    issuer: String,
    x5c: bool,
}

impl Default for TokenServerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenServerBuilder {
    /// No users, no anonymous access, GET and POST, tokens valid 300 s, service
    /// `test-registry`, issuer `test-issuer`.
    pub fn new() -> Self {
        TokenServerBuilder {
            config: Config {
                users: BTreeMap::new(),
                anonymous_pull: false,
                post_only: false,
                expires_in: 300,
            },
            service: "test-registry".into(),
            issuer: "test-issuer".into(),
            x5c: false,
        }
    }

    /// Also puts the signer's certificate in the JWT header (`x5c`). distribution v3 no longer knows
    /// libtrust key ids: it finds the key by `x5c` (a chain to `rootcertbundle`), `jwk`, or a `kid`
    /// that is the RFC 7638 thumbprint. Registry 2.8 accepts `x5c` as well.
    pub fn x5c(mut self, on: bool) -> Self {
        self.x5c = on;
        self
    }

    /// Adds a user granted [`DEFAULT_USER_ACTIONS`] (∩ what is requested).
    pub fn user(self, user: &str, password: &str) -> Self {
        self.user_with_actions(user, password, DEFAULT_USER_ACTIONS)
    }

    /// Adds a user granted `actions` (∩ what is requested) on every repository.
    pub fn user_with_actions(mut self, user: &str, password: &str, actions: &[&str]) -> Self {
        self.config.users.insert(
            user.into(),
            User {
                password: password.into(),
                actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            },
        );
        self
    }

    /// Requests without credentials get `pull` (∩ requested). Default: no access at all (the
    /// token is still issued, with an empty `access`, as Docker Hub does).
    pub fn anonymous_pull(mut self, on: bool) -> Self {
        self.config.anonymous_pull = on;
        self
    }

    /// `GET /token` answers 405, so a client must use the OAuth2 `POST /token`.
    pub fn post_only(mut self, on: bool) -> Self {
        self.config.post_only = on;
        self
    }

    /// Token lifetime in seconds (`exp = now + secs`, `expires_in = secs`).
    pub fn expires_in(mut self, secs: u64) -> Self {
        self.config.expires_in = secs;
        self
    }

    /// The service name (JWT `aud`; the registry's `auth.token.service`).
    pub fn service(mut self, service: &str) -> Self {
        self.service = service.into();
        self
    }

    /// The issuer (JWT `iss`; the registry's `auth.token.issuer`).
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// Starts the server on 127.0.0.1 (free port) in its own thread and tokio runtime, so it
    /// works from sync tests and from any async runtime flavour alike.
    pub fn start(self) -> TokenServer {
        TokenServer::start(self)
    }
}

struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    cert_pem: String,
    /// base64 (standard) DER of the certificate, when tokens carry `x5c`.
    x5c: Option<String>,
    rng: SystemRandom,
}

struct State {
    config: Mutex<Config>,
    requests: Mutex<Vec<TokenRequest>>,
    signer: Signer,
    service: String,
    issuer: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A Distribution token-auth server (ES256 JWTs with a libtrust `kid`), 127.0.0.1 only.
///
/// Endpoints:
/// * `GET /token?service=S&scope=…(repeatable)&account=A` with optional Basic auth →
///   `{"token","access_token","expires_in","issued_at"}`;
/// * `POST /token` (form: `grant_type=password`, `username`, `password`, `service`,
///   `scope` space-separated, `client_id`) → `{"access_token","expires_in"}`.
///
/// Wrong credentials → 401 with a JSON error. A `service` other than [`TokenServer::service`]
/// → 400. Every request is recorded, see [`TokenServer::requests`].
pub struct TokenServer {
    state: Arc<State>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("addr", &self.addr)
            .field("service", &self.state.service)
            .field("issuer", &self.state.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenServer {
    /// A builder; see [`TokenServerBuilder`].
    pub fn builder() -> TokenServerBuilder {
        TokenServerBuilder::new()
    }

    fn start(b: TokenServerBuilder) -> TokenServer {
        let mut signer = Signer::generate();
        if !b.x5c {
            signer.x5c = None;
        }
        let state = Arc::new(State {
            config: Mutex::new(b.config),
            requests: Mutex::new(Vec::new()),
            signer,
            service: b.service,
            issuer: b.issuer,
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("token server: cannot bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("token server: set_nonblocking");
        let addr = listener.local_addr().expect("token server: local_addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("testkit-token-server-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("token server: build tokio runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("token server: register listener");
                    tokio::select! {
                        _ = rx => {}
                        _ = accept_loop(listener, thread_state) => {}
                    }
                });
                // Dropping the runtime here cancels the connection tasks.
            })
            .expect("token server: spawn thread");
        TokenServer {
            state,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// The listening address (127.0.0.1:PORT).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint, `http://127.0.0.1:PORT/token` (the registry's `auth.token.realm`).
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The service name (JWT `aud`).
    pub fn service(&self) -> String {
        self.state.service.clone()
    }

    /// The issuer (JWT `iss`).
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// The libtrust key id put in the JWT header `kid`.
    pub fn kid(&self) -> String {
        self.state.signer.kid.clone()
    }

    /// The self-signed certificate of the signing key, PEM (the registry's
    /// `auth.token.rootcertbundle`).
    pub fn cert_pem(&self) -> String {
        self.state.signer.cert_pem.clone()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.state.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }

    /// Adds or replaces a user (granted [`DEFAULT_USER_ACTIONS`]) while running — e.g. to
    /// rotate a password mid-test.
    pub fn set_user(&self, user: &str, password: &str) {
        self.set_user_with_actions(user, password, DEFAULT_USER_ACTIONS);
    }

    /// Adds or replaces a user with explicit actions while running.
    pub fn set_user_with_actions(&self, user: &str, password: &str, actions: &[&str]) {
        lock(&self.state.config).users.insert(
            user.into(),
            User {
                password: password.into(),
                actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            },
        );
    }

    /// Removes a user while running.
    pub fn remove_user(&self, user: &str) {
        lock(&self.state.config).users.remove(user);
    }

    /// Switches anonymous pull on or off while running.
    pub fn set_anonymous_pull(&self, on: bool) {
        lock(&self.state.config).anonymous_pull = on;
    }

    /// Switches post-only mode on or off while running.
    pub fn set_post_only(&self, on: bool) {
        lock(&self.state.config).post_only = on;
    }

    /// Mints a token directly (no request recorded), e.g. to hand a client a ready token.
    pub fn mint_token(&self, subject: &str, access: &[Access], expires_in: u64) -> String {
        self.state.mint(subject, access, expires_in)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(state.handle(req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

impl Signer {
    fn generate() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("token server: generate P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("token server: load P-256 key");
        let rc_key = KeyPair::try_from(pkcs8.as_ref()).expect("token server: key for rcgen");
        let kid = libtrust_kid(&rc_key.subject_public_key_info());
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("cert params");
        params
            .distinguished_name
            .push(DnType::CommonName, "connectors-testkit token signer");
        let cert = params
            .self_signed(&rc_key)
            .expect("token server: self-sign signer certificate");
        Signer {
            key,
            kid,
            cert_pem: cert.pem(),
            x5c: Some(STANDARD.encode(cert.der())),
            rng,
        }
    }
}

/// The libtrust key id of a public key: base32(sha256(DER SubjectPublicKeyInfo)[..30]) without
/// padding, in 4-character groups joined by `:`.
pub(crate) fn libtrust_kid(spki_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki_der);
    let b32 = base32(&digest.as_ref()[..30]);
    b32.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 4648 base32, no padding.
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    for &byte in data {
        buffer = (buffer << 8) | u64::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn parse_scope(scope: &str) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    Some(Access {
        kind: kind.into(),
        name: name.into(),
        actions: actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

enum Who {
    Anonymous,
    User(String, Vec<String>),
    BadCredentials(String),
}

impl State {
    fn mint(&self, subject: &str, access: &[Access], expires_in: u64) -> String {
        let now = now_secs();
        let mut jti = [0u8; 16];
        self.signer.rng.fill(&mut jti).expect("random jti");
        let mut header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": self.signer.kid});
        if let Some(der) = &self.signer.x5c {
            header["x5c"] = serde_json::json!([der]);
        }
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + expires_in,
            "nbf": now,
            "iat": now,
            "jti": crate::util::hex(&jti),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .signer
            .key
            .sign(&self.signer.rng, signing_input.as_bytes())
            .expect("ES256 sign");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn authenticate(&self, user: Option<(&str, &str)>) -> Who {
        let config = lock(&self.config);
        match user {
            None => Who::Anonymous,
            Some((name, password)) => match config.users.get(name) {
                Some(u) if u.password == password => Who::User(name.into(), u.actions.clone()),
                _ => Who::BadCredentials(name.into()),
            },
        }
    }

    fn grant(&self, who: &Who, scopes: &[String]) -> Vec<Access> {
        let allowed: Vec<String> = match who {
            Who::User(_, actions) => actions.clone(),
            Who::Anonymous if lock(&self.config).anonymous_pull => vec!["pull".into()],
            _ => Vec::new(),
        };
        scopes
            .iter()
            .filter_map(|s| parse_scope(s))
            .filter_map(|mut a| {
                a.actions.retain(|act| allowed.contains(act));
                (!a.actions.is_empty()).then_some(a)
            })
            .collect()
    }

    fn record(&self, r: TokenRequest) {
        lock(&self.requests).push(r);
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let uri = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let mut rec = TokenRequest {
            method: method.to_string(),
            uri: uri.clone(),
            service: None,
            scopes: Vec::new(),
            account: None,
            client_id: None,
            grant_type: None,
            username: None,
            password_ok: false,
            status: 0,
            granted: Vec::new(),
        };
        let resp = if req.uri().path() != "/token" {
            json_response(
                StatusCode::NOT_FOUND,
                serde_json::json!({"errors": [{"code": "NOT_FOUND", "message": "only /token here"}]}),
            )
        } else if method == Method::GET {
            self.handle_get(req, &mut rec)
        } else if method == Method::POST {
            self.handle_post(req, &mut rec).await
        } else {
            let mut r = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"errors": [{"code": "UNSUPPORTED", "message": "use GET or POST"}]}),
            );
            r.headers_mut().insert(
                "allow",
                hyper::header::HeaderValue::from_static("GET, POST"),
            );
            r
        };
        rec.status = resp.status().as_u16();
        self.record(rec);
        resp
    }

    fn check_service(&self, rec: &TokenRequest) -> Option<Response<Full<Bytes>>> {
        match &rec.service {
            Some(s) if *s != self.service => Some(json_response(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"errors": [{"code": "DENIED",
                    "message": format!("unknown service {s:?}; this server issues tokens for {:?}", self.service)}]}),
            )),
            _ => None,
        }
    }

    fn handle_get(&self, req: Request<Incoming>, rec: &mut TokenRequest) -> Response<Full<Bytes>> {
        let query = req.uri().query().unwrap_or("");
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "service" => rec.service = Some(v.into_owned()),
                "scope" => rec
                    .scopes
                    .extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned)),
                "account" => rec.account = Some(v.into_owned()),
                "client_id" => rec.client_id = Some(v.into_owned()),
                _ => {}
            }
        }
        let basic = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("basic")
                    .then(|| STANDARD.decode(rest.trim()).ok())
                    .flatten()
            })
            .map(|raw| {
                let s = String::from_utf8_lossy(&raw).into_owned();
                match s.split_once(':') {
                    Some((u, p)) => (u.to_owned(), p.to_owned()),
                    None => (s, String::new()),
                }
            });
        rec.username = basic.as_ref().map(|(u, _)| u.clone());
        if lock(&self.config).post_only {
            let mut r = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"errors": [{"code": "UNSUPPORTED",
                    "message": "GET is disabled on this token server; use the OAuth2 POST"}]}),
            );
            r.headers_mut()
                .insert("allow", hyper::header::HeaderValue::from_static("POST"));
            return r;
        }
        if let Some(r) = self.check_service(rec) {
            return r;
        }
        let who = self.authenticate(basic.as_ref().map(|(u, p)| (u.as_str(), p.as_str())));
        if let Who::BadCredentials(user) = &who {
            let mut r = json_response(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"errors": [{"code": "UNAUTHORIZED",
                    "message": format!("authentication failed for user {user:?}")}]}),
            );
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Basic realm=\"testkit-token\""),
            );
            return r;
        }
        rec.password_ok = matches!(who, Who::User(..));
        rec.granted = self.grant(&who, &rec.scopes);
        let subject = match &who {
            Who::User(u, _) => u.clone(),
            _ => String::new(),
        };
        let expires_in = lock(&self.config).expires_in;
        let token = self.mint(&subject, &rec.granted, expires_in);
        let issued_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        json_response(
            StatusCode::OK,
            serde_json::json!({
                "token": token,
                "access_token": token,
                "expires_in": expires_in,
                "issued_at": issued_at,
            }),
        )
    }

    async fn handle_post(
        &self,
        req: Request<Incoming>,
        rec: &mut TokenRequest,
    ) -> Response<Full<Bytes>> {
        let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "invalid_request", "error_description": format!("cannot read body: {e}")}),
                );
            }
        };
        let mut password = None;
        for (k, v) in url::form_urlencoded::parse(&body) {
            match &*k {
                "service" => rec.service = Some(v.into_owned()),
                "scope" => rec
                    .scopes
                    .extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned)),
                "client_id" => rec.client_id = Some(v.into_owned()),
                "grant_type" => rec.grant_type = Some(v.into_owned()),
                "username" => rec.username = Some(v.into_owned()),
                "password" => password = Some(v.into_owned()),
                _ => {}
            }
        }
        if let Some(r) = self.check_service(rec) {
            return r;
        }
        match rec.grant_type.as_deref() {
            Some("password") => {}
            Some(other) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "unsupported_grant_type",
                        "error_description": format!("grant_type {other:?} is not supported here; use \"password\"")}),
                );
            }
            None => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "invalid_request", "error_description": "missing grant_type"}),
                );
            }
        }
        let (Some(user), Some(password)) = (rec.username.clone(), password) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "invalid_request",
                    "error_description": "grant_type=password needs username and password"}),
            );
        };
        let who = self.authenticate(Some((&user, &password)));
        if let Who::BadCredentials(user) = &who {
            return json_response(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "invalid_grant",
                    "error_description": format!("authentication failed for user {user:?}")}),
            );
        }
        rec.password_ok = true;
        rec.granted = self.grant(&who, &rec.scopes);
        let expires_in = lock(&self.config).expires_in;
        let token = self.mint(&user, &rec.granted, expires_in);
        json_response(
            StatusCode::OK,
            serde_json::json!({"access_token": token, "expires_in": expires_in}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_format_matches_python_reference() {
        // python3: base64.b32encode(hashlib.sha256(b'hello').digest()[:30]) grouped by 4
        assert_eq!(
            libtrust_kid(b"hello"),
            "FTZE:3OS7:WCRQ:4JXI:HMVM:LOPC:TYNR:MHS4:D6TU:EXTT:AQZW:FE4L"
        );
    }

    #[test]
    fn base32_rfc4648_vectors() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fo"), "MZXQ");
        assert_eq!(base32(b"foo"), "MZXW6");
        assert_eq!(base32(b"foob"), "MZXW6YQ");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(
            parse_scope("repository:a/b:pull,push"),
            Some(Access::repository("a/b", &["pull", "push"]))
        );
        assert_eq!(
            parse_scope("repository:localhost:5000/a:pull"),
            Some(Access::repository("localhost:5000/a", &["pull"]))
        );
        let cat = parse_scope("registry:catalog:*").unwrap();
        assert_eq!(
            (cat.kind.as_str(), cat.name.as_str()),
            ("registry", "catalog")
        );
        assert_eq!(parse_scope("nonsense"), None);
    }

    #[test]
    fn jwt_shape_and_signature() {
        let ts = TokenServer::builder().user("u", "p").start();
        let token = ts.mint_token("u", &[Access::repository("x/y", &["pull"])], 60);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], ts.kid().as_str());
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], "test-registry");
        assert!(claims["aud"].is_string());
        assert_eq!(claims["iss"], "test-issuer");
        assert_eq!(claims["access"][0]["type"], "repository");
        assert_eq!(claims["access"][0]["name"], "x/y");
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(sig.len(), 64, "ES256 JWS signatures are raw r||s");
        let public = ring::signature::KeyPair::public_key(&ts.state.signer.key);
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .expect("signature verifies");
    }
}
