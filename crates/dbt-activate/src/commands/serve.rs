//! `dbt-activate serve`: a long-running scheduler for teams without an orchestrator.
//!
//! Every `--poll-seconds` it
//! 1. starts the syncs whose models a new `run_results.json` shows rebuilt (so a `dbt build`
//!    by any means triggers them), whatever their schedules;
//! 2. starts the syncs that are due by their `schedule` (`always` syncs run on rebuilds only).
//!
//! Each is an ordinary run (gating, state, results, history, alerts), one at a time. SIGTERM
//! or Ctrl-C stops the syncs at the next batch boundary and exits 0 once the run in flight
//! has written its results and state. `/healthz` and Prometheus `/metrics` are served on a
//! loopback port by default.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use activate_manifest::{RunResults, Schedule};
use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::ExitStatus;
use crate::cli::ServeArgs;
use crate::commands::run::{self, Mode};
use crate::output;
use crate::project;
use crate::schedule;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Trigger {
    RunResults,
    Schedule,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::RunResults => "run_results",
            Trigger::Schedule => "schedule",
        }
    }
}

/// What `/metrics` and `/healthz` report.
#[derive(Debug, Default)]
struct Metrics {
    started_at: f64,
    running: bool,
    /// (trigger, exit code) -> runs
    runs: BTreeMap<(&'static str, u8), u64>,
    last_run_finished_at: Option<f64>,
    /// sync -> change kind -> rows
    rows: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// sync -> (last status, finished at)
    last_status: BTreeMap<String, (String, f64)>,
    last_success_at: BTreeMap<String, f64>,
    last_error: Option<String>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitStatus> {
    let metrics = Arc::new(Mutex::new(Metrics {
        started_at: unix_now(),
        ..Metrics::default()
    }));
    let listener = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "could not listen on {} for /healthz and /metrics",
            args.listen
        )
    })?;
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() {
        output::event(
            "warn",
            "S003",
            &format!(
                "serving /metrics and /healthz on {address}, reachable from other machines: they carry sync names and counts"
            ),
            serde_json::Value::Null,
        );
    }
    tokio::spawn(serve_http(listener, metrics.clone()));

    let stop = run::stop_on_signal();
    let loaded = project::load(&args.run.common)?;
    let run_results_path = loaded.settings.target_path.join("run_results.json");
    // Where each run writes its results, read back for /metrics.
    let results_path = loaded.settings.target_path.join("activate_results.json");
    output::event(
        "info",
        "S001",
        &format!(
            "Serving: /healthz and /metrics on http://{address}; every {}s, syncs run when run_results.json shows their model rebuilt or their schedule is due",
            args.poll_seconds
        ),
        serde_json::json!({"address": address.to_string(), "poll_seconds": args.poll_seconds}),
    );
    drop(loaded);

    // The run_results.json present at start is not news: due schedules cover it.
    let mut seen = fingerprint(&run_results_path);
    // A new run_results.json waits one poll to be sure dbt finished writing it (and let go of
    // the warehouse); a trigger whose run could not start (exit 2) is tried again, 3 times.
    let mut pending: Option<(Option<(SystemTime, u64)>, u32)> = None;
    let poll = Duration::from_secs(args.poll_seconds.max(1));
    let mut first = true;
    while !stop.load(Ordering::SeqCst) {
        if !first {
            let deadline = tokio::time::Instant::now() + poll;
            while tokio::time::Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
        }
        first = false;

        let now_seen = fingerprint(&run_results_path);
        match pending {
            Some((fp, attempts)) if fp == now_seen => {
                match syncs_of_rebuilt_models(&args, &run_results_path) {
                    Ok(names) if !names.is_empty() => {
                        let code = start_run(
                            &args,
                            names,
                            Trigger::RunResults,
                            &stop,
                            &metrics,
                            &results_path,
                        )
                        .await;
                        pending = (code == 2 && attempts < 3).then_some((fp, attempts + 1));
                    }
                    Ok(_) => pending = None,
                    Err(e) => {
                        note_error(&metrics, &format!("{e:#}"));
                        pending = (attempts < 3).then_some((fp, attempts + 1));
                    }
                }
                seen = fp;
            }
            _ if now_seen != seen => pending = Some((now_seen, 0)),
            _ => {}
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match due_syncs(&args) {
            Ok(names) if !names.is_empty() => {
                start_run(
                    &args,
                    names,
                    Trigger::Schedule,
                    &stop,
                    &metrics,
                    &results_path,
                )
                .await;
            }
            Ok(_) => {}
            Err(e) => note_error(&metrics, &format!("{e:#}")),
        }
    }
    output::event(
        "info",
        "S002",
        "Stopped: the run in flight finished its batch and wrote its results and state",
        serde_json::Value::Null,
    );
    Ok(ExitStatus::Success)
}

