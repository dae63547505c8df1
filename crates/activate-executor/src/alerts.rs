//! Run alerts (`alerts:` in activate.yml): after a run, each finished sync is checked against
//! the rules and against its own recent history, and what needs a person is sent through a
//! `slack` or `webhook` destination.
//!
//! ```yaml
//! alerts:
//!   send_to: [ops_slack]              # or [{destination: ops_slack, channel: data-alerts}]
//!   sync_failed: true                 # a sync ended in error (default true)
//!   circuit_breaker: true             # a circuit breaker stopped a sync (default true)
//!   rejected_share_above: 5%          # rejected rows / rows sent (default 5%)
//!   row_count_deviation_above: 50%    # rows read vs the median of recent runs (default 50%)
//!   changes_deviation_above: 300%     # changes vs the median of recent runs (default 300%)
//!   min_changes: 100                  # ... and at least this many changes (default 100)
//!   lookback_runs: 10                 # recent runs compared against (default 10)
//!   min_history: 3                    # runs needed before the anomaly checks speak (default 3)
//! ```
//!
//! Every alert says which sync, what was seen, what was expected and what to do.

use std::collections::BTreeMap;

use activate_manifest::did_you_mean;
use serde::Serialize;

use crate::connections::DestinationConfig;
use crate::error::ConfigError;
use crate::results::{Status, SyncResult};

const KEYS: &[&str] = &[
    "send_to",
    "sync_failed",
    "circuit_breaker",
    "rejected_share_above",
    "row_count_deviation_above",
    "changes_deviation_above",
    "min_changes",
    "lookback_runs",
    "min_history",
];

/// Where alerts go: a destination of type `slack` or `webhook`, and for Slack's bot-token
/// mode the channel.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertTarget {
    pub destination: String,
    pub channel: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    pub send_to: Vec<AlertTarget>,
    pub sync_failed: bool,
    pub circuit_breaker: bool,
    /// A share in 0..=1; `None` turns the check off.
    pub rejected_share_above: Option<f64>,
    pub row_count_deviation_above: Option<f64>,
    pub changes_deviation_above: Option<f64>,
    pub min_changes: u64,
    pub lookback_runs: usize,
    pub min_history: usize,
}

impl AlertRules {
    /// Parses `alerts:`; destinations are checked to exist and to be able to carry alerts.
    pub fn parse(
        value: &serde_yaml_ng::Value,
        destinations: &BTreeMap<String, DestinationConfig>,
        file: &str,
    ) -> Result<Self, ConfigError> {
        let err = |msg: String| ConfigError::new(format!("{file}: alerts: {msg}"));
        let Some(map) = value.as_mapping() else {
            return Err(err("must be a mapping".into())
                .with_hint("alerts: {send_to: [ops_slack], rejected_share_above: 5%}"));
        };
        let mut rules = AlertRules {
            send_to: Vec::new(),
            sync_failed: true,
            circuit_breaker: true,
            rejected_share_above: Some(0.05),
            row_count_deviation_above: Some(0.5),
            changes_deviation_above: Some(3.0),
            min_changes: 100,
            lookback_runs: 10,
            min_history: 3,
        };
        for (key, v) in map {
            let key = key.as_str().unwrap_or("?");
            match key {
                "send_to" => rules.send_to = parse_targets(v).map_err(err)?,
                "sync_failed" | "circuit_breaker" => {
                    let b = v
                        .as_bool()
                        .ok_or_else(|| err(format!("`{key}` must be true or false")))?;
                    if key == "sync_failed" {
                        rules.sync_failed = b;
                    } else {
                        rules.circuit_breaker = b;
                    }
                }
                "rejected_share_above"
                | "row_count_deviation_above"
                | "changes_deviation_above" => {
                    let share = parse_share(v).map_err(|why| err(format!("`{key}`: {why}")))?;
                    match key {
                        "rejected_share_above" => rules.rejected_share_above = share,
                        "row_count_deviation_above" => rules.row_count_deviation_above = share,
                        _ => rules.changes_deviation_above = share,
                    }
                }
                "min_changes" | "lookback_runs" | "min_history" => {
                    let n = v
                        .as_u64()
                        .ok_or_else(|| err(format!("`{key}` must be a whole number")))?;
                    match key {
                        "min_changes" => rules.min_changes = n,
                        "lookback_runs" => rules.lookback_runs = n.max(1) as usize,
                        _ => rules.min_history = n.max(1) as usize,
                    }
                }
                other => {
                    let hint = match did_you_mean(other, KEYS.iter().copied()) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!("keys: {}", KEYS.join(", ")),
                    };
                    return Err(err(format!("unknown key `{other}`")).with_hint(hint));
                }
            }
        }
        if rules.send_to.is_empty() {
            return Err(err("`send_to` names no destination".into())
                .with_hint("send_to: [ops_slack] (a destination of type slack or webhook)"));
        }
        for target in &rules.send_to {
            let Some(config) = destinations.get(&target.destination) else {
                let hint = match did_you_mean(
                    &target.destination,
                    destinations.keys().map(String::as_str),
                ) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => "add it under `destinations:`".to_owned(),
                };
                return Err(err(format!(
                    "`send_to` names `{}`, which is not a destination of this target",
                    target.destination
                ))
                .with_hint(hint));
            };
            if config.kind != "slack" && config.kind != "webhook" {
                return Err(err(format!(
                    "`{}` is a {} destination; alerts go through slack or webhook destinations",
                    target.destination, config.kind
                )));
            }
        }
        Ok(rules)
    }
}

