//! Selection, merging and template context of the rendered files (docs/rendered-files.md).

use std::collections::BTreeMap;

use connectors_model::{Configuration, Connector, ConnectorClass, SecretString};
use serde_json::{Map, Value as Json, json};

use crate::builtin;
use crate::template::{self, GoUrl};

/// One mounted connector.
#[derive(Debug)]
pub struct RenderConnector<'a> {
    /// Serialized to lower-camel JSON for templates.
    pub connector: &'a Connector,
    pub class: &'a ConnectorClass,
    /// The connector's reverse-proxy URL (what `status.proxy.httpAddress.url` holds), e.g.
    /// `http://127.0.0.1:8080/namespaces/ns/connectors/name` or
    /// `http://c-name.ns.svc.cluster.local/namespaces/ns/connectors/name`.
    pub proxy_address: String,
}

/// Everything a mount renders from.
#[derive(Debug)]
pub struct RenderRequest<'a> {
    /// In the order the user listed them; the last one is `.connector`.
    pub connectors: Vec<RenderConnector<'a>>,
    pub token: &'a SecretString,
    pub ca_cert_pem: &'a str,
    /// The forward proxy's address for `http.proxy`/`.env` and `.connectorclass.proxyAddress`,
    /// e.g. `http://127.0.0.1:8080`.
    pub class_proxy_address: String,
    /// Raw `configuration.names` split on commas, trimmed, e.g. `["registry-config", "!ca.cert"]`
    /// (see [`parse_configuration_names`]).
    pub configuration_names: Vec<String>,
    /// Raw `configuration.params` JSON (object keyed by configuration name), or `None`.
    pub configuration_params: Option<Json>,
}

/// Why nothing could be rendered. No message ever contains the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// Names were included but none matched a configuration of any mounted connector's class.
    #[error(
        "no config generated: none of the configurations {names:?} exists in the classes of the mounted connectors"
    )]
    NoConfiguration { names: Vec<String> },
    /// A parameter without a default was not given in `configuration.params`.
    #[error(
        "configuration {configuration:?} requires param {param:?}; set it in configuration.params"
    )]
    MissingParam {
        configuration: String,
        param: String,
    },
    /// `configuration.params` is not a JSON object of objects of strings.
    #[error("invalid configuration.params: {0}")]
    BadParams(String),
    /// A template failed to parse or execute; `message` is Go-worded
    /// (`template: config.json:3: function "foo" not defined`).
    #[error("failed to generate configuration: {message} (configuration {configuration:?})")]
    Template {
        file: String,
        configuration: String,
        message: String,
    },
    #[error("no connectors to render configuration for")]
    NoConnectors,
    /// `class_proxy_address` is not a URL with a host.
    #[error("invalid proxy address {address:?}: {reason}")]
    InvalidProxyAddress { address: String, reason: String },
}

