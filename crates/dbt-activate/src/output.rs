//! Printing in dbt's voice (`HH:MM:SS  1 of 5 OK synced ...`), or one JSON event per line with
//! `--log-format json`. Every line goes through secret redaction.

use std::io::Write;
use std::sync::OnceLock;

use activate_executor::results::{Status, SyncResult};
use activate_executor::secrets::redact;

use crate::cli::LogFormat;

static FORMAT: OnceLock<LogFormat> = OnceLock::new();
static INVOCATION: OnceLock<String> = OnceLock::new();

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DBT_ACTIVATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactedStderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Diagnostics (`DBT_ACTIVATE_LOG`, down to other crates' trace events) pass through secret
/// redaction too: each event is written whole, then masked.
struct RedactedStderr;

impl Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = redact(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub fn set_format(format: LogFormat, invocation_id: &str) {
    let _ = FORMAT.set(format);
    let _ = INVOCATION.set(invocation_id.to_owned());
}

fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or(LogFormat::Text)
}

fn now() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}

/// One event: a line of text, or a JSON object with dbt's event fields.
pub fn event(level: &str, code: &str, msg: &str, data: serde_json::Value) {
    let line = match format() {
        LogFormat::Text => format!("{}  {}", now(), msg),
        LogFormat::Json => serde_json::json!({
            "ts": chrono::Utc::now().to_rfc3339(),
            "level": level,
            "code": code,
            "msg": msg,
            "data": data,
            "invocation_id": INVOCATION.get().cloned().unwrap_or_default(),
        })
        .to_string(),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", redact(&line));
}

pub fn info(msg: &str) {
    event("info", "A001", msg, serde_json::Value::Null);
}

/// A plain line of a report (ls, debug) in text mode; an info event in JSON mode.
pub fn line(msg: &str) {
    match format() {
        LogFormat::Text => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", redact(msg));
        }
        LogFormat::Json => info(msg),
    }
}

pub fn fatal(error: &anyhow::Error) {
    let text = redact(&format!("{error:#}"));
    match format() {
        LogFormat::Text => eprintln!("error: {text}"),
        LogFormat::Json => {
            let line = serde_json::json!({
                "ts": chrono::Utc::now().to_rfc3339(),
                "level": "error",
                "code": "Z001",
                "msg": text,
                "invocation_id": INVOCATION.get().cloned().unwrap_or_default(),
            });
            eprintln!("{line}");
        }
    }
}

pub fn counts(r: &SyncResult) -> String {
    let mut s = format!("+{} ~{} -{}", r.inserted, r.updated, r.deleted + r.cleared);
    s.push_str(&format!(", {} rejected", r.rejected));
    s
}

/// The line dbt would print when a node finishes.
pub fn finished_line(position: usize, total: usize, r: &SyncResult, dry_run: bool) -> String {
    let model = r.model.rsplit('.').next().unwrap_or(&r.model);
    let target = format!("{}.{}", r.destination, r.object);
    let verb = if dry_run { "planned" } else { "synced" };
    match r.status {
        Status::Success => format!(
            "{position} of {total} OK {verb} {model} -> {target} [{} in {:.2}s]",
            counts(r),
            r.execution_time
        ),
        Status::Warn => format!(
            "{position} of {total} WARN {verb} {model} -> {target} [{} in {:.2}s]",
            counts(r),
            r.execution_time
        ),
        Status::Error => format!(
            "{position} of {total} ERROR syncing {model} -> {target} [{} in {:.2}s]: {}",
            counts(r),
            r.execution_time,
            r.message
        ),
        Status::Skipped => format!(
            "{position} of {total} SKIP sync {} -> {target}: {}",
            r.name, r.message
        ),
    }
}