fn parse_targets(v: &serde_yaml_ng::Value) -> Result<Vec<AlertTarget>, String> {
    let one = |v: &serde_yaml_ng::Value| -> Result<AlertTarget, String> {
        if let Some(name) = v.as_str() {
            return Ok(AlertTarget {
                destination: name.to_owned(),
                channel: None,
            });
        }
        let destination = v
            .get("destination")
            .and_then(|d| d.as_str())
            .ok_or("each `send_to` entry is a destination name or {destination, channel}")?;
        for key in v.as_mapping().into_iter().flat_map(|m| m.keys()) {
            let key = key.as_str().unwrap_or("?");
            if key != "destination" && key != "channel" {
                return Err(format!(
                    "`send_to` entry: unknown key `{key}` (keys: destination, channel)"
                ));
            }
        }
        Ok(AlertTarget {
            destination: destination.to_owned(),
            channel: v.get("channel").and_then(|c| c.as_str()).map(str::to_owned),
        })
    };
    match v {
        serde_yaml_ng::Value::Sequence(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// `5%`, `0.05` or `off`.
fn parse_share(v: &serde_yaml_ng::Value) -> Result<Option<f64>, String> {
    if let Some(s) = v.as_str() {
        let s = s.trim();
        if s == "off" {
            return Ok(None);
        }
        if let Some(p) = s.strip_suffix('%') {
            return p
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite() && *p >= 0.0)
                .map(|p| Some(p / 100.0))
                .ok_or_else(|| format!("`{s}` is not a percentage like 5%"));
        }
    }
    if v.is_bool() && v.as_bool() == Some(false) {
        return Ok(None);
    }
    v.as_f64()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .map(Some)
        .ok_or_else(|| "expected a percentage (5%), a share (0.05) or off".to_owned())
}

/// One thing a person should look at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `sync_failed`, `circuit_breaker`, `rejected_rows`, `row_count_anomaly`,
    /// `changes_anomaly`.
    pub kind: &'static str,
    pub sync: String,
    pub model: String,
    pub seen: String,
    pub expected: String,
    pub action: String,
}

impl Alert {
    pub fn text(&self) -> String {
        format!(
            "sync `{}` ({}): {}\n• seen: {}\n• expected: {}\n• what to do: {}",
            self.sync,
            self.model,
            self.kind.replace('_', " "),
            self.seen,
            self.expected,
            self.action
        )
    }
}

/// What one earlier run of a sync left in the history (`history.jsonl`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PastRun {
    pub status: String,
    pub rows_read: u64,
    pub changes: u64,
}

impl PastRun {
    /// A run that read nothing because the model was up to date (`up_to_date_since`) gets
    /// the status `up_to_date`, so it never counts as a read of zero rows.
    pub fn from_history(record: &serde_json::Value) -> Self {
        let n = |k: &str| record.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let status = if record.get("up_to_date_since").is_some_and(|v| !v.is_null()) {
            "up_to_date"
        } else {
            record
                .get("status")
                .and_then(|s| s.as_str())
                .unwrap_or_default()
        };
        Self {
            status: status.to_owned(),
            rows_read: n("rows_read"),
            changes: n("inserted") + n("updated") + n("deleted") + n("cleared"),
        }
    }
}

fn changes_of(r: &SyncResult) -> u64 {
    r.inserted + r.updated + r.deleted + r.cleared
}

fn median(mut values: Vec<u64>) -> f64 {
    values.sort_unstable();
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2] as f64
    } else {
        (values[n / 2 - 1] + values[n / 2]) as f64 / 2.0
    }
}

fn pct(share: f64) -> String {
    let p = share * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{}%", p.round())
    } else {
        format!("{p:.1}%")
    }
}

