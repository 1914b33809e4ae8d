//! Catalog YAML loader (crates/catalog): `StaticCatalog::from_yaml`, the loader `FileCatalog` uses.
//!
//! Input: YAML text, possibly several documents. Properties: never panics; a loaded catalog lists
//! its connectors sorted and unique, finds each by its reference, and each connector owns its own
//! address; a connector that cannot be used says why in a non-empty reason.
#![no_main]

use connectors_catalog::{Catalog, StaticCatalog};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(catalog) = StaticCatalog::from_yaml(yaml) else {
        return;
    };
    let all = catalog.connectors();
    for pair in all.windows(2) {
        assert!(
            pair[0].reference < pair[1].reference,
            "not sorted and unique"
        );
    }
    for c in &all {
        let found = catalog
            .connector(&c.reference)
            .expect("listed connector not found");
        assert_eq!(found.reference, c.reference);
        let a = &c.address;
        assert!(
            c.owns(a.scheme(), a.host(), a.port()),
            "connector does not own its address"
        );
        if let Err(reason) = &c.credentials {
            assert!(!reason.is_empty(), "unusable without a reason");
        }
        assert!(catalog.class(c.class_name()).is_some() || !c.is_usable());
    }
    assert!(catalog.class("oci").is_some(), "built-in class missing");
});
