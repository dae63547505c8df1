//! `meta.activate`: the user-facing contract, parsed and validated.
//!
//! Everything that can be checked from the manifest alone is checked here; column existence
//! for models without an enforced contract is checked by the executor with a zero-row probe.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::error::{SpecError, SpecErrors, did_you_mean};
use crate::manifest::{Manifest, Node};
use crate::schedule::Schedule;

pub const KEYS: &[&str] = &[
    "name",
    "destination",
    "object",
    "sync_mode",
    "cursor",
    "primary_key",
    "match_on",
    "operation",
    "on_delete",
    "mapping",
    "schedule",
    "limits",
    "after",
    "enabled",
    "owner",
];
pub const LIMIT_KEYS: &[&str] = &["max_deletes", "max_rejected", "max_changes"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    FullRefresh,
    Incremental,
    Mirror,
}

impl SyncMode {
    const NAMES: &'static [&'static str] = &["full_refresh", "incremental", "mirror"];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FullRefresh => "full_refresh",
            Self::Incremental => "incremental",
            Self::Mirror => "mirror",
        }
    }
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Upsert,
    Update,
    Insert,
}

impl Operation {
    const NAMES: &'static [&'static str] = &["upsert", "update", "insert"];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upsert => "upsert",
            Self::Update => "update",
            Self::Insert => "insert",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    Delete,
    Clear,
    Ignore,
}

impl OnDelete {
    const NAMES: &'static [&'static str] = &["delete", "clear", "ignore"];
}

/// Where a destination field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum MappingSource {
    /// A model column.
    Column(String),
    /// `"'text'"`: the same string for every row.
    Literal(String),
    /// `"{{ first_name }} {{ last_name }}"`: rendered per row from the row's columns.
    Template(String),
}

impl MappingSource {
    pub fn parse(key: &str) -> Self {
        let trimmed = key.trim();
        if trimmed.len() >= 2 && trimmed.starts_with('\'') && trimmed.ends_with('\'') {
            Self::Literal(trimmed[1..trimmed.len() - 1].to_owned())
        } else if trimmed.contains("{{") {
            Self::Template(key.to_owned())
        } else {
            Self::Column(trimmed.to_owned())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldMapping {
    pub source: MappingSource,
    pub field: String,
}

/// A count of rows or a share (0.0-1.0) of a total.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Count(u64),
    Share(f64),
}

impl Limit {
    fn parse(value: &Value) -> Result<Self, String> {
        match value {
            Value::Number(n) => n
                .as_u64()
                .map(Limit::Count)
                .ok_or_else(|| format!("`{n}` is not a whole, non-negative number of rows")),
            Value::String(s) => {
                let s = s.trim();
                if let Some(pct) = s.strip_suffix('%') {
                    let pct: f64 = pct
                        .trim()
                        .parse()
                        .map_err(|_| format!("`{s}` is not a percentage like \"5%\""))?;
                    if !(0.0..=100.0).contains(&pct) {
                        return Err(format!("`{s}` is not between 0% and 100%"));
                    }
                    Ok(Limit::Share(pct / 100.0))
                } else {
                    s.parse().map(Limit::Count).map_err(|_| {
                        format!("`{s}` is neither a row count nor a percentage like \"5%\"")
                    })
                }
            }
            other => Err(format!(
                "`{other}` is neither a row count nor a percentage like \"5%\""
            )),
        }
    }

    /// Whether `n` out of `total` exceeds the limit.
    pub fn exceeded(&self, n: u64, total: u64) -> bool {
        match *self {
            Limit::Count(max) => n > max,
            Limit::Share(share) => total > 0 && (n as f64) > share * (total as f64),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n} rows"),
            Limit::Share(s) => write!(f, "{}%", s * 100.0),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Limits {
    pub max_deletes: Option<Limit>,
    pub max_rejected: Option<Limit>,
    pub max_changes: Option<Limit>,
}

/// One sync of one model, fully resolved from `meta.activate`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ActivationSpec {
    pub name: String,
    /// The model's unique_id; for a query sync, `query.<project>.<name>` (a node of its own in
    /// the graph, downstream of `parents`).
    pub model_id: String,
    /// The model's name; for a query sync, the sync's name.
    pub model_name: String,
    /// Query syncs: the SQL (refs resolved) that defines the rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Query syncs: the nodes and sources the query references.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// The file that declared it (the model's `schema.yml`, or its SQL file).
    pub defined_in: String,
    pub destination: String,
    pub object: String,
    pub sync_mode: SyncMode,
    pub cursor: Option<String>,
    pub primary_key: Vec<String>,
    pub match_on: Vec<String>,
    pub operation: Operation,
    pub on_delete: OnDelete,
    /// `None`: every column of the model under its own name (resolved against the warehouse).
    pub mapping: Option<Vec<FieldMapping>>,
    #[serde(serialize_with = "serialize_display")]
    pub schedule: Schedule,
    pub limits: Limits,
    pub after: Vec<String>,
    pub enabled: bool,
    /// Model columns this sync reads (mapping sources, key, cursor), when the mapping is explicit.
    pub columns_read: Vec<String>,
    /// Who owns the sync (for `dbt-activate exposures`); `None`: the model's `meta.owner`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// An owner as dbt's exposures take it: a name, an email, or both.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Owner {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Owner {
    /// `"growth@example.com"` is an email, `"Growth team"` a name; a mapping may give
    /// `name` and `email`. `None` when the value says nothing usable.
    pub fn from_json(value: &Value) -> Result<Option<Self>, String> {
        let text = |v: Option<&Value>, key: &str| -> Result<Option<String>, String> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
                Some(other) => Err(format!("{key}: expected a string, found `{other}`")),
            }
        };
        match value {
            Value::Null => Ok(None),
            Value::String(s) if s.contains('@') => Ok(Some(Self {
                name: None,
                email: text(Some(value), "owner")?,
            })),
            Value::String(_) => Ok(text(Some(value), "owner")?.map(|name| Self {
                name: Some(name),
                email: None,
            })),
            Value::Object(m) => {
                if let Some(unknown) = m.keys().find(|k| !matches!(k.as_str(), "name" | "email")) {
                    return Err(format!(
                        "unknown key `{unknown}` (an owner has `name` and `email`)"
                    ));
                }
                let owner = Self {
                    name: text(m.get("name"), "name")?,
                    email: text(m.get("email"), "email")?,
                };
                Ok((owner.name.is_some() || owner.email.is_some()).then_some(owner))
            }
            other => Err(format!(
                "expected a name, an email or `{{name: ..., email: ...}}`, found `{other}`"
            )),
        }
    }
}

fn serialize_display<S: serde::Serializer>(s: &Schedule, ser: S) -> Result<S::Ok, S::Error> {
    ser.collect_str(s)
}

impl ActivationSpec {
    pub fn unique_id(&self, project: &str) -> String {
        format!("sync.{project}.{}", self.name)
    }

