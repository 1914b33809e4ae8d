//! The lifetime of a kubelet-issued ServiceAccount token, read from its JWT payload.
//!
//! Nothing here verifies the token: the kubelet handed it to us over the CSI socket and the proxy checks it with a
//! TokenReview. The driver only compares `exp - iat` with the volume's `token.expiration`, to refuse a mount whose
//! token would live shorter than the Pod asked for. The errors never quote the token.

use std::time::Duration;

use base64::Engine as _;

/// Why a token's lifetime cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenLifetimeError {
    #[error("it is not a JWT (expected three dot-separated parts)")]
    NotJwt,
    #[error("its payload is not base64url")]
    NotBase64,
    #[error("its payload is not a JSON object")]
    NotJson,
    #[error("its payload has no numeric `{0}` claim")]
    MissingClaim(&'static str),
    #[error("its `exp` is not after its `iat`")]
    NotAfterIssue,
}

/// `exp - iat` of a JWT, without checking its signature.
pub fn token_lifetime(token: &str) -> Result<Duration, TokenLifetimeError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenLifetimeError::NotJwt);
    };
    // Kubernetes writes unpadded base64url; tolerate padding all the same.
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| TokenLifetimeError::NotBase64)?;
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| TokenLifetimeError::NotJson)?;
    let claim = |name: &'static str| {
        claims
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .ok_or(TokenLifetimeError::MissingClaim(name))
    };
    let iat = claim("iat")?;
    let exp = claim("exp")?;
    match exp.checked_sub(iat) {
        Some(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(TokenLifetimeError::NotAfterIssue),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    fn jwt(payload: &str) -> String {
        format!("{}.{}.sig", enc(r#"{"alg":"RS256"}"#), enc(payload))
    }

    #[test]
    fn reads_exp_minus_iat() {
        let token = jwt(r#"{"iat":1700000000,"exp":1700003600,"sub":"x"}"#);
        assert_eq!(token_lifetime(&token), Ok(Duration::from_secs(3600)));
        // Padded payloads are accepted too.
        let padded = format!("h.{}==.s", enc(r#"{"iat":1,"exp":601}"#));
        assert_eq!(token_lifetime(&padded), Ok(Duration::from_secs(600)));
    }

    #[test]
    fn hostile_input_gives_a_clear_error() {
        use TokenLifetimeError::*;
        let cases: Vec<(String, TokenLifetimeError)> = vec![
            (String::new(), NotJwt),
            ("canary-not-a-jwt".into(), NotJwt),
            ("a.b".into(), NotJwt),
            ("a.b.c.d".into(), NotJwt),
            ("h.!!!not-base64!!!.s".into(), NotBase64),
            ("h.\u{e9}\u{e9}.s".into(), NotBase64),
            (jwt("not json"), NotJson),
            (jwt("[1,2]"), NotJson),
            (jwt("12"), NotJson),
            (jwt(r#"{"iat":1"#), NotJson),
            (jwt("{}"), MissingClaim("iat")),
            (jwt(r#"{"iat":100}"#), MissingClaim("exp")),
            (jwt(r#"{"iat":"100","exp":700}"#), MissingClaim("iat")),
            (jwt(r#"{"iat":-5,"exp":700}"#), MissingClaim("iat")),
            (jwt(r#"{"iat":1.5,"exp":700}"#), MissingClaim("iat")),
            (jwt(r#"{"iat":100,"exp":null}"#), MissingClaim("exp")),
            (jwt(r#"{"iat":100,"exp":1e400}"#), NotJson),
            (jwt(r#"{"iat":700,"exp":100}"#), NotAfterIssue),
            (jwt(r#"{"iat":700,"exp":700}"#), NotAfterIssue),
        ];
        for (token, want) in cases {
            let err = token_lifetime(&token).expect_err(&token);
            assert_eq!(err, want, "{token:?}");
            assert!(!err.to_string().contains("canary"), "{err}");
        }
        // Extreme but well-formed numbers: no overflow, no panic.
        let huge = jwt(&format!(r#"{{"iat":0,"exp":{}}}"#, u64::MAX));
        assert_eq!(token_lifetime(&huge), Ok(Duration::from_secs(u64::MAX)));
        let past = jwt(&format!(r#"{{"iat":{},"exp":0}}"#, u64::MAX));
        assert_eq!(
            token_lifetime(&past),
            Err(TokenLifetimeError::NotAfterIssue)
        );
    }
}
