//! Reverse mode's routing: which connector a request is for, and what remains of its path.
//!
//! Two forms name a connector (README.md): the path prefix `/v2/namespaces/<ns>/connectors/<name>/…`, and
//! a `Host` of the form `c-<name>.<ns>[.svc[.cluster.local]]`. The path prefix wins when both are there.

use connectors_model::ConnectorRef;

/// How the client addressed the connector; responses are rewritten back into the same form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// `/v2/namespaces/<ns>/connectors/<name>/…`
    PathPrefix(ConnectorRef),
    /// `Host: c-<name>.<ns>…` with plain `/v2/…` paths.
    Host(ConnectorRef),
}

impl Mount {
    pub fn connector(&self) -> &ConnectorRef {
        match self {
            Mount::PathPrefix(c) | Mount::Host(c) => c,
        }
    }

    /// The path that stands for the registry's `/v2/` in the client's view, with a trailing `/`.
    pub fn v2_base(&self) -> String {
        match self {
            Mount::PathPrefix(c) => {
                format!("/v2/namespaces/{}/connectors/{}/", c.namespace, c.name)
            }
            Mount::Host(_) => "/v2/".to_owned(),
        }
    }

    /// The repository prefix the client sees (`namespaces/<ns>/connectors/<name>/`), empty in host form.
    pub fn repository_prefix(&self) -> String {
        match self {
            Mount::PathPrefix(c) => format!("namespaces/{}/connectors/{}/", c.namespace, c.name),
            Mount::Host(_) => String::new(),
        }
    }
}

/// What an origin-form request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v2/`: the API version check. With a connector when one is named.
    Ping(Option<Mount>),
    /// A distribution API request for a connector; `rest` is what follows `/v2/` upstream.
    Registry { mount: Mount, rest: String },
    /// A path under `/v2/namespaces/…` that names no valid connector.
    BadConnectorPath(String),
    /// `/healthz`: liveness of the proxy itself.
    Health,
    /// Anything else.
    NotFound,
}

/// Routes an origin-form request from its path (no query) and `Host` header.
pub fn route(path: &str, host: Option<&str>) -> Route {
    if path == "/healthz" {
        return Route::Health;
    }
    let Some(after_v2) = path
        .strip_prefix("/v2/")
        .or_else(|| (path == "/v2").then_some(""))
    else {
        return Route::NotFound;
    };
    if let Err(why) = check_path(path) {
        return Route::BadConnectorPath(why);
    }
    if let Some(after_ns) = after_v2.strip_prefix("namespaces/") {
        let mut parts = after_ns.splitn(4, '/');
        let (ns, kw, name, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
        return match (ns, kw, name) {
            (Some(ns), Some("connectors"), Some(name)) => match ConnectorRef::new(ns, name) {
                Ok(c) => {
                    let mount = Mount::PathPrefix(c);
                    match rest {
                        None | Some("") => Route::Ping(Some(mount)),
                        Some(rest) => Route::Registry {
                            mount,
                            rest: rest.to_owned(),
                        },
                    }
                }
                Err(e) => Route::BadConnectorPath(e.to_string()),
            },
            _ => Route::BadConnectorPath(
                "expected /v2/namespaces/<namespace>/connectors/<name>/<repository>/…".to_owned(),
            ),
        };
    }
    let mount = host.and_then(connector_from_host).map(Mount::Host);
    match (after_v2, mount) {
        ("", mount) => Route::Ping(mount),
        (rest, Some(mount)) => Route::Registry {
            mount,
            rest: rest.to_owned(),
        },
        (_, None) => Route::NotFound,
    }
}

/// Path rules for everything under `/v2/`, checked before the path is routed or sent anywhere: no `.` or
/// `..` segment, no empty segment (a trailing `/` is allowed: it is how uploads start), and no
/// percent-encoded dot, slash, backslash or NUL, nor a raw backslash, because some server along the way
/// would decode or normalise them into a traversal. Distribution API paths never need any of these.
pub fn check_path(path: &str) -> Result<(), String> {
    const FIX: &str = "registry paths are /v2/<repository>/(manifests|blobs|tags)/…, with no '.', '..' or \
                       empty segments and no percent-encoded '.', '/' or '\\'";
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                return Err(format!("the path has a {segment:?} segment; {FIX}"));
            }
            "" if i + 1 < segments.len() => {
                return Err(format!("the path has an empty segment ('//'); {FIX}"));
            }
            _ => {}
        }
        if segment.contains('\\') {
            return Err(format!("the path contains a backslash; {FIX}"));
        }
        let lower = segment.to_ascii_lowercase();
        for encoded in ["%2e", "%2f", "%5c", "%00"] {
            if lower.contains(encoded) {
                return Err(format!(
                    "the path contains the percent-encoded {encoded:?}; {FIX}"
                ));
            }
        }
    }
    Ok(())
}

