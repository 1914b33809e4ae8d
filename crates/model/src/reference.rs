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
    #[error("{what} {value:?} in connector reference is not a valid Kubernetes name: {rule}")]
    InvalidName {
        what: &'static str,
        value: String,
        rule: &'static str,
    },
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

/// What Kubernetes accepts (API-NOTES §8.33): a namespace is a DNS-1123 label, a connector name a DNS-1123
/// subdomain (the host form `c-<name>.<ns>` further needs a name without dots; that form just does not
/// match such names).
fn check_name(what: &'static str, value: &str) -> Result<(), ParseConnectorRefError> {
    let (ok, rule) = if what == "namespace" {
        (
            is_dns1123_label(value),
            "a namespace is a DNS-1123 label: lower-case letters, digits and '-', at most 63 characters, \
             starting and ending with a letter or digit",
        )
    } else {
        (
            value.len() <= 253 && value.split('.').all(is_dns1123_label),
            "a connector name is a DNS-1123 subdomain: dot-separated labels of lower-case letters, digits \
             and '-', each starting and ending with a letter or digit, at most 253 characters in all",
        )
    };
    if ok {
        Ok(())
    } else {
        Err(ParseConnectorRefError::InvalidName {
            what,
            value: quotable(value),
            rule,
        })
    }
}

/// The bad value as an error may quote it: not at all when it is long or looks like a token (proxy tokens
/// contain `ct1.`, Kubernetes tokens `eyJ`), because a token pasted where a name goes would otherwise end
/// up in a response or a log.
fn quotable(value: &str) -> String {
    if value.len() > 64 || value.contains("ct1.") || value.contains("eyJ") {
        format!(
            "({} characters, not quoted: long or like a token)",
            value.len()
        )
    } else {
        value.to_owned()
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn is_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
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
    fn namespaces_are_labels_and_names_are_subdomains() {
        let long_label = "a".repeat(63);
        assert!(ConnectorRef::new(long_label.as_str(), "prod").is_ok());
        let too_long = "a".repeat(64);
        let err = ConnectorRef::new(too_long.as_str(), "prod").unwrap_err();
        assert!(err.to_string().contains("DNS-1123 label"), "{err}");
        assert!(ConnectorRef::new("team-a", "prod.eu-1").is_ok());
        let name = format!("{long_label}.{long_label}.{long_label}.{}", "b".repeat(61));
        assert_eq!(name.len(), 253);
        assert!(ConnectorRef::new("team-a", name.as_str()).is_ok());
        let err = ConnectorRef::new("team-a", format!("{name}x").as_str()).unwrap_err();
        assert!(err.to_string().contains("DNS-1123 subdomain"), "{err}");
    }

    #[test]
    fn a_token_in_place_of_a_name_is_not_quoted() {
        let token = "ct1.eyJzdWIiOiJ4In0.c2ln";
        let err = ConnectorRef::new(token, "prod").unwrap_err().to_string();
        assert!(!err.contains(token) && err.contains("not quoted"), "{err}");
        let err = ConnectorRef::new("Team", "prod").unwrap_err().to_string();
        assert!(err.contains("\"Team\""), "{err}");
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
            "team.a/prod",
            "team-a/prod..x",
            "team-a/prod.-x",
            "team-a/.prod",
        ] {
            assert!(
                input.parse::<ConnectorRef>().is_err(),
                "{input} should be rejected"
            );
        }
    }
}