fn note_error(metrics: &Mutex<Metrics>, message: &str) {
    output::event("error", "S010", message, serde_json::Value::Null);
    metrics.lock().unwrap_or_else(|e| e.into_inner()).last_error = Some(message.to_owned());
}

/// When the file changed: its modification time and size.
fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The syncs whose model (or, for a query sync, any model it refs) the current
/// run_results.json shows built successfully.
fn syncs_of_rebuilt_models(args: &ServeArgs, path: &Path) -> anyhow::Result<Vec<String>> {
    let results = RunResults::from_path(path)?;
    let rebuilt: BTreeSet<&str> = results
        .results
        .iter()
        .filter(|r| r.unique_id.starts_with("model.") && r.status == "success")
        .map(|r| r.unique_id.as_str())
        .collect();
    let loaded = project::load(&args.run.common)?;
    let selected = project::select(&loaded, &args.run.common)?;
    Ok(selected
        .into_iter()
        .map(|i| &loaded.specs[i])
        .filter(|spec| {
            rebuilt.contains(spec.model_id.as_str())
                || spec.parents.iter().any(|p| rebuilt.contains(p.as_str()))
        })
        .map(|spec| spec.name.clone())
        .collect())
}

/// The selected syncs due now by their schedule (`always` syncs wait for a rebuild).
fn due_syncs(args: &ServeArgs) -> anyhow::Result<Vec<String>> {
    let loaded = project::load(&args.run.common)?;
    let selected = project::select(&loaded, &args.run.common)?;
    let last = schedule::last_successes(&loaded);
    let now = schedule::now()?;
    Ok(selected
        .into_iter()
        .map(|i| &loaded.specs[i])
        .filter(|spec| spec.schedule != Schedule::Always)
        .filter(|spec| {
            schedule::next_due(&spec.schedule, last.get(&spec.name).copied(), now).is_none()
        })
        .map(|spec| spec.name.clone())
        .collect())
}

async fn start_run(
    args: &ServeArgs,
    names: Vec<String>,
    trigger: Trigger,
    stop: &Arc<AtomicBool>,
    metrics: &Arc<Mutex<Metrics>>,
    results_path: &Path,
) -> u8 {
    let invocation = output::start_invocation();
    output::event(
        "info",
        "S004",
        &format!(
            "Starting a run ({}): {}",
            match trigger {
                Trigger::RunResults => "run_results.json shows their models rebuilt",
                Trigger::Schedule => "due by schedule",
            },
            names.join(", ")
        ),
        serde_json::json!({"trigger": trigger.as_str(), "syncs": names, "invocation_id": invocation}),
    );
    let mut run_args = args.run.clone();
    run_args.common.select = names;
    run_args.common.exclude = Vec::new();
    // A rebuild triggers its syncs whatever their schedules; due syncs are due.
    run_args.ignore_schedule = trigger == Trigger::RunResults;
    metrics.lock().unwrap_or_else(|e| e.into_inner()).running = true;
    let outcome = run::run_until(run_args, Mode::Run { plan: None }, stop.clone()).await;
    let code = match &outcome {
        Ok(status) => status.code(),
        Err(e) => {
            output::fatal(e);
            2
        }
    };
    let mut m = metrics.lock().unwrap_or_else(|e| e.into_inner());
    m.running = false;
    *m.runs.entry((trigger.as_str(), code)).or_default() += 1;
    let finished = unix_now();
    m.last_run_finished_at = Some(finished);
    if let Err(e) = &outcome {
        m.last_error = Some(activate_executor::secrets::redact(&format!("{e:#}")));
    }
    if let Some(results) = read_results(results_path)
        && results["metadata"]["invocation_id"] == invocation.as_str()
    {
        record_results(&mut m, &results, finished);
    }
    code
}

