//! Which selected syncs are due by their `schedule`, from the start of their last successful
//! run in the state's history (`success` or `warn`; a failed or skipped run does not count).

use std::collections::BTreeMap;

use activate_manifest::Schedule;
use chrono::{DateTime, Utc};

use crate::project::Loaded;

/// The clock schedules are judged by. `DBT_ACTIVATE_NOW` (RFC 3339) replaces it, for tests
/// only: it sets "now" for schedules and the `started_at` recorded in the history.
pub fn now() -> anyhow::Result<DateTime<Utc>> {
    match std::env::var("DBT_ACTIVATE_NOW") {
        Ok(text) if !text.is_empty() => DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                anyhow::anyhow!(
                    "DBT_ACTIVATE_NOW=`{text}` is not an RFC 3339 time ({e}); it is for tests only, unset it"
                )
            }),
        _ => Ok(Utc::now()),
    }
}

/// A sync that is not due: why, and when it next is.
pub struct NotDue {
    pub reason: String,
    pub next_due: DateTime<Utc>,
}

/// A timestamp as shown and stored: UTC, to the second.
pub fn display(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The start of each sync's last successful run, by sync name.
pub fn last_successes(loaded: &Loaded) -> BTreeMap<String, DateTime<Utc>> {
    let mut last = BTreeMap::new();
    // An unreadable history (warehouse unreachable) counts as none: every sync is due.
    let history = crate::state_store::read_history(loaded).unwrap_or_default();
    for run in history {
        let status = run.get("status").and_then(|s| s.as_str());
        if !matches!(status, Some("success" | "warn")) {
            continue;
        }
        let Some(name) = run.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        // Runs recorded before `started_at` existed count from when they finished.
        let when = ["started_at", "finished_at"]
            .iter()
            .find_map(|k| run.get(*k).and_then(|v| v.as_str()))
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        if let Some(when) = when {
            last.insert(name.to_owned(), when);
        }
    }
    last
}

/// When a sync is next due, for `ls`: `None` when it is due now (or on every run).
pub fn next_due(
    schedule: &Schedule,
    last_success: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let due = schedule.next_due(last_success?)?;
    (due > now).then_some(due)
}

/// The syncs among `candidates` (spec indices) that are not due at `now`.
pub fn not_due(
    loaded: &Loaded,
    candidates: &[usize],
    now: DateTime<Utc>,
) -> BTreeMap<usize, NotDue> {
    let last = last_successes(loaded);
    let mut out = BTreeMap::new();
    for &i in candidates {
        let spec = &loaded.specs[i];
        let last_success = last.get(&spec.name).copied();
        if let Some(next_due) = next_due(&spec.schedule, last_success, now) {
            let since = last_success.map(display).unwrap_or_default();
            out.insert(
                i,
                NotDue {
                    reason: format!(
                        "not due: schedule {}, last successful run started {since}, next due {} (--ignore-schedule runs it now)",
                        spec.schedule,
                        display(next_due)
                    ),
                    next_due,
                },
            );
        }
    }
    out
}
