//! The part of Go's `net/url` that sprig's `urlParse`/`urlJoin` and the `urlquery` builtin use.
//! Go's parser is deliberately lenient and keeps what it was given (no host lowercasing, no
//! default-port removal), which the WHATWG parser of the `url` crate would not.

use super::fmt::go_quote;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Path,
    Host,
    UserPassword,
    QueryComponent,
    Fragment,
}

fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if mode == Mode::Host
        && matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
        )
    {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => return false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => {
            return match mode {
                Mode::Path => c == b'?',
                Mode::UserPassword => matches!(c, b'@' | b'/' | b'?' | b':'),
                Mode::QueryComponent => true,
                Mode::Fragment => false,
                Mode::Host => true,
            };
        }
        _ => {}
    }
    if mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*') {
        return false;
    }
    true
}

/// Go's `escape`.
pub(crate) fn escape(s: &str, mode: Mode) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c == b' ' && mode == Mode::QueryComponent {
            out.push(b'+');
        } else if should_escape(c, mode) {
            out.extend_from_slice(&[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
        } else {
            out.push(c);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &str) -> String {
    escape(s, Mode::QueryComponent)
}

fn unhex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Go's `unescape`.
fn unescape(s: &str, mode: Mode) -> Result<String, String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if i + 2 >= b.len()
                    || !b[i + 1].is_ascii_hexdigit()
                    || !b[i + 2].is_ascii_hexdigit()
                {
                    let end = (i + 3).min(b.len());
                    let bad = String::from_utf8_lossy(&b[i..end]);
                    return Err(format!("invalid URL escape {}", go_quote(&bad)));
                }
                if mode == Mode::Host && unhex(b[i + 1]) < 8 && &s[i..i + 3] != "%25" {
                    return Err(format!("invalid URL escape {}", go_quote(&s[i..i + 3])));
                }
                i += 3;
            }
            c => {
                if mode == Mode::Host && c < 0x80 && should_escape(c, mode) {
                    return Err(format!(
                        "invalid character {} in host name",
                        go_quote(&char::from(c).to_string())
                    ));
                }
                i += 1;
            }
        }
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                out.push(unhex(b[i + 1]) << 4 | unhex(b[i + 2]));
                i += 3;
            }
            b'+' if mode == Mode::QueryComponent => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A parsed URL with Go's field meanings (`host` keeps the port, `path` is unescaped).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct GoUrl {
    pub scheme: String,
    pub opaque: String,
    /// `(username, password)`; `None` when the URL has no `user@`.
    pub user: Option<(String, Option<String>)>,
    pub host: String,
    pub path: String,
    pub raw_query: String,
    pub fragment: String,
}

fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
    }
}

fn valid_userinfo(s: &str) -> bool {
    s.bytes().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b':'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b'@'
            )
    })
}

fn parse_host(host: &str) -> Result<String, String> {
    if host.starts_with('[') {
        let Some(i) = host.rfind(']') else {
            return Err("missing ']' in host".into());
        };
        let port = &host[i + 1..];
        if !valid_optional_port(port) {
            return Err(format!("invalid port {} after host", go_quote(port)));
        }
    } else if let Some(i) = host.rfind(':') {
        let port = &host[i..];
        if !valid_optional_port(port) {
            return Err(format!("invalid port {} after host", go_quote(port)));
        }
    }
    unescape(host, Mode::Host)
}

fn get_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                if i == 0 {
                    return Ok(("", raw));
                }
            }
            b':' => {
                if i == 0 {
                    return Err("missing protocol scheme".into());
                }
                return Ok((&raw[..i], &raw[i + 1..]));
            }
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

impl GoUrl {
    /// Go's `url.QueryEscape`.
    pub(crate) fn query_escape(s: &str) -> String {
        query_escape(s)
    }

