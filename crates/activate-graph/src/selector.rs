//! dbt's node selection syntax, applied to syncs.
//!
//! `--select "a b"` is a union, `--select a,b` an intersection, `--exclude` removes. Each part is
//! `[@|N+|+]method:value[+|+N]`; without a method, a value with a `/` or a file extension is a
//! path, anything else an fqn (model name, `folder.model`, folder, project) or a sync name.
//! Graph operators walk the dbt lineage of models; a selected model selects all its syncs.
//! `after:` orders syncs but does not widen a selection.

use std::collections::BTreeSet;

use activate_manifest::Node;
use petgraph::Direction;
use petgraph::graph::NodeIndex;
use serde_json::Value;

use crate::error::{GraphError, close_names, did_you_mean_hint, list_names};
use crate::graph::ProjectGraph;

/// The methods, for hints.
const METHODS: &[&str] = &[
    "fqn",
    "tag",
    "path",
    "config.meta.<key>",
    "config.materialized",
    "sync",
    "model",
    "source",
];

/// File extensions that make a bare value a path.
const PATH_SUFFIXES: &[&str] = &[".sql", ".py", ".yml", ".yaml", ".csv"];

/// How far a graph operator walks: every generation, or the first N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    All,
    Generations(usize),
}

impl Depth {
    fn limit(self) -> Option<usize> {
        match self {
            Depth::All => None,
            Depth::Generations(n) => Some(n),
        }
    }
}

/// One selector without set operators: `2+tag:hourly+`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Criterion<'s> {
    text: &'s str,
    /// `@x`: x, its descendants, and all ancestors of those.
    at: bool,
    parents: Option<Depth>,
    children: Option<Depth>,
    method: Method<'s>,
    value: &'s str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Method<'s> {
    /// No method: path if it looks like one, else fqn or sync name.
    Bare,
    Fqn,
    Tag,
    Path,
    /// `config.meta.a.b`: the dotted key below `meta`.
    ConfigMeta(Vec<&'s str>),
    ConfigMaterialized,
    Sync,
    Model,
    Source,
}

fn invalid(selector: &str, reason: &str) -> GraphError {
    GraphError::InvalidSelector {
        selector: selector.to_owned(),
        reason: reason.to_owned(),
        hint: "selectors look like `model_name`, `+model_name`, `model_name+2`, `tag:hourly`, \
               `path:models/marts`, `config.meta.owner:growth` or `sync:name`"
            .to_owned(),
    }
}

fn parse(text: &str) -> Result<Criterion<'_>, GraphError> {
    let mut rest = text;
    let mut at = false;
    let mut parents = None;
    if let Some(stripped) = rest.strip_prefix('@') {
        at = true;
        rest = stripped;
    } else if let Some(plus) = rest.find('+') {
        let prefix = &rest[..plus];
        if prefix.is_empty() {
            parents = Some(Depth::All);
            rest = &rest[1..];
        } else if prefix.bytes().all(|b| b.is_ascii_digit()) {
            let n = prefix
                .parse()
                .map_err(|_| invalid(text, "the number of generations is too large"))?;
            parents = Some(Depth::Generations(n));
            rest = &rest[plus + 1..];
        }
    }
    let mut children = None;
    if let Some(plus) = rest.rfind('+') {
        let suffix = &rest[plus + 1..];
        if suffix.bytes().all(|b| b.is_ascii_digit()) {
            children = Some(if suffix.is_empty() {
                Depth::All
            } else {
                Depth::Generations(
                    suffix
                        .parse()
                        .map_err(|_| invalid(text, "the number of generations is too large"))?,
                )
            });
            rest = &rest[..plus];
        }
    }
    if at && (parents.is_some() || children.is_some()) {
        return Err(invalid(text, "`@` cannot be combined with `+`"));
    }
    if rest.contains('+') || rest.contains('@') {
        return Err(invalid(text, "`+` and `@` go only at the start or the end"));
    }
    let (method, value) = match rest.split_once(':') {
        None => (Method::Bare, rest),
        Some((name, value)) => {
            let method = match name {
                "fqn" => Method::Fqn,
                "tag" => Method::Tag,
                "path" | "file" => Method::Path,
                "config.materialized" => Method::ConfigMaterialized,
                "sync" => Method::Sync,
                "model" => Method::Model,
                "source" => Method::Source,
                _ => match name.strip_prefix("config.meta.") {
                    Some(key) if !key.is_empty() && key.split('.').all(|k| !k.is_empty()) => {
                        Method::ConfigMeta(key.split('.').collect())
                    }
                    _ => {
                        let hint =
                            match did_you_mean_hint(&close_names(name, METHODS.iter().copied(), 1))
                            {
                                Some(dym) => format!("{dym} Methods: {}", METHODS.join(", ")),
                                None => format!("methods: {}", METHODS.join(", ")),
                            };
                        return Err(GraphError::UnknownMethod {
                            selector: text.to_owned(),
                            method: name.to_owned(),
                            hint,
                        });
                    }
                },
            };
            (method, value)
        }
    };
    if value.is_empty() {
        return Err(invalid(text, "it has no value to match"));
    }
    Ok(Criterion {
        text,
        at,
        parents,
        children,
        method,
        value,
    })
}

