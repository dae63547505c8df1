//! `dbt-activate run` and `dbt-activate plan` (a run that sends nothing and writes no state).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use activate_executor::results::{self, Metadata, RunResultsFile, Status, SyncResult};
use activate_executor::runner::{self, Reporter, RunContext, SyncJob};
use activate_executor::state::LocalStateStore;
use activate_graph::{Gate, GatePolicy, ProjectGraph};
use anyhow::{anyhow, bail};

use crate::ExitStatus;
use crate::cli::RunArgs;
use crate::output;
use crate::project;

struct Printer {
    dry_run: bool,
}

impl Reporter for Printer {
    fn started(&self, position: usize, total: usize, job: &SyncJob) {
        let spec = &job.def.spec;
        output::event(
            "info",
            "Q011",
            &format!(
                "{position} of {total} START {} {} -> {}.{} ({})",
                if self.dry_run { "plan" } else { "sync" },
                spec.name,
                spec.destination,
                spec.object,
                spec.sync_mode
            ),
            serde_json::json!({"node_info": {"unique_id": job.def.unique_id, "node_status": "started"}}),
        );
    }

    fn finished(&self, position: usize, total: usize, result: &SyncResult) {
        let level = match result.status {
            Status::Error => "error",
            Status::Warn => "warn",
            _ => "info",
        };
        output::event(
            level,
            "Q012",
            &output::finished_line(position, total, result, self.dry_run),
            serde_json::json!({"node_info": {"unique_id": result.unique_id, "node_status": result.status}, "result": result}),
        );
        for r in result.rejections.iter().take(3) {
            output::event(
                level,
                "Q013",
                &format!("    rejected {}: {}", r.key, r.reason),
                serde_json::Value::Null,
            );
        }
        if result.rejections.len() > 3 {
            output::event(
                level,
                "Q013",
                &format!(
                    "    ... and {} more in target/activate_results.json",
                    result.rejections.len() - 3
                ),
                serde_json::Value::Null,
            );
        }
        if self.dry_run {
            for s in &result.samples {
                output::event("info", "Q014", &format!("    {s}"), serde_json::Value::Null);
            }
        }
    }
}

