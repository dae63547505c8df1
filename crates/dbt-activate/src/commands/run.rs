//! `dbt-activate run` and `dbt-activate plan` (a run that sends nothing and writes no state).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use activate_executor::alerts;
use activate_executor::results::{self, Metadata, RunResultsFile, Status, SyncResult};
use activate_executor::runner::{self, Reporter, RunContext, SyncJob};
use activate_graph::{Gate, GatePolicy, ProjectGraph};
use anyhow::{anyhow, bail};

use crate::ExitStatus;
use crate::cli::RunArgs;
use crate::freshness;
use crate::output;
use crate::project;
use crate::reviewed_plan;
use crate::schedule;

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
            serde_json::json!({
                "index": position,
                "total": total,
                "node_info": {
                    "unique_id": job.def.unique_id,
                    "node_name": spec.name,
                    "resource_type": "sync",
                    "model": spec.model_id,
                    "destination": spec.destination,
                    "object": spec.object,
                    "node_status": "started",
                    "node_started_at": chrono::Utc::now().to_rfc3339(),
                },
            }),
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
            serde_json::json!({
                "index": position,
                "total": total,
                "node_info": {
                    "unique_id": result.unique_id,
                    "node_name": result.name,
                    "resource_type": "sync",
                    "model": result.model,
                    "destination": result.destination,
                    "object": result.object,
                    "node_status": result.status,
                    "node_finished_at": chrono::Utc::now().to_rfc3339(),
                },
                "execution_time": result.execution_time,
                "result": result,
            }),
        );
        for r in result.rejections.iter().take(3) {
            output::event(
                level,
                "Q013",
                &format!("    rejected {}: {}", r.key, r.reason),
                serde_json::json!({"node_info": {"unique_id": result.unique_id}, "key": r.key, "reason": r.reason}),
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
                output::event(
                    "info",
                    "Q014",
                    &format!("    {s}"),
                    serde_json::json!({"node_info": {"unique_id": result.unique_id}, "sample": s}),
                );
            }
        }
    }
}

/// `run` (optionally applying a reviewed plan) or `plan` (optionally writing one).
pub enum Mode {
    Run {
        plan: Option<PathBuf>,
    },
    Plan {
        samples: usize,
        out: Option<PathBuf>,
        detailed_exitcode: bool,
    },
}

pub async fn run(args: RunArgs, mode: Mode) -> anyhow::Result<ExitStatus> {
    run_until(args, mode, stop_on_signal()).await
}

