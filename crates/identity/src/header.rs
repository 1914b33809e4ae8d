//! Parsing the credentials a workload sends (README.md, "Errors the workload sees"; docs/security.md). Pure functions over header bytes with no I/O, so a
//! cargo-fuzz target can call them as they are.
//!
//! Decoded credentials are held in zeroizing buffers and error reasons never quote the token: the reasons end up
//! in HTTP responses and logs.

use std::collections::HashSet;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use connectors_model::{ConnectorRef, SecretString};
use percent_encoding::percent_decode_str;
use zeroize::Zeroizing;

use crate::AuthError;

/// Header values longer than this are refused before any decoding, so the work per request stays bounded.
/// Real credentials are far smaller: a proxy token is at most 8 KiB, a Kubernetes token 1–2 KiB.
pub const MAX_CREDENTIALS_LEN: usize = 16 * 1024;

/// RFC 7617 says the standard alphabet with padding, but some clients drop the padding; accepting both costs
/// nothing because the decoded bytes are checked anyway.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Schemes that may be echoed in an error. Anything else could be a bare token sent without a scheme, so it is
/// never quoted.
const KNOWN_SCHEMES: &[&str] = &[
    "AWS4-HMAC-SHA256",
    "Concealed",
    "Digest",
    "DPoP",
    "GNAP",
    "HOBA",
    "Mutual",
    "Negotiate",
    "NTLM",
    "PrivateToken",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "Token",
    "vapid",
];

/// What a forward-proxy client sends in `Proxy-Authorization`: the connectors it wants to use and its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyCredentials {
    /// Never empty; in the order the client listed them, duplicates removed.
    pub connectors: Vec<ConnectorRef>,
    pub token: SecretString,
}

/// The proxy token from a reverse-mode `Authorization` value: `Basic base64(<any user>:<token>)` or
/// `Bearer <token>`.
///
/// The scheme is case-insensitive and surrounding whitespace is ignored. An empty value is
/// [`AuthError::Missing`]; everything else that is not one of the two forms is [`AuthError::Malformed`].
pub fn token_from_authorization(value: &[u8]) -> Result<SecretString, AuthError> {
    let (scheme, rest) = split_scheme(value)?;
    if scheme.eq_ignore_ascii_case(b"basic") {
        decode_basic(rest)?.token()
    } else if scheme.eq_ignore_ascii_case(b"bearer") {
        checked_token(rest)
    } else {
        Err(unsupported_scheme(scheme, "`Basic` or `Bearer`"))
    }
}

/// The connectors and token from a forward-mode `Proxy-Authorization` value:
/// `Basic base64("<ns>/<name>[,<ns>/<name>…]:<token>")`.
///
/// The user part is percent-decoded before it is split at commas: clients that take it from the proxy URL
/// (`http://<ns>%2F<name>,…:<token>@host`) do not always decode it, and Kubernetes names contain neither `%`, `,`
/// nor `/`, so decoding cannot change a valid list.
pub fn parse_proxy_authorization(value: &[u8]) -> Result<ProxyCredentials, AuthError> {
    parse_proxy_authorization_within(value, MAX_CREDENTIALS_LEN)
}

/// [`parse_proxy_authorization`] with another length limit than [`MAX_CREDENTIALS_LEN`] (the proxy's
/// `--max-proxy-authorization-bytes`).
pub fn parse_proxy_authorization_within(
    value: &[u8],
    max_len: usize,
) -> Result<ProxyCredentials, AuthError> {
    let (scheme, rest) = split_scheme_within(value, max_len)?;
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthError::Malformed(
            "forward-proxy credentials must be Basic, because the user name names the connectors: \
             Basic base64(<namespace>/<name>[,…]:<token>)"
                .to_owned(),
        ));
    }
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(unsupported_scheme(scheme, "`Basic`"));
    }
    let basic = decode_basic(rest)?;
    let token = basic.token()?;
    let connectors = parse_connector_list(basic.user())?;
    Ok(ProxyCredentials { connectors, token })
}

/// Splits `<scheme> <rest>`; `rest` is empty when the value is a single word.
fn split_scheme(value: &[u8]) -> Result<(&[u8], &[u8]), AuthError> {
    split_scheme_within(value, MAX_CREDENTIALS_LEN)
}

