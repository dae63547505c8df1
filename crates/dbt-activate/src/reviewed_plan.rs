//! `plan --out` and `run --plan`: writing a reviewed plan, and checking that a plan still fits
//! the project before it is applied (the per-sync check of data and state is in the runner).

use std::path::Path;

use activate_executor::plan_file::{self, PlanFile};
use activate_executor::results::SyncResult;
use activate_manifest::ActivationSpec;
use anyhow::{anyhow, bail};

use crate::cli::RunArgs;
use crate::output;
use crate::project;

/// Reads a plan for `run --plan`; the plan fixes the selection and the refresh mode.
pub fn read(path: &Path, args: &RunArgs) -> anyhow::Result<PlanFile> {
    if !args.common.select.is_empty() || !args.common.exclude.is_empty() {
        bail!(
            "--plan applies the whole plan, so --select and --exclude cannot be given with it\n  hint: select when making the plan: `dbt-activate plan --select ... --out {}`",
            path.display()
        );
    }
    if args.full_refresh {
        bail!(
            "--plan applies the plan as it was made, so --full-refresh cannot be given with it\n  hint: make the plan with `dbt-activate plan --full-refresh --out {}`",
            path.display()
        );
    }
    plan_file::read(path).map_err(|e| anyhow!("{e}"))
}

/// dbt's checksum of a sync's model file, or a hash of a query sync's SQL.
fn model_checksum(loaded: &project::Loaded, spec: &ActivationSpec) -> String {
    match &spec.query {
        Some(sql) => plan_file::query_checksum(sql),
        None => loaded
            .manifest
            .nodes
            .get(&spec.model_id)
            .and_then(|n| n.checksum.as_ref())
            .map(|c| c.checksum.clone())
            .unwrap_or_default(),
    }
}

/// The syncs of a plan being applied, by spec index; the plan must fit the project as it is.
pub fn selection(loaded: &project::Loaded, plan: &PlanFile) -> anyhow::Result<Vec<usize>> {
    if plan.metadata.target != loaded.profile.target_name {
        bail!(
            "the plan was made for target `{}`, this run is on target `{}`\n  hint: pass --target {}, or make a plan for this target",
            plan.metadata.target,
            loaded.profile.target_name,
            plan.metadata.target
        );
    }
    let mut selected = Vec::new();
    let mut problems = Vec::new();
    for planned in &plan.syncs {
        let Some(i) = loaded.specs.iter().position(|s| s.name == planned.name) else {
            problems.push(format!(
                "sync `{}` of the plan is no longer in the project",
                planned.name
            ));
            continue;
        };
        let spec = &loaded.specs[i];
        if model_checksum(loaded, spec) != planned.model_checksum {
            problems.push(format!(
                "the {} of sync `{}` changed since the plan was made (checksum {} then, {} now)",
                if spec.query.is_some() {
                    "query"
                } else {
                    "model file"
                },
                planned.name,
                planned.model_checksum,
                model_checksum(loaded, spec)
            ));
            continue;
        }
        selected.push(i);
    }
    if !problems.is_empty() {
        bail!(
            "the plan is stale, nothing was sent:\n- {}\n  hint: review a new plan (`dbt-activate plan --out plan.json`) and apply that one",
            problems.join("\n- ")
        );
    }
    // In the project's order, so waits between syncs hold.
    selected.sort_unstable();
    Ok(selected)
}

/// Writes `plan --out`: every sync that planned without an error.
pub fn write(
    path: &Path,
    loaded: &project::Loaded,
    results: &[SyncResult],
    invocation_id: &str,
    full_refresh: bool,
) -> anyhow::Result<()> {
    let mut syncs = Vec::new();
    for r in results {
        let Some(computed) = &r.computed_plan else {
            continue;
        };
        let Some(spec) = loaded.specs.iter().find(|s| s.name == r.name) else {
            continue;
        };
        let identity = plan_file::SyncIdentity {
            name: r.name.clone(),
            unique_id: r.unique_id.clone(),
            model: r.model.clone(),
            destination: r.destination.clone(),
            object: r.object.clone(),
        };
        syncs.push(computed.record(identity, model_checksum(loaded, spec), r.rejected));
    }
    let (inserts, updates, deletes) = syncs.iter().fold((0, 0, 0), |(i, u, d), s| {
        (i + s.insert.len(), u + s.update.len(), d + s.delete.len())
    });
    let file = PlanFile {
        plan_format_version: plan_file::PLAN_FORMAT_VERSION,
        metadata: plan_file::PlanMetadata {
            invocation_id: invocation_id.to_owned(),
            generated_at: chrono::Utc::now().to_rfc3339(),
            dbt_activate_version: env!("CARGO_PKG_VERSION").to_owned(),
            target: loaded.profile.target_name.clone(),
            full_refresh,
        },
        syncs,
    };
    plan_file::write(path, &file)
        .map_err(|e| anyhow!("could not write the plan {}: {e}", path.display()))?;
    output::event(
        "info",
        "Q020",
        &format!(
            "Wrote the plan of {} sync{} (+{inserts} ~{updates} -{deletes}) to {}; apply it with `dbt-activate run --plan {}`",
            file.syncs.len(),
            if file.syncs.len() == 1 { "" } else { "s" },
            path.display(),
            path.display()
        ),
        serde_json::json!({"path": path.display().to_string(), "syncs": file.syncs.len(),
            "insert": inserts, "update": updates, "delete": deletes}),
    );
    Ok(())
}
