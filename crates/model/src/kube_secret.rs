//! The Kubernetes `v1` Secret, as far as registry credentials and CA bundles need it.
//!
//! Secret values are handled with care: `Debug` lists keys only, a value of the wrong shape is
//! reported by key without echoing it (serde's usual "invalid type: integer `123456`" would print
//! a numeric password). The struct is deliberately not `Serialize`, so it cannot be written out
//! by accident. (It does not zeroize on drop: a `Drop` impl would forbid struct-update syntax
//! (`..Secret::default()`) for every user of the type, and the manifest text it came from is not
//! zeroized either; values handed to the proxy are wrapped in `SecretString`, which is.)

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use zeroize::Zeroize;

use crate::ModelError;
use crate::resources::ObjectMeta;
use crate::serde_util::null_default;

/// Secret type for the `oci` class's `tokenAuth`: `username` + `password`.
pub const SECRET_TYPE_DISTRIBUTION_TOKEN: &str = "cpaas.io/distribution-registry-token";
/// Kubernetes' built-in basic-auth type: `username` + `password`.
pub const SECRET_TYPE_BASIC_AUTH: &str = "kubernetes.io/basic-auth";
/// Kubernetes' built-in image pull secret type: `.dockerconfigjson`.
pub const SECRET_TYPE_DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";

/// A Kubernetes Secret. `data` holds base64 text as in the API; `string_data` plain text.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(default, deserialize_with = "null_default")]
    pub api_version: String,
    #[serde(default, deserialize_with = "null_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: ObjectMeta,
    /// `None` means `Opaque`, as in Kubernetes.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default, deserialize_with = "secret_map")]
    pub data: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "secret_map")]
    pub string_data: BTreeMap<String, String>,
}

impl Secret {
    /// The Secret's type, `Opaque` when unset.
    pub fn secret_type(&self) -> &str {
        match self.type_.as_deref() {
            Some(t) if !t.is_empty() => t,
            _ => "Opaque",
        }
    }

    /// `<namespace>/<name>` (namespace `default` when unset), for messages.
    pub fn display_name(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace_or_default(),
            self.metadata.name
        )
    }

    /// All keys, from `data` and `stringData`, sorted and without duplicates.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .data
            .keys()
            .chain(self.string_data.keys())
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The decoded value of `key`, `None` when absent.
    ///
    /// `stringData` wins over `data`: the API server merges `stringData` into `data` on write with
    /// exactly that precedence, so a manifest means the same here as in a cluster.
    pub fn value(&self, key: &str) -> Result<Option<Vec<u8>>, ModelError> {
        if let Some(v) = self.string_data.get(key) {
            return Ok(Some(v.as_bytes().to_vec()));
        }
        let Some(encoded) = self.data.get(key) else {
            return Ok(None);
        };
        // Go's decoder skips line breaks, and people do fold long base64 values in YAML.
        let compact: String = encoded
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let decoded = BASE64_LENIENT.decode(compact.as_bytes());
        let mut compact = compact;
        compact.zeroize();
        decoded.map(Some).map_err(|_| ModelError::InvalidSecretValue {
            secret: self.display_name(),
            key: key.to_owned(),
            reason: "the value under `data` is not valid base64 (put plain text under `stringData` instead)".to_owned(),
        })
    }

    /// Like [`Secret::value`], but the value must be UTF-8 text.
    pub fn text_value(&self, key: &str) -> Result<Option<String>, ModelError> {
        match self.value(key)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|e| {
                let mut bytes = e.into_bytes();
                bytes.zeroize();
                ModelError::InvalidSecretValue {
                    secret: self.display_name(),
                    key: key.to_owned(),
                    reason: "the value is not UTF-8 text".to_owned(),
                }
            }),
        }
    }
}

/// Standard alphabet, padding optional: Kubernetes writes padded base64, hand-made values are
/// sometimes unpadded.
const BASE64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.display_name())
            .field("type", &self.secret_type())
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

/// Deserializes `data`/`stringData` (a map of string → string) with errors that name the key but
/// never the value.
fn secret_map<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(SecretMapVisitor)
}

struct SecretMapVisitor;

const MAP_SHAPE: &str = "must be a map of key: value (a Secret's data/stringData)";

