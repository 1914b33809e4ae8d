//! Token scopes and OCI paths (crates/registry/src/scope.rs).
//!
//! Input: `<path>?<query>` as it follows `/v2/`, or a scope string; both parsers see every input.
//! Properties: never panics; a parsed scope prints back to a string that parses to the same scope;
//! a parsed path names a valid repository that is a prefix of the input and has no `.`/`..`/empty
//! segment; the scopes a request needs name that repository and parse back.
#![no_main]

use connectors_registry::scope::{
    Endpoint as OciEndpoint, Scope, merge_scopes, parse_oci_path, query_param, scopes_for,
    valid_repository,
};
use http::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };

    if let Some(scope) = Scope::parse(input) {
        let printed = scope.to_string();
        assert_eq!(
            Scope::parse(&printed).as_ref(),
            Some(&scope),
            "via {printed:?}"
        );
        assert!(
            scope.actions.windows(2).all(|w| w[0] < w[1]),
            "actions sorted and unique"
        );
    }

    let (path, query) = match input.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (input, None),
    };
    if let Some(q) = query {
        let _ = query_param(q, "mount");
        let _ = query_param(q, "from");
    }
    let Some(oci) = parse_oci_path(path) else {
        return;
    };
    let repo = oci.repository;
    assert!(valid_repository(repo), "{repo:?} accepted but not valid");
    assert!(
        path.starts_with(repo),
        "{repo:?} is not a prefix of {path:?}"
    );
    assert!(
        repo.split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".."),
        "repository {repo:?} has an empty, `.` or `..` segment"
    );
    let last = match oci.endpoint {
        OciEndpoint::Manifest { reference } => Some(reference),
        OciEndpoint::Blob { digest } | OciEndpoint::Referrers { digest } => Some(digest),
        OciEndpoint::Upload { id } => id,
        OciEndpoint::TagsList => None,
    };
    if let Some(last) = last {
        assert!(
            !last.is_empty() && last != "." && last != ".." && !last.contains(['/', '%']),
            "reference {last:?} would reach the registry"
        );
    }
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::POST] {
        let scopes = scopes_for(&method, &oci, query);
        assert!(!scopes.is_empty(), "no scope for {method} {path:?}");
        assert!(
            scopes.iter().any(|s| s.name == repo),
            "scopes {scopes:?} miss {repo:?}"
        );
        for s in &scopes {
            assert_eq!(Scope::parse(&s.to_string()).as_ref(), Some(s));
        }
        let merged = merge_scopes(scopes.clone());
        assert!(merged.len() <= scopes.len());
    }
});
