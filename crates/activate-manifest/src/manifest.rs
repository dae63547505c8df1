//! The parts of dbt's `manifest.json` that dbt-activate reads.
//!
//! Supported schema versions: v10 (dbt 1.6), v11 (dbt 1.7), v12 (dbt 1.8 and later).
//! Unknown fields are ignored; maps are `BTreeMap`s so iteration order is stable.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::ManifestError;

/// Manifest schema versions this release understands.
pub const SUPPORTED_MANIFEST_VERSIONS: &[u32] = &[10, 11, 12];

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Manifest {
    pub metadata: ManifestMetadata,
    /// Each node boxed: a `Node` is about 800 bytes, and the map's leaves then move 8 a node
    /// as it grows (and take some 25 MB less fresh memory for 30,000 nodes; docs/performance.md).
    #[serde(default)]
    pub nodes: BTreeMap<String, Box<Node>>,
    #[serde(default)]
    pub sources: BTreeMap<String, Source>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ManifestMetadata {
    #[serde(default)]
    pub dbt_schema_version: String,
    #[serde(default)]
    pub dbt_version: String,
    #[serde(default)]
    pub project_name: Option<String>,
    #[serde(default)]
    pub invocation_id: Option<String>,
    #[serde(default)]
    pub generated_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub unique_id: String,
    pub resource_type: String,
    pub name: String,
    pub package_name: String,
    pub original_file_path: String,
    /// `<project>://models/marts/schema.yml` for models documented in a YAML file.
    pub patch_path: Option<String>,
    pub path: String,
    pub fqn: Vec<String>,
    pub database: Option<String>,
    pub schema: Option<String>,
    pub alias: Option<String>,
    pub relation_name: Option<String>,
    pub tags: Vec<String>,
    pub meta: Map<String, Value>,
    pub config: NodeConfig,
    /// The documented columns, read only where dbt-activate uses them: when the node's contract
    /// is enforced (its column names) or a column declares a constraint of type `primary_key`
    /// (a key candidate). Empty otherwise: a 10,000-model manifest spends most of its bytes on
    /// column descriptions, so they are skipped without building a map (docs/performance.md).
    pub columns: BTreeMap<String, ColumnInfo>,
    pub depends_on: DependsOn,
    pub primary_key: Vec<String>,
    pub contract: Option<Contract>,
    pub constraints: Vec<Constraint>,
    /// Tests only: the model a test is attached to (dbt >= 1.5).
    pub attached_node: Option<String>,
    pub test_metadata: Option<TestMetadata>,
    pub checksum: Option<Checksum>,
}

/// A node as it is in the file. `columns` stays raw (`C`: borrowed from the input, or copied
/// by sonic-rs where the value holds an escape) until the whole node is read, so it is parsed only when the node needs it (see [`Node::columns`]).
/// `C` is serde_json's `&RawValue` for the plain parse and sonic-rs's `LazyValue` for the
/// pieces of a large manifest's `nodes` map (`crate::load`). The values kept as JSON (`meta`,
/// and `meta`, `tags` and `unique_key` in `config`) are raw as well and read by serde_json
/// either way: sonic-rs reads a few numbers otherwise (`-0.0` as `0.0`, and some long
/// decimals to the nearest float, where serde_json's may be one off). A `null` for any of them
/// reads as not given.
#[derive(Deserialize)]
struct NodeFields<C> {
    unique_id: String,
    resource_type: String,
    name: String,
    #[serde(default)]
    package_name: String,
    #[serde(default)]
    original_file_path: String,
    #[serde(default)]
    patch_path: Option<String>,
    #[serde(default)]
    path: String,
    #[serde(default)]
    fqn: Vec<String>,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    relation_name: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default = "Option::default")]
    meta: Option<C>,
    #[serde(default = "Option::default")]
    config: Option<NodeConfigFields<C>>,
    #[serde(default = "Option::default")]
    columns: Option<C>,
    #[serde(default)]
    depends_on: DependsOn,
    #[serde(default)]
    primary_key: Vec<String>,
    #[serde(default)]
    contract: Option<Contract>,
    #[serde(default)]
    constraints: Vec<Constraint>,
    #[serde(default)]
    attached_node: Option<String>,
    #[serde(default)]
    test_metadata: Option<TestMetadata>,
    #[serde(default)]
    checksum: Option<Checksum>,
}