/// The alerts one sync's result raises. `past` holds its earlier runs, oldest first;
/// `reads_whole_model` is false for cursor syncs, whose rows read are only the new rows.
pub fn evaluate(
    rules: &AlertRules,
    result: &SyncResult,
    past: &[PastRun],
    reads_whole_model: bool,
) -> Vec<Alert> {
    let alert = |kind, seen: String, expected: String, action: String| Alert {
        kind,
        sync: result.name.clone(),
        model: result.model.clone(),
        seen,
        expected,
        action,
    };
    let mut out = Vec::new();
    let first_line = result.message.lines().next().unwrap_or_default().to_owned();
    let hint = result
        .message
        .lines()
        .find_map(|l| l.trim().strip_prefix("hint: "))
        .map(str::to_owned);
    match result.status {
        Status::Error if result.message.starts_with("circuit breaker") => {
            if rules.circuit_breaker {
                out.push(alert(
                    "circuit_breaker",
                    first_line,
                    "changes within the sync's limits".into(),
                    hint.unwrap_or_else(|| {
                        "check the model's data; if the change is real, raise the limit".into()
                    }),
                ));
            }
            return out;
        }
        Status::Error => {
            if rules.sync_failed {
                out.push(alert(
                    "sync_failed",
                    first_line,
                    "the sync to succeed".into(),
                    hint.unwrap_or_else(|| {
                        format!(
                            "read the error in target/activate_results.json or `dbt-activate history --select {}`, fix it, and run again: the next run resends exactly what is missing",
                            result.name
                        )
                    }),
                ));
            }
            return out;
        }
        Status::Skipped => return out,
        // Up to date: nothing was read or sent, so there is nothing to compare.
        Status::Success if result.up_to_date_since.is_some() => return out,
        Status::Success | Status::Warn => {}
    }

    let sent = changes_of(result) + result.rejected;
    if let Some(limit) = rules.rejected_share_above
        && sent > 0
        && result.rejected > 0
    {
        let share = result.rejected as f64 / sent as f64;
        if share > limit {
            let reason = result
                .rejections
                .first()
                .map(|r| format!("; first: {} ({})", r.key, r.reason))
                .unwrap_or_default();
            out.push(alert(
                "rejected_rows",
                format!(
                    "{} of {sent} rows sent were rejected ({}){reason}",
                    result.rejected,
                    pct(share)
                ),
                format!("at most {} rejected", pct(limit)),
                "fix the rejected rows in the model (reasons in target/activate_results.json); they are retried on the next run".into(),
            ));
        }
    }

    let recent: Vec<&PastRun> = past
        .iter()
        .filter(|p| p.status == "success" || p.status == "warn")
        .rev()
        .take(rules.lookback_runs)
        .collect();
    if recent.len() < rules.min_history {
        return out;
    }
    if let Some(limit) = rules.row_count_deviation_above
        && reads_whole_model
    {
        let typical = median(recent.iter().map(|p| p.rows_read).collect());
        let now = result.rows_read as f64;
        if typical > 0.0 && ((now - typical).abs() / typical) > limit {
            let direction = if now < typical { "dropped" } else { "grew" };
            out.push(alert(
                "row_count_anomaly",
                format!(
                    "the model returned {} rows: it {direction} by {} against the median of its last {} runs ({typical})",
                    result.rows_read,
                    pct((now - typical).abs() / typical),
                    recent.len()
                ),
                format!(
                    "within {} of {typical} rows",
                    pct(limit)
                ),
                "check the model and its sources for lost or duplicated data (an upstream load that failed, a join that changed); if the change is real, it is the new normal after a few runs".into(),
            ));
        }
    }
    if let Some(limit) = rules.changes_deviation_above {
        let typical = median(recent.iter().map(|p| p.changes).collect());
        let now = changes_of(result);
        if now >= rules.min_changes && (now as f64) > typical.max(1.0) * (1.0 + limit) {
            out.push(alert(
                "changes_anomaly",
                format!(
                    "{now} rows changed, against a median of {typical} in its last {} runs",
                    recent.len()
                ),
                format!(
                    "at most {} more than usual",
                    pct(limit)
                ),
                "check what changed upstream (`dbt-activate plan` shows samples) before the destination's users notice; set limits.max_changes to stop such runs before they send".into(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;

/// Sends a run's alerts to every `send_to` destination: one message (Slack) or one JSON
/// document (webhook) per destination. Returns what could not be delivered, for the log; an
/// alert that cannot be sent never changes the run's outcome.
pub async fn deliver(
    rules: &AlertRules,
    alerts: &[Alert],
    destinations: &BTreeMap<String, DestinationConfig>,
    project_dir: &std::path::Path,
    target: &str,
    invocation_id: &str,
) -> Vec<String> {
    if alerts.is_empty() {
        return Vec::new();
    }
    let mut text = format!(
        "dbt-activate: {} alert{} in run {invocation_id} (target {target})",
        alerts.len(),
        if alerts.len() == 1 { "" } else { "s" }
    );
    for a in alerts {
        text.push_str("\n\n");
        text.push_str(&a.text());
    }
    // Slack accepts up to 40,000 characters; keep well under it.
    if text.len() > 35_000 {
        let mut cut = 35_000;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n… (more in target/activate_results.json)");
    }
    let payload = serde_json::json!({
        "event": "dbt_activate.alerts",
        "target": target,
        "invocation_id": invocation_id,
        "alerts": alerts,
    });
    let mut failures = Vec::new();
    for to in &rules.send_to {
        let Some(config) = destinations.get(&to.destination) else {
            continue;
        };
        let message = crate::destination::AlertMessage {
            text: &text,
            payload: &payload,
            channel: to.channel.as_deref(),
        };
        let sent = match crate::destination::build(config, project_dir) {
            Ok(dest) => dest.send_alert(&message).await.map_err(|e| e.message),
            Err(e) => Err(e.message),
        };
        if let Err(why) = sent {
            failures.push(format!(
                "alerts could not be sent to `{}`: {}",
                to.destination,
                crate::secrets::redact(&why)
            ));
        }
    }
    failures
}
