//! `syncs:` in activate.yml: syncs defined by a SQL query over dbt refs. The query is rendered
//! as dbt renders a model: `{{ ref('model') }}`, `{{ ref('package', 'model') }}` and
//! `{{ source('src', 'table') }}` become the relations the manifest names, `{{ var() }}` reads
//! dbt_project.yml's vars, `{{ env_var() }}` the environment. The nodes a query references
//! become its parents: the sync is gated on their builds and ordered after them.

use std::sync::{Arc, Mutex};

use activate_manifest::{Manifest, QuerySync, did_you_mean};

use crate::connections::activate_yml::ActivateConfig;
use crate::connections::project::ProjectSettings;
use crate::connections::render::render_yaml;
use crate::error::ConfigError;
use crate::secrets;

/// Renders every query sync against the manifest. Errors name the sync and the bad ref, with
/// the closest model names.
pub fn render_query_syncs(
    activate: &ActivateConfig,
    manifest: &Manifest,
    project: &ProjectSettings,
) -> Result<Vec<QuerySync>, ConfigError> {
    let mut out = Vec::new();
    for (name, raw) in &activate.syncs {
        let site = format!("activate.yml, syncs.{name}");
        let Some(map) = raw.as_mapping() else {
            return Err(ConfigError::new(format!(
                "{site}: expected a mapping with `query:` and the activation keys"
            )));
        };
        let query = match map.get("query") {
            Some(serde_yaml_ng::Value::String(q)) if !q.trim().is_empty() => q.clone(),
            _ => {
                return Err(ConfigError::new(format!(
                    "{site}: `query` (a SQL select) is required"
                ))
                .with_hint("query: \"select ... from {{ ref('enriched_leads') }}\""));
            }
        };
        let mut rest = map.clone();
        rest.remove("query");
        let rendered = render_yaml(
            &serde_yaml_ng::Value::Mapping(rest),
            &activate.render_context,
            "activate.yml",
        )?;
        secrets::register_in(&rendered);
        let serde_json::Value::Object(block) = rendered else {
            return Err(ConfigError::new(format!("{site}: expected a mapping")));
        };
        let (sql, parents) = render_query(&query, manifest, project, activate, &site)?;
        out.push(QuerySync {
            name: name.clone(),
            sql,
            parents,
            block,
        });
    }
    Ok(out)
}

/// A relation a query can reference: a node (`package` is its package) or a source
/// (`package` is the source's name).
#[derive(Clone)]
struct Relation {
    unique_id: String,
    package: String,
    name: String,
    relation: Option<String>,
}

fn render_query(
    query: &str,
    manifest: &Manifest,
    project: &ProjectSettings,
    activate: &ActivateConfig,
    site: &str,
) -> Result<(String, Vec<String>), ConfigError> {
    let nodes: Arc<Vec<Relation>> = Arc::new(
        manifest
            .nodes
            .values()
            .filter(|n| {
                matches!(n.resource_type.as_str(), "model" | "seed" | "snapshot")
                    && n.config.enabled != Some(false)
            })
            .map(|n| Relation {
                unique_id: n.unique_id.clone(),
                package: n.package_name.clone(),
                name: n.name.clone(),
                relation: n.relation_name.clone(),
            })
            .collect(),
    );
    let sources: Arc<Vec<Relation>> = Arc::new(
        manifest
            .sources
            .values()
            .map(|s| Relation {
                unique_id: s.unique_id.clone(),
                package: s.source_name.clone(),
                name: s.name.clone(),
                relation: s.relation_name.clone(),
            })
            .collect(),
    );
    let parents: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));

    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    {
        let nodes = nodes.clone();
        let parents = parents.clone();
        env.add_function(
            "ref",
            move |a: String, b: Option<String>| -> Result<String, minijinja::Error> {
                let (package, model) = match b {
                    Some(model) => (Some(a), model),
                    None => (None, a),
                };
                let found = nodes
                    .iter()
                    .find(|n| n.name == model && package.as_ref().is_none_or(|p| &n.package == p));
                match found {
                    Some(n) => {
                        parents
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(n.unique_id.clone());
                        n.relation.clone().ok_or_else(|| {
                            invalid(format!(
                                "ref('{model}') is ephemeral and has no relation to read"
                            ))
                        })
                    }
                    None => {
                        let close = did_you_mean(&model, nodes.iter().map(|n| n.name.as_str()))
                            .map(|c| format!("; did you mean `{c}`?"))
                            .unwrap_or_default();
                        let shown = match &package {
                            Some(p) => format!("ref('{p}', '{model}')"),
                            None => format!("ref('{model}')"),
                        };
                        Err(invalid(format!(
                            "{shown} names no model, seed or snapshot in the manifest{close}"
                        )))
                    }
                }
            },
        );
    }
    {
        let sources = sources.clone();
        let parents = parents.clone();
        env.add_function(
            "source",
            move |source: String, table: String| -> Result<String, minijinja::Error> {
                match sources
                    .iter()
                    .find(|s| s.package == source && s.name == table)
                {
                    Some(s) => {
                        parents
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(s.unique_id.clone());
                        s.relation.clone().ok_or_else(|| {
                            invalid(format!("source('{source}', '{table}') has no relation"))
                        })
                    }
                    None => Err(invalid(format!(
                        "source('{source}', '{table}') is not defined in the project"
                    ))),
                }
            },
        );
    }
    {
        let vars = project.vars.clone();
        env.add_function(
            "var",
            move |name: String,
                  default: Option<minijinja::Value>|
                  -> Result<minijinja::Value, minijinja::Error> {
                match vars.get(&name) {
                    Some(v) => Ok(minijinja::Value::from_serialize(v)),
                    None => default.ok_or_else(|| {
                        invalid(format!(
                            "var('{name}') is not defined in dbt_project.yml and has no default"
                        ))
                    }),
                }
            },
        );
    }
    env.add_function(
        "env_var",
        |name: String, default: Option<String>| -> Result<String, minijinja::Error> {
            match std::env::var(&name) {
                Ok(v) => {
                    if name.starts_with("DBT_ENV_SECRET_") {
                        secrets::register(&v);
                    }
                    Ok(v)
                }
                Err(_) => default.ok_or_else(|| {
                    invalid(format!(
                        "environment variable `{name}` is not set and env_var() has no default"
                    ))
                }),
            }
        },
    );
    let target: std::collections::BTreeMap<String, String> = activate.render_context.target.clone();
    let sql = env.render_str(query, minijinja::context! { target => target }).map_err(|e| {
        let detail = e.detail().map(str::to_owned).unwrap_or_else(|| e.to_string());
        ConfigError::new(format!("{site}.query: {detail}"))
            .with_hint("refs name models, seeds or snapshots of this project (`dbt ls -s <name>` lists them); run `dbt parse` after adding one")
    })?;
    let mut parents = parents.lock().unwrap_or_else(|e| e.into_inner()).clone();
    parents.sort();
    parents.dedup();
    if parents.is_empty() {
        return Err(ConfigError::new(format!("{site}.query references no model: it cannot be gated on a dbt build"))
            .with_hint("read from models with {{ ref('model') }} (or {{ source('src', 'table') }}), not from hard-coded table names"));
    }
    Ok((sql.trim().trim_end_matches(';').to_owned(), parents))
}

fn invalid(message: String) -> minijinja::Error {
    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message)
}
