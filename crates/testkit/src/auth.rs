//! containers `auth.json` files.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A containers-auth.json(5) file.
#[derive(Debug)]
pub struct AuthFile;

impl AuthFile {
    /// Writes `dir/auth.json` = `{"auths":{"<host>":{"auth":"base64(user:password)"}}}`
    /// (creating `dir`) and returns its path. `host` is e.g. `127.0.0.1:5000` or
    /// `registry.test:443`.
    pub fn write(dir: impl AsRef<Path>, host: &str, user: &str, password: &str) -> PathBuf {
        Self::write_many(dir, &[(host, user, password)])
    }

    /// Like [`AuthFile::write`] with several `(host, user, password)` entries.
    pub fn write_many(dir: impl AsRef<Path>, entries: &[(&str, &str, &str)]) -> PathBuf {
        let path = dir.as_ref().join("auth.json");
        let auths: serde_json::Map<String, serde_json::Value> = entries
            .iter()
            .map(|(host, user, password)| {
                (
                    (*host).to_owned(),
                    serde_json::json!({"auth": STANDARD.encode(format!("{user}:{password}"))}),
                )
            })
            .collect();
        let text = serde_json::to_string_pretty(&serde_json::json!({"auths": auths}))
            .expect("serialise auth.json");
        crate::util::write_file(&path, text);
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_expected_json() {
        let dir = tempfile::tempdir().unwrap();
        let p = AuthFile::write(dir.path(), "127.0.0.1:5001", "testuser", "testpass");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"auths": {"127.0.0.1:5001": {"auth": "dGVzdHVzZXI6dGVzdHBhc3M="}}})
        );
    }
}