fn split_scheme_within(value: &[u8], max_len: usize) -> Result<(&[u8], &[u8]), AuthError> {
    if value.len() > max_len {
        return Err(AuthError::Malformed(format!(
            "credentials are {} bytes, more than the {max_len} accepted",
            value.len()
        )));
    }
    let value = value.trim_ascii();
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    match value.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(i) => Ok((&value[..i], value[i..].trim_ascii_start())),
        None => Ok((value, &[])),
    }
}

fn unsupported_scheme(scheme: &[u8], expected: &str) -> AuthError {
    let known = KNOWN_SCHEMES
        .iter()
        .find(|known| known.as_bytes().eq_ignore_ascii_case(scheme));
    AuthError::Malformed(match known {
        Some(name) => format!("authentication scheme {name} is not supported; use {expected}"),
        None => format!("credentials do not start with a supported scheme; use {expected}"),
    })
}

/// Decoded `user:token`. The whole decoded text stays in a [`SecretString`] so it is zeroized on drop.
struct BasicCredentials {
    decoded: SecretString,
    colon: usize,
}

impl BasicCredentials {
    fn user(&self) -> &str {
        self.decoded.expose().get(..self.colon).unwrap_or_default()
    }

    fn token(&self) -> Result<SecretString, AuthError> {
        checked_token(
            self.decoded
                .expose()
                .get(self.colon + 1..)
                .unwrap_or_default()
                .as_bytes(),
        )
    }
}

fn decode_basic(encoded: &[u8]) -> Result<BasicCredentials, AuthError> {
    if encoded.is_empty() {
        return Err(AuthError::Malformed(
            "Basic credentials are empty".to_owned(),
        ));
    }
    // Reserve the whole output up front: if `decode_vec` had to grow the buffer, the old allocation would be
    // freed without being zeroized.
    let mut bytes = Zeroizing::new(Vec::with_capacity(base64::decoded_len_estimate(
        encoded.len(),
    )));
    BASIC
        .decode_vec(encoded, &mut bytes)
        .map_err(|_| AuthError::Malformed("Basic credentials are not valid base64".to_owned()))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        AuthError::Malformed("Basic credentials are not valid UTF-8 once decoded".to_owned())
    })?;
    // Split at the first ':' (RFC 7617): the user part cannot contain one, the token may.
    let colon = text.find(':').ok_or_else(|| {
        AuthError::Malformed(
            "Basic credentials have no ':' between the user name and the token".to_owned(),
        )
    })?;
    Ok(BasicCredentials {
        decoded: SecretString::new(text),
        colon,
    })
}

/// Proxy tokens and Kubernetes tokens are visible ASCII; refusing anything else early keeps control characters
/// and spaces out of later stages and gives a clear error for a mangled copy-paste.
fn checked_token(token: &[u8]) -> Result<SecretString, AuthError> {
    if token.is_empty() {
        return Err(AuthError::Malformed("the proxy token is empty".to_owned()));
    }
    if !token.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(AuthError::Malformed(
            "the proxy token contains spaces, control characters or non-ASCII characters"
                .to_owned(),
        ));
    }
    let token = std::str::from_utf8(token)
        .map_err(|_| AuthError::Malformed("the proxy token is not valid UTF-8".to_owned()))?;
    Ok(SecretString::new(token))
}

fn parse_connector_list(user: &str) -> Result<Vec<ConnectorRef>, AuthError> {
    const HOW: &str =
        "put the connectors in the proxy user name: <namespace>/<name>[,<namespace>/<name>…]";
    if user.trim().is_empty() {
        return Err(AuthError::Malformed(format!("no connector named; {HOW}")));
    }
    let decoded = percent_decode_str(user).decode_utf8().map_err(|_| {
        AuthError::Malformed(format!(
            "the proxy user name is not valid UTF-8 once percent-decoded; {HOW}"
        ))
    })?;
    let mut seen = HashSet::new();
    let mut connectors = Vec::new();
    for (index, entry) in decoded.split(',').enumerate() {
        let entry = entry.trim();
        let position = index + 1;
        if entry.is_empty() {
            return Err(AuthError::Malformed(format!(
                "connector entry {position} of the proxy user name is empty; {HOW}"
            )));
        }
        let connector = match entry.split_once('/') {
            Some((namespace, name)) => ConnectorRef::new(namespace, name)
                .map_err(|err| bad_entry(position, entry, Some(&err)))?,
            None => return Err(bad_entry(position, entry, None)),
        };
        if seen.insert(connector.clone()) {
            connectors.push(connector);
        }
    }
    Ok(connectors)
}