/// What a criterion's method matched, before graph operators.
#[derive(Debug, Default)]
struct Matched {
    nodes: BTreeSet<NodeIndex>,
    syncs: BTreeSet<usize>,
}

impl<'a> ProjectGraph<'a> {
    /// dbt selection syntax over syncs. `select` empty = every spec. Each string in
    /// `select`/`exclude` may hold several space-separated selectors (union); a selector with
    /// commas is an intersection of its parts. Returns indices into `specs`, in spec order.
    /// A selector that matches no node and no sync at all is an error with a hint.
    pub fn select(&self, select: &[String], exclude: &[String]) -> Result<Vec<usize>, GraphError> {
        let has_select = select.iter().any(|s| !s.trim().is_empty());
        let mut chosen: BTreeSet<usize> = if has_select {
            self.union(select)?
        } else {
            (0..self.specs.len()).collect()
        };
        for idx in self.union(exclude)? {
            chosen.remove(&idx);
        }
        Ok(chosen.into_iter().collect())
    }

    fn union(&self, selectors: &[String]) -> Result<BTreeSet<usize>, GraphError> {
        let mut out = BTreeSet::new();
        for selector in selectors.iter().flat_map(|s| s.split_whitespace()) {
            out.extend(self.intersection(selector)?);
        }
        Ok(out)
    }

    fn intersection(&self, selector: &str) -> Result<BTreeSet<usize>, GraphError> {
        let mut result: Option<BTreeSet<usize>> = None;
        for part in selector.split(',') {
            if part.is_empty() {
                return Err(invalid(selector, "it has an empty part between commas"));
            }
            let criterion = parse(part)?;
            let syncs = self.apply(&criterion)?;
            result = Some(match result {
                None => syncs,
                Some(before) => before.intersection(&syncs).copied().collect(),
            });
        }
        Ok(result.unwrap_or_default())
    }

    /// The syncs one criterion selects: its matches, widened by its graph operators.
    fn apply(&self, criterion: &Criterion<'_>) -> Result<BTreeSet<usize>, GraphError> {
        let matched = self.matches(criterion)?;
        let mut syncs = matched.syncs.clone();
        let mut nodes: BTreeSet<NodeIndex> = matched.nodes.clone();
        nodes.extend(self.widen(
            criterion,
            &matched.nodes.iter().copied().collect::<Vec<_>>(),
        ));
        // A sync selected by name widens from its model, without selecting its sibling syncs.
        for &sync in &matched.syncs {
            if let Some(model) = self.node(&self.specs[sync].model_id) {
                let mut around = self.widen(criterion, &[model]);
                around.remove(&model);
                nodes.extend(around);
            }
        }
        for node in nodes {
            syncs.extend(self.syncs_of_model(self.id(node)));
        }
        Ok(syncs)
    }

    /// Nodes added by the graph operators of `criterion` around `seeds` (`@` includes the seeds).
    fn widen(&self, criterion: &Criterion<'_>, seeds: &[NodeIndex]) -> BTreeSet<NodeIndex> {
        let mut out = BTreeSet::new();
        if criterion.at {
            let mut down: BTreeSet<NodeIndex> = seeds.iter().copied().collect();
            down.extend(self.walk(seeds, Direction::Outgoing, None));
            let down_list: Vec<NodeIndex> = down.iter().copied().collect();
            out.extend(self.walk(&down_list, Direction::Incoming, None));
            out.extend(down);
            return out;
        }
        if let Some(depth) = criterion.parents {
            out.extend(self.walk(seeds, Direction::Incoming, depth.limit()));
        }
        if let Some(depth) = criterion.children {
            out.extend(self.walk(seeds, Direction::Outgoing, depth.limit()));
        }
        out
    }

