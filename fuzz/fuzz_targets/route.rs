//! Reverse-mode router (crates/proxy/src/route.rs) and the OCI path split behind it.
//!
//! Input: `<host>\n<path>` (no newline: the whole input is the path, without `Host`).
//! Properties: never panics; a routed request names a valid connector, its mount's base and the
//! remaining path put back together give the original path; a repository parsed from what is
//! routed never has an empty, `.` or `..` segment; a host-form connector survives its own
//! `c-<name>.<ns>` spelling.
#![no_main]

use connectors_proxy::route::{Mount, Route, connector_from_host, route};
use connectors_registry::parse_oci_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (host, path) = match input.split_once('\n') {
        Some((h, p)) => (Some(h), p),
        None => (None, input),
    };
    match route(path, host) {
        Route::Registry { mount, rest } => {
            let c = mount.connector();
            assert!(
                connectors_model::ConnectorRef::new(c.namespace.clone(), c.name.clone()).is_ok(),
                "routed to invalid connector {c:?}"
            );
            assert_eq!(format!("{}{rest}", mount.v2_base()), path, "mount and rest");
            if let Mount::Host(_) = mount {
                assert!(host.is_some(), "host mount without a host");
            }
            if let Some(oci) = parse_oci_path(&rest) {
                let repo = oci.repository;
                assert!(
                    repo.split('/')
                        .all(|s| !s.is_empty() && s != "." && s != ".."),
                    "{path:?} routed to repository {repo:?}"
                );
                let full = format!("{}{repo}", mount.repository_prefix());
                assert!(!full.split('/').any(|s| s == ".." || s == "."), "{full:?}");
            }
        }
        Route::Ping(Some(mount)) => {
            let base = mount.v2_base();
            assert_eq!(
                path.trim_end_matches('/'),
                base.trim_end_matches('/'),
                "ping"
            );
        }
        Route::Ping(None) | Route::BadConnectorPath(_) | Route::Health | Route::NotFound => {}
    }
    if let Some(h) = host
        && let Some(c) = connector_from_host(h)
    {
        let spelled = format!("c-{}.{}", c.name, c.namespace);
        assert_eq!(
            connector_from_host(&spelled).as_ref(),
            Some(&c),
            "via {spelled:?}"
        );
    }
});
