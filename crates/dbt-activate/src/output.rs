//! What the binary prints, and where.
//!
//! - Logs (progress of `run`/`plan`, warnings, the fatal error) go to **stderr**: lines in
//!   dbt's voice (`HH:MM:SS  1 of 5 OK synced ...`), or with `--log-format json` one JSON
//!   event per line in dbt's shape (`{"info": {ts, level, msg, code, name, invocation_id,
//!   ...}, "data": {...}}`); engine warnings (tracing) take the same shape.
//! - Reports (`ls`, `history`, `debug`, `validate`, `reset`) go to **stdout** as text; with
//!   json they are events on stderr too.
//! - With json, **stdout** holds exactly one line, last: the summary of the invocation.
//!
//! Colour only in text mode, on a terminal, without `NO_COLOR`. Every line is redacted.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};

use activate_executor::results::{Status, SyncResult};
use activate_executor::secrets::redact;

use crate::cli::LogFormat;

static FORMAT: OnceLock<LogFormat> = OnceLock::new();
static INVOCATION: Mutex<Option<String>> = Mutex::new(None);
static SUMMARY: Mutex<Option<serde_json::Value>> = Mutex::new(None);

/// Sets the format and the invocation id, and routes engine logs (tracing, filtered by
/// `DBT_ACTIVATE_LOG`, default `warn`) to stderr in that format.
pub fn init(format: LogFormat) {
    use tracing_subscriber::prelude::*;
    let _ = FORMAT.set(format);
    start_invocation();
    let filter = tracing_subscriber::EnvFilter::try_from_env("DBT_ACTIVATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    match format {
        LogFormat::Text => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(|| RedactedStderr)
                .with_target(false)
                .with_ansi(use_color())
                .without_time()
                .try_init();
        }
        LogFormat::Json => {
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(EngineEvents)
                .try_init();
        }
    }
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

fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or(LogFormat::Text)
}

/// This invocation's id: in every JSON event, the summary and `activate_results.json`.
pub fn invocation_id() -> String {
    INVOCATION
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(|| uuid::Uuid::new_v4().to_string())
        .clone()
}

/// Starts a new invocation (each run `serve` starts is one) and returns its id.
pub fn start_invocation() -> String {
    let id = uuid::Uuid::new_v4().to_string();
    *INVOCATION.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
    id
}

/// Colour: text mode, stderr is a terminal, and `NO_COLOR` is unset or empty.
pub fn use_color() -> bool {
    format() == LogFormat::Text
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn paint(word: &str, ansi: &str) -> String {
    if use_color() {
        format!("\x1b[{ansi}m{word}\x1b[0m")
    } else {
        word.to_owned()
    }
}

/// The name of an event, by its code (documented in docs/commands.md#log-format).
fn event_name(code: &str) -> &'static str {
    match code {
        "A001" => "MainReportVersion",
        "A002" => "FoundStats",
        "A003" => "Info",
        "Q011" => "SyncStart",
        "Q012" => "SyncResult",
        "Q013" => "RowRejected",
        "Q014" => "PlanSample",
        "Q020" => "PlanWritten",
        "R001" => "ReportLine",
        "Z001" => "FatalError",
        "Z030" => "EndOfRunSummary",
        "Z040" => "StoppingOnSignal",
        "Z050" => "EngineLog",
        "Z060" => "AlertRaised",
        "Z061" => "AlertNotSent",
        "S001" => "ServeStarted",
        "S002" => "ServeStopped",
        "S003" => "ServeListensBeyondLoopback",
        "S004" => "ServeRunStarted",
        "S010" => "ServeError",
        _ => "Event",
    }
}

fn now() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}

/// One JSON event in dbt's shape.
fn json_event(level: &str, code: &str, msg: &str, data: serde_json::Value) -> String {
    let thread = std::thread::current()
        .name()
        .unwrap_or("MainThread")
        .to_owned();
    serde_json::json!({
        "info": {
            "category": "",
            "code": code,
            "extra": {},
            "invocation_id": invocation_id(),
            "level": level,
            "msg": msg,
            "name": event_name(code),
            "pid": std::process::id(),
            "thread": thread,
            "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        },
        "data": if data.is_null() { serde_json::json!({}) } else { data },
    })
    .to_string()
}

fn to_stderr(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", redact(line));
}

/// One log event: a line of text, or a JSON event; on stderr.
pub fn event(level: &str, code: &str, msg: &str, data: serde_json::Value) {
    match format() {
        LogFormat::Text => to_stderr(&format!("{}  {}", now(), msg)),
        LogFormat::Json => to_stderr(&json_event(level, code, msg, data)),
    }
}

pub fn info(msg: &str) {
    event("info", "A003", msg, serde_json::Value::Null);
}

/// A line of a report (ls, history, debug, validate, reset): stdout in text mode; an event
/// with `data` on stderr in JSON mode.
pub fn report(msg: &str, data: serde_json::Value) {
    match format() {
        LogFormat::Text => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", redact(msg));
        }
        LogFormat::Json => to_stderr(&json_event("info", "R001", msg, data)),
    }
}

