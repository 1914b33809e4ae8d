//! Reading manifests: files → typed resources with their origin. No cross-resource checks here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use connectors_model::{API_GROUP, Connector, ConnectorClass, ConnectorRef, Secret};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::CatalogError;

/// Where a resource was written: for messages.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub file: PathBuf,
    /// 1-based index of the YAML document in the file.
    pub document: usize,
    /// Index in the `items` of a `kind: List`.
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {}", self.file.display(), self.document)?;
        if let Some(i) = self.item {
            write!(f, ", items[{i}]")?;
        }
        f.write_str(")")
    }
}

/// One resource, with where it came from and how messages call it (`Connector team-a/prod`).
pub(crate) struct Located<T> {
    pub origin: Origin,
    pub label: String,
    pub value: T,
}

impl<T> Located<T> {
    pub fn invalid(&self, field: &str, message: impl Into<String>) -> CatalogError {
        CatalogError::Invalid {
            file: self.origin.file.clone(),
            resource: self.label.clone(),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Default)]
pub(crate) struct Resources {
    pub connectors: Vec<Located<(ConnectorRef, Connector)>>,
    pub classes: Vec<Located<ConnectorClass>>,
    pub secrets: Vec<Located<Secret>>,
}

impl Resources {
    /// Resources that were parsed elsewhere (an API server's objects), labelled as the file
    /// loader labels them, with `source` standing in for the file name.
    pub fn from_objects(
        source: &Path,
        connectors: Vec<Connector>,
        classes: Vec<ConnectorClass>,
        secrets: Vec<Secret>,
    ) -> Result<Self, CatalogError> {
        let origin = |document: usize| Origin {
            file: source.to_path_buf(),
            document,
            item: None,
        };
        let mut out = Resources::default();
        for (i, mut connector) in connectors.into_iter().enumerate() {
            let namespace = connector.metadata.namespace_or_default().to_owned();
            let name = connector.metadata.name.clone();
            let label = format!("Connector {namespace}/{name}");
            let reference =
                ConnectorRef::new(&namespace, &name).map_err(|e| CatalogError::Invalid {
                    file: source.to_path_buf(),
                    resource: label.clone(),
                    field: "metadata.name".to_owned(),
                    message: e.to_string(),
                })?;
            connector.metadata.namespace = Some(namespace);
            out.connectors.push(Located {
                origin: origin(i + 1),
                label,
                value: (reference, connector),
            });
        }
        for (i, class) in classes.into_iter().enumerate() {
            out.classes.push(Located {
                origin: origin(i + 1),
                label: format!("ConnectorClass {}", class.metadata.name),
                value: class,
            });
        }
        for (i, mut secret) in secrets.into_iter().enumerate() {
            let namespace = secret.metadata.namespace_or_default().to_owned();
            let label = format!("Secret {namespace}/{}", secret.metadata.name);
            secret.metadata.namespace = Some(namespace);
            out.secrets.push(Located {
                origin: origin(i + 1),
                label,
                value: secret,
            });
        }
        Ok(out)
    }
}

/// mtime and size of every file we read, plus the file set itself: what the watcher compares to
/// notice an edit, an added file or a removed one without reading contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    pub path: PathBuf,
    pub modified: Option<SystemTime>,
    pub len: u64,
}

/// The manifest files under `path`: the file itself, or the `*.yaml`/`*.yml` files directly in the
/// folder, sorted by name.
///
/// Names starting with `.` are skipped: editors' swap files and the `..data` links of a mounted
/// ConfigMap. Metadata follows symbolic links, so a ConfigMap update (which swaps the link
/// target) shows up as a change.
pub(crate) fn manifest_files(path: &Path) -> Result<Vec<FileStamp>, CatalogError> {
    let io = |source| CatalogError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![stamp(path.to_owned(), &meta)]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let file = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_manifest = {
            let lower = name.to_ascii_lowercase();
            lower.ends_with(".yaml") || lower.ends_with(".yml")
        };
        if name.starts_with('.') || !is_manifest {
            continue;
        }
        // A dangling link or a file removed since the listing: report it, a half-read folder
        // would silently drop connectors.
        let meta = std::fs::metadata(&file).map_err(|source| CatalogError::Io {
            path: file.clone(),
            source,
        })?;
        if meta.is_file() {
            files.push(stamp(file, &meta));
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn stamp(path: PathBuf, meta: &std::fs::Metadata) -> FileStamp {
    FileStamp {
        path,
        modified: meta.modified().ok(),
        len: meta.len(),
    }
}

/// Reads and parses `files` in order.
pub(crate) fn read_files(files: &[FileStamp]) -> Result<Resources, CatalogError> {
    let mut out = Resources::default();
    for f in files {
        let text = std::fs::read_to_string(&f.path).map_err(|source| CatalogError::Io {
            path: f.path.clone(),
            source,
        })?;
        parse_text(&f.path, &text, &mut out)?;
    }
    Ok(out)
}

/// Parses one file's text (any number of `---`-separated documents) into `out`.
///
/// Two passes: the first reads every document as a plain YAML value, which finds syntax errors
/// (with their line) and tells us each document's `kind`; the second deserializes the documents
/// we handle straight from the text, so type errors carry the field path and line too.
pub(crate) fn parse_text(file: &Path, text: &str, out: &mut Resources) -> Result<(), CatalogError> {
    let mut heads = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| CatalogError::Yaml {
            file: file.to_owned(),
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })?;
        heads.push(value);
    }
    for (index, (head, document)) in heads
        .into_iter()
        .zip(serde_yaml_ng::Deserializer::from_str(text))
        .enumerate()
    {
        let origin = Origin {
            file: file.to_owned(),
            document: index + 1,
            item: None,
        };
        handle(origin, &head, Source::Document(document), out)?;
    }
    Ok(())
}