pub async fn run(args: RunArgs, plan_samples: Option<usize>) -> anyhow::Result<ExitStatus> {
    let started = Instant::now();
    let dry_run = plan_samples.is_some();
    let invocation_id = uuid::Uuid::new_v4().to_string();
    output::set_format(args.common.log_format, &invocation_id);
    let loaded = project::load(&args.common)?;
    output::info(&format!(
        "Running with dbt-activate={} (target {}, warehouse {})",
        env!("CARGO_PKG_VERSION"),
        loaded.profile.target_name,
        loaded.profile.warehouse.kind()
    ));

    let graph = ProjectGraph::new(&loaded.manifest, &loaded.specs);
    let selected = graph
        .select(&args.common.select, &args.common.exclude)
        .map_err(|e| anyhow!("{e}"))?;
    let order = graph.order(&selected).map_err(|e| anyhow!("{e}"))?;
    let run_results = project::run_results(&loaded)?;
    if run_results.is_none() && !args.include_unbuilt && !selected.is_empty() {
        bail!(
            "no run_results.json in {}: dbt-activate syncs a model only when the last `dbt build` (or `dbt run`) built it and its tests passed, and there is no record of a build\n  hint: run `dbt build` first, or pass --include-unbuilt to sync from the relations as they are",
            loaded.settings.target_path.display()
        );
    }
    if let Some(rr) = &run_results
        && rr.invocation() == activate_manifest::Invocation::ProvesNothing
        && !args.include_unbuilt
        && !selected.is_empty()
    {
        bail!(
            "{} was written by `dbt {}`, which builds nothing, so it cannot show that any model built and passed its tests\n  hint: run `dbt build` (or `dbt run`) right before dbt-activate, or pass --include-unbuilt to sync from the relations as they are",
            loaded
                .settings
                .target_path
                .join("run_results.json")
                .display(),
            rr.command().unwrap_or("?")
        );
    }
    let policy = GatePolicy {
        include_unbuilt: args.include_unbuilt,
    };
    let mut skips: BTreeMap<usize, String> = BTreeMap::new();
    let mut ready = Vec::new();
    for &i in &selected {
        match activate_graph::gate(&graph, run_results.as_ref(), &loaded.specs[i], policy) {
            Gate::Ready => ready.push(i),
            Gate::Skip { reason } => {
                skips.insert(i, reason);
            }
        }
    }
    output::info(&format!(
        "Found {} activation{}, {} selected, {} ready",
        loaded.specs.len(),
        if loaded.specs.len() == 1 { "" } else { "s" },
        selected.len(),
        ready.len()
    ));

    let (warehouse, jobs) = project::preflight(&loaded, &ready).await?;
    let store = Arc::new(LocalStateStore::open(&loaded.state_dir)?);
    let items = project::planned_items(&loaded, &selected, &skips, jobs);
    // Map the graph's waits (spec indices) onto item positions.
    let position: BTreeMap<usize, usize> =
        selected.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let waits_for: BTreeMap<usize, Vec<usize>> = order
        .waits_for
        .iter()
        .filter_map(|(i, waits)| {
            let p = *position.get(i)?;
            Some((
                p,
                waits
                    .iter()
                    .filter_map(|w| position.get(w).copied())
                    .collect(),
            ))
        })
        .collect();

    let results = match warehouse {
        Some(warehouse) => {
            let threads = args.threads.or(loaded.profile.threads).unwrap_or(4).max(1);
            let ctx = Arc::new(RunContext {
                warehouse,
                store: store.clone(),
                target: loaded.profile.target_name.clone(),
                full_refresh: args.full_refresh,
                dry_run,
                samples: plan_samples.unwrap_or(0),
                read_batch_rows: 10_000,
                stop: stop_on_signal(),
            });
            runner::run_all(
                ctx,
                items,
                waits_for,
                threads,
                Arc::new(Printer { dry_run }),
            )
            .await
        }
        None => {
            let printer = Printer { dry_run };
            let total = items.len();
            items
                .into_iter()
                .enumerate()
                .map(|(n, item)| match item {
                    runner::Planned::Skip(r) => {
                        printer.finished(n + 1, total, &r);
                        *r
                    }
                    runner::Planned::Run(job) => SyncResult::skipped(
                        job.def.unique_id.clone(),
                        &job.def.spec,
                        "not prepared",
                    ),
                })
                .collect()
        }
    };

    let elapsed = started.elapsed().as_secs_f64();
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    let (pass, warn, error, skip) = (
        count(Status::Success),
        count(Status::Warn),
        count(Status::Error),
        count(Status::Skipped),
    );
    if !dry_run {
        let file = RunResultsFile {
            metadata: Metadata {
                invocation_id: invocation_id.clone(),
                generated_at: chrono::Utc::now().to_rfc3339(),
                dbt_activate_version: env!("CARGO_PKG_VERSION").to_owned(),
                results_schema_version: results::RESULTS_SCHEMA_VERSION,
                command: "run".into(),
                target: loaded.profile.target_name.clone(),
            },
            results: &results,
            elapsed_time: elapsed,
        };
        let path = loaded.settings.target_path.join("activate_results.json");
        results::write(&path, &file)
            .map_err(|e| anyhow!("could not write {}: {e}", path.display()))?;
        let audit = crate::audit::fields(
            &loaded.profile.target_name,
            &loaded.settings.target_path.join("manifest.json"),
        );
        let history: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["invocation_id"] = serde_json::Value::String(invocation_id.clone());
                for (k, value) in &audit {
                    v[k] = value.clone();
                }
                v["finished_at"] = serde_json::Value::String(chrono::Utc::now().to_rfc3339());
                if let Some(list) = v.get_mut("rejections").and_then(|l| l.as_array_mut()) {
                    list.truncate(20);
                }
                v
            })
            .collect();
        store.append_history(&loaded.profile.target_name, &history)?;
    }
    output::info("");
    output::info(&format!(
        "Finished {} {} sync{} in {elapsed:.2}s.",
        if dry_run { "planning" } else { "running" },
        results.len(),
        if results.len() == 1 { "" } else { "s" }
    ));
    output::event(
        if error > 0 { "error" } else { "info" },
        "Z030",
        &format!(
            "Done. PASS={pass} WARN={warn} ERROR={error} SKIP={skip} TOTAL={}",
            results.len()
        ),
        serde_json::json!({"pass": pass, "warn": warn, "error": error, "skip": skip, "total": results.len()}),
    );
    Ok(if error > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// A flag set when SIGINT or SIGTERM arrives (an orchestrator stopping the task): syncs stop
/// at the next batch boundary, state keeps every confirmed row, results are still written.
fn stop_on_signal() -> Arc<std::sync::atomic::AtomicBool> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        output::event(
            "warn",
            "Z040",
            "Stopping: syncs finish the batch in flight and stop; confirmed rows are kept",
            serde_json::Value::Null,
        );
    });
    stop
}