fn read_results(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn record_results(m: &mut Metrics, results: &serde_json::Value, finished: f64) {
    for r in results["results"].as_array().into_iter().flatten() {
        let Some(name) = r["name"].as_str() else {
            continue;
        };
        let status = r["status"].as_str().unwrap_or("unknown").to_owned();
        let rows = m.rows.entry(name.to_owned()).or_default();
        for kind in ["inserted", "updated", "deleted", "cleared", "rejected"] {
            *rows.entry(kind).or_default() += r[kind].as_u64().unwrap_or(0);
        }
        if status == "success" || status == "warn" {
            m.last_success_at.insert(name.to_owned(), finished);
        }
        m.last_status.insert(name.to_owned(), (status, finished));
    }
}

/// Prometheus text exposition format 0.0.4.
fn render_metrics(m: &Metrics) -> String {
    fn label(value: &str) -> String {
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }
    let mut out = String::new();
    out.push_str("# HELP dbt_activate_up 1 while dbt-activate serve is running.\n# TYPE dbt_activate_up gauge\ndbt_activate_up 1\n");
    out.push_str(&format!(
        "# HELP dbt_activate_start_time_seconds When serve started (Unix time).\n# TYPE dbt_activate_start_time_seconds gauge\ndbt_activate_start_time_seconds {:.3}\n",
        m.started_at
    ));
    out.push_str(&format!(
        "# HELP dbt_activate_running 1 while a run is in flight.\n# TYPE dbt_activate_running gauge\ndbt_activate_running {}\n",
        u8::from(m.running)
    ));
    out.push_str("# HELP dbt_activate_runs_total Runs started by serve, by trigger and exit code.\n# TYPE dbt_activate_runs_total counter\n");
    for ((trigger, code), n) in &m.runs {
        out.push_str(&format!(
            "dbt_activate_runs_total{{trigger=\"{trigger}\",exit_code=\"{code}\"}} {n}\n"
        ));
    }
    if let Some(t) = m.last_run_finished_at {
        out.push_str(&format!(
            "# HELP dbt_activate_last_run_timestamp_seconds When the last run finished (Unix time).\n# TYPE dbt_activate_last_run_timestamp_seconds gauge\ndbt_activate_last_run_timestamp_seconds {t:.3}\n"
        ));
    }
    out.push_str("# HELP dbt_activate_sync_rows_total Rows per sync and change kind, since serve started.\n# TYPE dbt_activate_sync_rows_total counter\n");
    for (sync, kinds) in &m.rows {
        for (kind, n) in kinds {
            out.push_str(&format!(
                "dbt_activate_sync_rows_total{{sync=\"{}\",change=\"{kind}\"}} {n}\n",
                label(sync)
            ));
        }
    }
    out.push_str("# HELP dbt_activate_sync_last_run_status The status of each sync's last run (1 for that status).\n# TYPE dbt_activate_sync_last_run_status gauge\n");
    for (sync, (status, _)) in &m.last_status {
        out.push_str(&format!(
            "dbt_activate_sync_last_run_status{{sync=\"{}\",status=\"{}\"}} 1\n",
            label(sync),
            label(status)
        ));
    }
    out.push_str("# HELP dbt_activate_sync_last_success_timestamp_seconds When each sync last succeeded (Unix time).\n# TYPE dbt_activate_sync_last_success_timestamp_seconds gauge\n");
    for (sync, t) in &m.last_success_at {
        out.push_str(&format!(
            "dbt_activate_sync_last_success_timestamp_seconds{{sync=\"{}\"}} {t:.3}\n",
            label(sync)
        ));
    }
    out
}

fn render_health(m: &Metrics) -> String {
    serde_json::json!({
        "status": "ok",
        "running": m.running,
        "runs": m.runs.values().sum::<u64>(),
        "last_run_finished_at": m.last_run_finished_at,
        "last_error": m.last_error,
    })
    .to_string()
}

/// A minimal HTTP/1.1 server: `GET /healthz`, `GET /metrics`, anything else 404. One
/// request per connection, headers capped at 8 KiB, 5 s to send them.
async fn serve_http(listener: TcpListener, metrics: Arc<Mutex<Metrics>>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let request = String::from_utf8_lossy(&buf);
            let mut parts = request.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = path.split('?').next().unwrap_or("");
            let (status, content_type, body) = {
                let m = metrics.lock().unwrap_or_else(|e| e.into_inner());
                match (method, path) {
                    ("GET", "/healthz") => ("200 OK", "application/json", render_health(&m)),
                    ("GET", "/metrics") => (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        render_metrics(&m),
                    ),
                    ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
                    _ => (
                        "405 Method Not Allowed",
                        "text/plain",
                        "GET only\n".to_owned(),
                    ),
                }
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}
