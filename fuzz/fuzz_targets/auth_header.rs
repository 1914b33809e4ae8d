//! `Authorization` and `Proxy-Authorization` parsing (crates/identity/src/header.rs).
//!
//! The first input byte picks the form, the rest is its material:
//! - even: the rest is a raw header value, given to both parsers;
//! - odd: the rest is `user` `\0` `password` (bytes), sent as `Basic base64(user:password)`, and
//!   the password alone as `Bearer <password>`.
//!
//! Properties: never panics; what parses gives back the password as the token, and at least one
//! connector without duplicates; an error never quotes the password (or the part after the scheme
//! of a raw value) unless the same error, with that part replaced by a stand-in of the same kind,
//! quotes it too (so it comes from the user name or the fixed text, not from the secret).
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use connectors_identity::{AuthError, parse_proxy_authorization, token_from_authorization};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        raw(rest);
    } else {
        let (user, password) = match rest.iter().position(|b| *b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        basic(user, password);
    }
});

fn raw(value: &[u8]) {
    // The part after the scheme, found as the parsers find it (surrounding whitespace ignored).
    let from = value.len() - value.trim_ascii_start().len();
    let to = value.trim_ascii_end().len().max(from);
    let trimmed = &value[from..to];
    let Some(space) = trimmed.iter().position(|b| *b == b' ' || *b == b'\t') else {
        let _ = token_from_authorization(value);
        if let Ok(p) = parse_proxy_authorization(value) {
            check_ok(&p);
        }
        return;
    };
    let secret = &trimmed[space..];
    let mut swapped = value[..from + space].to_vec();
    swapped.extend_from_slice(&stand_in(secret));
    swapped.extend_from_slice(&value[to..]);
    if let Err(e) = token_from_authorization(value) {
        no_leak(&e, secret, token_from_authorization(&swapped).err());
    }
    match parse_proxy_authorization(value) {
        Ok(p) => check_ok(&p),
        Err(e) => no_leak(&e, secret, parse_proxy_authorization(&swapped).err()),
    }
}

fn basic(user: &[u8], password: &[u8]) {
    let header = |pw: &[u8]| {
        let mut plain = user.to_vec();
        plain.push(b':');
        plain.extend_from_slice(pw);
        format!("Basic {}", STANDARD.encode(plain)).into_bytes()
    };
    let value = header(password);
    let swapped = header(&stand_in(password));
    // The decoded text is split at its first ':', so the password is the token only when the user
    // name has none.
    let plain_user = !user.contains(&b':');
    match token_from_authorization(&value) {
        Ok(t) if plain_user => assert_eq!(t.expose().as_bytes(), password, "token is the password"),
        Ok(_) => {}
        Err(e) => no_leak(&e, password, token_from_authorization(&swapped).err()),
    }
    match parse_proxy_authorization(&value) {
        Ok(p) => {
            if plain_user {
                assert_eq!(
                    p.token.expose().as_bytes(),
                    password,
                    "token is the password"
                );
            }
            check_ok(&p);
        }
        Err(e) => no_leak(&e, password, parse_proxy_authorization(&swapped).err()),
    }
    let mut bearer = b"Bearer ".to_vec();
    bearer.extend_from_slice(password);
    let mut bearer_swapped = b"Bearer ".to_vec();
    bearer_swapped.extend_from_slice(&stand_in(password));
    match token_from_authorization(&bearer) {
        Ok(t) => assert_eq!(t.expose().as_bytes(), password.trim_ascii()),
        Err(e) => no_leak(
            &e,
            password,
            token_from_authorization(&bearer_swapped).err(),
        ),
    }
}

fn check_ok(p: &connectors_identity::ProxyCredentials) {
    assert!(!p.connectors.is_empty(), "no connector");
    for (i, c) in p.connectors.iter().enumerate() {
        assert!(!p.connectors[..i].contains(c), "duplicate connector {c:?}");
    }
    assert!(!p.token.is_empty(), "empty token");
}

/// The same length, and the same kind as far as the parsers can tell (visible ASCII, or not),
/// but different bytes.
fn stand_in(secret: &[u8]) -> Vec<u8> {
    secret
        .iter()
        .map(|b| match b {
            b' ' | b'\t' | b'\r' | b'\n' | b':' | b',' | b'/' | b'%' | b'=' | b'+' => *b,
            0x21..=0x7e => {
                if *b == b'Q' {
                    b'Z'
                } else {
                    b'Q'
                }
            }
            _ => 0x01,
        })
        .collect()
}

fn no_leak(e: &AuthError, secret: &[u8], swapped: Option<AuthError>) {
    let Ok(secret) = std::str::from_utf8(secret.trim_ascii()) else {
        return;
    };
    if secret.len() < 6 {
        return;
    }
    let message = e.to_string();
    if !message.contains(secret) {
        return;
    }
    let also = swapped.is_some_and(|s| s.to_string().contains(secret));
    assert!(also, "error quotes the secret part {secret:?}: {message}");
}