/// Splits the `configuration.names` volume attribute: `"a, !b ,,"` → `["a", "!b"]`.
pub fn parse_configuration_names(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Renders the files of one mount: the included configurations of the connectors' classes, then
/// the built-in files, then the `!file` exclusions. Pure: no I/O.
///
/// Rules:
/// - for each included name (in `configuration_names` order), the configuration of that name is
///   taken from each distinct class of the connectors (grouped by class name; a class is rendered
///   once and its templates loop over `.connectors`, which holds that class's connectors in the
///   user's order, `.connector` being the last of them);
/// - classes are visited in the order of their last connector, so on a file-name clash the class
///   of the later connector wins; later configurations overwrite earlier ones;
/// - built-in files are added unless a rendered file already has their name;
/// - exclusions remove files last; included names that match nothing are an error
///   ([`RenderError::NoConfiguration`]); no names at all give the built-in files only.
pub fn render(req: &RenderRequest<'_>) -> Result<BTreeMap<String, Vec<u8>>, RenderError> {
    render_inner(req).map_err(|e| scrub(e, req.token.expose()))
}

/// Replaces the token wherever an error message might quote it (a template can put it into a
/// value that an error then prints).
fn scrub(e: RenderError, token: &str) -> RenderError {
    if token.is_empty() {
        return e;
    }
    let s = |text: String| text.replace(token, "***");
    match e {
        RenderError::Template {
            file,
            configuration,
            message,
        } => RenderError::Template {
            file: s(file),
            configuration: s(configuration),
            message: s(message),
        },
        RenderError::BadParams(m) => RenderError::BadParams(s(m)),
        RenderError::MissingParam {
            configuration,
            param,
        } => RenderError::MissingParam {
            configuration: s(configuration),
            param: s(param),
        },
        RenderError::NoConfiguration { names } => RenderError::NoConfiguration {
            names: names.into_iter().map(s).collect(),
        },
        RenderError::InvalidProxyAddress { address, reason } => RenderError::InvalidProxyAddress {
            address: s(address),
            reason: s(reason),
        },
        other => other,
    }
}

/// The forward proxy's scheme and `host[:port]`.
pub(crate) struct ProxyHost {
    pub scheme: String,
    pub host: String,
}

impl ProxyHost {
    fn parse(address: &str) -> Result<ProxyHost, RenderError> {
        let bad = |reason: String| RenderError::InvalidProxyAddress {
            address: address.to_owned(),
            reason,
        };
        let full = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let u = GoUrl::parse(&full).map_err(bad)?;
        if u.host.is_empty() {
            return Err(bad("no host".into()));
        }
        Ok(ProxyHost {
            scheme: u.scheme,
            host: u.host,
        })
    }
}

type Params = BTreeMap<String, Map<String, Json>>;

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn parse_params(v: Option<&Json>) -> Result<Params, RenderError> {
    let obj = match v {
        None | Some(Json::Null) => return Ok(Params::new()),
        Some(Json::Object(m)) => m,
        Some(other) => {
            return Err(RenderError::BadParams(format!(
                "expected a JSON object keyed by configuration name, got {}",
                json_type(other)
            )));
        }
    };
    let mut out = Params::new();
    for (conf, inner) in obj {
        let Json::Object(params) = inner else {
            return Err(RenderError::BadParams(format!(
                "the params of configuration {conf:?} must be a JSON object of strings, got {}",
                json_type(inner)
            )));
        };
        if let Some((name, v)) = params.iter().find(|(_, v)| !v.is_string()) {
            return Err(RenderError::BadParams(format!(
                "param {name:?} of configuration {conf:?} must be a string, got {}",
                json_type(v)
            )));
        }
        out.insert(conf.clone(), params.clone());
    }
    Ok(out)
}

/// The configuration's params: those given (all of them, declared or not), then the defaults of
/// the declared ones; a declared param without default that is not given is an error.
fn resolve_params(
    conf: &Configuration,
    given: Option<&Map<String, Json>>,
) -> Result<Json, RenderError> {
    let mut out = given.cloned().unwrap_or_default();
    for p in &conf.params {
        let Some(name) = p.name.as_deref() else {
            continue;
        };
        if out.contains_key(name) {
            continue;
        }
        match &p.default {
            Some(d) => {
                out.insert(name.to_owned(), d.clone());
            }
            None => {
                return Err(RenderError::MissingParam {
                    configuration: conf.name.clone(),
                    param: name.to_owned(),
                });
            }
        }
    }
    Ok(Json::Object(out))
}

/// A connector as templates see it: its lower-camel JSON with `metadata.namespace` filled in,
/// `status.proxyAddress`, and the convenience `name` and `namespace` at the top.
fn connector_json(rc: &RenderConnector<'_>) -> Json {
    let c = rc.connector;
    let ns = c.metadata.namespace_or_default().to_owned();
    let mut v = serde_json::to_value(c).unwrap_or_else(|_| json!({}));
    if !v.is_object() {
        v = json!({});
    }
    if let Json::Object(obj) = &mut v {
        match obj.get_mut("metadata") {
            Some(Json::Object(meta)) => {
                meta.insert("namespace".into(), Json::String(ns.clone()));
            }
            _ => {
                obj.insert(
                    "metadata".into(),
                    json!({"name": c.metadata.name, "namespace": ns}),
                );
            }
        }
        let addr = Json::String(rc.proxy_address.clone());
        match obj.get_mut("status") {
            Some(Json::Object(status)) => {
                status.insert("proxyAddress".into(), addr);
            }
            _ => {
                obj.insert("status".into(), json!({ "proxyAddress": addr }));
            }
        }
        obj.insert("name".into(), Json::String(c.metadata.name.clone()));
        obj.insert("namespace".into(), Json::String(ns));
    }
    v
}

/// Connectors grouped by class name, ordered by the position of each class's last connector.
struct ClassGroup<'a> {
    class: &'a ConnectorClass,
    indices: Vec<usize>,
    last: usize,
}

