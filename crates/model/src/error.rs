//! `ModelError`: everything that can be wrong with a resource on its own.
//!
//! Every message names the resource and the key or field to fix. None of them ever contains a secret
//! value: they end up in logs, in `status` conditions and in HTTP error bodies.

/// An error in one resource (an address, a Secret), independent of any other resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// `address` is a redacted form of what the user wrote: credentials and query strings are cut
    /// out before the error is built, because they are exactly the parts that may hold a secret.
    #[error("address {address:?} is not usable: {reason}")]
    InvalidAddress { address: String, reason: String },

    /// A value that is present but cannot be used (bad base64, not UTF-8, …). `reason` is always
    /// written by us and never quotes the value.
    #[error("secret {secret}: key {key:?}: {reason}")]
    InvalidSecretValue {
        secret: String,
        key: String,
        reason: String,
    },

    #[error(
        "secret {secret} (type {secret_type}) has no key {key:?}; add it under `stringData` (plain text) or `data` (base64)"
    )]
    MissingSecretKey {
        secret: String,
        secret_type: String,
        key: String,
    },

    #[error(
        "secret {secret} has type {secret_type:?}, which cannot hold registry credentials; use one of: {accepted}"
    )]
    UnsupportedSecretType {
        secret: String,
        secret_type: String,
        accepted: String,
    },

    /// The `.dockerconfigjson` document has the wrong shape. `reason` names positions and entry
    /// keys only.
    #[error("secret {secret}: key \".dockerconfigjson\": {reason}")]
    InvalidDockerConfig { secret: String, reason: String },

    /// Lists the `auths` keys (registry host names) so the user sees what to rename; the entries'
    /// credentials are never shown.
    #[error(
        "secret {secret}: key \".dockerconfigjson\" has no `auths` entry for {registry}; {}",
        describe_available(.available)
    )]
    NoDockerConfigEntry {
        secret: String,
        registry: String,
        available: Vec<String>,
    },

    #[error(
        "secret {secret} holds no CA certificate: add keys ending in .crt or .pem that hold PEM text (-----BEGIN CERTIFICATE-----)"
    )]
    NoCaCertificate { secret: String },
}

fn describe_available(available: &[String]) -> String {
    if available.is_empty() {
        "it has no entries at all".to_owned()
    } else {
        let quoted: Vec<String> = available.iter().map(|k| format!("{k:?}")).collect();
        format!(
            "it has entries for: {} (an entry key must be the registry's host[:port], optionally with https://)",
            quoted.join(", ")
        )
    }
}
