//! What a request to a registry needs: the repository it touches and the token scopes that allow it.

use http::Method;

/// The part of an OCI distribution path after `/v2/`, split into repository and endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciPath<'a> {
    pub repository: &'a str,
    pub endpoint: Endpoint<'a>,
}

/// The distribution API endpoints a workload uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    Manifest {
        reference: &'a str,
    },
    Blob {
        digest: &'a str,
    },
    /// `blobs/uploads/` (start) or `blobs/uploads/<id>` (continue, finish, status, cancel).
    Upload {
        id: Option<&'a str>,
    },
    TagsList,
    Referrers {
        digest: &'a str,
    },
}

impl Endpoint<'_> {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::Manifest { .. } => "manifest",
            Endpoint::Blob { .. } => "blob",
            Endpoint::Upload { .. } => "upload",
            Endpoint::TagsList => "tags",
            Endpoint::Referrers { .. } => "referrers",
        }
    }
}

/// Splits `<repository>/<endpoint…>` (the path after `/v2/`, without the query).
///
/// Repository names may contain `/`, so the endpoint is recognised from the end of the path; the
/// repository must be a valid distribution name (lower-case components of `[a-z0-9._-]`).
pub fn parse_oci_path(rest: &str) -> Option<OciPath<'_>> {
    let segments: Vec<&str> = rest.split('/').collect();
    let n = segments.len();
    let cut = |k: usize| -> Option<&str> {
        // the repository is the first n-k segments
        let len: usize = segments[..n - k]
            .iter()
            .map(|s| s.len() + 1)
            .sum::<usize>()
            .checked_sub(1)?;
        let repo = &rest[..len];
        valid_repository(repo).then_some(repo)
    };
    // The last segment (a tag, digest or upload id) goes upstream as it is: allow only what those can
    // hold, so that no `..`, `.`, or percent-encoded traversal reaches the registry.
    let last = segments[n - 1];
    if !last.is_empty() && !valid_reference(last) {
        return None;
    }
    let endpoint = if n >= 3 && segments[n - 2] == "tags" && segments[n - 1] == "list" {
        (2, Endpoint::TagsList)
    } else if n >= 2 && segments[n - 2] == "manifests" && !segments[n - 1].is_empty() {
        (
            2,
            Endpoint::Manifest {
                reference: segments[n - 1],
            },
        )
    } else if n >= 4 && segments[n - 3] == "blobs" && segments[n - 2] == "uploads" {
        let id = segments[n - 1];
        (
            3,
            Endpoint::Upload {
                id: (!id.is_empty()).then_some(id),
            },
        )
    } else if n >= 3 && segments[n - 2] == "blobs" && segments[n - 1] == "uploads" {
        (2, Endpoint::Upload { id: None })
    } else if n >= 2 && segments[n - 2] == "blobs" && !segments[n - 1].is_empty() {
        (
            2,
            Endpoint::Blob {
                digest: segments[n - 1],
            },
        )
    } else if n >= 2 && segments[n - 2] == "referrers" && !segments[n - 1].is_empty() {
        (
            2,
            Endpoint::Referrers {
                digest: segments[n - 1],
            },
        )
    } else {
        return None;
    };
    Some(OciPath {
        repository: cut(endpoint.0)?,
        endpoint: endpoint.1,
    })
}

/// A tag (`[A-Za-z0-9_][A-Za-z0-9._-]*`), a digest (`algorithm:hex`, `+`, `.`, `_`, `-` allowed in the
/// algorithm) or an upload id (UUID-like, or base64url): at most 255 characters, never `.` or `..`.
fn valid_reference(s: &str) -> bool {
    s.len() <= 255
        && s != "."
        && s != ".."
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'+' | b'=')
        })
}

/// A distribution repository name: `/`-separated components of lower-case letters, digits and
/// single separators (`.`, `_`, `__`, `-`…), at most 255 characters.
pub fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b.first()
                    .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
                && b.last()
                    .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
                && b.iter().all(|x| {
                    x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
                })
        })
}

/// A token scope, `repository:<name>:<actions>` (or any other `<type>:<name>:<actions>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub resource_type: String,
    pub name: String,
    /// Sorted, de-duplicated.
    pub actions: Vec<String>,
}

impl Scope {
    pub fn repository(name: &str, actions: &[&str]) -> Self {
        let mut actions: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
        actions.sort();
        actions.dedup();
        Scope {
            resource_type: "repository".into(),
            name: name.into(),
            actions,
        }
    }

    /// Parses `type:name:actions`. The name may itself contain `:` (a registry host with a port), so the
    /// type ends at the first `:` and the actions start after the last one.
    pub fn parse(s: &str) -> Option<Self> {
        let (resource_type, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if resource_type.is_empty() || name.is_empty() {
            return None;
        }
        let mut actions: Vec<String> = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        actions.sort();
        actions.dedup();
        Some(Scope {
            resource_type: resource_type.into(),
            name: name.into(),
            actions,
        })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.resource_type,
            self.name,
            self.actions.join(",")
        )
    }
}