fn class_groups<'a>(connectors: &[RenderConnector<'a>]) -> Vec<ClassGroup<'a>> {
    let mut groups: Vec<ClassGroup<'a>> = Vec::new();
    for (i, rc) in connectors.iter().enumerate() {
        let name = &rc.class.metadata.name;
        match groups.iter_mut().find(|g| g.class.metadata.name == *name) {
            Some(g) => {
                g.class = rc.class;
                g.indices.push(i);
                g.last = i;
            }
            None => groups.push(ClassGroup {
                class: rc.class,
                indices: vec![i],
                last: i,
            }),
        }
    }
    groups.sort_by_key(|g| g.last);
    groups
}

fn render_inner(req: &RenderRequest<'_>) -> Result<BTreeMap<String, Vec<u8>>, RenderError> {
    if req.connectors.is_empty() {
        return Err(RenderError::NoConnectors);
    }
    let params = parse_params(req.configuration_params.as_ref())?;
    let proxy = ProxyHost::parse(&req.class_proxy_address)?;
    let connectors_json: Vec<Json> = req.connectors.iter().map(connector_json).collect();
    let groups = class_groups(&req.connectors);

    let mut includes = Vec::new();
    let mut excludes = Vec::new();
    for name in &req.configuration_names {
        match name.strip_prefix('!') {
            Some(file) if !file.trim().is_empty() => excludes.push(file.trim().to_owned()),
            Some(_) => {}
            None if !name.trim().is_empty() => includes.push(name.trim().to_owned()),
            None => {}
        }
    }

    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut found = false;
    for name in &includes {
        for group in &groups {
            let Some(conf) = group.class.configuration(name) else {
                continue;
            };
            found = true;
            let conf_params = resolve_params(conf, params.get(name))?;
            let ctx = context(req, group, &connectors_json, conf_params);
            for (file, text) in &conf.data {
                let out = template::parse(file, text)
                    .and_then(|t| t.execute(&ctx))
                    .map_err(|e| RenderError::Template {
                        file: file.clone(),
                        configuration: name.clone(),
                        message: e.to_string(),
                    })?;
                files.insert(file.clone(), out.into_bytes());
            }
        }
    }
    if !includes.is_empty() && !found {
        return Err(RenderError::NoConfiguration { names: includes });
    }
    for (name, content) in builtin::files(req, &proxy) {
        files.entry(name).or_insert(content);
    }
    for file in &excludes {
        files.remove(file);
    }
    Ok(files)
}

fn context(
    req: &RenderRequest<'_>,
    group: &ClassGroup<'_>,
    connectors_json: &[Json],
    params: Json,
) -> Json {
    let members: Vec<Json> = group
        .indices
        .iter()
        .filter_map(|&i| connectors_json.get(i).cloned())
        .collect();
    let connector = members.last().cloned().unwrap_or_else(|| json!({}));
    let mut class = serde_json::to_value(group.class).unwrap_or_else(|_| json!({}));
    if let Json::Object(obj) = &mut class {
        obj.insert(
            "proxyAddress".into(),
            Json::String(req.class_proxy_address.clone()),
        );
    } else {
        class = json!({ "proxyAddress": req.class_proxy_address });
    }
    json!({
        "connector": connector,
        "connectors": members,
        "context": {
            "token": req.token.expose(),
            "proxy": { "caCert": req.ca_cert_pem },
        },
        "configurations": params,
        "connectorclass": class,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names() {
        assert_eq!(parse_configuration_names("a, !b ,,"), vec!["a", "!b"]);
        assert!(parse_configuration_names(" , ").is_empty());
    }

    #[test]
    fn proxy_hosts() {
        let p = ProxyHost::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (p.scheme.as_str(), p.host.as_str()),
            ("http", "127.0.0.1:8080")
        );
        let p = ProxyHost::parse("proxy.example:3128").unwrap();
        assert_eq!(
            (p.scheme.as_str(), p.host.as_str()),
            ("http", "proxy.example:3128")
        );
        assert!(ProxyHost::parse("").is_err());
        assert!(ProxyHost::parse("http:///x").is_err());
    }
}
