//! Sync state: what each sync last delivered (key -> hash of the mapped row), its cursor, and
//! run history. State is committed only for rows the destination confirmed.

pub mod config;
pub mod local;
pub mod store;
pub mod warehouse;

use std::collections::HashMap;

use crate::value::Value;

pub use config::StateConfig;
pub use local::LocalStateStore;
pub use store::StateStore;
pub use warehouse::WarehouseStateStore;

/// Identifies one sync's state: dbt target, sync name and where it writes, so `--target dev`
/// never reuses prod state and pointing a sync at another destination starts afresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateKey {
    pub target: String,
    pub sync: String,
    pub destination: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub row_hash: u64,
    /// JSON array of the key values, as sent (needed to delete the record later).
    pub key: Box<str>,
}

#[derive(Debug, Clone, Default)]
pub struct SyncState {
    pub snapshot: HashMap<u128, SnapshotEntry>,
    pub cursor: Option<Value>,
}

pub fn key_hash(key_json: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key_json.as_bytes())
}

/// A confirmed change, as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    Upserted { key: Box<str>, row_hash: u64 },
    Removed { key: Box<str> },
}

impl SyncState {
    /// A hash of the whole state (every key with its row hash, and the cursor), independent of
    /// the order entries were loaded in: equal fingerprints mean the same state.
    pub fn fingerprint(&self) -> u128 {
        let mut sum = self.snapshot.len() as u128;
        for (key_hash, entry) in &self.snapshot {
            let mut bytes = [0u8; 24];
            bytes[..16].copy_from_slice(&key_hash.to_le_bytes());
            bytes[16..].copy_from_slice(&entry.row_hash.to_le_bytes());
            sum = sum.wrapping_add(xxhash_rust::xxh3::xxh3_128(&bytes));
        }
        let cursor = self
            .cursor
            .as_ref()
            .map(|c| cursor_to_json(c).to_string())
            .unwrap_or_default();
        sum ^ xxhash_rust::xxh3::xxh3_128(cursor.as_bytes())
    }

    pub fn apply(&mut self, change: &Confirmed) {
        match change {
            Confirmed::Upserted { key, row_hash } => {
                self.snapshot.insert(
                    key_hash(key),
                    SnapshotEntry {
                        row_hash: *row_hash,
                        key: key.clone(),
                    },
                );
            }
            Confirmed::Removed { key } => {
                self.snapshot.remove(&key_hash(key));
            }
        }
    }
}

/// Cursor values keep their kind in state, so the next filter compares like with like.
pub fn cursor_to_json(value: &Value) -> serde_json::Value {
    let kind = match value {
        Value::Int(_) => "int",
        Value::Number(_) => "number",
        Value::Float(_) => "float",
        Value::Date(_) => "date",
        Value::Timestamp(_) => "timestamp",
        Value::TimestampTz(_) => "timestamp_tz",
        _ => "text",
    };
    serde_json::json!({"kind": kind, "value": value.to_text()})
}

pub fn cursor_from_json(json: &serde_json::Value) -> Option<Value> {
    let text = json.get("value")?.as_str()?.to_owned();
    Some(match json.get("kind")?.as_str()? {
        "int" => Value::Int(text.parse().ok()?),
        "number" => Value::Number(text),
        "float" => Value::Float(text.parse().ok()?),
        "date" => Value::Date(text),
        "timestamp" => Value::Timestamp(text),
        "timestamp_tz" => Value::TimestampTz(text),
        _ => Value::Text(text),
    })
}
