//! Reverse mode's part of shaping the response (phase 6 of [`crate::phases`]), and the request side of
//! it: rewriting what points at the upstream back into the proxy's namespace, and the mount source of a
//! cross-repository mount into the upstream's.

/// The upstream origin and path prefix that `/v2/` lives under.
#[derive(Debug, Clone)]
pub struct UpstreamBase<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: u16,
    /// The address's own path prefix, `""` or `/prefix`.
    pub path_prefix: &'a str,
}

/// Rewrites a `Location` (or a `Link` target) that points at the upstream's `/v2/` into the client's view
/// (`v2_base`, e.g. `/v2/namespaces/ns/connectors/name/`). Returns `None` to leave the value untouched:
/// another host (object storage, a CDN), or a path outside `/v2/`.
pub fn rewrite_location(value: &str, upstream: &UpstreamBase<'_>, v2_base: &str) -> Option<String> {
    let path_and_query = if value.starts_with('/') && !value.starts_with("//") {
        value
    } else {
        let url = url::Url::parse(value).ok()?;
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        if !url.scheme().eq_ignore_ascii_case(upstream.scheme)
            || !host.eq_ignore_ascii_case(upstream.host)
            || url.port_or_known_default() != Some(upstream.port)
        {
            return None;
        }
        let start = value.find("://").map(|i| i + 3)?;
        let after_authority = value[start..].find('/').map(|i| start + i)?;
        &value[after_authority..]
    };
    let rest = path_and_query
        .strip_prefix(upstream.path_prefix)?
        .strip_prefix("/v2/")?;
    Some(format!("{v2_base}{rest}"))
}

/// Rewrites every `<target>` in a `Link` header value with [`rewrite_location`].
pub fn rewrite_link(value: &str, upstream: &UpstreamBase<'_>, v2_base: &str) -> String {
    let mut out = String::with_capacity(value.len() + 64);
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|i| open + i) else {
            break;
        };
        out.push_str(&rest[..=open]);
        let target = &rest[open + 1..close];
        out.push_str(
            &rewrite_location(target, upstream, v2_base).unwrap_or_else(|| target.to_owned()),
        );
        out.push('>');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Rewrites the query of a blob-upload `POST` for a cross-repository mount. The client names the
/// source repository in its own view (`from=namespaces/<ns>/connectors/<name>/<repo>`); the upstream
/// needs `<repo>`. A source outside this connector cannot be mounted here: `mount` and `from` are then
/// dropped so the registry opens a normal upload and the client sends the blob.
///
/// Returns `None` when the query needs no change.
pub fn rewrite_mount_query(query: &str, repository_prefix: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let from = pairs
        .iter()
        .find(|(k, _)| k == "from")
        .map(|(_, v)| v.clone())?;
    let new_from = if repository_prefix.is_empty() {
        Some(from.clone())
    } else {
        from.strip_prefix(repository_prefix).map(str::to_owned)
    };
    if new_from.as_deref() == Some(from.as_str()) {
        return None;
    }
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        match (k.as_str(), &new_from) {
            ("from", Some(f)) => {
                out.append_pair("from", f);
            }
            ("from" | "mount", None) => {}
            _ => {
                out.append_pair(k, v);
            }
        }
    }
    Some(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/v2/namespaces/team-a/connectors/prod/";

    fn up() -> UpstreamBase<'static> {
        UpstreamBase {
            scheme: "http",
            host: "127.0.0.1",
            port: 5000,
            path_prefix: "",
        }
    }

    #[test]
    fn rewrites_locations_that_point_upstream() {
        let cases: Vec<(&str, Option<&str>)> = vec![
            (
                "http://127.0.0.1:5000/v2/team/app/blobs/uploads/u-1?_state=abc%3D",
                Some(
                    "/v2/namespaces/team-a/connectors/prod/team/app/blobs/uploads/u-1?_state=abc%3D",
                ),
            ),
            (
                "/v2/team/app/blobs/sha256:abc",
                Some("/v2/namespaces/team-a/connectors/prod/team/app/blobs/sha256:abc"),
            ),
            (
                "HTTP://127.0.0.1:5000/v2/app/manifests/v1",
                Some("/v2/namespaces/team-a/connectors/prod/app/manifests/v1"),
            ),
            // other hosts and ports (object storage redirects) stay untouched
            ("https://s3.example.com/bucket/blob?X-Amz-Signature=x", None),
            ("http://127.0.0.1:5001/v2/app/blobs/x", None),
            ("https://127.0.0.1:5000/v2/app/blobs/x", None),
            ("//evil.example/v2/x", None),
            // outside /v2/
            ("/other", None),
            ("not a url", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                rewrite_location(input, &up(), BASE).as_deref(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn keeps_the_address_path_prefix() {
        let upstream = UpstreamBase {
            scheme: "https",
            host: "reg.example",
            port: 443,
            path_prefix: "/mirror",
        };
        assert_eq!(
            rewrite_location(
                "https://reg.example/mirror/v2/app/blobs/uploads/1",
                &upstream,
                BASE
            )
            .as_deref(),
            Some("/v2/namespaces/team-a/connectors/prod/app/blobs/uploads/1")
        );
        assert_eq!(
            rewrite_location(
                "https://reg.example/v2/app/blobs/uploads/1",
                &upstream,
                BASE
            ),
            None
        );
        assert_eq!(
            rewrite_location("/mirror/v2/app/tags/list", &upstream, "/v2/").as_deref(),
            Some("/v2/app/tags/list")
        );
    }

    #[test]
    fn rewrites_link_headers() {
        assert_eq!(
            rewrite_link(r#"</v2/app/tags/list?last=b&n=2>; rel="next""#, &up(), BASE),
            r#"</v2/namespaces/team-a/connectors/prod/app/tags/list?last=b&n=2>; rel="next""#
        );
        assert_eq!(
            rewrite_link(
                r#"<https://cdn.example/x>; rel="next", <http://127.0.0.1:5000/v2/a/tags/list>; rel="prev""#,
                &up(),
                BASE
            ),
            r#"<https://cdn.example/x>; rel="next", </v2/namespaces/team-a/connectors/prod/a/tags/list>; rel="prev""#
        );
        assert_eq!(
            rewrite_link("garbage <unclosed", &up(), BASE),
            "garbage <unclosed"
        );
    }

    #[test]
    fn rewrites_mount_sources() {
        let prefix = "namespaces/team-a/connectors/prod/";
        assert_eq!(
            rewrite_mount_query(
                "mount=sha256%3Aabc&from=namespaces%2Fteam-a%2Fconnectors%2Fprod%2Fteam%2Fbase",
                prefix
            )
            .as_deref(),
            Some("mount=sha256%3Aabc&from=team%2Fbase")
        );
        // a source in another connector or outside the proxy: plain upload instead of a mount
        assert_eq!(
            rewrite_mount_query(
                "mount=sha256%3Aabc&from=namespaces%2Fteam-b%2Fconnectors%2Fx%2Fbase&other=1",
                prefix
            )
            .as_deref(),
            Some("other=1")
        );
        assert_eq!(
            rewrite_mount_query("mount=sha256%3Aabc&from=library%2Fbase", prefix).as_deref(),
            Some("")
        );
        // nothing to do
        assert_eq!(rewrite_mount_query("digest=sha256%3Aabc", prefix), None);
        assert_eq!(
            rewrite_mount_query("mount=sha256%3Aabc&from=base", ""),
            None
        );
    }
}