    /// The destination field a model column lands in, if the mapping sends it.
    pub fn field_for_column<'a>(&'a self, column: &'a str) -> Option<&'a str> {
        match &self.mapping {
            None => Some(column),
            Some(fields) => fields.iter().find_map(|m| match &m.source {
                MappingSource::Column(c) if c == column => Some(m.field.as_str()),
                _ => None,
            }),
        }
    }
}

/// Extracts every activation of every enabled model. `destinations` are the names defined in
/// `activate.yml` for the chosen target. All problems are collected, not just the first.
pub fn extract_specs(
    manifest: &Manifest,
    destinations: &BTreeSet<String>,
) -> Result<Vec<ActivationSpec>, SpecErrors> {
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    for node in manifest.models() {
        let Some(value) = node.meta_value("activate") else {
            continue;
        };
        let blocks: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            Value::Null => continue,
            other => vec![other],
        };
        for (index, block) in blocks.into_iter().enumerate() {
            let at = SpecSite {
                prefix: if matches!(value, Value::Array(_)) {
                    format!("[{index}].")
                } else {
                    String::new()
                },
                ..SpecSite::of_model(node)
            };
            match parse_block(&at, block, destinations) {
                Ok(Some(spec)) => specs.push(spec),
                Ok(None) => {}
                Err(mut errs) => errors.append(&mut errs),
            }
        }
    }
    check_unique_names(&specs, &mut errors);
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(SpecErrors(errors))
    }
}

/// A sync defined in `activate.yml` by a SQL query, its refs already resolved.
#[derive(Debug, Clone)]
pub struct QuerySync {
    pub name: String,
    /// The rendered SQL (relation names in the warehouse's quoting).
    pub sql: String,
    /// unique_ids of the nodes and sources the query references.
    pub parents: Vec<String>,
    /// Every key of the sync but `query`, validated exactly like `meta.activate`.
    pub block: Map<String, Value>,
}