/// A node's `config` as it is in the file (see [`NodeFields`]).
#[derive(Deserialize)]
struct NodeConfigFields<C> {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    materialized: Option<String>,
    #[serde(default = "Option::default")]
    meta: Option<C>,
    #[serde(default = "Option::default")]
    tags: Option<C>,
    #[serde(default = "Option::default")]
    unique_key: Option<C>,
    #[serde(default)]
    contract: Option<Contract>,
}

/// A JSON value's text as it is in the input.
trait RawText {
    fn text(&self) -> &str;
}

/// The raw `field` of the node `unique_id` read by serde_json; its default where it is not
/// given.
fn read_raw<T, C, E>(raw: Option<C>, field: &str, unique_id: &str) -> Result<T, E>
where
    T: serde::de::DeserializeOwned + Default,
    C: RawText,
    E: serde::de::Error,
{
    let Some(raw) = raw else {
        return Ok(T::default());
    };
    // Most nodes' meta and tags: built without a parse (`null` is `None` already).
    let parsed = match raw.text() {
        "{}" => serde_json::from_value(Value::Object(Map::new())),
        "[]" => serde_json::from_value(Value::Array(Vec::new())),
        text => serde_json::from_str(text),
    };
    parsed.map_err(|e| E::custom(format_args!("`{field}` of `{unique_id}`: {}", in_value(&e))))
}

/// serde_json's error about a value read on its own, its position said to be in that value:
/// as " at line 1 column 5", serde_json would take it for the position in the file.
fn in_value(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(message) if e.line() > 0 => format!(
            "{message} (line {} column {} of the value)",
            e.line(),
            e.column()
        ),
        _ => text,
    }
}

impl RawText for &RawValue {
    fn text(&self) -> &str {
        self.get()
    }
}

impl RawText for sonic_rs::LazyValue<'_> {
    fn text(&self) -> &str {
        self.as_raw_str()
    }
}

/// The text names `primary_key` (a column's constraint of that type does). memchr's searcher,
/// built once: a model's `columns` are most of its bytes, and std's `str::contains` took
/// about a third longer over them (docs/performance.md).
fn mentions_primary_key(text: &str) -> bool {
    static PRIMARY_KEY: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new("primary_key"));
    PRIMARY_KEY.find(text.as_bytes()).is_some()
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Node::from_fields(NodeFields::<&'de RawValue>::deserialize(deserializer)?)
    }
}

/// A node of a piece of a large manifest's `nodes` map, read by sonic-rs (`crate::load`).
pub(crate) struct PieceNode(pub(crate) Box<Node>);

impl<'de> Deserialize<'de> for PieceNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = NodeFields::<sonic_rs::LazyValue<'de>>::deserialize(deserializer)?;
        Ok(PieceNode(Box::new(Node::from_fields(fields)?)))
    }
}