/// The lines of a report at once (a table's rows): in text mode one write to stdout (a
/// thousand rows were a thousand system calls, one a line); in JSON mode an event each, as
/// [`report`] writes them, its data built only then.
pub fn report_lines<F: FnOnce() -> serde_json::Value>(
    lines: impl IntoIterator<Item = (String, F)>,
) {
    match format() {
        LogFormat::Text => print_lines(lines.into_iter().map(|(msg, _)| msg)),
        LogFormat::Json => {
            for (msg, data) in lines {
                report(&msg, data());
            }
        }
    }
}

/// Lines of machine output at once (`ls --output json`: a record a sync), in one write.
pub fn machine_lines(lines: &[String]) {
    print_lines(lines.iter());
}

/// Lines on stdout in one write, redacted.
fn print_lines(lines: impl Iterator<Item = impl AsRef<str>>) {
    let mut text = String::new();
    for line in lines {
        text.push_str(line.as_ref());
        text.push('\n');
    }
    let _ = std::io::stdout().lock().write_all(redact(&text).as_bytes());
}

pub fn line(msg: &str) {
    report(msg, serde_json::Value::Null);
}

pub fn fatal(error: &anyhow::Error) {
    let text = redact(&format!("{error:#}"));
    match format() {
        LogFormat::Text => eprintln!("error: {text}"),
        LogFormat::Json => to_stderr(&json_event("error", "Z001", &text, serde_json::Value::Null)),
    }
}

/// What the summary line says about the syncs (set by `run` and `plan`).
pub fn set_summary(details: serde_json::Value) {
    *SUMMARY.lock().unwrap_or_else(|e| e.into_inner()) = Some(details);
}

/// JSON mode only: the last line on stdout, one object: command, exit code, status, and the
/// counts of `run`/`plan`.
pub fn print_summary(command: &str, exit_code: u8, elapsed: f64, error: Option<&str>) {
    if format() != LogFormat::Json {
        return;
    }
    let status = match exit_code {
        0 => "success",
        1 => "failure",
        3 => "pending_changes",
        _ => "error",
    };
    let mut summary = serde_json::json!({
        "invocation_id": invocation_id(),
        "command": command,
        "status": status,
        "exit_code": exit_code,
        "elapsed_time": (elapsed * 1000.0).round() / 1000.0,
    });
    if let Some(details) = SUMMARY.lock().unwrap_or_else(|e| e.into_inner()).take()
        && let (Some(obj), Some(extra)) = (summary.as_object_mut(), details.as_object())
    {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    if let Some(message) = error {
        summary["message"] = serde_json::Value::String(redact(message));
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", redact(&summary.to_string()));
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
        Status::Success if r.up_to_date_since.is_some() => format!(
            "{position} of {total} {} sync {} -> {target}: {}",
            paint("OK", "32"),
            r.name,
            r.message
        ),
        Status::Success => format!(
            "{position} of {total} {} {verb} {model} -> {target} [{} in {:.2}s]",
            paint("OK", "32"),
            counts(r),
            r.execution_time
        ),
        Status::Warn => format!(
            "{position} of {total} {} {verb} {model} -> {target} [{} in {:.2}s]",
            paint("WARN", "33"),
            counts(r),
            r.execution_time
        ),
        Status::Error => format!(
            "{position} of {total} {} syncing {model} -> {target} [{} in {:.2}s]: {}",
            paint("ERROR", "31"),
            counts(r),
            r.execution_time,
            r.message
        ),
        Status::Skipped => format!(
            "{position} of {total} {} sync {} -> {target}: {}",
            paint("SKIP", "33"),
            r.name,
            r.message
        ),
    }
}

/// Engine logs (tracing events: retries, warnings) as dbt-shaped JSON events.
struct EngineEvents;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EngineEvents {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warn",
            tracing::Level::INFO => "info",
            _ => "debug",
        };
        let mut data = serde_json::Map::new();
        data.insert(
            "target".into(),
            serde_json::Value::String(event.metadata().target().to_owned()),
        );
        data.extend(fields.fields);
        to_stderr(&json_event(
            level,
            "Z050",
            &fields.message,
            serde_json::Value::Object(data),
        ));
    }
}

#[derive(Default)]
struct EventFields {
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl tracing::field::Visit for EventFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields
                .insert(field.name().to_owned(), serde_json::Value::String(text));
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields.insert(
                field.name().to_owned(),
                serde_json::Value::String(value.to_owned()),
            );
        }
    }
}
