//! `dbt-activate history`: recent runs per sync, from the state store's run history.

use crate::ExitStatus;
use crate::cli::HistoryArgs;
use crate::output;
use crate::project;

pub fn history(args: HistoryArgs) -> anyhow::Result<ExitStatus> {
    let loaded = project::load(&args.common)?;
    let selected = project::select(&loaded, &args.common)?;
    let names: Vec<&str> = selected
        .iter()
        .map(|&i| loaded.specs[i].name.as_str())
        .collect();
    let runs = crate::state_store::read_history(&loaded)?;
    let mut shown = 0usize;
    for name in &names {
        let mine: Vec<&serde_json::Value> = runs
            .iter()
            .filter(|r| r.get("name").and_then(|n| n.as_str()) == Some(name))
            .collect();
        output::line(&format!("{name}:"));
        if mine.is_empty() {
            output::line("  never run");
        }
        for run in mine.iter().rev().take(args.limit) {
            let n = |k: &str| run.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            let s = |k: &str| run.get(k).and_then(|v| v.as_str()).unwrap_or("");
            output::line(&format!(
                "  {}  {:<7}  +{} ~{} -{}, {} rejected in {:.2}s{}",
                s("finished_at"),
                s("status"),
                n("inserted"),
                n("updated"),
                n("deleted") + n("cleared"),
                n("rejected"),
                run.get("execution_time")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(0.0),
                match s("message") {
                    "" => String::new(),
                    m => format!("  {}", m.lines().next().unwrap_or("")),
                }
            ));
            if let Some(rejections) = run.get("rejections").and_then(|r| r.as_array()) {
                for r in rejections.iter().take(3) {
                    output::line(&format!(
                        "      rejected {}: {}",
                        r.get("key").and_then(|v| v.as_str()).unwrap_or(""),
                        r.get("reason").and_then(|v| v.as_str()).unwrap_or("")
                    ));
                }
            }
            shown += 1;
        }
    }
    output::line(&format!(
        "{shown} run{} of {} sync{} (target {})",
        if shown == 1 { "" } else { "s" },
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        loaded.profile.target_name
    ));
    Ok(ExitStatus::Success)
}
