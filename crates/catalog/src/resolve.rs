//! From parsed resources to an immutable snapshot: validation, cross-resource resolution
//! (class, secret, CA) and fingerprints.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use connectors_model::{
    Connector, ConnectorClass, ConnectorRef, Endpoint, RegistryCredentials, Secret,
    builtin_oci_class, ca_pems_from_secret, credentials_from_secret,
};

use crate::load::{Located, Origin, Resources};
use crate::{CatalogError, ResolvedConnector};

/// Everything the catalog serves, built once per (re)load and never mutated: readers on the
/// request path take an `Arc` of it without locking.
pub(crate) struct Snapshot {
    pub connectors: HashMap<ConnectorRef, Arc<ResolvedConnector>>,
    /// The same connectors, sorted by reference.
    pub ordered: Vec<Arc<ResolvedConnector>>,
    pub classes: HashMap<String, Arc<ConnectorClass>>,
    /// Changes when anything served changes; `reload` compares it to report `changed`.
    pub digest: u64,
}

impl Snapshot {
    /// Validates and resolves `resources`.
    ///
    /// Errors in a resource on its own (a bad address, a missing name, a duplicate) fail the
    /// whole build: they are typos the user should see at once. Problems between resources (a
    /// missing Secret or class) do not: the connector is kept but unusable, with the reason,
    /// because the other connectors should keep working and the Secret may simply come later.
    pub fn build(resources: Resources, hash_state: &RandomState) -> Result<Self, CatalogError> {
        check_duplicates(&resources)?;

        let mut classes: HashMap<String, Arc<ConnectorClass>> = HashMap::new();
        let builtin = builtin_oci_class();
        classes.insert(builtin.metadata.name.clone(), Arc::new(builtin));
        for class in &resources.classes {
            validate_class(class)?;
            // Decision: a class from the files replaces the built-in one of the same name, so an
            // operator can adjust `oci` (say, make tokenAuth mandatory) without a new release.
            if classes
                .insert(
                    class.value.metadata.name.clone(),
                    Arc::new(class.value.clone()),
                )
                .is_some()
            {
                tracing::debug!(class = %class.value.metadata.name, file = %class.origin, "a ConnectorClass from the files replaces the built-in one");
            }
        }

        let secrets: HashMap<(&str, &str), &Secret> = resources
            .secrets
            .iter()
            .map(|s| {
                let meta = &s.value.metadata;
                ((meta.namespace_or_default(), meta.name.as_str()), &s.value)
            })
            .collect();

        let mut ordered = Vec::with_capacity(resources.connectors.len());
        for located in &resources.connectors {
            let (address, extensions) = validate_connector(located)?;
            let (reference, connector) = &located.value;
            let class = classes.get(&connector.spec.connector_class_name);
            let (credentials, ca_pems) = resolve_access(
                reference,
                connector,
                &address,
                &extensions,
                class.map(Arc::as_ref),
                &secrets,
            );
            if let Err(reason) = &credentials {
                tracing::warn!(connector = %reference, file = %located.origin, %reason, "connector is unusable until this is fixed; requests through it are refused");
            }
            let fingerprint = fingerprint(
                hash_state,
                reference,
                connector,
                class.map(Arc::as_ref),
                &credentials,
                &ca_pems,
            );
            ordered.push(Arc::new(ResolvedConnector {
                reference: reference.clone(),
                connector: connector.clone(),
                address,
                extensions,
                credentials,
                ca_pems,
                fingerprint,
            }));
        }
        ordered.sort_by(|a, b| a.reference.cmp(&b.reference));

        let digest = digest(hash_state, &ordered, &classes);
        let connectors = ordered
            .iter()
            .map(|c| (c.reference.clone(), Arc::clone(c)))
            .collect();
        Ok(Self {
            connectors,
            ordered,
            classes,
            digest,
        })
    }
}

