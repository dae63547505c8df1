//! `dbt-activate validate`: every check a run makes before sending, plus field ownership:
//! one destination field of one object is written by one sync only.

use std::collections::BTreeMap;

use activate_graph::ProjectGraph;
use anyhow::{anyhow, bail};

use crate::ExitStatus;
use crate::cli::CommonArgs;
use crate::output;
use crate::project;

pub async fn validate(args: CommonArgs) -> anyhow::Result<ExitStatus> {
    let loaded = project::load(&args)?;
    let graph = ProjectGraph::new(&loaded.manifest, &loaded.specs);
    let selected = graph
        .select(&args.select, &args.exclude)
        .map_err(|e| anyhow!("{e}"))?;
    graph.order(&selected).map_err(|e| anyhow!("{e}"))?;
    // Ownership is checked across every activation, not only the selected ones.
    let all: Vec<usize> = (0..loaded.specs.len()).collect();
    let (_, jobs) = project::preflight(&loaded, &all).await?;
    let mut owners: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    for job in jobs.values() {
        let spec = &job.def.spec;
        for (p, field) in job.def.fields.iter().enumerate() {
            if job.def.key_positions.contains(&p) {
                continue; // match_on fields identify records; they are not owned data
            }
            owners
                .entry((spec.destination.clone(), spec.object.clone(), field.clone()))
                .or_default()
                .push(spec.name.clone());
        }
    }
    let conflicts: Vec<String> = owners
        .iter()
        .filter(|(_, syncs)| syncs.len() > 1)
        .map(|((d, o, f), syncs)| format!("{d}.{o}.{f} is written by {}", syncs.join(" and ")))
        .collect();
    if !conflicts.is_empty() {
        bail!(
            "one system is the source of truth per field, but:\n- {}\n  hint: remove the field from all but one sync's mapping",
            conflicts.join("\n- ")
        );
    }
    output::line(&format!(
        "OK: {} activation{} valid ({} selected); warehouse and destinations answered; no field has two owners",
        loaded.specs.len(),
        if loaded.specs.len() == 1 { "" } else { "s" },
        selected.len()
    ));
    Ok(ExitStatus::Success)
}
