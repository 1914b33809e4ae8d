//! `WWW-Authenticate` challenge parser (crates/registry/src/challenge.rs).
//!
//! Properties: never panics; a `Malformed` error points inside the input; whatever parses can be
//! written back as a header that parses to the same challenges (realm, service, scopes, error
//! survive quoting and escaping).
#![no_main]

use connectors_registry::challenge::{Challenge, ChallengeError, parse_challenges};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    match parse_challenges(header) {
        Ok(challenges) => {
            assert!(
                !challenges.is_empty(),
                "Ok without a challenge for {header:?}"
            );
            let written = write(&challenges);
            let again = parse_challenges(&written).unwrap_or_else(|e| {
                panic!("{header:?} parsed, its rewrite {written:?} did not: {e}")
            });
            assert_eq!(challenges, again, "round trip through {written:?}");
        }
        Err(ChallengeError::Malformed { at, .. }) => {
            assert!(
                at <= header.len(),
                "error offset {at} beyond {} bytes",
                header.len()
            )
        }
        Err(_) => {}
    }
});

/// Serialises challenges the way a registry would send them.
fn write(challenges: &[Challenge]) -> String {
    let parts: Vec<String> = challenges
        .iter()
        .map(|c| match c {
            Challenge::Basic { realm: None } => "Basic".to_owned(),
            Challenge::Basic { realm: Some(r) } => format!("Basic realm={}", quote(r)),
            Challenge::Bearer(b) => {
                let mut params = vec![format!("realm={}", quote(&b.realm))];
                if let Some(s) = &b.service {
                    params.push(format!("service={}", quote(s)));
                }
                if !b.scopes.is_empty() {
                    params.push(format!("scope={}", quote(&b.scopes.join(" "))));
                }
                if let Some(e) = &b.error {
                    params.push(format!("error={}", quote(e)));
                }
                format!("Bearer {}", params.join(","))
            }
            Challenge::Other { scheme } => scheme.clone(),
        })
        .collect();
    parts.join(", ")
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
