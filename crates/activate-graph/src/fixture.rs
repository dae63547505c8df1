//! A small hand-built dbt project for the unit tests.
//!
//! ```text
//! source raw.leads -> stg_leads ----------\
//! seed raw_usage   -> stg_usage -+---------> enriched_leads [leads_to_crm, leads_to_ops] -\
//!                                +-> churn_risk [churn_to_cs] ----------------------------+-> int_scores
//!                                +-> usage_billing [billing_usage, after: churn_to_cs]       |
//! int_scores -> high_value_at_risk [segment_to_marketing] -> alerts [alerts_to_slack, after: usage_billing]
//! ```
//!
//! Spec indices follow model unique_id order: 0 alerts_to_slack, 1 churn_to_cs, 2 leads_to_crm,
//! 3 leads_to_ops, 4 segment_to_marketing, 5 billing_usage.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

use activate_manifest::{ActivationSpec, Manifest, extract_specs};
use serde_json::{Value, json};

pub fn project() -> (Manifest, Vec<ActivationSpec>) {
    build(nodes())
}

pub fn build(nodes: Vec<Value>) -> (Manifest, Vec<ActivationSpec>) {
    let mut map = serde_json::Map::new();
    for node in nodes {
        let id = node["unique_id"].as_str().unwrap().to_owned();
        map.insert(id, node);
    }
    let doc = json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
            "project_name": "p",
        },
        "nodes": map,
        "sources": {
            "source.p.raw.leads": {
                "unique_id": "source.p.raw.leads", "name": "leads", "source_name": "raw",
                "resource_type": "source", "fqn": ["p", "raw", "leads"],
            },
        },
    });
    let manifest =
        Manifest::from_slice(doc.to_string().as_bytes(), Path::new("manifest.json")).unwrap();
    let destinations: BTreeSet<String> = ["crm", "ops", "cs", "marketing", "billing", "slack"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let specs = extract_specs(&manifest, &destinations).unwrap();
    (manifest, specs)
}

pub fn nodes() -> Vec<Value> {
    vec![
        json!({
            "unique_id": "seed.p.raw_usage", "resource_type": "seed", "name": "raw_usage",
            "fqn": ["p", "raw_usage"], "original_file_path": "seeds/raw_usage.csv", "path": "raw_usage.csv",
        }),
        model(
            "stg_leads",
            &["source.p.raw.leads"],
            "staging",
            json!({"tags": ["staging"]}),
        ),
        model(
            "stg_usage",
            &["seed.p.raw_usage"],
            "staging",
            json!({"tags": ["staging"], "config": {"tags": "nightly"}}),
        ),
        model(
            "enriched_leads",
            &["model.p.stg_leads", "model.p.stg_usage"],
            "marts",
            json!({
                "tags": ["hourly"],
                "config": {
                    "tags": ["hourly"],
                    "materialized": "table",
                    "meta": {
                        "owner": "growth", "pii": true, "priority": 1, "team": {"name": "growth"},
                        "activate": [
                            {"name": "leads_to_crm", "destination": "crm", "object": "Lead"},
                            {"name": "leads_to_ops", "destination": "ops", "object": "leads"},
                        ],
                    },
                },
            }),
        ),
        model(
            "churn_risk",
            &["model.p.stg_usage"],
            "marts/cs",
            json!({"config": {"meta": {"owner": "success", "priority": 2,
                "activate": {"name": "churn_to_cs", "destination": "cs", "object": "accounts"}}}}),
        ),
        model(
            "int_scores",
            &["model.p.churn_risk", "model.p.enriched_leads"],
            "intermediate",
            json!({}),
        ),
        model(
            "high_value_at_risk",
            &["model.p.int_scores"],
            "marts",
            json!({"tags": ["daily"], "config": {"meta": {
                "activate": {"name": "segment_to_marketing", "destination": "marketing", "object": "high_value"}}}}),
        ),
        model(
            "usage_billing",
            &["model.p.stg_usage"],
            "marts",
            json!({"config": {"meta": {"activate": {"name": "billing_usage", "destination": "billing",
                "object": "usage", "after": ["churn_to_cs"]}}}}),
        ),
        model(
            "alerts",
            &["model.p.high_value_at_risk"],
            "marts",
            json!({"config": {"meta": {"activate": {"name": "alerts_to_slack", "destination": "slack",
                "object": "#alerts", "after": "usage_billing"}}}}),
        ),
        test("unique_enriched_leads_email", "model.p.enriched_leads"),
        test("not_null_churn_risk_id", "model.p.churn_risk"),
        test("unique_stg_usage_id", "model.p.stg_usage"),
    ]
}

/// A model under `models/<folder>/`, with `extra` merged into the node (one level deep for
/// `config`).
pub fn model(name: &str, depends_on: &[&str], folder: &str, extra: Value) -> Value {
    let mut fqn = vec!["p".to_owned()];
    fqn.extend(folder.split('/').map(str::to_owned));
    fqn.push(name.to_owned());
    let mut node = json!({
        "unique_id": format!("model.p.{name}"), "resource_type": "model", "name": name,
        "fqn": fqn,
        "original_file_path": format!("models/{folder}/{name}.sql"),
        "path": format!("{folder}/{name}.sql"),
        "primary_key": ["id"],
        "depends_on": {"nodes": depends_on},
        "config": {"enabled": true},
    });
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            if key == "config" {
                if let Value::Object(config) = value {
                    for (k, v) in config {
                        node["config"][k] = v;
                    }
                }
            } else {
                node[key] = value;
            }
        }
    }
    node
}

pub fn test(name: &str, model_id: &str) -> Value {
    json!({
        "unique_id": format!("test.p.{name}"), "resource_type": "test", "name": name,
        "attached_node": model_id, "depends_on": {"nodes": [model_id]},
    })
}

/// Names of the specs at `indices`.
pub fn names(specs: &[ActivationSpec], indices: &[usize]) -> Vec<String> {
    indices.iter().map(|&i| specs[i].name.clone()).collect()
}

/// Mutable access to a node of `nodes` by unique_id.
pub fn node_mut<'a>(nodes: &'a mut [Value], id: &str) -> &'a mut Value {
    nodes.iter_mut().find(|n| n["unique_id"] == id).unwrap()
}
