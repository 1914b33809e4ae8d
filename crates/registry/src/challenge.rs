//! Parsing of `WWW-Authenticate` challenges (RFC 9110 §11.6.1) as registries send them.
//!
//! A header may carry several challenges (`Basic realm="a", Bearer realm="b",service="c"`); the parser
//! returns all of them in order. Parameter values may be tokens or quoted strings with `\` escapes.

/// One challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: Option<String>,
    },
    Bearer(BearerChallenge),
    /// A scheme we do not speak (Negotiate, Digest …); kept so the error can name it.
    Other {
        scheme: String,
    },
}

/// The parameters of a `Bearer` challenge, as the distribution token spec defines them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    /// Scopes the registry asks for; one `scope` parameter may hold several, separated by spaces.
    pub scopes: Vec<String>,
    /// `invalid_token`, `insufficient_scope` … when a token was sent and refused.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    #[error("empty WWW-Authenticate header")]
    Empty,
    #[error("malformed WWW-Authenticate header at byte {at}: {why}")]
    Malformed { at: usize, why: &'static str },
    #[error("Bearer challenge without a realm")]
    BearerWithoutRealm,
}

/// Parses every challenge in one `WWW-Authenticate` header value.
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut lexer = Lexer {
        s: header.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    lexer.skip_separators();
    if lexer.at_end() {
        return Err(ChallengeError::Empty);
    }
    let mut scheme = lexer
        .token()
        .ok_or(lexer.error("expected an auth scheme"))?;
    loop {
        let mut params: Vec<(String, String)> = Vec::new();
        let next_scheme = loop {
            lexer.skip_separators();
            if lexer.at_end() {
                break None;
            }
            let name = lexer
                .token()
                .ok_or(lexer.error("expected a parameter name"))?;
            lexer.skip_spaces();
            if lexer.peek() != Some(b'=') {
                // Not `name=value`: the token starts the next challenge.
                break Some(name);
            }
            lexer.pos += 1;
            lexer.skip_spaces();
            let value = if lexer.peek() == Some(b'"') {
                lexer.quoted()?
            } else {
                lexer
                    .token68()
                    .ok_or(lexer.error("expected a parameter value"))?
            };
            params.push((name.to_ascii_lowercase(), value));
        };
        out.push(build(&scheme, params)?);
        match next_scheme {
            Some(s) => scheme = s,
            None => break,
        }
    }
    Ok(out)
}

fn build(scheme: &str, params: Vec<(String, String)>) -> Result<Challenge, ChallengeError> {
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        return Ok(Challenge::Basic {
            realm: get("realm"),
        });
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        let realm = get("realm")
            .filter(|r| !r.is_empty())
            .ok_or(ChallengeError::BearerWithoutRealm)?;
        let scopes = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned))
            .collect();
        return Ok(Challenge::Bearer(BearerChallenge {
            realm,
            service: get("service"),
            scopes,
            error: get("error"),
        }));
    }
    Ok(Challenge::Other {
        scheme: scheme.to_owned(),
    })
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn error(&self, why: &'static str) -> ChallengeError {
        ChallengeError::Malformed { at: self.pos, why }
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    /// An RFC 9110 token.
    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    /// A token68 value (tokens plus `/`, `+`, `=`), which some servers use unquoted.
    fn token68(&mut self) -> Option<String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| is_tchar(b) || matches!(b, b'/' | b'+' | b'=' | b':'))
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn quoted(&mut self) -> Result<String, ChallengeError> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated quoted string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = self.peek().ok_or(self.error("dangling escape"))?;
                    out.push(escaped);
                    self.pos += 1;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Every parsable challenge in a response's `WWW-Authenticate` headers (unparsable ones are skipped).
pub fn challenges_in(headers: &http::HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| parse_challenges(v).ok())
        .flatten()
        .collect()
}

/// The first Bearer or Basic challenge of a header, the one a registry client acts on.
pub fn preferred(challenges: &[Challenge]) -> Option<&Challenge> {
    challenges
        .iter()
        .find(|c| matches!(c, Challenge::Bearer(_)))
        .or_else(|| {
            challenges
                .iter()
                .find(|c| matches!(c, Challenge::Basic { .. }))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(
        realm: &str,
        service: Option<&str>,
        scopes: &[&str],
        error: Option<&str>,
    ) -> Challenge {
        Challenge::Bearer(BearerChallenge {
            realm: realm.into(),
            service: service.map(Into::into),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            error: error.map(Into::into),
        })
    }

    #[test]
    fn parses_registry_challenges() {
        let cases: Vec<(&str, Vec<Challenge>)> = vec![
            (
                r#"Basic realm="test-realm""#,
                vec![Challenge::Basic {
                    realm: Some("test-realm".into()),
                }],
            ),
            ("basic", vec![Challenge::Basic { realm: None }]),
            (
                r#"Bearer realm="http://127.0.0.1:5003/token",service="test-registry",scope="repository:test/small:pull""#,
                vec![bearer(
                    "http://127.0.0.1:5003/token",
                    Some("test-registry"),
                    &["repository:test/small:pull"],
                    None,
                )],
            ),
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push",error="insufficient_scope""#,
                vec![bearer(
                    "https://auth.docker.io/token",
                    Some("registry.docker.io"),
                    &["repository:a/b:pull,push"],
                    Some("insufficient_scope"),
                )],
            ),
            (
                // several scopes in one parameter, unquoted values, odd spacing, escaped quote
                r#"Bearer  realm = "https://r/t\"x" , service=svc, scope="repository:a:pull repository:b:pull""#,
                vec![bearer(
                    "https://r/t\"x",
                    Some("svc"),
                    &["repository:a:pull", "repository:b:pull"],
                    None,
                )],
            ),
            (
                r#"Basic realm="a", Bearer realm="https://b/token",service="c""#,
                vec![
                    Challenge::Basic {
                        realm: Some("a".into()),
                    },
                    bearer("https://b/token", Some("c"), &[], None),
                ],
            ),
            (
                "Negotiate",
                vec![Challenge::Other {
                    scheme: "Negotiate".into(),
                }],
            ),
            (
                r#"Bearer realm="https://h:8443/t",scope="repository:host:5000/app:pull""#,
                vec![bearer(
                    "https://h:8443/t",
                    None,
                    &["repository:host:5000/app:pull"],
                    None,
                )],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_challenges(input).as_ref(), Ok(&want), "{input}");
        }
    }

    #[test]
    fn rejects_malformed_challenges() {
        for input in [
            "",
            "   ",
            r#"Bearer realm="unterminated"#,
            "Bearer service=x",
            r#"Bearer realm="""#,
            "=x",
            r#"Bearer realm="a\"#,
        ] {
            assert!(parse_challenges(input).is_err(), "{input:?} should fail");
        }
    }

    #[test]
    fn prefers_bearer_over_basic() {
        let all = parse_challenges(r#"Basic realm="a", Bearer realm="https://b""#).unwrap();
        assert!(matches!(preferred(&all), Some(Challenge::Bearer(_))));
    }
}