    /// Go's `url.Parse`; the error reads like Go's `parse "<url>": <reason>`.
    pub(crate) fn parse(raw: &str) -> Result<GoUrl, String> {
        let (u, frag) = match raw.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (raw, None),
        };
        let mut url =
            Self::parse_no_fragment(u).map_err(|e| format!("parse {}: {e}", go_quote(u)))?;
        if let Some(frag) = frag {
            url.fragment = unescape(frag, Mode::Fragment)
                .map_err(|e| format!("parse {}: {e}", go_quote(raw)))?;
        }
        Ok(url)
    }

    fn parse_no_fragment(raw: &str) -> Result<GoUrl, String> {
        if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("net/url: invalid control character in URL".into());
        }
        let mut url = GoUrl::default();
        if raw == "*" {
            url.path = "*".into();
            return Ok(url);
        }
        let (scheme, rest) = get_scheme(raw)?;
        url.scheme = scheme.to_ascii_lowercase();
        let mut rest = rest.to_owned();
        if rest.ends_with('?') && rest.matches('?').count() == 1 {
            rest.pop();
        } else if let Some((r, q)) = rest.split_once('?') {
            url.raw_query = q.to_owned();
            rest = r.to_owned();
        }
        if !rest.starts_with('/') {
            if !url.scheme.is_empty() {
                url.opaque = rest;
                return Ok(url);
            }
            let segment = rest.split('/').next().unwrap_or("");
            if segment.contains(':') {
                return Err("first path segment in URL cannot contain colon".into());
            }
        }
        if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
            let after = &rest[2..];
            let (authority, path) = match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            };
            let (user, host) = match authority.rfind('@') {
                None => (None, parse_host(authority)?),
                Some(i) => {
                    let host = parse_host(&authority[i + 1..])?;
                    let userinfo = &authority[..i];
                    if !valid_userinfo(userinfo) {
                        return Err("net/url: invalid userinfo".into());
                    }
                    let user = match userinfo.split_once(':') {
                        None => (unescape(userinfo, Mode::UserPassword)?, None),
                        Some((u, p)) => (
                            unescape(u, Mode::UserPassword)?,
                            Some(unescape(p, Mode::UserPassword)?),
                        ),
                    };
                    (Some(user), host)
                }
            };
            url.user = user;
            url.host = host;
            rest = path.to_owned();
        }
        url.path = unescape(&rest, Mode::Path)?;
        Ok(url)
    }

    /// Go's `URL.Hostname()`: the host without port and IPv6 brackets.
    pub(crate) fn hostname(&self) -> String {
        let mut host = self.host.as_str();
        if let Some(i) = host.rfind(':')
            && valid_optional_port(&host[i..])
        {
            host = &host[..i];
        }
        if host.starts_with('[') && host.ends_with(']') && host.len() >= 2 {
            host = &host[1..host.len() - 1];
        }
        host.to_owned()
    }

    /// Go's `Userinfo.String()`.
    pub(crate) fn userinfo(&self) -> String {
        match &self.user {
            None => String::new(),
            Some((u, None)) => escape(u, Mode::UserPassword),
            Some((u, Some(p))) => format!(
                "{}:{}",
                escape(u, Mode::UserPassword),
                escape(p, Mode::UserPassword)
            ),
        }
    }

    /// Go's `URL.String()` (without `RawPath`, `ForceQuery` and `OmitHost`, which `urlJoin`
    /// never sets).
    pub(crate) fn to_go_string(&self) -> String {
        let mut buf = String::new();
        if !self.scheme.is_empty() {
            buf.push_str(&self.scheme);
            buf.push(':');
        }
        if !self.opaque.is_empty() {
            buf.push_str(&self.opaque);
        } else {
            if !self.scheme.is_empty() || !self.host.is_empty() || self.user.is_some() {
                if !self.host.is_empty() || !self.path.is_empty() || self.user.is_some() {
                    buf.push_str("//");
                }
                if self.user.is_some() {
                    buf.push_str(&self.userinfo());
                    buf.push('@');
                }
                if !self.host.is_empty() {
                    buf.push_str(&escape(&self.host, Mode::Host));
                }
            }
            let path = if self.path == "*" {
                "*".to_owned()
            } else {
                escape(&self.path, Mode::Path)
            };
            if !path.is_empty() && !path.starts_with('/') && !self.host.is_empty() {
                buf.push('/');
            }
            if buf.is_empty() && path.split('/').next().unwrap_or("").contains(':') {
                buf.push_str("./");
            }
            buf.push_str(&path);
        }
        if !self.raw_query.is_empty() {
            buf.push('?');
            buf.push_str(&self.raw_query);
        }
        if !self.fragment.is_empty() {
            buf.push('#');
            buf.push_str(&escape(&self.fragment, Mode::Fragment));
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        let u = GoUrl::parse("HTTP://u%40x:p@Host.Example:80/a%20b/c?x=1&y#fr%21ag").unwrap();
        assert_eq!(u.scheme, "http");
        assert_eq!(u.host, "Host.Example:80");
        assert_eq!(u.hostname(), "Host.Example");
        assert_eq!(u.path, "/a b/c");
        assert_eq!(u.raw_query, "x=1&y");
        assert_eq!(u.fragment, "fr!ag");
        assert_eq!(u.userinfo(), "u%40x:p");
        let u = GoUrl::parse("mailto:joe@example.com").unwrap();
        assert_eq!(u.opaque, "joe@example.com");
        let u = GoUrl::parse("http://[::1]:8080/").unwrap();
        assert_eq!(u.hostname(), "::1");
        assert_eq!(
            GoUrl::parse("1.2.3.4:80").unwrap_err(),
            "parse \"1.2.3.4:80\": first path segment in URL cannot contain colon"
        );
        assert_eq!(
            GoUrl::parse("http://a b/").unwrap_err(),
            "parse \"http://a b/\": invalid character \" \" in host name"
        );
        assert_eq!(
            GoUrl::parse("http://h/%zz").unwrap_err(),
            "parse \"http://h/%zz\": invalid URL escape \"%zz\""
        );
        assert_eq!(
            GoUrl::parse(":x").unwrap_err(),
            "parse \":x\": missing protocol scheme"
        );
    }

    #[test]
    fn strings_like_go() {
        let u = GoUrl {
            scheme: "https".into(),
            host: "h:1".into(),
            path: "a b".into(),
            raw_query: "q=1".into(),
            fragment: "f g".into(),
            user: Some(("u@".into(), Some("p:".into()))),
            ..GoUrl::default()
        };
        assert_eq!(u.to_go_string(), "https://u%40:p%3A@h:1/a%20b?q=1#f%20g");
        assert_eq!(query_escape("ns/name x"), "ns%2Fname+x");
    }
}
