//! Fixtures shared by the crate's unit tests.

use std::path::Path;

use activate_manifest::{ActivationSpec, Manifest, extract_specs};
use serde_json::json;

use crate::warehouse::ColumnDesc;

/// The spec of one model `m` (primary key `id` in its manifest node) whose
/// `config.meta.activate` is `activate`, with one destination `d`.
pub fn activation_spec(activate: serde_json::Value) -> ActivationSpec {
    let doc = json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json", "project_name": "p"},
        "nodes": {"model.p.m": {"unique_id": "model.p.m", "resource_type": "model", "name": "m",
            "original_file_path": "models/m.sql", "primary_key": ["id"], "config": {"meta": {"activate": activate}}}},
    });
    let manifest =
        Manifest::from_slice(doc.to_string().as_bytes(), Path::new("manifest.json")).unwrap();
    let dests = ["d".to_owned()].into_iter().collect();
    extract_specs(&manifest, &dests).unwrap().remove(0)
}

/// Columns of a relation, by (name, type).
pub fn columns(names_and_types: &[(&str, &str)]) -> Vec<ColumnDesc> {
    names_and_types
        .iter()
        .map(|(name, data_type)| ColumnDesc {
            name: (*name).to_owned(),
            data_type: (*data_type).to_owned(),
        })
        .collect()
}
