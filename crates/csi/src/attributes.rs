//! The volume attributes a Pod sets on a `connectors-csi` volume (docs/kubernetes.md, "CSI driver in the cluster").

use std::collections::HashMap;
use std::time::Duration;

use connectors_model::ConnectorRef;

use crate::CsiError;
use crate::render::parse_configuration_names;

/// `connectors`: comma-separated `ns/name` or `name` (a bare name is in the Pod's namespace).
pub const CONNECTORS: &str = "connectors";
/// `connector.name` (deprecated): one connector.
pub const CONNECTOR_NAME: &str = "connector.name";
/// `connector.namespace` (deprecated): the namespace for `connector.name`; default the Pod's.
pub const CONNECTOR_NAMESPACE: &str = "connector.namespace";
/// `configuration.names`: comma-separated configuration names; `!<file>` drops a file.
pub const CONFIGURATION_NAMES: &str = "configuration.names";
/// `configuration.params`: JSON `{"<configuration>": {"<param>": "<value>"}}`.
pub const CONFIGURATION_PARAMS: &str = "configuration.params";
/// `token.expiration`: Go duration, default 30m.
pub const TOKEN_EXPIRATION: &str = "token.expiration";

/// The default lifetime of the issued proxy token.
pub const DEFAULT_TOKEN_EXPIRATION: Duration = Duration::from_secs(30 * 60);

/// The parsed volume attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeAttributes {
    /// In the order written, without repeats.
    pub connectors: Vec<ConnectorRef>,
    pub configuration_names: Vec<String>,
    pub configuration_params: Option<serde_json::Value>,
    pub token_expiration: Duration,
}

impl VolumeAttributes {
    /// Reads the attributes from a volume context; `pod_namespace` resolves bare connector names.
    pub fn parse(
        context: &HashMap<String, String>,
        pod_namespace: Option<&str>,
    ) -> Result<Self, CsiError> {
        let get = |key: &str| context.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());

        let connectors = match (get(CONNECTORS), get(CONNECTOR_NAME)) {
            (Some(list), deprecated) => {
                if deprecated.is_some() {
                    tracing::warn!(
                        "volume sets both `connectors` and the deprecated `connector.name`; using `connectors`"
                    );
                }
                parse_connector_list(list, pod_namespace)?
            }
            (None, Some(name)) => {
                let namespace = get(CONNECTOR_NAMESPACE).or(pod_namespace);
                vec![parse_one(name, namespace, CONNECTOR_NAME)?]
            }
            (None, None) => {
                return Err(CsiError::InvalidArgument(format!(
                    "volume attribute {CONNECTORS:?} is required: set it to the connectors to mount, comma-separated `<namespace>/<name>` or `<name>` (the Pod's namespace), e.g. connectors: \"team-a/registry\""
                )));
            }
        };

        let configuration_names = get(CONFIGURATION_NAMES)
            .map(parse_configuration_names)
            .unwrap_or_default();

        let configuration_params = match get(CONFIGURATION_PARAMS) {
            None => None,
            Some(raw) => {
                let value: serde_json::Value = serde_json::from_str(raw).map_err(|err| {
                    CsiError::InvalidArgument(format!(
                        "volume attribute {CONFIGURATION_PARAMS:?} is not valid JSON ({err}); expected an object keyed by configuration name, e.g. {{\"settings\": {{\"mirrorRepository\": \"maven-public\"}}}}"
                    ))
                })?;
                if !value.is_object() {
                    return Err(CsiError::InvalidArgument(format!(
                        "volume attribute {CONFIGURATION_PARAMS:?} must be a JSON object keyed by configuration name, e.g. {{\"settings\": {{\"mirrorRepository\": \"maven-public\"}}}}"
                    )));
                }
                Some(value)
            }
        };

        let token_expiration = match get(TOKEN_EXPIRATION) {
            None => DEFAULT_TOKEN_EXPIRATION,
            Some(raw) => match parse_go_duration(raw) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    return Err(CsiError::InvalidArgument(format!(
                        "volume attribute {TOKEN_EXPIRATION:?} is {raw:?}; it must be longer than zero, e.g. 30m"
                    )));
                }
                Err(reason) => {
                    return Err(CsiError::InvalidArgument(format!(
                        "volume attribute {TOKEN_EXPIRATION:?} is {raw:?} ({reason}); expected a Go duration such as 30m, 1h30m or 90s"
                    )));
                }
            },
        };

        Ok(Self {
            connectors,
            configuration_names,
            configuration_params,
            token_expiration,
        })
    }
}

fn parse_connector_list(
    list: &str,
    pod_namespace: Option<&str>,
) -> Result<Vec<ConnectorRef>, CsiError> {
    let mut out: Vec<ConnectorRef> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let reference = parse_one(item, pod_namespace, CONNECTORS)?;
        if !out.contains(&reference) {
            out.push(reference);
        }
    }
    if out.is_empty() {
        return Err(CsiError::InvalidArgument(format!(
            "volume attribute {CONNECTORS:?} names no connector; expected comma-separated `<namespace>/<name>` or `<name>`"
        )));
    }
    Ok(out)
}

