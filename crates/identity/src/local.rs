//! Embedded-mode proxy tokens: signed with an Ed25519 key kept in the state folder.
//!
//! Format: `ct1.<base64url(JSON claims)>.<base64url(Ed25519 signature over "ct1.<claims>")>`, unpadded. Only
//! base64url characters and `.` occur, so a token can be the password of HTTP Basic credentials and sit in a URL
//! userinfo (`http://ns%2Fname:<token>@proxy`) without escaping. The `ct1` prefix versions the format: a change
//! to the claims' meaning gets a new prefix, which is why unknown claims are refused rather than ignored.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use connectors_model::{ConnectorRef, SecretString};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::{Allowed, AuthError, Authenticator, Authorizer, IdentityError, Principal};

/// The signing key's file name inside the state folder.
pub const KEY_FILE_NAME: &str = "signing.key";
/// The longest lifetime [`LocalTokens::issue`] accepts. Tokens cannot be revoked (only the whole key can, by
/// deleting it), so they must stay short-lived.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

const PREFIX: &str = "ct1.";
/// Both an issuing and a verification limit: a token this size still fits a 16 KiB header once wrapped in Basic.
const MAX_TOKEN_LEN: usize = 8 * 1024;
const MAX_SUBJECT_LEN: usize = 256;
/// A PKCS#8 v2 Ed25519 document is 83 bytes; anything far bigger is not our key.
const MAX_KEY_FILE_LEN: u64 = 4096;
const ED25519_SIGNATURE_LEN: usize = 64;
const ANY_CONNECTOR: &str = "*";
/// How many verified tokens [`LocalTokens`] remembers. Only tokens whose signature verified get in, so the
/// cache cannot be filled by an attacker without the signing key; when full, expired entries go first, then all.
const VERIFIED_CACHE_CAPACITY: usize = 4096;

/// The signed claims. Issuing writes them with `serde_json::json!` (infallible); this struct reads them back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    sub: String,
    #[allow(dead_code)]
    // Part of the format for audit and debugging; verification needs only `exp`.
    iat: u64,
    exp: u64,
    con: Vec<String>,
    #[allow(dead_code)]
    // Makes every token unique, so two issued in the same second are told apart in logs.
    jti: String,
}

/// Issues and verifies embedded-mode proxy tokens; implements both [`Authenticator`] and [`Authorizer`].
pub struct LocalTokens {
    key: Ed25519KeyPair,
    key_path: PathBuf,
    rng: SystemRandom,
    /// Tokens already verified, by the SHA-256 of their text. A client sends the same token on every request,
    /// and checking an Ed25519 signature was ~40 % of the proxy's CPU for small requests (bench/RESULTS.md);
    /// a hash and a lookup cost a small fraction of that. A token's bytes fix its claims, so the only thing that
    /// can change between two checks is the clock: a hit is still refused once the token has expired.
    verified: Mutex<HashMap<[u8; 32], Principal>>,
}

impl fmt::Debug for LocalTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The public key identifies which key is in use without revealing anything that signs.
        f.debug_struct("LocalTokens")
            .field("key_path", &self.key_path)
            .field(
                "public_key",
                &URL_SAFE_NO_PAD.encode(self.key.public_key().as_ref()),
            )
            .finish_non_exhaustive()
    }
}

