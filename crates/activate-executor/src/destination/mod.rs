//! Destinations: where the rows go. One folder per destination; `http/` is shared by the
//! HTTP-based ones. A partially failed batch yields per-row rejects, never a silent drop.

pub mod file;
pub mod http;
pub mod hubspot;
pub mod intercom;
pub mod postgres;
pub mod salesforce;
pub mod schema;
pub mod slack;
pub mod stripe;
#[cfg(test)]
mod test_http;
pub mod webhook;

use std::sync::Arc;

use async_trait::async_trait;

use crate::connections::DestinationConfig;
use crate::error::{ConfigError, DestinationError};
use crate::value::Value;

pub use schema::{FieldSchema, Kind, ObjectSchema};

/// Destination types this release knows.
pub const KINDS: &[&str] = &[
    "postgres",
    "webhook",
    "file",
    "salesforce",
    "hubspot",
    "intercom",
    "stripe",
    "slack",
];

/// What one request asks the destination to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    /// Create or update by key.
    Upsert,
    /// Update existing records only; a missing record is a per-row reject.
    Update,
    /// Create only; an existing key is a per-row reject.
    Insert,
    /// Remove records by key (mirror, `on_delete: delete`).
    Delete,
    /// Set the non-key fields to null, keeping the record (mirror, `on_delete: clear`).
    Clear,
}

impl WriteOp {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOp::Upsert => "upsert",
            WriteOp::Update => "update",
            WriteOp::Insert => "insert",
            WriteOp::Delete => "delete",
            WriteOp::Clear => "clear",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Capabilities {
    /// The most records one request may carry.
    pub max_batch_rows: usize,
}

/// One record: values aligned with `WriteBatch::fields`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub values: Vec<Value>,
}

/// A batch of records for one object. `fields` always contains the key fields (`match_on`),
/// at `key_positions`; for `Delete`, `fields` holds only the key fields.
#[derive(Debug, Clone)]
pub struct WriteBatch<'a> {
    /// The sync's unique id (`sync.<project>.<name>`).
    pub sync: &'a str,
    pub object: &'a str,
    pub op: WriteOp,
    pub fields: &'a [String],
    pub key_positions: &'a [usize],
    pub records: &'a [Record],
    /// An upsert whose keys this sync's state has never seen delivered (a first sync, new
    /// rows): a destination may load them as plain inserts first, but must still upsert
    /// when a key turns out to exist (the table may hold rows the state does not know).
    pub keys_new_to_state: bool,
}

impl WriteBatch<'_> {
    pub fn key_of(&self, record: &Record) -> Vec<Value> {
        self.key_positions
            .iter()
            .map(|&i| record.values[i].clone())
            .collect()
    }
}

/// What happened to a batch: every record not listed in `rejected` was confirmed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    /// (index into `records`, the destination's reason)
    pub rejected: Vec<(usize, String)>,
}

impl BatchOutcome {
    pub fn all_rejected(n: usize, reason: &str) -> Self {
        Self {
            rejected: (0..n).map(|i| (i, reason.to_owned())).collect(),
        }
    }
}

#[async_trait]
pub trait Destination: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Where it writes, without secrets: part of the state identity and of messages.
    fn identity(&self) -> String;
    fn capabilities(&self) -> Capabilities;
    async fn health_check(&self) -> Result<(), DestinationError>;
    /// The object's fields for validation before anything is sent; `None` when schemaless.
    async fn describe(&self, object: &str) -> Result<Option<ObjectSchema>, DestinationError>;
    async fn write(&self, batch: &WriteBatch<'_>) -> Result<BatchOutcome, DestinationError>;

    /// Checks, before anything is sent, that this destination can carry out a sync: its
    /// object, the operations it will need and the fields it writes. An `Err` is a
    /// configuration error (exit 2) with the destination's reason.
    fn check_sync(&self, plan: &SyncShape<'_>) -> Result<(), String> {
        let _ = plan;
        Ok(())
    }

    /// Sends a run alert (`alerts:` in activate.yml). Only destinations that reach people
    /// (slack, webhook) can.
    async fn send_alert(&self, alert: &AlertMessage<'_>) -> Result<(), DestinationError> {
        let _ = alert;
        Err(DestinationError::new(format!(
            "a {} destination cannot carry alerts; use a slack or webhook destination",
            self.kind()
        )))
    }

    /// Whether NaN and ±Infinity reach this destination as themselves. JSON has no form for
    /// them, so by default a row holding one is rejected with a reason before it is sent,
    /// rather than sent as `null`.
    fn carries_non_finite_floats(&self) -> bool {
        false
    }

    /// Whether the destination matches keys without regard to letter case, so that keys
    /// differing only in case (`Key`, `key`) would write one record. Such rows are all
    /// rejected with a reason instead of overwriting each other.
    fn matches_keys_ignoring_case(&self) -> bool {
        false
    }
}

/// A run's alerts, as text for people and as JSON for machines.
#[derive(Debug, Clone, Copy)]
pub struct AlertMessage<'a> {
    pub text: &'a str,
    pub payload: &'a serde_json::Value,
    /// Slack's bot-token mode: the channel to post to.
    pub channel: Option<&'a str>,
}