/// `c-<name>.<ns>`, `c-<name>.<ns>.svc`, `c-<name>.<ns>.svc.cluster.local`, with or without a port.
pub fn connector_from_host(host: &str) -> Option<ConnectorRef> {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let host = host.to_ascii_lowercase();
    // `c-<name>.<ns>`, optionally followed by `.svc` or `.svc.cluster.local`. Try the longest suffix first and
    // fall back to shorter ones, so that a namespace named `svc` still works in the short form
    // (`c-app.svc` is `svc/app`; found by the route fuzz target).
    [".svc.cluster.local", ".svc", ""]
        .iter()
        .filter_map(|suffix| host.strip_suffix(suffix))
        .find_map(|short| {
            let (first, ns) = short.split_once('.')?;
            let name = first.strip_prefix("c-")?;
            if ns.contains('.') {
                return None;
            }
            ConnectorRef::new(ns, name).ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(ns: &str, name: &str) -> ConnectorRef {
        ConnectorRef::new(ns, name).unwrap()
    }

    #[test]
    fn routes_requests() {
        let pp = |ns, n| Mount::PathPrefix(c(ns, n));
        let h = |ns, n| Mount::Host(c(ns, n));
        let cases: Vec<(&str, Option<&str>, Route)> = vec![
            ("/v2/", None, Route::Ping(None)),
            ("/v2", None, Route::Ping(None)),
            (
                "/v2/",
                Some("c-prod.team-a.svc"),
                Route::Ping(Some(h("team-a", "prod"))),
            ),
            (
                "/v2/namespaces/team-a/connectors/prod/",
                None,
                Route::Ping(Some(pp("team-a", "prod"))),
            ),
            (
                "/v2/namespaces/team-a/connectors/prod",
                None,
                Route::Ping(Some(pp("team-a", "prod"))),
            ),
            (
                "/v2/namespaces/team-a/connectors/prod/team/app/manifests/v1",
                None,
                Route::Registry {
                    mount: pp("team-a", "prod"),
                    rest: "team/app/manifests/v1".into(),
                },
            ),
            (
                // the path prefix wins over the host
                "/v2/namespaces/team-a/connectors/prod/app/tags/list",
                Some("c-other.team-b.svc.cluster.local:80"),
                Route::Registry {
                    mount: pp("team-a", "prod"),
                    rest: "app/tags/list".into(),
                },
            ),
            (
                "/v2/app/blobs/uploads/",
                Some("c-prod.team-a.svc.cluster.local"),
                Route::Registry {
                    mount: h("team-a", "prod"),
                    rest: "app/blobs/uploads/".into(),
                },
            ),
            (
                "/v2/app/manifests/v1",
                Some("127.0.0.1:8080"),
                Route::NotFound,
            ),
            ("/v2/app/manifests/v1", None, Route::NotFound),
            ("/healthz", None, Route::Health),
            ("/", None, Route::NotFound),
            ("/v2x/", None, Route::NotFound),
        ];
        for (path, host, want) in cases {
            assert_eq!(route(path, host), want, "{path} {host:?}");
        }
    }

    #[test]
    fn bad_connector_paths_say_why() {
        for path in [
            "/v2/namespaces/Team/connectors/prod/app/manifests/v1",
            "/v2/namespaces/team/oops/prod/x",
            "/v2/namespaces/team",
        ] {
            assert!(
                matches!(route(path, None), Route::BadConnectorPath(_)),
                "{path}"
            );
        }
    }

    #[test]
    fn traversal_and_empty_segments_are_refused() {
        for path in [
            "/v2/namespaces/team-a/connectors/prod/../other/app/manifests/v1",
            "/v2/namespaces/team-a/../team-b/connectors/prod/app/manifests/v1",
            "/v2/namespaces/team-a/connectors/./prod/app/manifests/v1",
            "/v2/namespaces/team-a/connectors/prod/%2e%2e/app/manifests/v1",
            "/v2/namespaces/team-a/connectors/prod/app%2Fx/manifests/v1",
            "/v2/namespaces/team-a/connectors/prod/app%5c..%5cx/manifests/v1",
            "/v2/namespaces/team-a/connectors/prod//app/manifests/v1",
            "/v2//namespaces/team-a/connectors/prod/app/manifests/v1",
            "/v2/namespaces/team-a/connectors/prod/app\\x/manifests/v1",
            "/v2/app/%2E%2E/manifests/v1",
        ] {
            match route(path, Some("c-prod.team-a")) {
                Route::BadConnectorPath(why) => assert!(
                    why.contains("segment") || why.contains("percent") || why.contains("backslash"),
                    "{path}: {why}"
                ),
                other => panic!("{path} was routed: {other:?}"),
            }
        }
        // a trailing slash is how uploads start
        assert!(check_path("/v2/namespaces/team-a/connectors/prod/app/blobs/uploads/").is_ok());
        assert!(check_path("/v2/").is_ok());
    }

    #[test]
    fn reads_connector_hosts() {
        assert_eq!(
            connector_from_host("c-prod.team-a"),
            Some(c("team-a", "prod"))
        );
        assert_eq!(
            connector_from_host("c-prod.team-a.svc"),
            Some(c("team-a", "prod"))
        );
        assert_eq!(
            connector_from_host("C-Prod.Team-A.svc.cluster.local:8080"),
            Some(c("team-a", "prod"))
        );
        // A namespace named `svc`, in every spelling (the route fuzz target found the short one refused).
        for host in [
            "c-pam-a.svc",
            "c-pam-a.svc.svc",
            "c-pam-a.svc.svc.cluster.local",
        ] {
            assert_eq!(connector_from_host(host), Some(c("svc", "pam-a")), "{host}");
        }
        for bad in [
            "prod.team-a",
            "c-.team-a",
            "c-prod",
            "c-prod.svc.cluster.local",
            "c-prod.team-a.example.com",
            "127.0.0.1:5000",
            "[::1]:80",
        ] {
            assert_eq!(connector_from_host(bad), None, "{bad}");
        }
    }
}