impl<'de> Visitor<'de> for SecretMapVisitor {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<SecretText>().map_err(|_| {
                de::Error::custom(format_args!(
                    "the value of key {key:?} must be a string (quote it in YAML); the value is not shown because it may be secret"
                ))
            })?;
            out.insert(key, value.0);
        }
        Ok(out)
    }

    // Every other shape: an error that does not quote the input.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(E::custom(MAP_SHAPE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(E::custom(MAP_SHAPE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(E::custom(MAP_SHAPE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(E::custom(MAP_SHAPE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(E::custom(MAP_SHAPE))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
        Err(E::custom(MAP_SHAPE))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom(MAP_SHAPE))
    }
}

/// One value of a Secret map: a string, and nothing else.
struct SecretText(String);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretTextVisitor)
    }
}

/// Accepts a string (or an empty value); every other shape is an error that does not quote it.
struct SecretTextVisitor;

const NOT_A_STRING: &str = "not a string";

impl<'de> Visitor<'de> for SecretTextVisitor {
    type Value = SecretText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretText, E> {
        Ok(SecretText(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<SecretText, E> {
        Ok(SecretText(v))
    }
    // `key:` with nothing after it: an empty value, as kubectl reads it.
    fn visit_unit<E: de::Error>(self) -> Result<SecretText, E> {
        Ok(SecretText(String::new()))
    }
    fn visit_none<E: de::Error>(self) -> Result<SecretText, E> {
        Ok(SecretText(String::new()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretText, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretText, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretText, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretText, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<SecretText, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<SecretText, A::Error> {
        Err(de::Error::custom(NOT_A_STRING))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<SecretText, A::Error> {
        Err(de::Error::custom(NOT_A_STRING))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(yaml: &str) -> Secret {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn value_merges_data_and_string_data() {
        let s = secret(
            r#"
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: ns}
type: kubernetes.io/basic-auth
data:
  username: YWxpY2U=        # alice
  password: b2xk            # old (unpadded is fine)
  folded: "YWxp\n  Y2U="
  bad: "%%%"
stringData:
  password: new
  empty:
"#,
        );
        // (key, want)
        type Want<'a> = Result<Option<&'a [u8]>, ()>;
        let cases: [(&str, Want); 6] = [
            ("username", Ok(Some(b"alice"))),
            ("password", Ok(Some(b"new"))),
            ("folded", Ok(Some(b"alice"))),
            ("empty", Ok(Some(b""))),
            ("missing", Ok(None)),
            ("bad", Err(())),
        ];
        for (key, want) in cases {
            let got = s.value(key);
            match want {
                Ok(v) => assert_eq!(got.unwrap().as_deref(), v, "{key}"),
                Err(()) => {
                    let e = got.unwrap_err().to_string();
                    assert!(e.contains("ns/s") && e.contains("\"bad\""), "{e}");
                    assert!(!e.contains("%%%"), "{e}");
                }
            }
        }
        assert_eq!(s.secret_type(), "kubernetes.io/basic-auth");
        assert_eq!(s.keys(), ["bad", "empty", "folded", "password", "username"]);
    }

    #[test]
    fn wrong_shapes_are_reported_without_the_value() {
        let cases = [
            "stringData: {password: 12345678}",
            "stringData: {password: true}",
            "stringData: {password: [canary]}",
            "stringData: {password: {canary: 1}}",
            "data: canary-text",
            "data: 12345678",
            "stringData: [canary]",
        ];
        for yaml in cases {
            let err = serde_yaml_ng::from_str::<Secret>(yaml)
                .err()
                .unwrap_or_else(|| panic!("{yaml} should fail"))
                .to_string();
            assert!(
                !err.contains("12345678") && !err.contains("canary"),
                "{yaml}: {err}"
            );
        }
        let err = serde_yaml_ng::from_str::<Secret>("stringData: {password: 12345678}")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("\"password\""), "{err}");
    }

    #[test]
    fn debug_shows_keys_not_values() {
        let s = secret(
            "metadata: {name: s}\nstringData: {password: canary-pw}\ndata: {token: Y2FuYXJ5}",
        );
        let dbg = format!("{s:?}");
        assert!(
            dbg.contains("password") && dbg.contains("default/s"),
            "{dbg}"
        );
        assert!(
            !dbg.contains("canary") && !dbg.contains("Y2FuYXJ5"),
            "{dbg}"
        );
        assert_eq!(s.secret_type(), "Opaque");
    }

    #[test]
    fn text_value_requires_utf8() {
        let s = secret("metadata: {name: s}\ndata: {bin: //79}");
        let e = s.text_value("bin").unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }
}
