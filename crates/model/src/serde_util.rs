//! Small serde helpers shared by the resource types.

use serde::{Deserialize, Deserializer};

/// Reads an explicit `null` as the default value.
///
/// People write `labels:` or `params:` with nothing after them; YAML reads that as `null`, and
/// plain `#[serde(default)]` only covers a *missing* field, so without this such a manifest would
/// be rejected although `kubectl apply` accepts it.
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}