fn parse_one(
    item: &str,
    namespace: Option<&str>,
    attribute: &str,
) -> Result<ConnectorRef, CsiError> {
    if !item.contains('/') && namespace.is_none() {
        return Err(CsiError::InvalidArgument(format!(
            "volume attribute {attribute:?}: connector {item:?} has no namespace and the Pod's namespace is unknown (no {:?} in the volume context); write it as `<namespace>/{item}`",
            crate::pod::POD_NAMESPACE
        )));
    }
    ConnectorRef::parse_with_default(item, namespace)
        .map_err(|err| CsiError::InvalidArgument(format!("volume attribute {attribute:?}: {err}")))
}

/// Parses a Go `time.Duration` string: a sequence of decimal numbers, each with an optional fraction and a unit
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), e.g. `30m`, `1h30m`, `1.5h`, `90s`. A lone `0` is zero. Negative
/// durations are refused: a lifetime cannot be negative.
pub fn parse_go_duration(input: &str) -> Result<Duration, String> {
    let mut rest = input.strip_prefix('+').unwrap_or(input);
    if rest.starts_with('-') {
        return Err("negative durations are not allowed".to_owned());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(f) => {
                let len = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(len)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err("expected a number".to_owned());
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err("missing unit (ns, us, ms, s, m or h)".to_owned()),
            other => return Err(format!("unknown unit {other:?}")),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part
                .parse()
                .map_err(|_| "number too large".to_owned())?
        };
        let mut nanos = whole
            .checked_mul(unit_nanos)
            .ok_or_else(|| "duration too large".to_owned())?;
        // The fraction, digit by digit, so that 1.5h is exact.
        let mut scale = unit_nanos;
        for digit in frac_part.bytes().map(|b| u128::from(b - b'0')) {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += digit * scale;
        }
        total_nanos = total_nanos
            .checked_add(nanos)
            .filter(|n| *n <= u128::from(u64::MAX))
            .ok_or_else(|| "duration too large".to_owned())?;
        rest = after;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| "duration too large")?;
    // The remainder is below 10^9, so it fits.
    let subsec = u32::try_from(total_nanos % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, subsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn go_durations() {
        let ok = [
            ("30m", 1800.0),
            ("60m", 3600.0),
            ("1h30m", 5400.0),
            ("90s", 90.0),
            ("1.5h", 5400.0),
            ("+2h", 7200.0),
            ("1h0m0s", 3600.0),
            ("500ms", 0.5),
            ("1m30.5s", 90.5),
            (".5s", 0.5),
            ("1µs", 0.000_001),
            ("0", 0.0),
        ];
        for (input, secs) in ok {
            let got = parse_go_duration(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert!(
                (got.as_secs_f64() - secs).abs() < 1e-9,
                "{input}: {got:?} != {secs}"
            );
        }
        for input in [
            "", "30", "m", "30x", "1d", "-5m", "1h 30m", ".m", "30 m", "1e3s",
        ] {
            assert!(parse_go_duration(input).is_err(), "{input} should fail");
        }
        assert!(parse_go_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn connectors_and_defaults() {
        let a = VolumeAttributes::parse(
            &ctx(&[(CONNECTORS, " team-a/reg , other ,team-a/reg,")]),
            Some("pods"),
        )
        .unwrap();
        let names: Vec<String> = a.connectors.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["team-a/reg", "pods/other"]);
        assert_eq!(a.token_expiration, DEFAULT_TOKEN_EXPIRATION);
        assert!(a.configuration_names.is_empty());
        assert_eq!(a.configuration_params, None);
    }

    #[test]
    fn deprecated_connector_name() {
        let a = VolumeAttributes::parse(&ctx(&[(CONNECTOR_NAME, "reg")]), Some("pods")).unwrap();
        assert_eq!(a.connectors[0].to_string(), "pods/reg");
        let a = VolumeAttributes::parse(
            &ctx(&[(CONNECTOR_NAME, "reg"), (CONNECTOR_NAMESPACE, "team-b")]),
            Some("pods"),
        )
        .unwrap();
        assert_eq!(a.connectors[0].to_string(), "team-b/reg");
        // `connectors` wins over the deprecated pair.
        let a = VolumeAttributes::parse(
            &ctx(&[(CONNECTORS, "x/y"), (CONNECTOR_NAME, "reg")]),
            Some("pods"),
        )
        .unwrap();
        assert_eq!(a.connectors[0].to_string(), "x/y");
    }

    #[test]
    fn errors_name_the_attribute() {
        let cases: [(&[(&str, &str)], &str); 7] = [
            (&[], "\"connectors\" is required"),
            (&[(CONNECTORS, " , ")], "names no connector"),
            (&[(CONNECTORS, "Bad_Name")], "\"connectors\""),
            (
                &[(CONNECTORS, "a/b"), (TOKEN_EXPIRATION, "soon")],
                "\"token.expiration\" is \"soon\"",
            ),
            (
                &[(CONNECTORS, "a/b"), (TOKEN_EXPIRATION, "0s")],
                "longer than zero",
            ),
            (
                &[(CONNECTORS, "a/b"), (CONFIGURATION_PARAMS, "{nope")],
                "\"configuration.params\" is not valid JSON",
            ),
            (
                &[(CONNECTORS, "a/b"), (CONFIGURATION_PARAMS, "[1]")],
                "must be a JSON object",
            ),
        ];
        for (pairs, want) in cases {
            let err = VolumeAttributes::parse(&ctx(pairs), Some("pods")).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
        }
        let err = VolumeAttributes::parse(&ctx(&[(CONNECTORS, "reg")]), None).unwrap_err();
        assert!(
            err.to_string().contains("Pod's namespace is unknown"),
            "{err}"
        );
    }
}
