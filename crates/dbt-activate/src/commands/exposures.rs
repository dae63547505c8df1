//! `dbt-activate exposures`: one dbt exposure per activation, written to a `.yml` the team
//! commits, so activations appear in dbt docs lineage and in tools that read exposures.

use activate_manifest::{ActivationSpec, Owner};
use anyhow::anyhow;
use serde_json::{Value, json};

use crate::ExitStatus;
use crate::cli::ExposuresArgs;
use crate::output;
use crate::project::{self, Loaded};

const HEADER: &str = "\
# Written by `dbt-activate exposures`: one exposure per dbt-activate sync, so activations
# appear in dbt docs lineage. Regenerate it after changing meta.activate or activate.yml;
# edits by hand are overwritten.
";

/// Where the file goes when `--out` is not given (inside the project's model path).
pub const DEFAULT_PATH: &str = "models/activate_exposures.yml";

pub fn exposures(args: ExposuresArgs) -> anyhow::Result<ExitStatus> {
    let loaded = project::load(&args.common)?;
    let selected = project::select(&loaded, &args.common)?;
    let path = match &args.out {
        Some(out) => std::path::absolute(out)?,
        None => loaded.settings.project_dir.join(DEFAULT_PATH),
    };
    let mut list = Vec::new();
    let mut unowned = Vec::new();
    for &i in &selected {
        let spec = &loaded.specs[i];
        if !spec.enabled {
            continue;
        }
        let owner = owner_of(&loaded, spec).unwrap_or_else(|| {
            unowned.push(spec.name.clone());
            Owner {
                name: Some("dbt-activate".into()),
                email: None,
            }
        });
        list.push(exposure(&loaded, spec, &owner)?);
    }
    let count = list.len();
    let yaml = serde_yaml_ng::to_string(&json!({"version": 2, "exposures": list}))
        .map_err(|e| anyhow!("could not write the exposures as YAML: {e}"))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow!("could not create {}: {e}", parent.display()))?;
    }
    activate_executor::destination::file::write_atomically(
        &path,
        format!("{HEADER}{yaml}").as_bytes(),
    )
    .map_err(|e| anyhow!("could not write {}: {e}", path.display()))?;
    output::report(
        &format!(
            "Wrote {count} exposure{} to {}",
            if count == 1 { "" } else { "s" },
            path.display()
        ),
        json!({"path": path.display().to_string(), "exposures": count}),
    );
    if !unowned.is_empty() {
        output::report(
            &format!(
                "{} sync{} without an owner (owner `dbt-activate` written): {}; set `owner:` in meta.activate or `meta.owner` on the model",
                unowned.len(),
                if unowned.len() == 1 { "" } else { "s" },
                unowned.join(", ")
            ),
            json!({"unowned": unowned}),
        );
    }
    Ok(ExitStatus::Success)
}

/// The sync's `owner`, else the model's `meta.owner` (config or properties).
fn owner_of(loaded: &Loaded, spec: &ActivationSpec) -> Option<Owner> {
    if let Some(owner) = &spec.owner {
        return Some(owner.clone());
    }
    let node = loaded.manifest.nodes.get(&spec.model_id)?;
    [node.config.meta.get("owner"), node.meta.get("owner")]
        .into_iter()
        .flatten()
        .find_map(|v| Owner::from_json(v).ok().flatten())
}

/// Exposure names hold only letters, digits and underscores.
fn exposure_name(sync: &str) -> String {
    let clean: String = sync
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("activate_{clean}")
}

/// `ref('model')` (with the package when it is not this project's), `source('s', 't')`.
fn dependency(loaded: &Loaded, unique_id: &str) -> Option<String> {
    if let Some(node) = loaded.manifest.nodes.get(unique_id) {
        return Some(if node.package_name == loaded.settings.project_name {
            format!("ref('{}')", node.name)
        } else {
            format!("ref('{}', '{}')", node.package_name, node.name)
        });
    }
    let source = loaded.manifest.sources.get(unique_id)?;
    Some(format!(
        "source('{}', '{}')",
        source.source_name, source.name
    ))
}

fn exposure(loaded: &Loaded, spec: &ActivationSpec, owner: &Owner) -> anyhow::Result<Value> {
    let parents: Vec<&str> = match &spec.query {
        Some(_) => spec.parents.iter().map(String::as_str).collect(),
        None => vec![spec.model_id.as_str()],
    };
    let depends_on: Vec<String> = parents
        .iter()
        .filter_map(|id| dependency(loaded, id))
        .collect();
    if depends_on.is_empty() {
        return Err(anyhow!(
            "sync `{}` ({}): none of the nodes it reads ({}) is in the manifest\n  hint: run `dbt parse` so manifest.json is current",
            spec.name,
            spec.defined_in,
            parents.join(", ")
        ));
    }
    let what = match &spec.query {
        Some(_) => format!("the query sync `{}` (activate.yml)", spec.name),
        None => format!("model `{}`", spec.model_name),
    };
    Ok(json!({
        "name": exposure_name(&spec.name),
        "label": format!("{} to {}.{}", spec.name, spec.destination, spec.object),
        "type": "application",
        "description": format!(
            "dbt-activate syncs {what} to `{}` object `{}` ({}, schedule {}).",
            spec.destination, spec.object, spec.sync_mode, spec.schedule
        ),
        "owner": owner,
        "depends_on": depends_on,
        "tags": ["dbt-activate"],
        "meta": {
            "dbt_activate": {
                "sync": spec.name,
                "destination": spec.destination,
                "object": spec.object,
                "sync_mode": spec.sync_mode,
                "schedule": spec.schedule.to_string(),
            }
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::exposure_name;

    #[test]
    fn exposure_names_are_identifiers() {
        assert_eq!(
            exposure_name("enriched_leads__crm__Lead"),
            "activate_enriched_leads__crm__Lead"
        );
        assert_eq!(exposure_name("leads-to.crm"), "activate_leads_to_crm");
    }
}