    fn matches(&self, criterion: &Criterion<'_>) -> Result<Matched, GraphError> {
        let value = criterion.value;
        let mut matched = Matched::default();
        let nodes = |pred: &dyn Fn(&Node) -> bool| -> BTreeSet<NodeIndex> {
            self.nodes()
                .filter(|(_, id)| self.manifest.nodes.get(*id).is_some_and(|node| pred(node)))
                .map(|(n, _)| n)
                .collect()
        };
        match &criterion.method {
            Method::Bare if looks_like_path(value) => {
                matched.nodes = nodes(&|n| path_matches(n, value))
            }
            Method::Bare => {
                matched.nodes = nodes(&|n| fqn_matches(n, value));
                matched
                    .nodes
                    .extend(self.sources_matching(|fqn| fqn_parts_match(fqn, value)));
                matched.syncs.extend(self.sync_index(value));
            }
            Method::Fqn => {
                matched.nodes = nodes(&|n| fqn_matches(n, value));
                matched
                    .nodes
                    .extend(self.sources_matching(|fqn| fqn_parts_match(fqn, value)));
            }
            Method::Tag => matched.nodes = nodes(&|n| tags_of(n).any(|t| t == value)),
            Method::Path => matched.nodes = nodes(&|n| path_matches(n, value)),
            Method::ConfigMeta(key) => {
                matched.nodes =
                    nodes(&|n| meta_lookup(n, key).is_some_and(|v| value_matches(v, value)))
            }
            Method::ConfigMaterialized => {
                matched.nodes = nodes(&|n| n.config.materialized.as_deref() == Some(value))
            }
            Method::Sync => matched.syncs.extend(self.sync_index(value)),
            Method::Model => {
                matched.nodes = nodes(&|n| n.resource_type == "model" && n.name == value)
            }
            Method::Source => {
                matched.nodes = self.sources_matching(|fqn| {
                    let [_, source, table] = fqn else {
                        return false;
                    };
                    *source == value || format!("{source}.{table}") == value
                })
            }
        }
        if matched.nodes.is_empty() && matched.syncs.is_empty() {
            return Err(GraphError::UnknownSelector {
                selector: criterion.text.to_owned(),
                hint: self.nothing_matched_hint(criterion),
            });
        }
        Ok(matched)
    }

    /// Sources whose `[project, source_name, table]` satisfies `pred`.
    fn sources_matching(&self, pred: impl Fn(&[&str]) -> bool) -> BTreeSet<NodeIndex> {
        let project = self.manifest.project_name();
        self.manifest
            .sources
            .values()
            .filter(|s| pred(&[project, s.source_name.as_str(), s.name.as_str()]))
            .filter_map(|s| self.node(&s.unique_id))
            .collect()
    }