impl Node {
    fn from_fields<C: RawText, E: serde::de::Error>(fields: NodeFields<C>) -> Result<Node, E> {
        let id = fields.unique_id.as_str();
        let config = match fields.config {
            Some(config) => NodeConfig {
                enabled: config.enabled,
                materialized: config.materialized,
                meta: read_raw(config.meta, "config.meta", id)?,
                tags: read_raw(config.tags, "config.tags", id)?,
                unique_key: read_raw(config.unique_key, "config.unique_key", id)?,
                contract: config.contract,
            },
            None => NodeConfig::default(),
        };
        let contract_enforced = config.contract.as_ref().is_some_and(|c| c.enforced)
            || fields.contract.as_ref().is_some_and(|c| c.enforced);
        // A column's constraint of type `primary_key` names it in the raw text; anything else
        // about columns is read only under an enforced contract.
        let columns = match fields.columns {
            Some(raw) if contract_enforced || mentions_primary_key(raw.text()) => {
                read_raw(Some(raw), "columns", id)?
            }
            _ => BTreeMap::new(),
        };
        let meta = read_raw(fields.meta, "meta", id)?;
        Ok(Node {
            unique_id: fields.unique_id,
            resource_type: fields.resource_type,
            name: fields.name,
            package_name: fields.package_name,
            original_file_path: fields.original_file_path,
            patch_path: fields.patch_path,
            path: fields.path,
            fqn: fields.fqn,
            database: fields.database,
            schema: fields.schema,
            alias: fields.alias,
            relation_name: fields.relation_name,
            tags: fields.tags,
            meta,
            config,
            columns,
            depends_on: fields.depends_on,
            primary_key: fields.primary_key,
            contract: fields.contract,
            constraints: fields.constraints,
            attached_node: fields.attached_node,
            test_metadata: fields.test_metadata,
            checksum: fields.checksum,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeConfig {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub materialized: Option<String>,
    #[serde(default)]
    pub meta: Map<String, Value>,
    #[serde(default)]
    pub tags: Value,
    #[serde(default)]
    pub unique_key: Value,
    #[serde(default)]
    pub contract: Option<Contract>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Contract {
    #[serde(default)]
    pub enforced: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Constraint {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ColumnInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub data_type: Option<String>,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DependsOn {
    #[serde(default)]
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TestMetadata {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Checksum {
    #[serde(default)]
    pub checksum: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Source {
    pub unique_id: String,
    pub name: String,
    #[serde(default)]
    pub source_name: String,
    #[serde(default)]
    pub relation_name: Option<String>,
}

impl Manifest {
    /// Reads and checks `manifest.json`.
    pub fn from_path(path: &Path) -> Result<Self, ManifestError> {
        Self::checked(crate::load::load_manifest(path)?, path)
    }

    pub fn from_slice(bytes: &[u8], path: &Path) -> Result<Self, ManifestError> {
        let manifest =
            crate::load::parse_manifest(bytes).map_err(|source| ManifestError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        Self::checked(manifest, path)
    }

    /// The manifest, if its schema version is one this release reads.
    fn checked(manifest: Manifest, path: &Path) -> Result<Self, ManifestError> {
        let version = schema_version(&manifest.metadata.dbt_schema_version);
        match version {
            Some(v) if SUPPORTED_MANIFEST_VERSIONS.contains(&v) => Ok(manifest),
            _ => Err(ManifestError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: manifest.metadata.dbt_schema_version.clone(),
            }),
        }
    }

    pub fn project_name(&self) -> &str {
        self.metadata.project_name.as_deref().unwrap_or("project")
    }

    /// Enabled models, in unique_id order.
    pub fn models(&self) -> impl Iterator<Item = &Node> {
        self.nodes
            .values()
            .map(|n| &**n)
            .filter(|n| n.resource_type == "model" && n.config.enabled != Some(false))
    }

    /// Tests attached to a model (by `attached_node`, else by their single model dependency).
    pub fn tests_of<'a>(&'a self, model_id: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.values().map(|n| &**n).filter(move |n| {
            n.resource_type == "test"
                && match &n.attached_node {
                    Some(attached) => attached == model_id,
                    None => n.depends_on.nodes.iter().any(|d| d == model_id),
                }
        })
    }
}

impl Node {
    /// `config.meta` first (it carries dbt's `+meta` inheritance), then the node's top-level `meta`.
    pub fn meta_value(&self, key: &str) -> Option<&Value> {
        self.config.meta.get(key).or_else(|| self.meta.get(key))
    }

    /// The model's `schema.yml` if it has one (where `meta.activate` usually lives), else its
    /// SQL file.
    pub fn defined_in(&self) -> &str {
        match &self.patch_path {
            Some(p) if !p.is_empty() => p.split_once("://").map_or(p.as_str(), |(_, path)| path),
            _ => &self.original_file_path,
        }
    }

    pub fn is_contract_enforced(&self) -> bool {
        self.config.contract.as_ref().is_some_and(|c| c.enforced)
            || self.contract.as_ref().is_some_and(|c| c.enforced)
    }

    /// Candidate primary keys dbt knows about: the `primary_key` dbt infers (unique + not_null
    /// tests, or a primary key constraint), else `unique_key` from the config.
    pub fn key_candidates(&self) -> Vec<String> {
        let mut from_constraints: Vec<String> = self
            .constraints
            .iter()
            .filter(|c| c.kind == "primary_key")
            .flat_map(|c| c.columns.clone())
            .collect();
        for (name, column) in &self.columns {
            if column.constraints.iter().any(|c| c.kind == "primary_key") {
                from_constraints.push(name.clone());
            }
        }
        if !from_constraints.is_empty() {
            return from_constraints;
        }
        if !self.primary_key.is_empty() {
            return self.primary_key.clone();
        }
        match &self.config.unique_key {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn schema_version(url: &str) -> Option<u32> {
    // "https://schemas.getdbt.com/dbt/manifest/v12.json"
    let file = url.rsplit('/').next()?;
    let digits = file.strip_prefix('v')?.strip_suffix(".json")?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schema_versions() {
        assert_eq!(
            schema_version("https://schemas.getdbt.com/dbt/manifest/v12.json"),
            Some(12)
        );
        assert_eq!(schema_version("v9.json"), Some(9));
        assert_eq!(schema_version("nonsense"), None);
    }

    #[test]
    fn rejects_unsupported_version() {
        let json = br#"{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v7.json"}, "nodes": {}}"#;
        let err = Manifest::from_slice(json, Path::new("target/manifest.json")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("v7"), "{text}");
        assert!(text.contains("v10, v11, v12"), "{text}");
    }

    #[test]
    fn rejects_non_json() {
        let err = Manifest::from_slice(b"<html>", Path::new("m.json")).unwrap_err();
        assert!(err.to_string().contains("is not valid JSON"), "{err}");
    }

    #[test]
    fn config_meta_wins_over_node_meta() {
        let json = br#"{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
          "nodes": {"model.p.m": {"unique_id": "model.p.m", "resource_type": "model", "name": "m",
             "meta": {"activate": {"destination": "old"}},
             "config": {"meta": {"activate": {"destination": "new"}}}, "unknown_field": 1}}}"#;
        let m = Manifest::from_slice(json, Path::new("m.json")).unwrap();
        let node = &m.nodes["model.p.m"];
        assert_eq!(node.meta_value("activate").unwrap()["destination"], "new");
    }

    fn one_model(node_fields: &str) -> Node {
        let json = format!(
            r#"{{"metadata": {{"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"}},
              "nodes": {{"model.p.m": {{"unique_id": "model.p.m", "resource_type": "model", "name": "m", {node_fields}}}}}}}"#
        );
        let mut m = Manifest::from_slice(json.as_bytes(), Path::new("m.json")).unwrap();
        *m.nodes.remove("model.p.m").unwrap()
    }

    #[test]
    fn columns_without_contract_or_primary_key_are_skipped() {
        let node = one_model(
            r#""columns": {"id": {"name": "id", "description": "x", "constraints": [{"type": "not_null"}]}}"#,
        );
        assert!(node.columns.is_empty());
        assert!(node.key_candidates().is_empty());
    }

    #[test]
    fn columns_with_a_primary_key_constraint_are_read() {
        let node = one_model(
            r#""columns": {"id": {"name": "id", "constraints": [{"type": "primary_key"}]}, "email": {"name": "email"}}"#,
        );
        assert_eq!(node.columns.keys().collect::<Vec<_>>(), ["email", "id"]);
        assert_eq!(node.key_candidates(), ["id"]);
    }

    #[test]
    fn columns_under_an_enforced_contract_are_read_wherever_it_is_declared() {
        // `contract` after `columns`, in the config or at the top level: field order is free.
        for contract in [
            r#""config": {"contract": {"enforced": true}}"#,
            r#""contract": {"enforced": true}"#,
        ] {
            let node = one_model(&format!(
                r#""columns": {{"id": {{"name": "id"}}, "email": {{"name": "email"}}}}, {contract}"#
            ));
            assert_eq!(
                node.columns.keys().collect::<Vec<_>>(),
                ["email", "id"],
                "{contract}"
            );
        }
    }

    #[test]
    fn bad_columns_under_an_enforced_contract_name_the_node() {
        let json = br#"{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
          "nodes": {"model.p.m": {"unique_id": "model.p.m", "resource_type": "model", "name": "m",
             "contract": {"enforced": true}, "columns": {"id": {"constraints": "primary_key"}}}}}"#;
        let err = Manifest::from_slice(json, Path::new("m.json")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`columns` of `model.p.m`"), "{text}");
    }

    /// A value read on its own (meta, columns) is named, with its error's position said to be
    /// in the value, and the file's position after it; `null` reads as not given.
    #[test]
    fn a_bad_meta_names_the_node_and_where_in_the_file() {
        let json = |meta: &str| {
            format!(
                r#"{{"metadata": {{"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"}},
          "nodes": {{"model.p.m": {{"unique_id": "model.p.m", "resource_type": "model", "name": "m", "meta": {meta}}}}}}}"#
            )
        };
        let err = Manifest::from_slice(json("[1]").as_bytes(), Path::new("m.json")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`meta` of `model.p.m`: invalid type: sequence, expected a map (line 1 column 0 of the value) at line 2 column"),
            "{text}"
        );
        let m = Manifest::from_slice(json("null").as_bytes(), Path::new("m.json")).unwrap();
        assert!(m.nodes["model.p.m"].meta.is_empty());
    }
}
