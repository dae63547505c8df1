//! `dbt-activate ls`: activations with destination, object, mode, schedule, last run and when
//! each is next due.

use crate::ExitStatus;
use crate::cli::{LsArgs, LsOutput};
use crate::output;
use crate::project;
use crate::schedule;

pub fn ls(args: LsArgs) -> anyhow::Result<ExitStatus> {
    let loaded = project::load(&args.common)?;
    let selected = project::select(&loaded, &args.common)?;
    // Last runs are read from the history (file or warehouse table) without the lock.
    let mut last_runs = std::collections::BTreeMap::new();
    for run in crate::state_store::read_history(&loaded)? {
        if let Some(name) = run.get("name").and_then(|n| n.as_str()) {
            last_runs.insert(name.to_owned(), run);
        }
    }
    let last_successes = schedule::last_successes(&loaded);
    let now = schedule::now()?;
    let header = [
        "sync",
        "model",
        "destination",
        "mode",
        "schedule",
        "last run",
        "next due",
    ];
    let mut rows: Vec<[String; 7]> = Vec::new();
    let mut records: Vec<String> = Vec::new();
    for &i in &selected {
        let spec = &loaded.specs[i];
        let last = match last_runs.get(&spec.name) {
            Some(v) => format!(
                "{} {}",
                v.get("status").and_then(|s| s.as_str()).unwrap_or("?"),
                v.get("finished_at")
                    .and_then(|s| s.as_str())
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| schedule::display(t.with_timezone(&chrono::Utc)))
                    .unwrap_or_default()
            ),
            None => "never".to_owned(),
        };
        let next_due = match schedule::next_due(
            &spec.schedule,
            last_successes.get(&spec.name).copied(),
            now,
        ) {
            Some(t) => schedule::display(t),
            None if spec.schedule == activate_manifest::Schedule::Always => "every run".to_owned(),
            None => "now".to_owned(),
        };
        if args.output == LsOutput::Json {
            // What an orchestrator needs to place the sync after its models.
            let depends_on: Vec<&str> = if spec.query.is_some() {
                spec.parents.iter().map(String::as_str).collect()
            } else {
                vec![spec.model_id.as_str()]
            };
            let record = serde_json::json!({
                "name": spec.name,
                "unique_id": loaded.unique_id(spec),
                "resource_type": "sync",
                "model": spec.model_name,
                "depends_on": {"nodes": depends_on},
                "destination": spec.destination,
                "object": spec.object,
                "sync_mode": spec.sync_mode.to_string(),
                "schedule": spec.schedule.to_string(),
                "tags": spec_tags(&loaded, spec),
                "last_run": last,
                "next_due": next_due,
            });
            records.push(record.to_string());
            continue;
        }
        rows.push([
            spec.name.clone(),
            spec.model_name.clone(),
            format!("{}.{}", spec.destination, spec.object),
            spec.sync_mode.to_string(),
            spec.schedule.to_string(),
            last,
            next_due,
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let fmt = |cells: &[&str]| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    if args.output == LsOutput::Json {
        output::machine_lines(&records);
        return Ok(ExitStatus::Success);
    }
    output::line(&fmt(&header));
    output::report_lines(rows.iter().map(|r| {
        let data = move || {
            let data: serde_json::Map<String, serde_json::Value> = header
                .iter()
                .zip(r)
                .map(|(h, v)| (h.replace(' ', "_"), serde_json::Value::String(v.clone())))
                .collect();
            serde_json::Value::Object(data)
        };
        (fmt(&r.iter().map(String::as_str).collect::<Vec<_>>()), data)
    }));
    output::line(&format!(
        "{} activation{} (times in UTC; `run` skips syncs not due yet, `run --ignore-schedule` runs them)",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    Ok(ExitStatus::Success)
}

/// The model's dbt tags (a query sync has none of its own).
fn spec_tags(loaded: &project::Loaded, spec: &activate_manifest::ActivationSpec) -> Vec<String> {
    loaded
        .manifest
        .nodes
        .get(&spec.model_id)
        .map(|n| n.tags.clone())
        .unwrap_or_default()
}