/// The scopes a request needs: `pull` to read, `pull,push` to write, `delete` to delete, plus `pull`
/// on the source repository of a cross-repository mount (`?mount=<digest>&from=<repo>`).
pub fn scopes_for(method: &Method, path: &OciPath<'_>, query: Option<&str>) -> Vec<Scope> {
    let actions: &[&str] = match *method {
        Method::GET | Method::HEAD => &["pull"],
        Method::DELETE => &["delete"],
        _ => &["pull", "push"],
    };
    let mut scopes = vec![Scope::repository(path.repository, actions)];
    if matches!(path.endpoint, Endpoint::Upload { id: None })
        && *method == Method::POST
        && let Some(from) = query_param(query.unwrap_or(""), "from")
        && from != path.repository
        && valid_repository(&from)
    {
        scopes.push(Scope::repository(&from, &["pull"]));
    }
    scopes
}

/// Merges scopes with the same type and name, joining their actions; the result is sorted.
pub fn merge_scopes(scopes: impl IntoIterator<Item = Scope>) -> Vec<Scope> {
    let mut merged: Vec<Scope> = Vec::new();
    for s in scopes {
        match merged
            .iter_mut()
            .find(|m| m.resource_type == s.resource_type && m.name == s.name)
        {
            Some(m) => {
                m.actions.extend(s.actions);
                m.actions.sort();
                m.actions.dedup();
            }
            None => merged.push(s),
        }
    }
    merged.sort();
    merged
}

/// The first value of a query parameter, percent-decoded.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oci_paths() {
        use Endpoint::*;
        let cases: Vec<(&str, Option<(&str, Endpoint)>)> = vec![
            (
                "team/app/manifests/v1",
                Some(("team/app", Manifest { reference: "v1" })),
            ),
            (
                "app/manifests/sha256:abc",
                Some((
                    "app",
                    Manifest {
                        reference: "sha256:abc",
                    },
                )),
            ),
            (
                "a/b/c/blobs/sha256:abc",
                Some((
                    "a/b/c",
                    Blob {
                        digest: "sha256:abc",
                    },
                )),
            ),
            ("app/blobs/uploads/", Some(("app", Upload { id: None }))),
            ("app/blobs/uploads", Some(("app", Upload { id: None }))),
            (
                "app/blobs/uploads/1f2e-uuid",
                Some((
                    "app",
                    Upload {
                        id: Some("1f2e-uuid"),
                    },
                )),
            ),
            ("app/tags/list", Some(("app", TagsList))),
            (
                "app/referrers/sha256:abc",
                Some((
                    "app",
                    Referrers {
                        digest: "sha256:abc",
                    },
                )),
            ),
            // repository components that look like endpoints
            (
                "blobs/manifests/v1",
                Some(("blobs", Manifest { reference: "v1" })),
            ),
            (
                "x/blobs/uploads/manifests/v1",
                Some(("x/blobs/uploads", Manifest { reference: "v1" })),
            ),
            ("tags/tags/list", Some(("tags", TagsList))),
            // not OCI paths
            ("", None),
            ("app", None),
            ("app/manifests/", None),
            ("manifests/v1", None),
            ("App/manifests/v1", None),
            ("a//b/manifests/v1", None),
            ("../x/manifests/v1", None),
            ("app/blobs/", None),
            ("app/unknown/x", None),
            // traversal and encodings in the last segment never reach the registry
            ("app/manifests/..", None),
            ("app/manifests/.", None),
            ("app/blobs/uploads/..", None),
            ("app/blobs/%2e%2e", None),
            ("app/manifests/v1%2F..", None),
            ("app/manifests/v1 x", None),
        ];
        for (input, want) in cases {
            let got = parse_oci_path(input).map(|p| (p.repository, p.endpoint));
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn scopes_follow_the_method() {
        let p = parse_oci_path("team/app/manifests/v1").unwrap();
        let s = |m: Method| {
            scopes_for(&m, &p, None)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(s(Method::GET), ["repository:team/app:pull"]);
        assert_eq!(s(Method::HEAD), ["repository:team/app:pull"]);
        assert_eq!(s(Method::PUT), ["repository:team/app:pull,push"]);
        assert_eq!(s(Method::PATCH), ["repository:team/app:pull,push"]);
        assert_eq!(s(Method::DELETE), ["repository:team/app:delete"]);
    }

    #[test]
    fn a_mount_also_needs_pull_on_the_source() {
        let p = parse_oci_path("team/app/blobs/uploads/").unwrap();
        let got: Vec<String> = scopes_for(
            &Method::POST,
            &p,
            Some("mount=sha256%3Aabc&from=team%2Fbase"),
        )
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            got,
            ["repository:team/app:pull,push", "repository:team/base:pull"]
        );
        // an invalid source is ignored rather than put into a scope
        let got = scopes_for(&Method::POST, &p, Some("mount=x&from=..%2Fetc"));
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn scope_parsing_keeps_colons_in_names() {
        let s = Scope::parse("repository:localhost:5000/app:push,pull").unwrap();
        assert_eq!(s.name, "localhost:5000/app");
        assert_eq!(s.actions, ["pull", "push"]);
        assert_eq!(s.to_string(), "repository:localhost:5000/app:pull,push");
        assert_eq!(Scope::parse("registry:catalog:*").unwrap().actions, ["*"]);
        for bad in [
            "",
            "repository",
            "repository:app",
            ":app:pull",
            "repository::pull",
        ] {
            assert!(Scope::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn merges_scopes() {
        let merged = merge_scopes([
            Scope::repository("a", &["pull"]),
            Scope::repository("b", &["pull"]),
            Scope::repository("a", &["push", "pull"]),
        ]);
        let got: Vec<String> = merged.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["repository:a:pull,push", "repository:b:pull"]);
    }
}