/// What a sync will ask of its destination, for [`Destination::check_sync`].
#[derive(Debug, Clone)]
pub struct SyncShape<'a> {
    pub object: &'a str,
    /// The operation for changed rows.
    pub op: WriteOp,
    /// Mirror syncs: `Delete` or `Clear` for keys that leave the model.
    pub removal: Option<WriteOp>,
    pub fields: &'a [String],
    pub key_fields: &'a [String],
}

/// Builds the destination an `activate.yml` entry describes.
pub fn build(
    config: &DestinationConfig,
    project_dir: &std::path::Path,
) -> Result<Arc<dyn Destination>, ConfigError> {
    match config.kind.as_str() {
        "postgres" => Ok(Arc::new(postgres::PostgresDestination::from_config(
            config,
        )?)),
        "webhook" => Ok(Arc::new(webhook::WebhookDestination::from_config(config)?)),
        "salesforce" => salesforce::build(config, project_dir),
        "hubspot" => hubspot::build(config),
        "intercom" => intercom::build(config),
        "stripe" => stripe::build(config),
        "slack" => slack::build(config),
        "file" => Ok(Arc::new(file::FileDestination::from_config(
            config,
            project_dir,
        )?)),
        other => {
            let hint = match activate_manifest::did_you_mean(other, KINDS.iter().copied()) {
                Some(close) => format!("did you mean `{close}`? Types: {}", KINDS.join(", ")),
                None => format!("types in this release: {}", KINDS.join(", ")),
            };
            Err(ConfigError::new(format!(
                "{}: unknown destination type `{other}`",
                config.site()
            ))
            .with_hint(hint))
        }
    }
}

/// Checks a destination's settings against the keys it knows; unknown keys are errors.
pub(crate) fn check_keys(config: &DestinationConfig, known: &[&str]) -> Result<(), ConfigError> {
    for key in config.settings.keys() {
        if !known.contains(&key.as_str()) {
            let hint = match activate_manifest::did_you_mean(key, known.iter().copied()) {
                Some(close) => format!(
                    "did you mean `{close}`? Keys for {}: type, {}",
                    config.kind,
                    known.join(", ")
                ),
                None => format!("keys for {}: type, {}", config.kind, known.join(", ")),
            };
            return Err(
                ConfigError::new(format!("{}: unknown key `{key}`", config.site())).with_hint(hint),
            );
        }
    }
    Ok(())
}

pub(crate) fn setting_str<'a>(
    config: &'a DestinationConfig,
    key: &str,
) -> Result<Option<&'a str>, ConfigError> {
    match config.settings.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(ConfigError::new(format!(
            "{}: `{key}` must be a string, found `{}`",
            config.site(),
            crate::secrets::redact(&other.to_string())
        ))),
    }
}

pub(crate) fn setting_u64(
    config: &DestinationConfig,
    key: &str,
) -> Result<Option<u64>, ConfigError> {
    match config.settings.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(serde_json::Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
        Some(other) => Err(ConfigError::new(format!(
            "{}: `{key}` must be a positive whole number, found `{other}`",
            config.site()
        ))),
    }
}

/// JSON object of a record, fields in order.
pub fn record_json(fields: &[String], record: &Record) -> String {
    let mut out = String::with_capacity(64 * fields.len());
    write_record_json(&mut out, &JsonKeys::new(fields), record);
    out
}

/// The fields' names as the keys of a JSON object, each written once for many records: the
/// first as `{"name":`, the others as `,"name":`.
pub struct JsonKeys(Vec<String>);

impl JsonKeys {
    pub fn new(fields: &[String]) -> Self {
        let keys = fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let mut key = String::from(if i == 0 { "{" } else { "," });
                crate::value::write_json_string(&mut key, field);
                key.push(':');
                key
            })
            .collect();
        Self(keys)
    }
}

/// Appends the JSON object of a record, fields in order (into a request body as it is built).
pub fn write_record_json(out: &mut String, keys: &JsonKeys, record: &Record) {
    if keys.0.is_empty() || record.values.is_empty() {
        out.push('{');
    }
    for (key, value) in keys.0.iter().zip(&record.values) {
        out.push_str(key);
        value.write_json(out);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_a_json_object_of_its_fields_in_order() {
        let fields = ["id".to_owned(), "say \"hi\"\n".to_owned(), "é".to_owned()];
        let record = Record {
            values: vec![Value::Int(7), Value::Text("a\tb".into()), Value::Null],
        };
        let json = record_json(&fields, &record);
        assert_eq!(json, r#"{"id":7,"say \"hi\"\n":"a\tb","é":null}"#);
        let back: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(back.keys().collect::<Vec<_>>(), ["id", "say \"hi\"\n", "é"]);
        assert_eq!(record_json(&[], &Record { values: vec![] }), "{}");
        let mut two = String::new();
        let keys = JsonKeys::new(&fields[..1]);
        write_record_json(&mut two, &keys, &record);
        write_record_json(
            &mut two,
            &keys,
            &Record {
                values: vec![Value::Bool(true)],
            },
        );
        assert_eq!(two, r#"{"id":7}{"id":true}"#);
    }
}
