//! The built-in files every mount gets (docs/rendered-files.md, "The files"), unless a class file of the same name replaces
//! them or the user excludes them.
//!
//! Decisions: single-value files (`http.proxy`, `https.proxy`, `context.token`,
//! `connector.status.proxyAddress`) have no trailing newline, like the output of the designs'
//! `{{- printf … -}}` templates (readers use `$(cat …)`, which would drop one anyway); `.env` has
//! one `export NAME='value'` line per variable, each ending in a newline; the PEM is written as
//! given.

use crate::render::{ProxyHost, RenderRequest};
use crate::template::{GoUrl, UrlMode, url_escape};

/// `no_proxy`: only loopback, so that everything else goes through the forward proxy.
const NO_PROXY: &str = "localhost,127.0.0.1";

/// Single-quotes `s` for POSIX shells.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `http://<ns>%2F<name>[,<ns>%2F<name>…]:<token>@<proxy-host>` (the scheme is the forward
/// proxy's). The user part lists every mounted connector in order; each `ns/name` is
/// query-escaped like the designs' `printf "%s/%s" … | urlquery`, and the token is escaped as a
/// URL password (a no-op for JWTs).
pub(crate) fn proxy_url(req: &RenderRequest<'_>, proxy: &ProxyHost) -> String {
    let users: Vec<String> = req
        .connectors
        .iter()
        .map(|c| {
            let m = &c.connector.metadata;
            GoUrl::query_escape(&format!("{}/{}", m.namespace_or_default(), m.name))
        })
        .collect();
    format!(
        "{}://{}:{}@{}",
        proxy.scheme,
        users.join(","),
        url_escape(req.token.expose(), UrlMode::UserPassword),
        proxy.host
    )
}

pub(crate) fn files(req: &RenderRequest<'_>, proxy: &ProxyHost) -> Vec<(String, Vec<u8>)> {
    let url = proxy_url(req, proxy);
    let mut env = String::new();
    for (name, value) in [
        ("http_proxy", url.as_str()),
        ("https_proxy", url.as_str()),
        ("no_proxy", NO_PROXY),
        ("HTTP_PROXY", url.as_str()),
        ("HTTPS_PROXY", url.as_str()),
        ("NO_PROXY", NO_PROXY),
    ] {
        env.push_str(&format!("export {name}={}\n", sh_quote(value)));
    }
    let pem = req.ca_cert_pem.as_bytes().to_vec();
    let last_address = req
        .connectors
        .last()
        .map(|c| c.proxy_address.clone())
        .unwrap_or_default();
    vec![
        ("http.proxy".into(), url.clone().into_bytes()),
        ("https.proxy".into(), url.into_bytes()),
        (".env".into(), env.into_bytes()),
        (
            "context.token".into(),
            req.token.expose().as_bytes().to_vec(),
        ),
        ("context.proxy.caCert".into(), pem.clone()),
        ("ca.crt".into(), pem.clone()),
        ("ca.cert".into(), pem),
        (
            "connector.status.proxyAddress".into(),
            last_address.into_bytes(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