impl LocalTokens {
    /// Loads `<state_dir>/signing.key`, creating the folder (mode 0700) and the key (mode 0600) when missing.
    ///
    /// Refuses a key file that group or others can access, since anyone who reads it can mint tokens.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, IdentityError> {
        ensure_state_dir(state_dir)?;
        let key_path = state_dir.join(KEY_FILE_NAME);
        let rng = SystemRandom::new();
        let pkcs8 = match read_key(&key_path)? {
            Some(pkcs8) => pkcs8,
            None => create_key(&key_path, &rng)?,
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|err| IdentityError::KeyCorrupt {
            path: key_path.clone(),
            reason: format!("not an Ed25519 PKCS#8 key: {err}"),
        })?;
        Ok(Self {
            key,
            key_path,
            rng,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Where the signing key lives.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// Issues a token for `subject` that may use `allowed` and expires after `ttl` (more than zero, at most
    /// [`MAX_TOKEN_TTL`]; whole seconds, rounded up).
    pub fn issue(
        &self,
        subject: &str,
        allowed: &Allowed,
        ttl: Duration,
    ) -> Result<SecretString, IdentityError> {
        self.issue_at(subject, allowed, ttl, SystemTime::now())
    }

    /// [`LocalTokens::issue`] as if the clock read `now`; for tests and tools.
    pub fn issue_at(
        &self,
        subject: &str,
        allowed: &Allowed,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<SecretString, IdentityError> {
        check_subject(subject)?;
        if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
            return Err(IdentityError::InvalidTtl {
                ttl,
                max: MAX_TOKEN_TTL,
            });
        }
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| IdentityError::Clock)?
            .as_secs();
        // Rounded up so a sub-second lifetime still gives a token that is valid for a moment.
        let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let exp = iat.checked_add(ttl_secs).ok_or(IdentityError::Clock)?;
        let con = match allowed {
            Allowed::Any => vec![ANY_CONNECTOR.to_owned()],
            Allowed::Only(list) => {
                let mut seen = HashSet::new();
                let con: Vec<String> = list
                    .iter()
                    .filter(|c| seen.insert(*c))
                    .map(ToString::to_string)
                    .collect();
                if con.is_empty() {
                    return Err(IdentityError::NoConnectors);
                }
                con
            }
        };
        let claims = serde_json::json!({
            "sub": subject,
            "iat": iat,
            "exp": exp,
            "con": con,
            "jti": random_hex::<16>(&self.rng)?,
        })
        .to_string();

        let encoded_claims_len = base64::encoded_len(claims.len(), false).unwrap_or(0);
        // Sized up front so the String never reallocates and leaves an unzeroized copy of the signed token.
        let mut token = String::with_capacity(PREFIX.len() + encoded_claims_len + 1 + 86);
        token.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(claims.as_bytes(), &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        let token = SecretString::from(token);
        let len = token.expose().len();
        if len > MAX_TOKEN_LEN {
            return Err(IdentityError::TokenTooLarge {
                len,
                max: MAX_TOKEN_LEN,
            });
        }
        Ok(token)
    }

    /// Checks a token's shape, signature and expiry and returns who it was issued to.
    pub fn verify(&self, token: &SecretString) -> Result<Principal, AuthError> {
        self.verify_at(token, SystemTime::now())
    }

    /// [`LocalTokens::verify`] as if the clock read `now`; for tests and tools.
    pub fn verify_at(&self, token: &SecretString, now: SystemTime) -> Result<Principal, AuthError> {
        let token = token.expose();
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed(format!(
                "the proxy token is longer than {MAX_TOKEN_LEN} bytes"
            )));
        }
        let digest = digest_of(token);
        if let Some(principal) = self.cached(&digest) {
            return match principal.expires_at {
                Some(expired_at) if now >= expired_at => Err(AuthError::Expired { expired_at }),
                _ => Ok(principal),
            };
        }
        let principal = self.verify_uncached(token, now)?;
        self.remember(digest, &principal, now);
        Ok(principal)
    }

