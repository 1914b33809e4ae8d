//! `ConnectorRef`: the `<namespace>/<name>` that names one connector.

use std::fmt;
use std::str::FromStr;

/// Names one connector: `<namespace>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorRef {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseConnectorRefError {
    #[error("connector reference {0:?} is not of the form <namespace>/<name>")]
    Shape(String),
    #[error(
        "{what} {value:?} in connector reference is not a valid Kubernetes name (lower-case letters, digits, '-' and '.', at most 253 characters, starting and ending with a letter or digit)"
    )]
    InvalidName { what: &'static str, value: String },
}

impl ConnectorRef {
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Result<Self, ParseConnectorRefError> {
        let namespace = namespace.into();
        let name = name.into();
        check_name("namespace", &namespace)?;
        check_name("name", &name)?;
        Ok(Self { namespace, name })
    }

    /// Parses `ns/name`, and also `ns%2Fname` (a user part of a proxy URL that a client did not decode).
    /// A bare `name` takes `default_namespace` when one is given.
    pub fn parse_with_default(
        value: &str,
        default_namespace: Option<&str>,
    ) -> Result<Self, ParseConnectorRefError> {
        let value = value.trim();
        let split = value.split_once('/').or_else(|| {
            let lower = value.to_ascii_lowercase();
            lower.find("%2f").map(|i| (&value[..i], &value[i + 3..]))
        });
        match (split, default_namespace) {
            (Some((ns, name)), _) => Self::new(ns, name),
            (None, Some(ns)) => Self::new(ns, value),
            (None, None) => Err(ParseConnectorRefError::Shape(value.to_owned())),
        }
    }
}

/// A DNS-1123 subdomain: what Kubernetes accepts for namespaces and resource names.
fn check_name(what: &'static str, value: &str) -> Result<(), ParseConnectorRefError> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 253
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if ok {
        Ok(())
    } else {
        Err(ParseConnectorRefError::InvalidName {
            what,
            value: value.to_owned(),
        })
    }
}

impl FromStr for ConnectorRef {
    type Err = ParseConnectorRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_with_default(s, None)
    }
}

impl fmt::Display for ConnectorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_accepted_forms() {
        let want = ConnectorRef::new("team-a", "prod").unwrap();
        for input in [
            "team-a/prod",
            "team-a%2Fprod",
            "team-a%2fprod",
            " team-a/prod ",
        ] {
            assert_eq!(input.parse::<ConnectorRef>().unwrap(), want, "{input}");
        }
        assert_eq!(
            ConnectorRef::parse_with_default("prod", Some("team-a")).unwrap(),
            want
        );
        assert_eq!(want.to_string(), "team-a/prod");
    }

    #[test]
    fn rejects_bad_forms() {
        for input in [
            "",
            "prod",
            "/prod",
            "team-a/",
            "Team/prod",
            "a/b/c",
            "a/-b",
            "a/b c",
            "../x",
        ] {
            assert!(
                input.parse::<ConnectorRef>().is_err(),
                "{input} should be rejected"
            );
        }
    }
}