/// Validates query syncs with the same rules as `meta.activate` and appends them to the
/// model syncs; names must be unique across both.
pub fn add_query_specs(
    project: &str,
    mut specs: Vec<ActivationSpec>,
    queries: &[QuerySync],
    destinations: &BTreeSet<String>,
) -> Result<Vec<ActivationSpec>, SpecErrors> {
    let mut errors = Vec::new();
    for q in queries {
        let at = SpecSite {
            subject: "sync",
            name: q.name.clone(),
            file: "activate.yml".into(),
            unique_id: format!("query.{project}.{}", q.name),
            key_candidates: Vec::new(),
            contract_columns: None,
            prefix: String::new(),
            query: Some((q.sql.clone(), q.parents.clone())),
        };
        if q.block.contains_key("name") {
            errors.push(at.error(
                Some("name"),
                "a query sync is named by its key under `syncs:`",
                Some("remove `name:`".into()),
            ));
            continue;
        }
        if !q
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            errors.push(at.error(
                None,
                format!("`{}` is not a valid sync name", q.name),
                Some("use letters, digits, `_` and `-`".into()),
            ));
            continue;
        }
        match parse_block(&at, &Value::Object(q.block.clone()), destinations) {
            Ok(Some(mut spec)) => {
                spec.name = q.name.clone();
                specs.push(spec);
            }
            Ok(None) => {}
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    check_unique_names(&specs, &mut errors);
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(SpecErrors(errors))
    }
}

fn check_unique_names(specs: &[ActivationSpec], errors: &mut Vec<SpecError>) {
    let mut seen: BTreeMap<&str, &ActivationSpec> = BTreeMap::new();
    for spec in specs {
        if let Some(first) = seen.insert(&spec.name, spec) {
            errors.push(SpecError {
                model: spec.model_name.clone(),
                file: spec.defined_in.clone(),
                key: Some("name".into()),
                message: format!(
                    "two syncs are named `{}` (the other is on model `{}` in {})",
                    spec.name, first.model_name, first.defined_in
                ),
                hint: Some("give one of them a distinct `name:`".into()),
                what: if spec.query.is_some() {
                    "sync"
                } else {
                    "model"
                },
            });
        }
    }
}

/// Where a block of activation keys was written: on a model, or as a query sync.
struct SpecSite {
    /// "model" or "sync", for messages.
    subject: &'static str,
    name: String,
    file: String,
    unique_id: String,
    key_candidates: Vec<String>,
    /// The enforced contract's columns, when the model has one.
    contract_columns: Option<Vec<String>>,
    prefix: String,
    /// Query syncs: the rendered SQL and the nodes it reads.
    query: Option<(String, Vec<String>)>,
}

impl SpecSite {
    fn of_model(node: &Node) -> Self {
        Self {
            subject: "model",
            name: node.name.clone(),
            file: node.defined_in().to_owned(),
            unique_id: node.unique_id.clone(),
            key_candidates: node.key_candidates(),
            contract_columns: (node.is_contract_enforced() && !node.columns.is_empty())
                .then(|| node.columns.keys().cloned().collect()),
            prefix: String::new(),
            query: None,
        }
    }