    /// How many verified tokens are remembered (for tests).
    #[cfg(test)]
    fn cached_len(&self) -> usize {
        self.verified.lock().map_or(0, |m| m.len())
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Principal> {
        // A poisoned lock only means another thread panicked mid-insert; verifying again is always correct.
        self.verified.lock().ok()?.get(digest).cloned()
    }

    fn remember(&self, digest: [u8; 32], principal: &Principal, now: SystemTime) {
        let Ok(mut verified) = self.verified.lock() else {
            return;
        };
        if verified.len() >= VERIFIED_CACHE_CAPACITY {
            verified.retain(|_, p| p.expires_at.is_none_or(|exp| now < exp));
            if verified.len() >= VERIFIED_CACHE_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(digest, principal.clone());
    }

    fn verify_uncached(&self, token: &str, now: SystemTime) -> Result<Principal, AuthError> {
        let shape = || {
            malformed(
                "the proxy token is not of the form ct1.<claims>.<signature>; copy it again from \
                 `connectors token issue`",
            )
        };
        let body = token.strip_prefix(PREFIX).ok_or_else(shape)?;
        let (claims_b64, signature_b64) = body.split_once('.').ok_or_else(shape)?;
        if claims_b64.is_empty() || signature_b64.contains('.') {
            return Err(shape());
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| malformed("the proxy token's signature is not base64url"))?;
        // ring would refuse a wrong length as a bad signature; saying "cut off" points at the likelier cause.
        if signature.len() != ED25519_SIGNATURE_LEN {
            return Err(malformed(
                "the proxy token's signature has the wrong length; was the token cut off?",
            ));
        }
        let signed = token
            .get(..PREFIX.len() + claims_b64.len())
            .ok_or_else(shape)?;
        signature::UnparsedPublicKey::new(&signature::ED25519, self.key.public_key().as_ref())
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| AuthError::BadSignature)?;

        // From here on the claims are ours: errors mean a format mismatch between versions, not an attack.
        let json = URL_SAFE_NO_PAD
            .decode(claims_b64)
            .map_err(|_| malformed("the proxy token's claims are not base64url"))?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| {
            malformed(
                "the proxy token's claims do not parse; was it issued by another version of connectors?",
            )
        })?;
        if claims.exp < claims.iat {
            return Err(malformed("the proxy token expires before it was issued"));
        }
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(claims.exp))
            .ok_or_else(|| malformed("the proxy token's expiry is out of range"))?;
        if now >= expires_at {
            return Err(AuthError::Expired {
                expired_at: expires_at,
            });
        }
        let allowed = allowed_from_claim(&claims.con)?;
        Ok(Principal::new(claims.sub, allowed, Some(expires_at)))
    }

    /// [`Authorizer::authorize`] as if the clock read `now`.
    ///
    /// Expiry is checked again because the proxy may authenticate once per connection and authorize every
    /// request on it; a long-lived connection must not outlive its token.
    pub fn authorize_at(
        &self,
        principal: &Principal,
        connector: &ConnectorRef,
        now: SystemTime,
    ) -> Result<(), AuthError> {
        if let Some(expired_at) = principal.expires_at
            && now >= expired_at
        {
            return Err(AuthError::Expired { expired_at });
        }
        if principal.allowed.permits(connector) {
            Ok(())
        } else {
            Err(AuthError::NotAllowed {
                subject: principal.subject.clone(),
                connector: connector.clone(),
            })
        }
    }
}

#[async_trait]
impl Authenticator for LocalTokens {
    async fn authenticate(&self, token: &SecretString) -> Result<Principal, AuthError> {
        self.verify(token)
    }
}

#[async_trait]
impl Authorizer for LocalTokens {
    async fn authorize(
        &self,
        principal: &Principal,
        connector: &ConnectorRef,
    ) -> Result<(), AuthError> {
        self.authorize_at(principal, connector, SystemTime::now())
    }
}

fn digest_of(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    out
}

fn malformed(reason: impl Into<String>) -> AuthError {
    AuthError::Malformed(reason.into())
}

