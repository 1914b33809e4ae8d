//! Turning a Secret into what the proxy sends upstream: registry credentials and extra CAs.

use base64::Engine as _;
use zeroize::Zeroize;

use crate::kube_secret::{
    SECRET_TYPE_BASIC_AUTH, SECRET_TYPE_DISTRIBUTION_TOKEN, SECRET_TYPE_DOCKER_CONFIG_JSON,
};
use crate::{Endpoint, ModelError, Secret, SecretString};

/// What the proxy uses to authenticate to the upstream registry (Basic, or Basic to the token
/// realm followed by Bearer). `Debug` never shows the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryCredentials {
    /// No secret: tokens are fetched without credentials, requests go out unauthenticated.
    Anonymous,
    Basic {
        username: String,
        password: SecretString,
    },
}

impl RegistryCredentials {
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Self::Anonymous)
    }
}

/// The secret types [`credentials_from_secret`] reads.
pub const REGISTRY_SECRET_TYPES: [&str; 3] = [
    SECRET_TYPE_DISTRIBUTION_TOKEN,
    SECRET_TYPE_BASIC_AUTH,
    SECRET_TYPE_DOCKER_CONFIG_JSON,
];

/// Reads registry credentials for `registry` from `secret`.
///
/// Besides the `oci` class's own `cpaas.io/distribution-registry-token`, basic-auth and
/// dockerconfigjson Secrets are accepted because those are what users already hold; for the
/// latter the `auths` entry for the registry's host is picked. Errors name the secret and key,
/// never a value.
pub fn credentials_from_secret(
    secret: &Secret,
    registry: &Endpoint,
) -> Result<RegistryCredentials, ModelError> {
    match secret.secret_type() {
        SECRET_TYPE_DISTRIBUTION_TOKEN | SECRET_TYPE_BASIC_AUTH => {
            let username = required_text(secret, "username")?;
            let password = required_text(secret, "password")?;
            basic(username, password, || {
                ModelError::InvalidSecretValue {
                secret: secret.display_name(),
                key: "username".to_owned(),
                reason: "a registry user name cannot contain ':' (HTTP Basic authentication separates user and password with it)".to_owned(),
            }
            })
        }
        SECRET_TYPE_DOCKER_CONFIG_JSON => docker_config_credentials(secret, registry),
        other => Err(ModelError::UnsupportedSecretType {
            secret: secret.display_name(),
            secret_type: other.to_owned(),
            accepted: REGISTRY_SECRET_TYPES.join(", "),
        }),
    }
}

fn required_text(secret: &Secret, key: &str) -> Result<String, ModelError> {
    secret
        .text_value(key)?
        .ok_or_else(|| ModelError::MissingSecretKey {
            secret: secret.display_name(),
            secret_type: secret.secret_type().to_owned(),
            key: key.to_owned(),
        })
}

fn basic(
    username: String,
    password: String,
    colon_error: impl FnOnce() -> ModelError,
) -> Result<RegistryCredentials, ModelError> {
    if username.contains(':') {
        let mut password = password;
        password.zeroize();
        return Err(colon_error());
    }
    Ok(RegistryCredentials::Basic {
        username,
        password: SecretString::from(password),
    })
}

const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";