/// A run that stops its syncs at the next batch boundary once `stop` is set (`serve` shares
/// one flag, set by its own signal handler, across the runs it starts).
pub async fn run_until(
    args: RunArgs,
    mode: Mode,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<ExitStatus> {
    let started = Instant::now();
    let dry_run = matches!(mode, Mode::Plan { .. });
    let plan_samples = match &mode {
        Mode::Plan { samples, .. } => *samples,
        Mode::Run { .. } => 0,
    };
    let invocation_id = output::invocation_id();
    let applying = match &mode {
        Mode::Run { plan: Some(path) } => Some(reviewed_plan::read(path, &args)?),
        _ => None,
    };
    let loaded = project::load(&args.common)?;
    output::event(
        "info",
        "A001",
        &format!(
            "Running with dbt-activate={} (target {}, warehouse {})",
            env!("CARGO_PKG_VERSION"),
            loaded.profile.target_name,
            loaded.profile.warehouse.kind()
        ),
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "target": loaded.profile.target_name,
            "warehouse": loaded.profile.warehouse.kind(),
        }),
    );

    let graph = ProjectGraph::new(&loaded.manifest, &loaded.specs);
    let selected = match &applying {
        Some(plan) => reviewed_plan::selection(&loaded, plan)?,
        None => graph
            .select(&args.common.select, &args.common.exclude)
            .map_err(|e| anyhow!("{e}"))?,
    };
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
    let started_at = schedule::now()?;
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
    // A reviewed plan already chose its syncs: schedules were applied when it was made.
    let not_due = if args.ignore_schedule || applying.is_some() {
        BTreeMap::new()
    } else {
        schedule::not_due(&loaded, &ready, started_at)
    };
    ready.retain(|i| !not_due.contains_key(i));
    for (i, why) in &not_due {
        skips.insert(*i, why.reason.clone());
    }
    // Workload 7: a model not rebuilt since its last successful sync is not queried.
    let read_started = chrono::Utc::now();
    let queries_anyway =
        args.full_refresh || args.ignore_schedule || !matches!(mode, Mode::Run { plan: None });
    let fresh = freshness::check(&loaded, run_results.as_ref(), &ready, !queries_anyway);
    ready.retain(|i| !fresh.up_to_date.contains_key(i));
    output::event(
        "info",
        "A002",
        &format!(
            "Found {} activation{}, {} selected, {} ready{}",
            loaded.specs.len(),
            if loaded.specs.len() == 1 { "" } else { "s" },
            selected.len(),
            ready.len(),
            match fresh.up_to_date.len() {
                0 => String::new(),
                n => format!(", {n} up to date (not queried)"),
            }
        ),
        serde_json::json!({
            "activations": loaded.specs.len(),
            "selected": selected.len(),
            "ready": ready.len(),
            "not_due": not_due.len(),
            "up_to_date": fresh.up_to_date.len(),
        }),
    );

    let (warehouse, jobs) = project::preflight(&loaded, &ready).await?;
    let store = crate::state_store::open(&loaded, warehouse.clone())?;
    let mut items = project::planned_items(&loaded, &selected, &skips, jobs);
    for (item, i) in items.iter_mut().zip(&selected) {
        if let (runner::Planned::Skip(result), Some(why)) = (&mut *item, not_due.get(i)) {
            result.next_due_at = Some(schedule::display(why.next_due));
        }
        if let Some(up_to_date) = fresh.up_to_date.get(i) {
            let result = freshness::result(&loaded, &loaded.specs[*i], up_to_date);
            *item = runner::Planned::Skip(Box::new(result));
        }
    }
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
                full_refresh: args.full_refresh
                    || applying.as_ref().is_some_and(|p| p.metadata.full_refresh),
                dry_run,
                samples: plan_samples,
                read_batch_rows: 10_000,
                stop: stop.clone(),
                expected_plan: applying.as_ref().map(|p| {
                    Arc::new(
                        p.syncs
                            .iter()
                            .map(|s| (s.name.clone(), s.clone()))
                            .collect(),
                    )
                }),
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
                v["started_at"] = serde_json::Value::String(started_at.to_rfc3339());
                for (k, value) in &audit {
                    v[k] = value.clone();
                }
                v["finished_at"] = serde_json::Value::String(chrono::Utc::now().to_rfc3339());
                for (k, value) in freshness::history_fields(&fresh, r, read_started) {
                    v[k] = value;
                }
                if let Some(list) = v.get_mut("rejections").and_then(|l| l.as_array_mut()) {
                    list.truncate(20);
                }
                v
            })
            .collect();
        // Alerts compare this run with the earlier ones: read them before appending.
        let target = &loaded.profile.target_name;
        let earlier = crate::state_store::blocking(|| store.history(target))?;
        crate::state_store::blocking(|| store.append_history(target, &history))?;
        send_alerts(&loaded, &results, &earlier, &invocation_id).await;
    }
    output::info("");
    output::info(&format!(
        "Finished {} {} sync{} in {elapsed:.2}s.",
        if dry_run { "planning" } else { "running" },
        results.len(),
        if results.len() == 1 { "" } else { "s" }
    ));
    let results_path = (!dry_run).then(|| {
        loaded
            .settings
            .target_path
            .join("activate_results.json")
            .display()
            .to_string()
    });
    output::set_summary(serde_json::json!({
        "pass": pass, "warn": warn, "error": error, "skip": skip, "total": results.len(),
        "results_path": results_path,
    }));
    output::event(
        if error > 0 { "error" } else { "info" },
        "Z030",
        &format!(
            "Done. PASS={pass} WARN={warn} ERROR={error} SKIP={skip} TOTAL={}",
            results.len()
        ),
        serde_json::json!({"pass": pass, "warn": warn, "error": error, "skip": skip, "total": results.len()}),
    );
    if let Mode::Plan {
        out: Some(path), ..
    } = &mode
    {
        reviewed_plan::write(path, &loaded, &results, &invocation_id, args.full_refresh)?;
    }
    let pending = results
        .iter()
        .any(|r| r.computed_plan.as_ref().is_some_and(|c| c.has_changes()));
    Ok(match mode {
        _ if error > 0 => ExitStatus::Failure,
        Mode::Plan {
            detailed_exitcode: true,
            ..
        } if pending => ExitStatus::PendingChanges,
        _ => ExitStatus::Success,
    })
}

/// Checks every finished sync against `alerts:` and its own history, and sends what needs a
/// person; a failure to send is logged and never changes the run's outcome.
async fn send_alerts(
    loaded: &project::Loaded,
    results: &[SyncResult],
    earlier: &[serde_json::Value],
    invocation_id: &str,
) {
    let Some(rules) = &loaded.activate.alerts else {
        return;
    };
    // Each sync's earlier runs, oldest first, grouped in one pass over the history.
    let mut past_runs: BTreeMap<&str, Vec<alerts::PastRun>> = BTreeMap::new();
    for record in earlier {
        if let Some(name) = record.get("name").and_then(|n| n.as_str()) {
            past_runs
                .entry(name)
                .or_default()
                .push(alerts::PastRun::from_history(record));
        }
    }
    let mut found = Vec::new();
    for result in results {
        let past = past_runs
            .get(result.name.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let reads_whole_model = loaded
            .specs
            .iter()
            .find(|s| s.name == result.name)
            .is_some_and(|s| s.cursor.is_none());
        found.extend(alerts::evaluate(rules, result, past, reads_whole_model));
    }
    for alert in &found {
        output::event(
            "warn",
            "Z060",
            &format!("Alert: {}", alert.text().replace('\n', " ")),
            serde_json::json!({"alert": alert}),
        );
    }
    let failures = alerts::deliver(
        rules,
        &found,
        &loaded.activate.destinations,
        &loaded.settings.project_dir,
        &loaded.profile.target_name,
        invocation_id,
    )
    .await;
    for failure in failures {
        output::event("error", "Z061", &failure, serde_json::Value::Null);
    }
}

/// A flag set when SIGINT or SIGTERM arrives (an orchestrator stopping the task): syncs stop
/// at the next batch boundary, state keeps every confirmed row, results are still written.
pub fn stop_on_signal() -> Arc<std::sync::atomic::AtomicBool> {
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