    fn nothing_matched_hint(&self, criterion: &Criterion<'_>) -> String {
        let value = criterion.value;
        let models = || {
            self.manifest
                .nodes
                .values()
                .filter(|n| n.resource_type != "test")
                .map(|n| n.name.as_str())
        };
        let syncs = || self.specs.iter().map(|s| s.name.as_str());
        let suggest = |close: Vec<&str>, prefix: &str, fallback: String| -> String {
            let prefixed: Vec<String> = close.iter().map(|c| format!("{prefix}{c}")).collect();
            let refs: Vec<&str> = prefixed.iter().map(String::as_str).collect();
            did_you_mean_hint(&refs).unwrap_or(fallback)
        };
        match &criterion.method {
            Method::Bare | Method::Fqn | Method::Model => {
                let close = close_names(value, models().chain(syncs()), 3);
                suggest(
                    close,
                    "",
                    format!(
                        "nothing has a similar name; syncs in this project: {} (see `dbt-activate ls`)",
                        list_names(syncs(), 8)
                    ),
                )
            }
            Method::Sync => suggest(
                close_names(value, syncs(), 3),
                "sync:",
                format!("syncs in this project: {}", list_names(syncs(), 8)),
            ),
            Method::Tag => {
                let tags: BTreeSet<&str> = self
                    .manifest
                    .nodes
                    .values()
                    .flat_map(|node| tags_of(node))
                    .collect();
                suggest(
                    close_names(value, tags.iter().copied(), 3),
                    "tag:",
                    format!(
                        "tags in this project: {}",
                        list_names(tags.iter().copied(), 8)
                    ),
                )
            }
            Method::Path => {
                "no model, seed or snapshot file is at or under that path; paths start at the \
                 project root, like `path:models/marts`"
                    .to_owned()
            }
            Method::ConfigMeta(key) => {
                let seen: BTreeSet<String> = self
                    .manifest
                    .nodes
                    .values()
                    .filter_map(|n| meta_lookup(n, key))
                    .map(display_value)
                    .collect();
                if seen.is_empty() {
                    format!("no node has `config.meta.{}`", key.join("."))
                } else {
                    format!(
                        "values of `config.meta.{}` in this project: {}",
                        key.join("."),
                        list_names(seen.iter().map(String::as_str), 8)
                    )
                }
            }
            Method::ConfigMaterialized => {
                "materializations are table, view, incremental, ephemeral, materialized_view"
                    .to_owned()
            }
            Method::Source => {
                let names: Vec<String> = self
                    .manifest
                    .sources
                    .values()
                    .map(|s| format!("{}.{}", s.source_name, s.name))
                    .collect();
                suggest(
                    close_names(value, names.iter().map(String::as_str), 3),
                    "source:",
                    format!(
                        "sources in this project: {}",
                        list_names(names.iter().map(String::as_str), 8)
                    ),
                )
            }
        }
    }
}

fn looks_like_path(value: &str) -> bool {
    value.contains('/') || PATH_SUFFIXES.iter().any(|s| value.ends_with(s))
}

/// dbt's fqn match: the node's name, or a prefix of its fqn parts (with or without the
/// package name), so `marts` selects a folder and `marts.enriched_leads` one model.
fn fqn_matches(node: &Node, selector: &str) -> bool {
    if node.resource_type == "test" {
        return false;
    }
    if node.name == selector {
        return true;
    }
    let parts: Vec<&str> = node.fqn.iter().flat_map(|p| p.split('.')).collect();
    fqn_parts_match(&parts, selector)
}

fn fqn_parts_match(fqn: &[&str], selector: &str) -> bool {
    if fqn.last() == Some(&selector) {
        return true;
    }
    let wanted: Vec<&str> = selector.split('.').collect();
    let prefix = |parts: &[&str]| {
        wanted.len() <= parts.len() && wanted.iter().zip(parts).all(|(w, p)| w == p)
    };
    prefix(fqn) || fqn.get(1..).is_some_and(prefix)
}

/// `tags` and `config.tags` (a string or a list).
fn tags_of(node: &Node) -> impl Iterator<Item = &str> {
    let config: Vec<&str> = match &node.config.tags {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    node.tags.iter().map(String::as_str).chain(config)
}

/// `path:models/marts` matches files at or under that folder, and that exact file; against the
/// node's `original_file_path` (from the project root) and its `path` (from its resource folder).
fn path_matches(node: &Node, selector: &str) -> bool {
    if node.resource_type == "test" {
        return false;
    }
    let wanted = selector.trim_start_matches("./").trim_end_matches('/');
    [node.original_file_path.as_str(), node.path.as_str()]
        .into_iter()
        .filter(|file| !file.is_empty())
        .any(|file| {
            file == wanted
                || file
                    .strip_prefix(wanted)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// A dotted key below `config.meta` (falling back to the node's `meta` for older manifests).
fn meta_lookup<'n>(node: &'n Node, key: &[&str]) -> Option<&'n Value> {
    let (first, rest) = key.split_first()?;
    let mut value = node.meta_value(first)?;
    for k in rest {
        value = value.get(k)?;
    }
    Some(value)
}

/// `v` as text on the command line: strings as is, booleans case-insensitively, numbers by
/// value, lists when any item matches.
fn value_matches(value: &Value, wanted: &str) -> bool {
    match value {
        Value::String(s) => s == wanted,
        Value::Bool(b) => wanted.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            n.to_string() == wanted
                || wanted
                    .parse::<f64>()
                    .ok()
                    .zip(n.as_f64())
                    .is_some_and(|(w, v)| w == v)
        }
        Value::Array(items) => items.iter().any(|item| value_matches(item, wanted)),
        Value::Null | Value::Object(_) => false,
    }
}

fn display_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[path = "selector/tests.rs"]
mod tests;