fn docker_config_credentials(
    secret: &Secret,
    registry: &Endpoint,
) -> Result<RegistryCredentials, ModelError> {
    let invalid = |reason: String| ModelError::InvalidDockerConfig {
        secret: secret.display_name(),
        reason,
    };
    let raw = secret
        .value(DOCKER_CONFIG_KEY)?
        .ok_or_else(|| ModelError::MissingSecretKey {
            secret: secret.display_name(),
            secret_type: secret.secret_type().to_owned(),
            key: DOCKER_CONFIG_KEY.to_owned(),
        })?;
    let parsed = serde_json::from_slice::<serde_json::Value>(&raw);
    let mut raw = raw;
    raw.zeroize();
    // serde_json's messages can quote input; only its position is passed on.
    let doc = parsed.map_err(|e| {
        invalid(format!(
            "is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let auths = doc
        .get("auths")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| invalid("has no `auths` object".to_owned()))?;

    let mut candidates: Vec<(u8, &String, &serde_json::Value)> = auths
        .iter()
        .filter_map(|(key, entry)| match_rank(key, registry).map(|rank| (rank, key, entry)))
        .collect();
    candidates.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let Some((_, key, entry)) = candidates.first() else {
        let mut available: Vec<String> = auths.keys().cloned().collect();
        available.sort();
        return Err(ModelError::NoDockerConfigEntry {
            secret: secret.display_name(),
            registry: registry.authority(),
            available,
        });
    };
    let field = |name: &str| entry.get(name).and_then(serde_json::Value::as_str);
    let colon_error = || {
        invalid(format!(
            "the user name of `auths` entry {key:?} contains ':'"
        ))
    };

    if let Some(auth) = field("auth").filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let Some(mut decoded) = decoded else {
            return Err(invalid(format!(
                "the `auth` field of `auths` entry {key:?} is not base64 of <user>:<password>"
            )));
        };
        let split = decoded
            .split_once(':')
            .map(|(u, p)| (u.to_owned(), p.to_owned()));
        decoded.zeroize();
        let Some((username, password)) = split else {
            return Err(invalid(format!(
                "the `auth` field of `auths` entry {key:?} decodes to text without ':' (expected <user>:<password>)"
            )));
        };
        return basic(username, password, colon_error);
    }
    match (field("username"), field("password")) {
        (Some(username), Some(password)) => {
            basic(username.to_owned(), password.to_owned(), colon_error)
        }
        (Some(_), None) => Err(invalid(format!(
            "`auths` entry {key:?} has a `username` but no `password`"
        ))),
        _ if entry.get("identitytoken").is_some() || entry.get("registrytoken").is_some() => {
            Err(invalid(format!(
                "`auths` entry {key:?} holds an identity/registry token, which is not supported; store `auth` or `username` and `password`"
            )))
        }
        _ => Err(invalid(format!(
            "`auths` entry {key:?} has neither `auth` nor `username` and `password`"
        ))),
    }
}

/// Docker Hub answers under several names; a config written for one must work for the others.
const DOCKER_HUB_HOSTS: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// How well an `auths` key names `registry`: `Some(0)` with a matching explicit port, `Some(1)` with
/// no port and the registry on its scheme's default port, `None` for no match. Keys come as
/// `host`, `host:port`, `https://host[:port]` or a URL with a path (`https://index.docker.io/v1/`).
fn match_rank(key: &str, registry: &Endpoint) -> Option<u8> {
    let key = key.trim();
    let rest = match key.find("://") {
        Some(i) => &key[i + 3..],
        None => key,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = split_host_port(authority)?;
    let same_host = host.eq_ignore_ascii_case(registry.host())
        || (DOCKER_HUB_HOSTS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
            && DOCKER_HUB_HOSTS.contains(&registry.host()));
    if !same_host {
        return None;
    }
    match port {
        Some(p) if p == registry.port() => Some(0),
        None if registry.port() == registry.scheme().default_port() => Some(1),
        _ => None,
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` → (host without brackets, port).
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None if authority.is_empty() => None,
        None => Some((authority, None)),
    }
}

/// The PEM text of a CA Secret (`caCertSecretRef`): values of keys ending in `.crt` or `.pem`, and
/// any other value holding a PEM block, in key order.
///
/// A `.crt`/`.pem` key without PEM text is an error rather than skipped, and so is a Secret with no
/// certificate at all: the user asked for a CA, and silently using none would only surface later as
/// an opaque TLS failure.
pub fn ca_pems_from_secret(secret: &Secret) -> Result<Vec<String>, ModelError> {
    let mut pems = Vec::new();
    for key in secret.keys() {
        let named_as_cert = key.ends_with(".crt") || key.ends_with(".pem");
        let Some(bytes) = secret.value(key)? else {
            continue;
        };
        let text = String::from_utf8(bytes).ok();
        match text {
            Some(text) if text.contains("-----BEGIN") => pems.push(text),
            _ if named_as_cert => {
                return Err(ModelError::InvalidSecretValue {
                    secret: secret.display_name(),
                    key: key.to_owned(),
                    reason: "a key ending in .crt or .pem must hold PEM text (-----BEGIN CERTIFICATE-----…)".to_owned(),
                });
            }
            _ => {}
        }
    }
    if pems.is_empty() {
        return Err(ModelError::NoCaCertificate {
            secret: secret.display_name(),
        });
    }
    Ok(pems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const CANARY: &str = "canary-pw-7f3a";

    fn secret(type_: &str, string_data: &[(&str, &str)], data: &[(&str, &str)]) -> Secret {
        let mut s = Secret {
            type_: Some(type_.to_owned()),
            string_data: string_data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            ..Secret::default()
        };
        s.metadata.name = "creds".into();
        s.metadata.namespace = Some("team-a".into());
        s
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn basic_creds(user: &str, pass: &str) -> RegistryCredentials {
        RegistryCredentials::Basic {
            username: user.into(),
            password: pass.into(),
        }
    }

    #[test]
    fn reads_username_password_types() {
        let registry = Endpoint::parse("https://registry.example.com").unwrap();
        let b64_user = b64("bob");
        let b64_pass = b64(CANARY);
        // (secret, want)
        let cases = [
            (
                secret(
                    SECRET_TYPE_DISTRIBUTION_TOKEN,
                    &[("username", "alice"), ("password", CANARY)],
                    &[],
                ),
                Ok(basic_creds("alice", CANARY)),
            ),
            (
                secret(
                    SECRET_TYPE_BASIC_AUTH,
                    &[],
                    &[("username", &b64_user), ("password", &b64_pass)],
                ),
                Ok(basic_creds("bob", CANARY)),
            ),
            (
                secret(
                    SECRET_TYPE_DISTRIBUTION_TOKEN,
                    &[("username", "alice")],
                    &[],
                ),
                Err(vec!["team-a/creds", "\"password\"", "stringData"]),
            ),
            (
                secret(SECRET_TYPE_BASIC_AUTH, &[("password", CANARY)], &[]),
                Err(vec!["team-a/creds", "\"username\""]),
            ),
            (
                secret(
                    SECRET_TYPE_BASIC_AUTH,
                    &[("username", "a:b"), ("password", CANARY)],
                    &[],
                ),
                Err(vec!["':'"]),
            ),
            (
                secret(
                    SECRET_TYPE_BASIC_AUTH,
                    &[("username", "u")],
                    &[("password", "***not-base64")],
                ),
                Err(vec!["\"password\"", "base64"]),
            ),
            (
                secret("Opaque", &[("username", "u"), ("password", CANARY)], &[]),
                Err(vec![
                    "\"Opaque\"",
                    SECRET_TYPE_DISTRIBUTION_TOKEN,
                    SECRET_TYPE_BASIC_AUTH,
                    SECRET_TYPE_DOCKER_CONFIG_JSON,
                ]),
            ),
        ];
        for (s, want) in cases {
            let got = credentials_from_secret(&s, &registry);
            match want {
                Ok(creds) => assert_eq!(got.unwrap(), creds),
                Err(parts) => {
                    let msg = got.unwrap_err().to_string();
                    for part in parts {
                        assert!(msg.contains(part), "{msg:?} should contain {part:?}");
                    }
                    assert!(!msg.contains(CANARY), "{msg}");
                }
            }
        }
    }

    #[test]
    fn reads_dockerconfigjson() {
        let auth = b64(&format!("dora:{CANARY}"));
        let cfg = |entries: &str| format!(r#"{{"auths":{{{entries}}}}}"#);
        // (registry, config json, want)
        type Case<'a> = (&'a str, String, Result<RegistryCredentials, Vec<&'a str>>);
        let cases: Vec<Case> = vec![
            (
                "https://registry.example.com",
                cfg(&format!(r#""registry.example.com":{{"auth":"{auth}"}}"#)),
                Ok(basic_creds("dora", CANARY)),
            ),
            (
                "https://registry.example.com",
                cfg(&format!(
                    r#""https://registry.example.com":{{"auth":"{auth}"}}"#
                )),
                Ok(basic_creds("dora", CANARY)),
            ),
            (
                "https://registry.example.com",
                cfg(&format!(
                    r#""https://registry.example.com/v1/":{{"auth":"{auth}"}}"#
                )),
                Ok(basic_creds("dora", CANARY)),
            ),
            (
                "https://registry.example.com",
                cfg(&format!(
                    r#""registry.example.com:443":{{"auth":"{auth}"}}"#
                )),
                Ok(basic_creds("dora", CANARY)),
            ),
            (
                "https://REGISTRY.example.com",
                cfg(&format!(
                    r#""Registry.Example.com":{{"username":"u","password":"{CANARY}"}}"#
                )),
                Ok(basic_creds("u", CANARY)),
            ),
            // An explicit port match beats a host-only one.
            (
                "https://r.example.com:5000",
                cfg(&format!(
                    r#""r.example.com":{{"auth":"{}"}},"r.example.com:5000":{{"auth":"{auth}"}}"#,
                    b64("x:y")
                )),
                Ok(basic_creds("dora", CANARY)),
            ),
            (
                "https://r.example.com",
                cfg(&format!(
                    r#""r.example.com:5000":{{"auth":"{}"}},"r.example.com":{{"auth":"{auth}"}}"#,
                    b64("x:y")
                )),
                Ok(basic_creds("dora", CANARY)),
            ),
            (
                "https://registry-1.docker.io",
                cfg(&format!(
                    r#""https://index.docker.io/v1/":{{"auth":"{auth}"}}"#
                )),
                Ok(basic_creds("dora", CANARY)),
            ),
            (
                "http://[::1]:5000",
                cfg(&format!(r#""[::1]:5000":{{"auth":"{auth}"}}"#)),
                Ok(basic_creds("dora", CANARY)),
            ),
            // Failures
            (
                "https://registry.example.com:5000",
                cfg(&format!(
                    r#""registry.example.com":{{"auth":"{auth}"}},"other.io":{{"auth":"{auth}"}}"#
                )),
                Err(vec![
                    "registry.example.com:5000",
                    "\"registry.example.com\"",
                    "\"other.io\"",
                ]),
            ),
            (
                "https://registry.example.com",
                cfg(""),
                Err(vec!["no entries"]),
            ),
            (
                "https://registry.example.com",
                format!(r#"{{"auths": {{"registry.example.com": {{"auth": "{CANARY}"#),
                Err(vec!["not valid JSON", "line 1"]),
            ),
            (
                "https://registry.example.com",
                format!(r#"{{"registry.example.com":{{"auth":"{auth}"}}}}"#),
                Err(vec!["no `auths`"]),
            ),
            (
                "https://registry.example.com",
                cfg(&format!(
                    r#""registry.example.com":{{"auth":"{CANARY}!!"}}"#
                )),
                Err(vec!["not base64"]),
            ),
            (
                "https://registry.example.com",
                cfg(&format!(
                    r#""registry.example.com":{{"auth":"{}"}}"#,
                    b64(CANARY)
                )),
                Err(vec!["without ':'"]),
            ),
            (
                "https://registry.example.com",
                cfg(r#""registry.example.com":{"username":"u"}"#),
                Err(vec!["no `password`"]),
            ),
            (
                "https://registry.example.com",
                cfg(&format!(
                    r#""registry.example.com":{{"identitytoken":"{CANARY}"}}"#
                )),
                Err(vec!["identity"]),
            ),
            (
                "https://registry.example.com",
                cfg(r#""registry.example.com":{}"#),
                Err(vec!["neither"]),
            ),
        ];
        for (registry, json, want) in cases {
            let registry = Endpoint::parse(registry).unwrap();
            let s = secret(
                SECRET_TYPE_DOCKER_CONFIG_JSON,
                &[],
                &[(".dockerconfigjson", &b64(&json))],
            );
            let got = credentials_from_secret(&s, &registry);
            match want {
                Ok(creds) => assert_eq!(got.unwrap(), creds, "{json}"),
                Err(parts) => {
                    let msg = got.unwrap_err().to_string();
                    for part in parts {
                        assert!(msg.contains(part), "{msg:?} should contain {part:?}");
                    }
                    assert!(msg.contains("team-a/creds"), "{msg}");
                    assert!(!msg.contains(CANARY) && !msg.contains(&auth), "{msg}");
                }
            }
        }
        let missing = secret(SECRET_TYPE_DOCKER_CONFIG_JSON, &[], &[]);
        let msg = credentials_from_secret(&missing, &Endpoint::parse("https://r").unwrap())
            .unwrap_err()
            .to_string();
        assert!(msg.contains(".dockerconfigjson"), "{msg}");
    }

    #[test]
    fn auth_key_matching() {
        let https = Endpoint::parse("https://r.example.com").unwrap();
        let port = Endpoint::parse("http://r.example.com:5000").unwrap();
        let cases = [
            ("r.example.com", &https, Some(1)),
            ("r.example.com:443", &https, Some(0)),
            ("https://r.example.com", &https, Some(1)),
            ("http://r.example.com/v2/", &https, Some(1)),
            ("r.example.com:80", &https, None),
            ("r.example.com", &port, None),
            ("r.example.com:5000", &port, Some(0)),
            ("other.example.com:5000", &port, None),
            ("r.example.com:notaport", &port, None),
            ("", &https, None),
        ];
        for (key, ep, want) in cases {
            assert_eq!(match_rank(key, ep), want, "{key} vs {ep}");
        }
    }

    #[test]
    fn ca_pems() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        // (string_data, want)
        type Case<'a> = (Vec<(&'a str, &'a str)>, Result<usize, &'a str>);
        let cases: Vec<Case> = vec![
            (vec![("ca.crt", pem)], Ok(1)),
            (
                vec![("a.pem", pem), ("b.crt", pem), ("README", "hello")],
                Ok(2),
            ),
            (vec![("bundle", pem)], Ok(1)),
            (vec![("ca.crt", "not pem")], Err("\"ca.crt\"")),
            (vec![("README", "hello")], Err("holds no CA certificate")),
            (vec![], Err("holds no CA certificate")),
        ];
        for (entries, want) in cases {
            let s = secret("Opaque", &entries, &[]);
            match want {
                Ok(n) => assert_eq!(ca_pems_from_secret(&s).unwrap().len(), n, "{entries:?}"),
                Err(part) => {
                    let msg = ca_pems_from_secret(&s).unwrap_err().to_string();
                    assert!(msg.contains(part) && msg.contains("team-a/creds"), "{msg}");
                }
            }
        }
        let s = secret("Opaque", &[], &[("tls.crt", &b64(pem))]);
        assert_eq!(ca_pems_from_secret(&s).unwrap(), vec![pem.to_owned()]);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = basic_creds("alice", CANARY);
        let dbg = format!("{c:?}");
        assert!(dbg.contains("alice") && !dbg.contains(CANARY), "{dbg}");
        assert!(!c.is_anonymous());
        assert!(RegistryCredentials::Anonymous.is_anonymous());
    }
}
