//! Header hygiene between client and upstream.

use http::{HeaderMap, HeaderName, header};

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones this proxy must never pass on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, and those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The request headers for the upstream: no client credentials, no hop-by-hop headers, no `Host` (the
/// client sets the upstream's), and no forwarding headers that would make the registry build
/// `Location` URLs for some other host.
pub fn upstream_request_headers(mut headers: HeaderMap) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    for name in [
        header::AUTHORIZATION,
        header::HOST,
        header::COOKIE,
        header::FORWARDED,
    ] {
        headers.remove(name);
    }
    for name in [
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-for",
    ] {
        headers.remove(name);
    }
    headers
}

/// The response headers for the client: no hop-by-hop headers and no upstream challenge (the client
/// authenticates to the proxy, never to the registry).
pub fn client_response_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(header::WWW_AUTHENTICATE);
    headers.remove(header::SET_COOKIE);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn strips_credentials_and_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Basic eDp0b2tlbg=="),
            ("proxy-authorization", "Basic eA=="),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("host", "proxy:8080"),
            ("x-forwarded-proto", "https"),
            ("transfer-encoding", "chunked"),
            ("content-length", "12"),
            ("content-range", "0-11"),
            ("docker-content-digest", "sha256:x"),
            ("accept", "application/vnd.oci.image.manifest.v1+json"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = upstream_request_headers(h);
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "accept",
                "content-length",
                "content-range",
                "docker-content-digest"
            ]
        );
    }

    #[test]
    fn drops_upstream_challenges() {
        let mut h = HeaderMap::new();
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"x\""),
        );
        h.insert(
            "docker-content-digest",
            HeaderValue::from_static("sha256:x"),
        );
        client_response_headers(&mut h);
        assert!(h.get(header::WWW_AUTHENTICATE).is_none());
        assert!(h.get("docker-content-digest").is_some());
    }
}