fn check_duplicates(resources: &Resources) -> Result<(), CatalogError> {
    let mut seen: HashMap<&str, &Origin> = HashMap::new();
    let keys = resources
        .connectors
        .iter()
        .map(|c| (&c.label, &c.origin))
        .chain(resources.classes.iter().map(|c| (&c.label, &c.origin)))
        .chain(resources.secrets.iter().map(|s| (&s.label, &s.origin)));
    for (label, origin) in keys {
        // The label is `<Kind> <ns>/<name>` (or `ConnectorClass <name>`): one per resource identity.
        match seen.entry(label.as_str()) {
            Entry::Vacant(v) => {
                v.insert(origin);
            }
            Entry::Occupied(o) => {
                return Err(CatalogError::Duplicate {
                    resource: label.clone(),
                    first: o.get().to_string(),
                    second: origin.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn validate_class(class: &Located<ConnectorClass>) -> Result<(), CatalogError> {
    let spec = &class.value.spec;
    let auth_names = spec
        .auth
        .iter()
        .flat_map(|a| &a.types)
        .map(|t| t.name.as_str());
    unique_names(class, "spec.auth.types", auth_names)?;
    unique_names(
        class,
        "spec.configurations",
        spec.configurations.iter().map(|c| c.name.as_str()),
    )?;
    unique_names(
        class,
        "spec.addressExtensions",
        spec.address_extensions
            .iter()
            .map(|p| p.name.as_deref().unwrap_or_default()),
    )?;
    Ok(())
}

/// Each name must be set and appear once; `list` is the field path of the list.
fn unique_names<'a, T>(
    resource: &Located<T>,
    list: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), CatalogError> {
    let mut seen = BTreeSet::new();
    for (i, name) in names.enumerate() {
        let field = format!("{list}[{i}].name");
        if name.is_empty() {
            return Err(resource.invalid(&field, "is required"));
        }
        if !seen.insert(name) {
            return Err(resource.invalid(&field, format!("{name:?} appears more than once")));
        }
    }
    Ok(())
}

type Extensions = Vec<(String, Endpoint)>;

/// The checks that need nothing but the connector itself.
fn validate_connector(
    located: &Located<(ConnectorRef, Connector)>,
) -> Result<(Endpoint, Extensions), CatalogError> {
    let spec = &located.value.1.spec;
    if spec.connector_class_name.is_empty() {
        return Err(located.invalid(
            "spec.connectorClassName",
            "is required; use `oci` for container registries",
        ));
    }
    if spec.address.trim().is_empty() {
        return Err(located.invalid(
            "spec.address",
            "is required, e.g. https://registry.example.com",
        ));
    }
    let address = Endpoint::parse(&spec.address)
        .map_err(|e| located.invalid("spec.address", e.to_string()))?;

    unique_names(
        located,
        "spec.addressExtensions",
        spec.address_extensions.iter().map(|e| e.name.as_str()),
    )?;
    let mut extensions = Vec::with_capacity(spec.address_extensions.len());
    for (i, ext) in spec.address_extensions.iter().enumerate() {
        let field = format!("spec.addressExtensions[{i}].value");
        let Some(value) = ext.string_value().filter(|v| !v.trim().is_empty()) else {
            return Err(located.invalid(&field, "must be an http(s) URL"));
        };
        let endpoint =
            Endpoint::parse(&value).map_err(|e| located.invalid(&field, e.to_string()))?;
        if endpoint == address {
            return Err(
                located.invalid(&field, "is the same as spec.address; remove the extension")
            );
        }
        extensions.push((ext.name.clone(), endpoint));
    }

    if spec
        .auth
        .as_ref()
        .and_then(|a| a.secret_ref.as_ref())
        .is_some_and(|r| r.name.is_empty())
    {
        return Err(located.invalid(
            "spec.auth.secretRef.name",
            "is empty; name a Secret in the connector's namespace, or remove secretRef for anonymous access",
        ));
    }
    if spec
        .ca_cert_secret_ref
        .as_ref()
        .is_some_and(|r| r.name.is_empty())
    {
        return Err(located.invalid(
            "spec.caCertSecretRef.name",
            "is empty; name a Secret in the connector's namespace, or remove caCertSecretRef",
        ));
    }
    Ok((address, extensions))
}

/// Decides whether the connector may be used and with which credentials and CAs. An `Err` is the
/// reason shown to whoever tries to use it: it names the resources and what to change, and never
/// a secret value (model errors guarantee that for the Secret parts).
fn resolve_access(
    reference: &ConnectorRef,
    connector: &Connector,
    address: &Endpoint,
    extensions: &Extensions,
    class: Option<&ConnectorClass>,
    secrets: &HashMap<(&str, &str), &Secret>,
) -> (Result<RegistryCredentials, String>, Vec<String>) {
    let class_name = &connector.spec.connector_class_name;
    let Some(class) = class else {
        return (
            Err(format!(
                "ConnectorClass {class_name:?} (spec.connectorClassName of Connector {reference}) not found; use \"oci\" or define that class"
            )),
            Vec::new(),
        );
    };
    let result = check_extensions(reference, class, extensions)
        .and_then(|()| credentials(reference, connector, address, class, secrets))
        .and_then(|creds| Ok((creds, ca_pems(reference, connector, secrets)?)));
    match result {
        Ok((creds, pems)) => (Ok(creds), pems),
        Err(reason) => (Err(reason), Vec::new()),
    }
}

/// A class that declares address extensions allows only those, and requires the ones without a
/// default. A class that declares none (like the built-in `oci`) accepts any.
fn check_extensions(
    reference: &ConnectorRef,
    class: &ConnectorClass,
    extensions: &Extensions,
) -> Result<(), String> {
    let declared = &class.spec.address_extensions;
    if declared.is_empty() {
        return Ok(());
    }
    let class_name = &class.metadata.name;
    let names: Vec<&str> = declared.iter().filter_map(|p| p.name.as_deref()).collect();
    for (name, _) in extensions {
        if !names.contains(&name.as_str()) {
            return Err(format!(
                "Connector {reference}: spec.addressExtensions has {name:?}, which ConnectorClass {class_name:?} does not declare (it declares: {})",
                names.join(", ")
            ));
        }
    }
    for p in declared.iter().filter(|p| p.default.is_none()) {
        let name = p.name.as_deref().unwrap_or_default();
        if !extensions.iter().any(|(n, _)| n == name) {
            return Err(format!(
                "Connector {reference}: spec.addressExtensions lacks {name:?}, which ConnectorClass {class_name:?} requires"
            ));
        }
    }
    Ok(())
}

fn credentials(
    reference: &ConnectorRef,
    connector: &Connector,
    address: &Endpoint,
    class: &ConnectorClass,
    secrets: &HashMap<(&str, &str), &Secret>,
) -> Result<RegistryCredentials, String> {
    let class_name = &class.metadata.name;
    let auth = connector.spec.auth.as_ref();
    let secret_ref = auth.and_then(|a| a.secret_ref.as_ref());
    let types = class.auth_types();
    let declared = || {
        types
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };

    let auth_type = match auth.and_then(|a| a.name.as_deref()).filter(|n| !n.is_empty()) {
        Some(name) => Some(class.auth_type(name).ok_or_else(|| {
            if types.is_empty() {
                format!(
                    "Connector {reference}: spec.auth.name is {name:?}, but ConnectorClass {class_name:?} declares no auth types; remove spec.auth"
                )
            } else {
                format!(
                    "Connector {reference}: spec.auth.name {name:?} is not an auth type of ConnectorClass {class_name:?}; use one of: {}",
                    declared()
                )
            }
        })?),
        None => match types {
            [] => None,
            [only] => Some(only),
            _ => {
                return Err(format!(
                    "Connector {reference}: spec.auth.name is not set and ConnectorClass {class_name:?} has several auth types; set it to one of: {}",
                    declared()
                ));
            }
        },
    };

    let Some(secret_ref) = secret_ref else {
        return match auth_type {
            Some(t) if !t.optional => Err(format!(
                "Connector {reference} has no spec.auth.secretRef, but auth type {:?} of ConnectorClass {class_name:?} requires a Secret{}",
                t.name,
                t.secret_type
                    .as_deref()
                    .map(|st| format!(" of type {st}"))
                    .unwrap_or_default()
            )),
            _ => Ok(RegistryCredentials::Anonymous),
        };
    };
    if auth_type.is_none() {
        return Err(format!(
            "Connector {reference}: ConnectorClass {class_name:?} declares no auth types, so spec.auth.secretRef cannot be used; remove it"
        ));
    }
    let namespace = &reference.namespace;
    if let Some(other) = secret_ref
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty() && *ns != namespace)
    {
        return Err(format!(
            "Connector {reference}: spec.auth.secretRef.namespace is {other:?}, but the Secret must be in the connector's own namespace {namespace:?}; copy the Secret there and drop secretRef.namespace"
        ));
    }
    let secret_name = &secret_ref.name;
    let secret = secrets
        .get(&(namespace.as_str(), secret_name.as_str()))
        .ok_or_else(|| {
            format!(
                "Secret {namespace}/{secret_name} (spec.auth.secretRef of Connector {reference}) not found"
            )
        })?;
    credentials_from_secret(secret, address)
        .map_err(|e| format!("Connector {reference}: spec.auth.secretRef: {e}"))
}

fn ca_pems(
    reference: &ConnectorRef,
    connector: &Connector,
    secrets: &HashMap<(&str, &str), &Secret>,
) -> Result<Vec<String>, String> {
    let Some(ca_ref) = connector.spec.ca_cert_secret_ref.as_ref() else {
        return Ok(Vec::new());
    };
    let namespace = &reference.namespace;
    let name = &ca_ref.name;
    // Decision: a CA secret that is missing or holds no certificate makes the connector unusable
    // rather than falling back to the system roots. The user asked for that CA; a clear reason
    // here beats an opaque TLS failure later.
    let secret = secrets
        .get(&(namespace.as_str(), name.as_str()))
        .ok_or_else(|| {
            format!(
                "Secret {namespace}/{name} (spec.caCertSecretRef of Connector {reference}) not found"
            )
        })?;
    ca_pems_from_secret(secret)
        .map_err(|e| format!("Connector {reference}: spec.caCertSecretRef: {e}"))
}

/// Serialized form used for hashing; the model types serialize infallibly (strings and JSON
/// values only), so an error can only mean "nothing to hash".
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A value that changes whenever anything that decides upstream access changes: the spec, the
/// class, the credentials and the CAs.
///
/// Keyed with the catalog's per-process `RandomState`, so a logged or exposed fingerprint says
/// nothing about the password that went into it.
fn fingerprint(
    hash_state: &RandomState,
    reference: &ConnectorRef,
    connector: &Connector,
    class: Option<&ConnectorClass>,
    credentials: &Result<RegistryCredentials, String>,
    ca_pems: &[String],
) -> u64 {
    let mut h = hash_state.build_hasher();
    reference.hash(&mut h);
    json(&connector.spec).hash(&mut h);
    class.map(json).hash(&mut h);
    match credentials {
        Ok(RegistryCredentials::Anonymous) => 0u8.hash(&mut h),
        Ok(RegistryCredentials::Basic { username, password }) => {
            1u8.hash(&mut h);
            username.hash(&mut h);
            password.expose().hash(&mut h);
        }
        Err(reason) => {
            2u8.hash(&mut h);
            reason.hash(&mut h);
        }
    }
    ca_pems.hash(&mut h);
    h.finish()
}

fn digest(
    hash_state: &RandomState,
    connectors: &[Arc<ResolvedConnector>],
    classes: &HashMap<String, Arc<ConnectorClass>>,
) -> u64 {
    let mut h = hash_state.build_hasher();
    for c in connectors {
        c.reference.hash(&mut h);
        c.fingerprint.hash(&mut h);
        json(&c.connector).hash(&mut h);
    }
    let mut names: Vec<&String> = classes.keys().collect();
    names.sort();
    for name in names {
        name.hash(&mut h);
        classes.get(name).map(|c| json(c.as_ref())).hash(&mut h);
    }
    h.finish()
}