/// Where to deserialize a typed resource from: a document of the text (errors with line numbers)
/// or a value already read (an item of a `kind: List`).
enum Source<'a> {
    Document(serde_yaml_ng::Deserializer<'a>),
    Value(Value),
}

impl Source<'_> {
    fn typed<T: DeserializeOwned>(self) -> Result<T, serde_yaml_ng::Error> {
        match self {
            Source::Document(d) => T::deserialize(d),
            Source::Value(v) => serde_yaml_ng::from_value(v),
        }
    }
}

fn handle(
    origin: Origin,
    head: &Value,
    source: Source<'_>,
    out: &mut Resources,
) -> Result<(), CatalogError> {
    if head.is_null() {
        return Ok(()); // an empty document, e.g. after a trailing `---`
    }
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let kind = text(head.get("kind"));
    let api_version = text(head.get("apiVersion"));
    let meta = head.get("metadata");
    let name = text(meta.and_then(|m| m.get("name")));
    let namespace = text(meta.and_then(|m| m.get("namespace")));
    let namespace = if namespace.is_empty() {
        "default".to_owned()
    } else {
        namespace
    };

    let unnamed = format!("document {}", origin.document);
    let label = match kind.as_str() {
        "ConnectorClass" if !name.is_empty() => format!("ConnectorClass {name}"),
        _ if name.is_empty() => match origin.item {
            Some(i) => format!("{} ({unnamed}, items[{i}])", or_resource(&kind)),
            None => format!("{} ({unnamed})", or_resource(&kind)),
        },
        _ => format!("{} {namespace}/{name}", or_resource(&kind)),
    };
    let located_err = |field: &str, message: &str| CatalogError::Invalid {
        file: origin.file.clone(),
        resource: label.clone(),
        field: field.to_owned(),
        message: message.to_owned(),
    };

    if !head.is_mapping() {
        return Err(CatalogError::Schema {
            file: origin.file.clone(),
            resource: label,
            message: "a manifest must be a mapping with apiVersion, kind and metadata".to_owned(),
        });
    }
    if kind.is_empty() {
        return Err(located_err(
            "kind",
            "is missing; every manifest needs apiVersion and kind",
        ));
    }

    // `kind: List` (and the `<Kind>List` of `kubectl get -o yaml`): handle each item.
    let items = head.get("items").and_then(Value::as_sequence);
    if kind == "List" || (kind.ends_with("List") && items.is_some()) {
        let Some(items) = items else {
            return Err(located_err("items", "a List needs a sequence of items"));
        };
        for (i, item) in items.iter().enumerate() {
            let origin = Origin {
                item: Some(i),
                ..origin.clone()
            };
            handle(origin, item, Source::Value(item.clone()), out)?;
        }
        return Ok(());
    }

    let ours = match kind.as_str() {
        "Connector" | "ConnectorClass" => {
            api_version.split_once('/').map(|(group, _)| group) == Some(API_GROUP)
        }
        "Secret" => api_version == "v1",
        other => {
            tracing::debug!(file = %origin, kind = other, "skipping a resource the catalog does not use");
            return Ok(());
        }
    };
    if api_version.is_empty() {
        let want = if kind == "Secret" {
            "v1"
        } else {
            connectors_model::API_VERSION
        };
        return Err(located_err(
            "apiVersion",
            &format!("is missing; use {want}"),
        ));
    }
    if !ours {
        // Another API's kind of the same name: not ours to judge, but say so, since a typo in
        // apiVersion would otherwise make a connector vanish silently.
        tracing::warn!(file = %origin, kind = %kind, api_version = %api_version, "skipping a resource of another API group");
        return Ok(());
    }
    if name.is_empty() {
        return Err(located_err("metadata.name", "is required"));
    }

    let schema = |e: serde_yaml_ng::Error| CatalogError::Schema {
        file: origin.file.clone(),
        resource: label.clone(),
        message: e.to_string(),
    };
    match kind.as_str() {
        "Connector" => {
            let mut connector: Connector = source.typed().map_err(schema)?;
            let reference = ConnectorRef::new(&namespace, &name).map_err(|e| {
                let field = match &e {
                    connectors_model::ParseConnectorRefError::InvalidName {
                        what: "namespace",
                        ..
                    } => "metadata.namespace",
                    _ => "metadata.name",
                };
                located_err(field, &e.to_string())
            })?;
            connector.metadata.namespace = Some(namespace);
            out.connectors.push(Located {
                origin,
                label,
                value: (reference, connector),
            });
        }
        "ConnectorClass" => {
            let class: ConnectorClass = source.typed().map_err(schema)?;
            out.classes.push(Located {
                origin,
                label,
                value: class,
            });
        }
        _ => {
            let mut secret: Secret = source.typed().map_err(schema)?;
            secret.metadata.namespace = Some(namespace);
            out.secrets.push(Located {
                origin,
                label,
                value: secret,
            });
        }
    }
    Ok(())
}

fn or_resource(kind: &str) -> &str {
    if kind.is_empty() { "resource" } else { kind }
}