    fn error(
        &self,
        key: Option<&str>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> SpecError {
        SpecError {
            model: self.name.clone(),
            file: self.file.clone(),
            what: self.subject,
            key: match key {
                Some(k) => Some(format!("{}{k}", self.prefix)),
                None if !self.prefix.is_empty() => {
                    Some(self.prefix.trim_end_matches('.').to_owned())
                }
                None => None,
            },
            message: message.into(),
            hint,
        }
    }
}

fn parse_block(
    at: &SpecSite,
    block: &Value,
    destinations: &BTreeSet<String>,
) -> Result<Option<ActivationSpec>, Vec<SpecError>> {
    let Value::Object(map) = block else {
        return Err(vec![at.error(
            None,
            format!("expected a mapping of activation keys, found `{block}`"),
            Some("write `activate:` as a mapping (one sync) or a list of mappings (several syncs)".into()),
        )]);
    };
    let mut errors = Vec::new();
    for key in map.keys() {
        if !KEYS.contains(&key.as_str()) {
            let hint = match did_you_mean(key, KEYS.iter().copied()) {
                Some(close) => format!("did you mean `{close}`? Valid keys: {}", KEYS.join(", ")),
                None => format!("valid keys: {}", KEYS.join(", ")),
            };
            errors.push(at.error(Some(key), format!("unknown key `{key}`"), Some(hint)));
        }
    }

    let enabled = match map.get("enabled") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.push(at.error(
                Some("enabled"),
                format!("expected true or false, found `{other}`"),
                None,
            ));
            true
        }
    };

    let owner = match map.get("owner").map(Owner::from_json) {
        None => None,
        Some(Ok(owner)) => owner,
        Some(Err(why)) => {
            errors.push(at.error(
                Some("owner"),
                why,
                Some("write `owner: growth@example.com` or `owner: {name: Growth team, email: growth@example.com}`".into()),
            ));
            None
        }
    };

    let string = |key: &str, errors: &mut Vec<SpecError>| -> Option<String> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(other) => {
                errors.push(at.error(
                    Some(key),
                    format!("expected a non-empty string, found `{other}`"),
                    None,
                ));
                None
            }
        }
    };
    let string_list = |key: &str, errors: &mut Vec<SpecError>| -> Option<Vec<String>> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(vec![s.trim().to_owned()]),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(s) if !s.trim().is_empty() => out.push(s.trim().to_owned()),
                        _ => {
                            errors.push(at.error(
                                Some(key),
                                format!("expected a list of strings, found `{item}` in it"),
                                None,
                            ));
                            return None;
                        }
                    }
                }
                Some(out)
            }
            Some(other) => {
                errors.push(at.error(
                    Some(key),
                    format!("expected a string or a list of strings, found `{other}`"),
                    None,
                ));
                None
            }
        }
    };
    fn choice<T: Copy>(
        at: &SpecSite,
        key: &str,
        value: Option<String>,
        names: &[&str],
        values: &[T],
        default: T,
        errors: &mut Vec<SpecError>,
    ) -> T {
        let Some(text) = value else { return default };
        match names.iter().position(|n| *n == text) {
            Some(i) => values[i],
            None => {
                let hint = match did_you_mean(&text, names.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`? One of: {}", names.join(", ")),
                    None => format!("one of: {}", names.join(", ")),
                };
                errors.push(at.error(Some(key), format!("unknown {key} `{text}`"), Some(hint)));
                default
            }
        }
    }

    let destination = string("destination", &mut errors);
    match &destination {
        None => errors.push(at.error(
            Some("destination"),
            "missing: every activation names a destination from activate.yml",
            Some("add `destination: <name>` naming an entry under `destinations:` in activate.yml".into()),
        )),
        Some(d) if !destinations.contains(d) => {
            let hint = match did_you_mean(d, destinations.iter().map(String::as_str)) {
                Some(close) => format!("did you mean `{close}`? activate.yml defines: {}", list_or_none(destinations)),
                None => format!("define it under `destinations:` in activate.yml (defined: {})", list_or_none(destinations)),
            };
            errors.push(at.error(Some("destination"), format!("destination `{d}` is not defined in activate.yml for this target"), Some(hint)));
        }
        Some(_) => {}
    }
    let object = string("object", &mut errors);
    if !matches!(map.get("object"), Some(Value::String(_))) && object.is_none() {
        errors.push(at.error(
            Some("object"),
            "missing: the destination object (table, sObject, list, channel) to write to",
            Some("add `object: <name>`".into()),
        ));
    }
    let sync_mode = choice(
        at,
        "sync_mode",
        string("sync_mode", &mut errors),
        SyncMode::NAMES,
        &[
            SyncMode::FullRefresh,
            SyncMode::Incremental,
            SyncMode::Mirror,
        ],
        SyncMode::Incremental,
        &mut errors,
    );
    let operation_given = map.contains_key("operation");
    let operation = choice(
        at,
        "operation",
        string("operation", &mut errors),
        Operation::NAMES,
        &[Operation::Upsert, Operation::Update, Operation::Insert],
        Operation::Upsert,
        &mut errors,
    );
    let on_delete_given = map.contains_key("on_delete");
    let on_delete = choice(
        at,
        "on_delete",
        string("on_delete", &mut errors),
        OnDelete::NAMES,
        &[OnDelete::Delete, OnDelete::Clear, OnDelete::Ignore],
        OnDelete::Delete,
        &mut errors,
    );
    if sync_mode == SyncMode::Mirror && operation != Operation::Upsert && operation_given {
        errors.push(at.error(
            Some("operation"),
            format!(
                "sync_mode mirror needs operation upsert, found `{}`",
                operation.as_str()
            ),
            Some("remove `operation:` (mirror upserts) or use sync_mode incremental".into()),
        ));
    }
    if sync_mode != SyncMode::Mirror && on_delete_given {
        errors.push(at.error(
            Some("on_delete"),
            format!("on_delete applies only to sync_mode mirror, this sync is `{sync_mode}`"),
            Some("remove `on_delete:` or set `sync_mode: mirror`".into()),
        ));
    }
    let cursor = string("cursor", &mut errors);
    if cursor.is_some() && sync_mode != SyncMode::Incremental {
        errors.push(at.error(
            Some("cursor"),
            format!("cursor applies only to sync_mode incremental, this sync is `{sync_mode}`"),
            Some("remove `cursor:` or set `sync_mode: incremental`".into()),
        ));
    }

    let mapping = match map.get("mapping") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) if !m.is_empty() => Some(parse_mapping(at, m, &mut errors)),
        Some(other) => {
            errors.push(at.error(
                Some("mapping"),
                format!("expected a non-empty mapping of model column to destination field, found `{other}`"),
                Some("write `mapping: {email: Email, company: Company}`".into()),
            ));
            None
        }
    };

    let schedule = match map.get("schedule") {
        None | Some(Value::Null) => Schedule::Always,
        Some(Value::String(s)) => match Schedule::parse(s) {
            Ok(s) => s,
            Err(why) => {
                let hint = did_you_mean(s, Schedule::NAMED.iter().copied())
                    .map(|close| format!("did you mean `{close}`?"));
                errors.push(at.error(Some("schedule"), why, hint));
                Schedule::Always
            }
        },
        Some(other) => {
            errors.push(at.error(
                Some("schedule"),
                format!("expected a string, found `{other}`"),
                None,
            ));
            Schedule::Always
        }
    };

    let limits = match map.get("limits") {
        None | Some(Value::Null) => Limits::default(),
        Some(Value::Object(m)) => parse_limits(at, m, &mut errors),
        Some(other) => {
            errors.push(at.error(
                Some("limits"),
                format!("expected a mapping, found `{other}`"),
                Some("write `limits: {max_deletes: \"5%\", max_rejected: \"1%\"}`".into()),
            ));
            Limits::default()
        }
    };
    let after = string_list("after", &mut errors).unwrap_or_default();

    // Keys: explicit, else what dbt infers when it is exactly one column.
    let primary_key = match string_list("primary_key", &mut errors) {
        Some(pk) if !pk.is_empty() => pk,
        Some(_) => {
            errors.push(at.error(Some("primary_key"), "is empty", None));
            Vec::new()
        }
        None => {
            let candidates = at.key_candidates.clone();
            match candidates.len() {
                1 => candidates,
                0 if at.query.is_some() => {
                    errors.push(at.error(
                        Some("primary_key"),
                        "missing: a query sync names its key",
                        Some("set `primary_key: <column>` (or a list) to the query's key column(s)".into()),
                    ));
                    Vec::new()
                }
                0 => {
                    errors.push(at.error(
                        Some("primary_key"),
                        "missing, and dbt knows no primary key for this model",
                        Some("set `primary_key: <column>` in meta.activate, or add `unique` and `not_null` tests (or a primary_key constraint) on the key column".into()),
                    ));
                    Vec::new()
                }
                _ => {
                    errors.push(at.error(
                        Some("primary_key"),
                        format!("missing, and dbt's inferred primary key is ambiguous: {}", candidates.join(", ")),
                        Some(format!("set `primary_key:` to one of them, or a list for a composite key (e.g. `primary_key: {}`)", candidates[0])),
                    ));
                    Vec::new()
                }
            }
        }
    };
    let match_on = match string_list("match_on", &mut errors) {
        Some(m) => {
            if !primary_key.is_empty() && m.len() != primary_key.len() {
                errors.push(at.error(
                    Some("match_on"),
                    format!(
                        "has {} field(s) but primary_key has {} column(s); they pair up by position",
                        m.len(),
                        primary_key.len()
                    ),
                    None,
                ));
            }
            m
        }
        None => primary_key
            .iter()
            .map(|pk| {
                mapping
                    .as_ref()
                    .and_then(|fields: &Vec<FieldMapping>| {
                        fields.iter().find_map(|f| match &f.source {
                            MappingSource::Column(c) if c == pk => Some(f.field.clone()),
                            _ => None,
                        })
                    })
                    .unwrap_or_else(|| pk.clone())
            })
            .collect(),
    };

    // Columns the sync reads must exist; with an enforced contract the manifest says which do.
    let mut columns_read: Vec<String> = Vec::new();
    if let Some(fields) = &mapping {
        for f in fields {
            if let MappingSource::Column(c) = &f.source {
                columns_read.push(c.clone());
            }
        }
    }
    columns_read.extend(primary_key.iter().cloned());
    columns_read.extend(cursor.iter().cloned());
    let mut seen = BTreeSet::new();
    columns_read.retain(|c| seen.insert(c.clone()));
    if let Some(contract) = &at.contract_columns {
        let known: Vec<&str> = contract.iter().map(String::as_str).collect();
        for column in &columns_read {
            if !known.iter().any(|k| k.eq_ignore_ascii_case(column)) {
                let hint = did_you_mean(column, known.iter().copied())
                    .map(|c| {
                        format!(
                            "did you mean `{c}`? The model's contract declares: {}",
                            known.join(", ")
                        )
                    })
                    .or_else(|| {
                        Some(format!(
                            "the model's contract declares: {}",
                            known.join(", ")
                        ))
                    });
                errors.push(at.error(
                    Some("mapping"),
                    format!("column `{column}` is not in the model's enforced contract"),
                    hint,
                ));
            }
        }
    }

    let name = string("name", &mut errors);
    if let Some(n) = &name
        && !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        errors.push(at.error(
            Some("name"),
            format!("`{n}` is not a valid sync name"),
            Some("use letters, digits, `_` and `-` (it names the sync in selectors, results and state)".into()),
        ));
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    if !enabled {
        return Ok(None);
    }
    let destination = destination.unwrap_or_default();
    let object = object.unwrap_or_default();
    let name = name.unwrap_or_else(|| default_sync_name(&at.name, &destination, &object));
    Ok(Some(ActivationSpec {
        name,
        model_id: at.unique_id.clone(),
        model_name: at.name.clone(),
        defined_in: at.file.clone(),
        query: at.query.as_ref().map(|(sql, _)| sql.clone()),
        parents: at
            .query
            .as_ref()
            .map(|(_, p)| p.clone())
            .unwrap_or_default(),
        destination,
        object,
        sync_mode,
        cursor,
        primary_key,
        match_on,
        operation,
        on_delete,
        mapping,
        schedule,
        limits,
        after,
        enabled,
        columns_read,
        owner,
    }))
}