fn allowed_from_claim(con: &[String]) -> Result<Allowed, AuthError> {
    if let [only] = con
        && only == ANY_CONNECTOR
    {
        return Ok(Allowed::Any);
    }
    con.iter()
        .map(|entry| {
            entry
                .parse::<ConnectorRef>()
                .map_err(|_| malformed("the proxy token names an invalid connector"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Allowed::Only)
}

fn check_subject(subject: &str) -> Result<(), IdentityError> {
    let problem = if subject.trim().is_empty() {
        "it is empty"
    } else if subject.len() > MAX_SUBJECT_LEN {
        "it is longer than 256 bytes"
    } else if subject.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(IdentityError::InvalidSubject(problem.to_owned()))
}

fn random_hex<const N: usize>(rng: &SystemRandom) -> Result<String, IdentityError> {
    let mut bytes = [0u8; N];
    rng.fill(&mut bytes).map_err(|_| IdentityError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn ensure_state_dir(dir: &Path) -> Result<(), IdentityError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(IdentityError::StateDirNotADir {
            path: dir.to_owned(),
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                builder.mode(0o700);
            }
            builder
                .create(dir)
                .map_err(|source| IdentityError::StateDir {
                    path: dir.to_owned(),
                    source,
                })
        }
        Err(source) => Err(IdentityError::StateDir {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// The key file's bytes, or `None` when it does not exist.
fn read_key(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, IdentityError> {
    let read_err = |source| IdentityError::KeyRead {
        path: path.to_owned(),
        source,
    };
    let corrupt = |reason: &str| IdentityError::KeyCorrupt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(read_err(err)),
    };
    // Metadata of the open file, not the path, so the file checked is the file read.
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(corrupt("not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::KeyPermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(corrupt("larger than any Ed25519 key"));
    }
    Ok(Some(bytes))
}

/// Generates a key and puts it at `path`, unless another process got there first: then that key is used.
fn create_key(path: &Path, rng: &SystemRandom) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
    let document = Ed25519KeyPair::generate_pkcs8(rng).map_err(|_| IdentityError::Random)?;
    let pkcs8 = Zeroizing::new(document.as_ref().to_vec());
    // Race-free: two processes starting on a fresh folder agree on one key (crate::private_file).
    let created = crate::private_file::create_once(path, &pkcs8, 0o600).map_err(|source| {
        IdentityError::KeyWrite {
            path: path.to_owned(),
            source,
        }
    })?;
    match created {
        crate::private_file::Created::Written => {
            tracing::info!(path = %path.display(), "created a new token signing key");
            Ok(pkcs8)
        }
        crate::private_file::Created::Existed => {
            read_key(path)?.ok_or_else(|| IdentityError::KeyRead {
                path: path.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "the key file disappeared while it was being created",
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const HOUR: Duration = Duration::from_secs(3600);

    fn r(s: &str) -> ConnectorRef {
        s.parse().unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn tokens() -> (tempfile::TempDir, LocalTokens) {
        let dir = tempfile::tempdir().unwrap();
        let tokens = LocalTokens::load_or_create(&dir.path().join("state")).unwrap();
        (dir, tokens)
    }

    /// Signs arbitrary claims with the instance's key, to reach the checks that come after the signature.
    fn sign_raw(tokens: &LocalTokens, claims: &str) -> SecretString {
        let mut token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(claims));
        let signature = tokens.key.sign(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        SecretString::from(token)
    }

    #[tokio::test]
    async fn round_trip_through_the_traits() {
        let (_dir, tokens) = tokens();
        let tokens = Arc::new(tokens);
        let authenticator: Arc<dyn Authenticator> = tokens.clone();
        let authorizer: Arc<dyn Authorizer> = tokens.clone();

        let allowed = Allowed::Only(vec![r("team-a/prod"), r("team-b/dev"), r("team-a/prod")]);
        let before = SystemTime::now();
        let token = tokens.issue("ci-runner", &allowed, HOUR).unwrap();
        let principal = authenticator.authenticate(&token).await.unwrap();

        assert_eq!(principal.subject, "ci-runner");
        assert_eq!(
            principal.allowed,
            Allowed::Only(vec![r("team-a/prod"), r("team-b/dev")]),
            "duplicates are dropped at issue time"
        );
        let expires_at = principal.expires_at.unwrap();
        assert!(expires_at > before + HOUR - Duration::from_secs(2));
        assert!(expires_at <= SystemTime::now() + HOUR + Duration::from_secs(1));

        let cases = [
            ("team-a/prod", true),
            ("team-b/dev", true),
            ("team-a/dev", false),
            ("other/prod", false),
        ];
        for (connector, want) in cases {
            let result = authorizer.authorize(&principal, &r(connector)).await;
            match (want, result) {
                (true, Ok(())) => {}
                (
                    false,
                    Err(AuthError::NotAllowed {
                        subject,
                        connector: denied,
                    }),
                ) => {
                    assert_eq!(subject, "ci-runner");
                    assert_eq!(denied, r(connector));
                }
                (_, other) => panic!("{connector}: {other:?}"),
            }
        }

        let any = tokens.issue("admin", &Allowed::Any, HOUR).unwrap();
        let principal = authenticator.authenticate(&any).await.unwrap();
        assert_eq!(principal.allowed, Allowed::Any);
        authorizer.authorize(&principal, &r("x/y")).await.unwrap();
    }

    #[test]
    fn token_format() {
        let (_dir, tokens) = tokens();
        let token = tokens
            .issue_at(
                "me",
                &Allowed::Only(vec![r("ns/name")]),
                HOUR,
                at(1_700_000_000),
            )
            .unwrap();
        let text = token.expose();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'),
            "only base64url and '.', so it needs no escaping in Basic or a URL userinfo"
        );
        let parts: Vec<&str> = text.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "ct1");
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "me");
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_003_600);
        assert_eq!(claims["con"], serde_json::json!(["ns/name"]));
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(jti.len(), 32);
        assert!(jti.bytes().all(|b| b.is_ascii_hexdigit()));

        let any = tokens
            .issue_at("me", &Allowed::Any, HOUR, at(1_700_000_000))
            .unwrap();
        let claims = any.expose().split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["con"], serde_json::json!(["*"]));

        let again = tokens
            .issue_at("me", &Allowed::Any, HOUR, at(1_700_000_000))
            .unwrap();
        assert_ne!(any, again, "jti makes each token unique");
    }

    #[test]
    fn a_remembered_token_still_expires_and_a_tampered_twin_still_fails() {
        let (_dir, tokens) = tokens();
        let issued = 1_700_000_000;
        let token = tokens
            .issue_at("me", &Allowed::Only(vec![r("a/b")]), HOUR, at(issued))
            .unwrap();
        let first = tokens.verify_at(&token, at(issued + 1)).unwrap();
        assert_eq!(tokens.cached_len(), 1);
        // The second check is answered from the cache and says the same.
        assert_eq!(tokens.verify_at(&token, at(issued + 2)).unwrap(), first);
        assert_eq!(tokens.cached_len(), 1);
        // The clock still counts for a remembered token.
        assert!(matches!(
            tokens.verify_at(&token, at(issued + 3600)),
            Err(AuthError::Expired { .. })
        ));
        // A token differing in one signature character is another key in the cache and is checked in full.
        let text = token.expose();
        let last = text.chars().last().unwrap();
        let flipped = if last == 'A' { 'B' } else { 'A' };
        let tampered = SecretString::from(format!("{}{flipped}", &text[..text.len() - 1]));
        assert!(tokens.verify_at(&tampered, at(issued + 1)).is_err());
        assert_eq!(tokens.cached_len(), 1, "refused tokens are not remembered");
    }

    #[test]
    fn the_verified_cache_stays_bounded() {
        let (_dir, tokens) = tokens();
        let issued = 1_700_000_000;
        for i in 0..VERIFIED_CACHE_CAPACITY + 10 {
            // Half of them expire early, so the purge on the full cache has something to drop first.
            let ttl = if i % 2 == 0 {
                Duration::from_secs(1)
            } else {
                HOUR
            };
            let token = tokens
                .issue_at("me", &Allowed::Any, ttl, at(issued))
                .unwrap();
            tokens.verify_at(&token, at(issued)).unwrap();
        }
        assert!(tokens.cached_len() <= VERIFIED_CACHE_CAPACITY);
        let token = tokens
            .issue_at("me", &Allowed::Any, HOUR, at(issued))
            .unwrap();
        // Past the short-lived half's expiry: the purge keeps the long-lived ones.
        tokens.verify_at(&token, at(issued + 10)).unwrap();
        assert!(tokens.cached_len() <= VERIFIED_CACHE_CAPACITY);
        assert!(tokens.cached_len() > 0);
    }

    #[test]
    fn expiry() {
        let (_dir, tokens) = tokens();
        let issued = 1_700_000_000;
        let token = tokens
            .issue_at("me", &Allowed::Any, HOUR, at(issued))
            .unwrap();
        let exp = issued + 3600;
        let cases = [
            (issued, true),
            (exp - 1, true),
            (exp, false),
            (exp + 86_400, false),
        ];
        for (now, valid) in cases {
            match (valid, tokens.verify_at(&token, at(now))) {
                (true, Ok(principal)) => assert_eq!(principal.expires_at, Some(at(exp))),
                (false, Err(AuthError::Expired { expired_at })) => {
                    assert_eq!(expired_at, at(exp));
                }
                (_, other) => panic!("now={now}: {other:?}"),
            }
        }
        let err = tokens.verify_at(&token, at(exp)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "proxy token expired at 2023-11-14T23:13:20Z; issue a new one with `connectors token issue`"
        );

        // A principal that expires while a connection is open is refused by the authorizer too.
        let principal = tokens.verify_at(&token, at(issued)).unwrap();
        tokens
            .authorize_at(&principal, &r("a/b"), at(exp - 1))
            .unwrap();
        assert_eq!(
            tokens.authorize_at(&principal, &r("a/b"), at(exp)),
            Err(AuthError::Expired {
                expired_at: at(exp)
            })
        );
    }

    #[test]
    fn sub_second_ttl_rounds_up() {
        let (_dir, tokens) = tokens();
        let token = tokens
            .issue_at("me", &Allowed::Any, Duration::from_millis(1), at(100))
            .unwrap();
        let principal = tokens.verify_at(&token, at(100)).unwrap();
        assert_eq!(principal.expires_at, Some(at(101)));
    }

    #[test]
    fn issue_rejects_bad_requests() {
        let (_dir, tokens) = tokens();
        let one = Allowed::Only(vec![r("a/b")]);
        let many = Allowed::Only(
            (0..100)
                .map(|i| r(&format!("namespace-{i:03}/name-{0}.{0}", "x".repeat(55))))
                .collect(),
        );
        let none = Allowed::Only(vec![]);
        let long_subject = "s".repeat(257);
        let cases: Vec<(&str, &Allowed, Duration, &str)> = vec![
            ("me", &one, Duration::ZERO, "lifetime"),
            (
                "me",
                &one,
                MAX_TOKEN_TTL + Duration::from_secs(1),
                "lifetime",
            ),
            ("", &one, HOUR, "empty"),
            ("  ", &one, HOUR, "empty"),
            ("a\nb", &one, HOUR, "control"),
            (&long_subject, &one, HOUR, "longer"),
            ("me", &none, HOUR, "at least one connector"),
            ("me", &many, HOUR, "fit in a request header"),
        ];
        for (subject, allowed, ttl, part) in cases {
            let err = tokens
                .issue_at(subject, allowed, ttl, at(1_700_000_000))
                .unwrap_err();
            assert!(err.to_string().contains(part), "{subject:?} {ttl:?}: {err}");
        }
        for ttl in [Duration::from_secs(1), MAX_TOKEN_TTL] {
            tokens.issue_at("me", &one, ttl, at(1_700_000_000)).unwrap();
        }
        assert!(matches!(
            tokens.issue_at("me", &one, HOUR, UNIX_EPOCH - Duration::from_secs(1)),
            Err(IdentityError::Clock)
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let (_dir, tokens) = tokens();
        let now = at(1_700_000_000);
        let token = tokens
            .issue_at("me", &Allowed::Only(vec![r("a/b")]), HOUR, now)
            .unwrap();
        let parts: Vec<&str> = token.expose().split('.').collect();
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let widened = claims.replace("\"a/b\"", "\"*\"");
        assert_ne!(widened, claims);
        let forged = format!("ct1.{}.{}", URL_SAFE_NO_PAD.encode(&widened), parts[2]);
        assert_eq!(
            tokens.verify_at(&SecretString::from(forged), now),
            Err(AuthError::BadSignature)
        );

        let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        signature[10] ^= 1;
        let flipped = format!("ct1.{}.{}", parts[1], URL_SAFE_NO_PAD.encode(&signature));
        assert_eq!(
            tokens.verify_at(&SecretString::from(flipped), now),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn another_state_folder_is_another_key() {
        let (_a, first) = tokens();
        let (_b, second) = tokens();
        let token = first.issue("me", &Allowed::Any, HOUR).unwrap();
        assert_eq!(second.verify(&token), Err(AuthError::BadSignature));
        first.verify(&token).unwrap();
    }

    #[test]
    fn the_key_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalTokens::load_or_create(dir.path()).unwrap();
        let token = first.issue("me", &Allowed::Any, HOUR).unwrap();
        drop(first);
        let second = LocalTokens::load_or_create(dir.path()).unwrap();
        second.verify(&token).unwrap();
    }

    #[test]
    fn malformed_tokens() {
        let (_dir, tokens) = tokens();
        let now = at(1_700_000_000);
        let good = tokens.issue_at("me", &Allowed::Any, HOUR, now).unwrap();
        let good = good.expose();
        let (signed, signature) = good.rsplit_once('.').unwrap();
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "not of the form"),
            ("ct1.".into(), "not of the form"),
            ("ct1..sig".into(), "not of the form"),
            ("ct1.abc".into(), "not of the form"),
            (good.replacen("ct1.", "ct2.", 1), "not of the form"),
            (good.replacen("ct1.", "CT1.", 1), "not of the form"),
            (format!("{good}.extra"), "not of the form"),
            (format!("Bearer {good}"), "not of the form"),
            (
                "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln".into(),
                "not of the form",
            ),
            (format!("{signed}.!!!"), "base64url"),
            (format!("{signed}.{signature}="), "base64url"),
            (format!("{signed}.{}", &signature[..40]), "wrong length"),
            (format!("{signed}."), "wrong length"),
            ("ct1.☃.☃".into(), "base64url"),
            (
                format!("ct1.{}.x", "a".repeat(MAX_TOKEN_LEN)),
                "longer than",
            ),
        ];
        for (input, part) in cases {
            match tokens.verify_at(&SecretString::from(input.as_str()), now) {
                Err(AuthError::Malformed(reason)) => {
                    assert!(reason.contains(part), "{input:?}: {reason}");
                    assert!(!reason.contains(signature), "{reason}");
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn signed_but_unexpected_claims() {
        let (_dir, tokens) = tokens();
        let now = at(1_700_000_000);
        let cases = [
            ("not json", "do not parse"),
            (
                r#"{"sub":"me","iat":1,"exp":1800000000,"con":["*"]}"#,
                "do not parse",
            ),
            (
                r#"{"sub":"me","iat":1,"exp":1800000000,"con":["*"],"jti":"00","aud":"x"}"#,
                "do not parse",
            ),
            (
                r#"{"sub":"me","iat":1,"exp":"soon","con":["*"],"jti":"00"}"#,
                "do not parse",
            ),
            (
                r#"{"sub":"me","iat":1,"exp":1800000000,"con":["*","a/b"],"jti":"00"}"#,
                "invalid connector",
            ),
            (
                r#"{"sub":"me","iat":1,"exp":1800000000,"con":["Not/Valid"],"jti":"00"}"#,
                "invalid connector",
            ),
            (
                r#"{"sub":"me","iat":1800000001,"exp":1800000000,"con":["*"],"jti":"00"}"#,
                "expires before",
            ),
            (
                r#"{"sub":"me","iat":1,"exp":18446744073709551615,"con":["*"],"jti":"00"}"#,
                "out of range",
            ),
        ];
        for (claims, part) in cases {
            match tokens.verify_at(&sign_raw(&tokens, claims), now) {
                Err(AuthError::Malformed(reason)) => {
                    assert!(reason.contains(part), "{claims}: {reason}")
                }
                other => panic!("{claims}: {other:?}"),
            }
        }
        // An empty list is well-formed and allows nothing; `issue` never writes one.
        let nothing = sign_raw(
            &tokens,
            r#"{"sub":"me","iat":1,"exp":1800000000,"con":[],"jti":"00"}"#,
        );
        let principal = tokens.verify_at(&nothing, now).unwrap();
        assert!(matches!(
            tokens.authorize_at(&principal, &r("a/b"), now),
            Err(AuthError::NotAllowed { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_and_folder_permissions() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;

        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/state");
        let tokens = LocalTokens::load_or_create(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(tokens.key_path(), state.join(KEY_FILE_NAME));
        assert_eq!(mode(tokens.key_path()), 0o600);
        let leftovers: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            [KEY_FILE_NAME],
            "no temporary files are left behind"
        );

        let key = tokens.key_path().to_owned();
        let cases = [
            (0o600, true),
            (0o400, true),
            (0o700, true),
            (0o644, false),
            (0o640, false),
            (0o604, false),
            (0o620, false),
            (0o666, false),
        ];
        for (file_mode, ok) in cases {
            fs::set_permissions(&key, fs::Permissions::from_mode(file_mode)).unwrap();
            match (ok, LocalTokens::load_or_create(&state)) {
                (true, Ok(_)) => {}
                (false, Err(err @ IdentityError::KeyPermissions { .. })) => {
                    let text = err.to_string();
                    assert!(
                        text.contains(&format!("chmod 600 {}", key.display())),
                        "{text}"
                    );
                }
                (_, other) => panic!("{file_mode:o}: {other:?}"),
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn corrupt_key_files_name_the_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let cases: [&[u8]; 4] = [b"", b"garbage", &[0x30; 83], &[0u8; 5000]];
        for content in cases {
            let dir = tempfile::tempdir().unwrap();
            let key = dir.path().join(KEY_FILE_NAME);
            fs::write(&key, content).unwrap();
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
            let err = LocalTokens::load_or_create(dir.path()).unwrap_err();
            assert!(matches!(err, IdentityError::KeyCorrupt { .. }), "{err:?}");
            assert!(
                err.to_string().contains(&key.display().to_string()),
                "{err}"
            );
        }

        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(KEY_FILE_NAME)).unwrap();
        fs::set_permissions(
            dir.path().join(KEY_FILE_NAME),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let err = LocalTokens::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");

        let file = dir.path().join("plain-file");
        fs::write(&file, b"x").unwrap();
        let err = LocalTokens::load_or_create(&file).unwrap_err();
        assert!(
            matches!(err, IdentityError::StateDirNotADir { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn concurrent_first_start_agrees_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let all: Vec<LocalTokens> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| LocalTokens::load_or_create(&state).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let token = all[0].issue("me", &Allowed::Any, HOUR).unwrap();
        for tokens in &all {
            tokens.verify(&token).unwrap();
        }
    }

    #[test]
    fn debug_prints_no_token_or_key() {
        let (_dir, tokens) = tokens();
        let now = at(1_700_000_000);
        let token = tokens
            .issue_at("me", &Allowed::Only(vec![r("a/b")]), HOUR, now)
            .unwrap();
        let signature = token.expose().rsplit_once('.').unwrap().1.to_owned();
        let principal = tokens.verify_at(&token, now).unwrap();
        let errors = [
            tokens.verify_at(&token, at(2_000_000_000)).unwrap_err(),
            tokens.authorize_at(&principal, &r("c/d"), now).unwrap_err(),
            tokens
                .verify_at(&SecretString::from(format!("{}x", token.expose())), now)
                .unwrap_err(),
        ];
        let mut printed = vec![
            format!("{tokens:?}"),
            format!("{token:?}"),
            format!("{token}"),
            format!("{principal:?}"),
        ];
        for err in &errors {
            printed.push(format!("{err:?}"));
            printed.push(err.to_string());
        }
        for text in printed {
            assert!(!text.contains(&signature), "{text}");
            assert!(!text.contains(token.expose()), "{text}");
        }
    }
}
