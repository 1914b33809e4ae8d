//! `CatalogError`: why a set of manifests cannot be loaded.
//!
//! Each message starts with the file, then the resource, then (where it applies) the field, so a
//! user can go straight to the line to fix. Messages never contain a Secret value: type errors in
//! Secrets are produced by `connectors-model`'s Secret deserializer, which does not quote values.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A file or folder cannot be read (missing, permissions, not UTF-8 …).
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The text is not YAML. `message` carries the parser's own position text as well.
    #[error("{}{}: invalid YAML: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Yaml {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },

    /// The resource does not have the shape of its kind (e.g. a list where a string belongs).
    /// `message` names the field path and line, as the YAML deserializer reports them.
    #[error("{}: {resource}: {message}", file.display())]
    Schema {
        file: PathBuf,
        resource: String,
        message: String,
    },

    /// A field has a value we cannot use.
    #[error("{}: {resource}: {field}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        /// e.g. `Connector team-a/prod`
        resource: String,
        /// e.g. `spec.address`
        field: String,
        message: String,
    },

    /// The same kind/namespace/name appears twice; which one is meant would depend on file order.
    #[error("{second}: {resource}: defined again; it is already defined in {first}")]
    Duplicate {
        resource: String,
        /// `<file> (document N)` of the first definition.
        first: String,
        /// `<file> (document N)` of the second definition.
        second: String,
    },
}