/// Names the bad entry so the user sees what to fix, unless it might hold a token pasted into the user name:
/// then only its position is given. Proxy tokens and Kubernetes tokens are longer than 64 bytes and contain
/// `ct1.` or `eyJ`, so neither can be quoted whole; a valid connector reference may be longer, but only bad
/// entries are quoted and a long bad entry is rare enough to be named by position.
fn bad_entry(
    position: usize,
    entry: &str,
    why: Option<&connectors_model::ParseConnectorRefError>,
) -> AuthError {
    let might_be_token = entry.len() > 64 || entry.contains("ct1.") || entry.contains("eyJ");
    if might_be_token {
        return AuthError::Malformed(format!(
            "connector entry {position} of the proxy user name is not <namespace>/<name> (not quoted: it is \
             long or looks like a token; the token goes after the ':', as the password)"
        ));
    }
    AuthError::Malformed(match why {
        Some(err) => format!("connector entry {entry:?} of the proxy user name is invalid: {err}"),
        None => {
            format!("connector entry {entry:?} of the proxy user name is not <namespace>/<name>")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

    const CANARY: &str = "ct1.c2VjcmV0LWNhbmFyeQ.c2lnbmF0dXJlLWNhbmFyeQ";

    fn basic(raw: &[u8]) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(raw)).into_bytes()
    }

    fn malformed_mentions(
        result: Result<impl std::fmt::Debug, AuthError>,
        part: &str,
        input: &[u8],
    ) {
        match result {
            Err(AuthError::Malformed(reason)) => assert!(
                reason.contains(part),
                "{:?}: reason {reason:?} should mention {part:?}",
                String::from_utf8_lossy(input)
            ),
            other => panic!(
                "{:?}: want Malformed mentioning {part:?}, got {other:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    #[test]
    fn authorization_good() {
        let padded = basic(b"user:tok");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (padded.clone(), "tok"),
            (
                format!("basic {}", STANDARD.encode("u:tok")).into_bytes(),
                "tok",
            ),
            (
                format!("BASIC {}", STANDARD.encode("u:tok")).into_bytes(),
                "tok",
            ),
            (
                format!("  Basic \t  {}  \r\n", STANDARD.encode("u:tok")).into_bytes(),
                "tok",
            ),
            (
                format!("Basic\t{}", STANDARD.encode("u:tok")).into_bytes(),
                "tok",
            ),
            (
                format!("Basic {}", STANDARD_NO_PAD.encode("u:tok1")).into_bytes(),
                "tok1",
            ),
            (basic(b":tok"), "tok"),
            (basic(b"u:a:b::c:"), "a:b::c:"),
            (
                basic(format!("anything at all:{CANARY}").as_bytes()),
                CANARY,
            ),
            (basic("ünïcode user:tok".as_bytes()), "tok"),
            (b"Bearer tok".to_vec(), "tok"),
            (b"bearer    tok   ".to_vec(), "tok"),
            (b"BEARER\ttok".to_vec(), "tok"),
            (
                b"Bearer eyJhbGc.eyJzdWIi.sig-_+/=".to_vec(),
                "eyJhbGc.eyJzdWIi.sig-_+/=",
            ),
            (format!("Bearer {CANARY}").into_bytes(), CANARY),
        ];
        for (input, want) in cases {
            let got = token_from_authorization(&input)
                .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(&input)));
            assert_eq!(got.expose(), want, "{:?}", String::from_utf8_lossy(&input));
        }
    }

    #[test]
    fn authorization_missing() {
        for input in [&b""[..], b"   ", b"\t\r\n"] {
            assert_eq!(
                token_from_authorization(input),
                Err(AuthError::Missing),
                "{input:?}"
            );
        }
    }

    #[test]
    fn authorization_bad() {
        let long_token = "a".repeat(MAX_CREDENTIALS_LEN);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"Basic".to_vec(), "empty"),
            (b"Basic    ".to_vec(), "empty"),
            (b"Basic !!!!".to_vec(), "base64"),
            (b"Basic dXNlcjp0b2s= extra".to_vec(), "base64"),
            (basic(b"user-and-no-colon"), "no ':'"),
            (basic(b"user:"), "empty"),
            (basic(b":"), "empty"),
            (basic(&[0xff, 0xfe, b':', b'a']), "UTF-8"),
            (basic(b"u:tok with space"), "spaces"),
            (basic("u:tök".as_bytes()), "non-ASCII"),
            (basic(b"u:tok\x00"), "control"),
            (b"Bearer".to_vec(), "token is empty"),
            (b"Bearer   ".to_vec(), "token is empty"),
            (b"Bearer a b".to_vec(), "spaces"),
            ("Bearer ☃☃".as_bytes().to_vec(), "non-ASCII"),
            (b"Digest username=x".to_vec(), "Digest is not supported"),
            (b"negotiate abc".to_vec(), "Negotiate is not supported"),
            (CANARY.as_bytes().to_vec(), "supported scheme"),
            (
                format!("{CANARY} trailing").into_bytes(),
                "supported scheme",
            ),
            ("Bäsic ☃".as_bytes().to_vec(), "supported scheme"),
            (vec![0xff; 40], "supported scheme"),
            (format!("Bearer {long_token}").into_bytes(), "more than"),
        ];
        for (input, part) in cases {
            let result = token_from_authorization(&input);
            if let Err(err) = &result {
                assert!(!err.to_string().contains(CANARY), "{err}");
                assert!(!format!("{err:?}").contains("c2VjcmV0"), "{err:?}");
            }
            malformed_mentions(result, part, &input);
        }
    }

    #[test]
    fn authorization_length_limit_is_inclusive() {
        let token = "t".repeat(MAX_CREDENTIALS_LEN - "Bearer ".len());
        let input = format!("Bearer {token}");
        assert_eq!(input.len(), MAX_CREDENTIALS_LEN);
        assert_eq!(
            token_from_authorization(input.as_bytes()).unwrap().expose(),
            token
        );
        let over = format!("{input}t");
        assert!(token_from_authorization(over.as_bytes()).is_err());
    }

    fn refs(list: &[&str]) -> Vec<ConnectorRef> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn proxy_authorization_good() {
        let cases: Vec<(Vec<u8>, Vec<ConnectorRef>, &str)> = vec![
            (basic(b"team-a/prod:tok"), refs(&["team-a/prod"]), "tok"),
            (basic(b"team-a%2Fprod:tok"), refs(&["team-a/prod"]), "tok"),
            (basic(b"team-a%2fprod:tok"), refs(&["team-a/prod"]), "tok"),
            (basic(b"a/b,c/d:tok"), refs(&["a/b", "c/d"]), "tok"),
            (basic(b"c/d,a/b:tok"), refs(&["c/d", "a/b"]), "tok"),
            (
                basic(b"a/b, c%2Fd ,a/b,c/d:tok"),
                refs(&["a/b", "c/d"]),
                "tok",
            ),
            (basic(b"a%2Fb%2Cc%2Fd:tok"), refs(&["a/b", "c/d"]), "tok"),
            (basic(b"a/b:t:o:k"), refs(&["a/b"]), "t:o:k"),
            (
                basic(format!("ns/n:{CANARY}").as_bytes()),
                refs(&["ns/n"]),
                CANARY,
            ),
            (
                format!("  basic   {}  ", STANDARD_NO_PAD.encode("x-y/z-1:tok")).into_bytes(),
                refs(&["x-y/z-1"]),
                "tok",
            ),
        ];
        for (input, want_connectors, want_token) in cases {
            let got = parse_proxy_authorization(&input)
                .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(&input)));
            assert_eq!(
                got.connectors,
                want_connectors,
                "{:?}",
                String::from_utf8_lossy(&input)
            );
            assert_eq!(got.token.expose(), want_token);
        }
    }

    #[test]
    fn proxy_authorization_bad() {
        let jwt_like = format!("eyJhbGciOi{}", "x".repeat(40));
        let long_user = "q".repeat(200);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"Bearer tok".to_vec(), "must be Basic"),
            (b"Digest x".to_vec(), "Digest is not supported"),
            (CANARY.as_bytes().to_vec(), "supported scheme"),
            (b"Basic".to_vec(), "empty"),
            (b"Basic %%%".to_vec(), "base64"),
            (basic(b":tok"), "no connector"),
            (basic(b"  :tok"), "no connector"),
            (
                basic(b"a/b,:tok"),
                "entry 2 of the proxy user name is empty",
            ),
            (
                basic(b",a/b:tok"),
                "entry 1 of the proxy user name is empty",
            ),
            (basic(b"prod:tok"), "\"prod\""),
            (basic(b"a/b,prod:tok"), "\"prod\""),
            (basic(b"Team/prod:tok"), "\"Team/prod\""),
            (basic(b"a/b/c:tok"), "\"a/b/c\""),
            (basic(b"a%ZZ/b:tok"), "\"a%ZZ/b\""),
            (basic(b"a%FF/b:tok"), "UTF-8"),
            (basic("ä/b:tok".as_bytes()), "\"ä/b\""),
            (basic(b"a/b:"), "token is empty"),
            (basic(b"a/b"), "no ':'"),
            (basic(b"a/b:tok en"), "spaces"),
            (
                basic(format!("{CANARY}:x").as_bytes()),
                "looks like a token",
            ),
            (basic(format!("a/b,{jwt_like}:x").as_bytes()), "entry 2"),
            (basic(format!("Basic {CANARY}x/y:z").as_bytes()), "entry 1"),
            (basic(format!("a/b,Team/{CANARY}:z").as_bytes()), "entry 2"),
            (basic(b"team/xeyJ:z"), "entry 1"),
            (
                basic(format!("{long_user}:x").as_bytes()),
                "looks like a token",
            ),
            (
                basic(format!("a/b:{}", "t".repeat(MAX_CREDENTIALS_LEN)).as_bytes()),
                "more than",
            ),
        ];
        for (input, part) in cases {
            let result = parse_proxy_authorization(&input);
            if let Err(err) = &result {
                let text = err.to_string();
                assert!(!text.contains("c2VjcmV0"), "{text}");
                assert!(!text.contains(&jwt_like), "{text}");
                assert!(!text.contains(&long_user), "{text}");
            }
            malformed_mentions(result, part, &input);
        }
        assert_eq!(parse_proxy_authorization(b" "), Err(AuthError::Missing));
    }

    #[test]
    fn debug_never_prints_the_token() {
        let creds = parse_proxy_authorization(&basic(format!("a/b:{CANARY}").as_bytes())).unwrap();
        let debug = format!("{creds:?}");
        assert!(!debug.contains("c2VjcmV0"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
    }

    /// A deterministic stand-in for a fuzzer: many inputs built from pieces that reach every branch. The
    /// assertion is that nothing panics and nothing quotes the canary token.
    #[test]
    fn arbitrary_input_never_panics() {
        let pieces: &[&[u8]] = &[
            b"Basic ",
            b"Bearer ",
            b"basic",
            b" ",
            b"\t",
            b":",
            b",",
            b"/",
            b"%2F",
            b"%",
            b"=",
            b"ns",
            b"a-b",
            b"\xff",
            b"\xe2\x98",
            "☃".as_bytes(),
            b"\0",
            CANARY.as_bytes(),
            b"dXNlcjp0b2s",
            b"YS9iOnRvaw==",
            b"Og==",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..next() % 8 {
                let choice = next();
                if choice % 3 == 0 {
                    // Wrap what we have so far so decoding reaches the inner parsers.
                    input = basic(&input);
                } else {
                    input.extend_from_slice(pieces[(choice as usize / 3) % pieces.len()]);
                }
            }
            for result in [
                token_from_authorization(&input).map(drop),
                parse_proxy_authorization(&input).map(drop),
            ] {
                if let Err(err) = result {
                    let text = err.to_string();
                    assert!(!text.contains("c2VjcmV0"), "{text}");
                    assert!(!text.contains("c2lnbmF0dXJl"), "{text}");
                }
            }
        }
    }
}
