//! Sync state: what each sync last delivered (key -> hash of the mapped row), its cursor, and
//! run history. State is committed only for rows the destination confirmed.

pub mod config;
pub mod local;
pub mod snapshot;
pub mod store;
pub mod warehouse;

use crate::value::Value;

pub use config::StateConfig;
pub use local::LocalStateStore;
pub use snapshot::Snapshot;
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

#[derive(Debug, Clone, Default)]
pub struct SyncState {
    /// Every delivered key (JSON array of the key values, as sent: needed to delete the record
    /// later) with the hash of its mapped row.
    pub snapshot: Snapshot,
    pub cursor: Option<Value>,
    /// Set by [`SyncState::apply`]: the snapshot changed since it was loaded.
    changed: bool,
    /// The cursor as loaded.
    loaded_cursor: Option<Value>,
}

pub fn key_hash(key_json: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key_json.as_bytes())
}

/// A confirmed change, as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    Upserted {
        key: Box<str>,
        row_hash: u64,
    },
    /// An upsert of a key the plan found new to the state: applied without a lookup
    /// (journaled as an upsert).
    Inserted {
        key: Box<str>,
        row_hash: u64,
    },
    Removed {
        key: Box<str>,
    },
}

impl SyncState {
    /// A hash of the whole state (every key with its row hash, and the cursor), independent of
    /// the order entries were loaded in: equal fingerprints mean the same state.
    pub fn fingerprint(&self) -> u128 {
        let mut sum = self.snapshot.len() as u128;
        for (key, row_hash) in self.snapshot.iter() {
            let mut bytes = [0u8; 24];
            bytes[..16].copy_from_slice(&key_hash(key).to_le_bytes());
            bytes[16..].copy_from_slice(&row_hash.to_le_bytes());
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
        self.changed = true;
        match change {
            Confirmed::Upserted { key, row_hash } => self.snapshot.insert(key, *row_hash),
            Confirmed::Inserted { key, row_hash } => {
                debug_assert!(
                    self.snapshot.len() > 2_000 || self.snapshot.iter().all(|(k, _)| k != &**key),
                    "an insert of a key the state holds: {key}"
                );
                self.snapshot.push_new(key, *row_hash)
            }
            Confirmed::Removed { key } => {
                self.snapshot.remove(key);
            }
        }
    }

    /// Marks the state as the committed one (after a load): [`SyncState::unchanged`] tells
    /// whether anything moved since.
    pub(crate) fn mark_loaded(&mut self) {
        self.changed = false;
        self.loaded_cursor = self.cursor.clone();
    }

    /// Whether neither the snapshot nor the cursor changed since the state was loaded (a new
    /// snapshot would hold the same entries; a state never loaded counts as unchanged when
    /// empty).
    pub fn unchanged(&self) -> bool {
        !self.changed && self.cursor == self.loaded_cursor
    }

    /// How many keys this sync delivered.
    pub fn len(&self) -> usize {
        self.snapshot.len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot.is_empty()
    }

    /// The hash of the mapped row last delivered for a key (JSON array of the key values).
    pub fn row_hash_of(&self, key_json: &str) -> Option<u64> {
        self.snapshot.get(key_json)
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