fn parse_mapping(
    at: &SpecSite,
    m: &Map<String, Value>,
    errors: &mut Vec<SpecError>,
) -> Vec<FieldMapping> {
    let mut fields = Vec::new();
    let mut targets: BTreeMap<String, String> = BTreeMap::new();
    for (source, field) in m {
        let Some(field) = field.as_str().map(str::trim).filter(|f| !f.is_empty()) else {
            errors.push(at.error(
                Some(&format!("mapping.{source}")),
                format!("expected the destination field name as a string, found `{field}`"),
                None,
            ));
            continue;
        };
        if let Some(other) = targets.insert(field.to_owned(), source.clone()) {
            errors.push(at.error(
                Some(&format!("mapping.{source}")),
                format!("destination field `{field}` is mapped twice (also from `{other}`)"),
                None,
            ));
        }
        fields.push(FieldMapping {
            source: MappingSource::parse(source),
            field: field.to_owned(),
        });
    }
    fields
}

fn parse_limits(at: &SpecSite, m: &Map<String, Value>, errors: &mut Vec<SpecError>) -> Limits {
    let mut limits = Limits::default();
    for (key, value) in m {
        let parsed = match Limit::parse(value) {
            Ok(l) => Some(l),
            Err(why) => {
                errors.push(at.error(Some(&format!("limits.{key}")), why, None));
                None
            }
        };
        match key.as_str() {
            "max_deletes" => limits.max_deletes = parsed,
            "max_rejected" => limits.max_rejected = parsed,
            "max_changes" => limits.max_changes = parsed,
            other => {
                let hint = match did_you_mean(other, LIMIT_KEYS.iter().copied()) {
                    Some(close) => {
                        format!("did you mean `{close}`? Valid: {}", LIMIT_KEYS.join(", "))
                    }
                    None => format!("valid: {}", LIMIT_KEYS.join(", ")),
                };
                errors.push(at.error(
                    Some(&format!("limits.{other}")),
                    format!("unknown limit `{other}`"),
                    Some(hint),
                ));
            }
        }
    }
    limits
}

/// `<model>__<destination>__<object>`, with characters other than letters, digits and `_`
/// replaced so the name can be used in selectors and file names.
pub fn default_sync_name(model: &str, destination: &str, object: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "{}__{}__{}",
        clean(model),
        clean(destination),
        clean(object)
    )
}

fn list_or_none(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests;
