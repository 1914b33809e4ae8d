//! `Endpoint`: a connector address (`spec.address` or an address extension), parsed once so that
//! the proxy's per-request checks ("does this host belong to the connector?") are plain compares.

use std::fmt;
use std::str::FromStr;

use crate::ModelError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("http") {
            Ok(Self::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Ok(Self::Https)
        } else {
            Err(ModelError::InvalidAddress {
                address: s.to_owned(),
                reason: "the scheme must be http or https".to_owned(),
            })
        }
    }
}

/// A parsed `http(s)://host[:port][/prefix]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    scheme: Scheme,
    /// Lower case; an IPv6 address without brackets.
    host: String,
    port: u16,
    /// `""` or `/a/b` (no trailing slash).
    path_prefix: String,
}

impl Endpoint {
    /// Parses a connector address.
    ///
    /// Rejects what would make the proxy ambiguous or leak credentials: a missing or non-HTTP
    /// scheme, user info (credentials belong in a Secret, where they are protected), a query or
    /// fragment (there is nowhere to put them on each upstream request), and an empty host.
    pub fn parse(address: &str) -> Result<Self, ModelError> {
        let raw = address.trim();
        let fail = |reason: &str| ModelError::InvalidAddress {
            address: redact_address(raw),
            reason: reason.to_owned(),
        };
        if raw.is_empty() {
            return Err(fail(
                "it is empty; write it as https://host[:port][/prefix]",
            ));
        }
        // Without "://", `url` reads `registry.example.com:5000` as scheme `registry.example.com`;
        // say what is really missing instead.
        if !raw.contains("://") {
            return Err(fail(
                "it has no scheme; write it as https://host[:port][/prefix] (or http:// for a plain-HTTP registry)",
            ));
        }
        let url = url::Url::parse(raw).map_err(|e| match e {
            url::ParseError::EmptyHost => fail("it has no host"),
            other => fail(&format!("it is not a valid URL ({other})")),
        })?;
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(fail("the scheme must be http or https")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(fail(
                "it contains a user name or password; put credentials in a Secret, not in the address",
            ));
        }
        if url.query().is_some() {
            return Err(fail("it has a query string (?…); remove it"));
        }
        if url.fragment().is_some() {
            return Err(fail("it has a fragment (#…); remove it"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => {
                // One spelling per host, the one `matches` compares with: a single trailing dot
                // (the DNS root) is dropped, and a name that no request could ever match — empty
                // labels, characters DNS names do not have — is refused here, at load time.
                let d = d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase();
                let valid = d.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
                if !valid {
                    return Err(fail(
                        "its host is not a DNS name (labels of letters, digits, '-' or '_', separated by single dots)",
                    ));
                }
                d
            }
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(fail("it has no host")),
        };
        let port = url.port().unwrap_or(scheme.default_port());
        let path_prefix = url.path().trim_end_matches('/').to_owned();
        Ok(Self {
            scheme,
            host,
            port,
            path_prefix,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Lower-case host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The explicit port, or 80/443 from the scheme.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `""` for a root address, else `/prefix` without a trailing slash; the proxy puts it in front
    /// of `/v2/…` on every upstream request.
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    /// `host:port`, always with the port (IPv6 in brackets): the form of a `CONNECT` target and
    /// of a dial address.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.bracketed_host(), self.port)
    }

    /// The `Host` header value: like [`Endpoint::authority`] but without a default port, as
    /// clients send it.
    pub fn host_header(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.bracketed_host()
        } else {
            self.authority()
        }
    }

    /// `scheme://host[:port]`, no path.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.host_header())
    }

    /// Whether a request target (scheme, host, port) is this endpoint. The host compares
    /// case-insensitively and may carry IPv6 brackets or a trailing dot.
    pub fn matches(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        scheme == self.scheme && port == self.port && normalize_host(host) == self.host
    }

    /// Like [`Endpoint::matches`] without the scheme: what a `CONNECT host:port` can check.
    pub fn matches_authority(&self, host: &str, port: u16) -> bool {
        port == self.port && normalize_host(host) == self.host
    }

    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

fn normalize_host(host: &str) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = host.parse::<std::net::Ipv6Addr>() {
        // One spelling per address: `2001:0DB8::1` and `2001:db8::1` are the same host.
        return ip.to_string();
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

/// `scheme://host[:port]/prefix`, leaving out a default port: the canonical form of the address.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin(), self.path_prefix)
    }
}

impl FromStr for Endpoint {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What of a rejected address may go into a message: user info and everything from `?` or `#` on
/// are replaced by `***`, since that is where people put passwords and tokens.
fn redact_address(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => ("", raw),
    };
    let cut = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before, after) = rest.split_at(cut);
    let authority_end = before.find('/').unwrap_or(before.len());
    let (authority, path) = before.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    let tail = if after.is_empty() {
        ""
    } else if after.starts_with('?') {
        "?***"
    } else {
        "#***"
    };
    format!("{scheme}{authority}{path}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the catalog_yaml fuzz target: a host that parsed but that no request could match.
    #[test]
    fn every_accepted_host_can_be_matched() {
        let e = Endpoint::parse("https://Registry.Example.com./v2").unwrap();
        assert_eq!(e.host(), "registry.example.com");
        assert!(e.matches(Scheme::Https, "registry.example.com.", 443));
        assert!(e.matches(Scheme::Https, "REGISTRY.example.com", 443));
        for bad in [
            "https://r.example.c44(i.........../..:",
            "https://r..example.com",
            "https://r.example.com..",
            "https://.example.com",
        ] {
            let err = Endpoint::parse(bad).unwrap_err().to_string();
            assert!(err.contains("not a DNS name"), "{bad}: {err}");
        }
    }

    #[test]
    fn parses_addresses() {
        // (input, scheme, host, port, prefix, authority, display)
        let cases = [
            (
                "https://registry.example.com",
                Scheme::Https,
                "registry.example.com",
                443,
                "",
                "registry.example.com:443",
                "https://registry.example.com",
            ),
            (
                "https://Registry.Example.COM/",
                Scheme::Https,
                "registry.example.com",
                443,
                "",
                "registry.example.com:443",
                "https://registry.example.com",
            ),
            (
                "http://localhost:5000",
                Scheme::Http,
                "localhost",
                5000,
                "",
                "localhost:5000",
                "http://localhost:5000",
            ),
            (
                "HTTPS://r.example.com:443/gitlab/",
                Scheme::Https,
                "r.example.com",
                443,
                "/gitlab",
                "r.example.com:443",
                "https://r.example.com/gitlab",
            ),
            (
                "https://r/a/b//",
                Scheme::Https,
                "r",
                443,
                "/a/b",
                "r:443",
                "https://r/a/b",
            ),
            (
                "http://10.0.0.1",
                Scheme::Http,
                "10.0.0.1",
                80,
                "",
                "10.0.0.1:80",
                "http://10.0.0.1",
            ),
            (
                "https://[::1]:8443/p",
                Scheme::Https,
                "::1",
                8443,
                "/p",
                "[::1]:8443",
                "https://[::1]:8443/p",
            ),
            (
                "  https://r.example.com  ",
                Scheme::Https,
                "r.example.com",
                443,
                "",
                "r.example.com:443",
                "https://r.example.com",
            ),
        ];
        for (input, scheme, host, port, prefix, authority, display) in cases {
            let e = Endpoint::parse(input).unwrap_or_else(|err| panic!("{input}: {err}"));
            assert_eq!(e.scheme(), scheme, "{input}");
            assert_eq!(e.host(), host, "{input}");
            assert_eq!(e.port(), port, "{input}");
            assert_eq!(e.path_prefix(), prefix, "{input}");
            assert_eq!(e.authority(), authority, "{input}");
            assert_eq!(e.to_string(), display, "{input}");
            assert_eq!(e, display.parse().unwrap(), "{input} round trip");
        }
    }

    #[test]
    fn rejects_bad_addresses() {
        // (input, part of the message, text that must not appear)
        let cases = [
            ("", "empty", None),
            ("registry.example.com", "no scheme", None),
            ("registry.example.com:5000", "no scheme", None),
            ("ftp://r.example.com", "http or https", None),
            (
                "https://user:hunter2@r.example.com",
                "put credentials in a Secret, not in the address",
                Some("hunter2"),
            ),
            (
                "https://token-only@r.example.com",
                "put credentials in a Secret",
                Some("token-only"),
            ),
            (
                "https://r.example.com/?token=hunter2",
                "query",
                Some("hunter2"),
            ),
            (
                "https://r.example.com/#hunter2",
                "fragment",
                Some("hunter2"),
            ),
            ("https://", "no host", None),
            ("https://r.example.com:99999", "not a valid URL", None),
        ];
        for (input, want, secret) in cases {
            let err = Endpoint::parse(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input}: {err}");
            if let Some(secret) = secret {
                assert!(!err.contains(secret), "{input}: {err}");
            }
        }
    }

    #[test]
    fn redacts() {
        let cases = [
            ("https://u:p@h/x?t=1", "https://***@h/x?***"),
            ("u:p@h", "***@h"),
            ("https://h/x#f", "https://h/x#***"),
            ("https://h/a@b", "https://h/a@b"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_address(input), want);
        }
    }

    #[test]
    fn matches_targets() {
        let e = Endpoint::parse("https://Registry.example.com").unwrap();
        let v6 = Endpoint::parse("http://[2001:db8::1]:5000").unwrap();
        // (endpoint, scheme, host, port, want)
        let cases = [
            (&e, Scheme::Https, "registry.example.com", 443, true),
            (&e, Scheme::Https, "REGISTRY.EXAMPLE.COM", 443, true),
            (&e, Scheme::Https, "registry.example.com.", 443, true),
            (&e, Scheme::Http, "registry.example.com", 443, false),
            (&e, Scheme::Https, "registry.example.com", 80, false),
            (&e, Scheme::Https, "other.example.com", 443, false),
            (&v6, Scheme::Http, "[2001:db8::1]", 5000, true),
            (&v6, Scheme::Http, "2001:DB8::1", 5000, true),
            (&v6, Scheme::Http, "2001:0db8:0::1", 5000, true),
            (&v6, Scheme::Http, "2001:db8::2", 5000, false),
        ];
        for (ep, scheme, host, port, want) in cases {
            assert_eq!(
                ep.matches(scheme, host, port),
                want,
                "{ep} vs {scheme}://{host}:{port}"
            );
        }
        assert!(e.matches_authority("registry.example.com", 443));
        assert_eq!(v6.host_header(), "[2001:db8::1]:5000");
        assert_eq!(e.host_header(), "registry.example.com");
        assert_eq!(v6.origin(), "http://[2001:db8::1]:5000");
    }

    #[test]
    fn scheme_from_str() {
        assert_eq!("HTTPS".parse::<Scheme>().unwrap(), Scheme::Https);
        assert_eq!("http".parse::<Scheme>().unwrap(), Scheme::Http);
        assert!("ftp".parse::<Scheme>().is_err());
    }
}
