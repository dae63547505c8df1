//! `plan --out plan.json` and `run --plan plan.json`: a reviewed plan, applied exactly.
//!
//! Per sync the file records the keys to insert, update and remove, a fingerprint of the rows
//! the model returned and of the state the plan was computed from. `run --plan` recomputes
//! each sync's plan, and sends only when both fingerprints and every key list are the same;
//! otherwise the sync fails with nothing sent.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::plan::{ChangeKind, Plan};

/// Bumped when the file's meaning changes; `run --plan` refuses other versions.
pub const PLAN_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanFile {
    pub plan_format_version: u32,
    pub metadata: PlanMetadata,
    pub syncs: Vec<PlannedSync>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanMetadata {
    pub invocation_id: String,
    pub generated_at: String,
    pub dbt_activate_version: String,
    pub target: String,
    /// Planned with `--full-refresh`: every row is resent.
    pub full_refresh: bool,
}

/// What one sync would change, and what the plan was computed from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedSync {
    pub name: String,
    pub unique_id: String,
    pub model: String,
    pub destination: String,
    pub object: String,
    /// dbt's checksum of the model's file (from the manifest), or of a query sync's SQL.
    pub model_checksum: String,
    /// Order-independent hash of every row read (key and mapped values) and its count.
    pub data_fingerprint: String,
    pub rows_read: u64,
    /// Hash of the sync's state (every delivered key with its row hash, and the cursor).
    pub state_fingerprint: String,
    /// Keys the state held (delivered by this sync) when the plan was made.
    pub state_keys: u64,
    /// Keys (JSON arrays of the key values, as sent) per change.
    pub insert: Vec<Box<RawValue>>,
    pub update: Vec<Box<RawValue>>,
    /// Removed by a mirror sync: deleted (`on_delete: delete`) or cleared (`clear`).
    pub delete: Vec<Box<RawValue>>,
    /// Rows rejected before sending (NULL key, a template that fails).
    pub rejected: u64,
}

/// The parts of a plan that `run --plan` compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    pub data_fingerprint: String,
    pub rows_read: u64,
    pub state_fingerprint: String,
    pub state_keys: u64,
    pub insert: Vec<String>,
    pub update: Vec<String>,
    pub delete: Vec<String>,
}

impl Computed {
    /// Whether the sync would change anything in its destination.
    pub fn has_changes(&self) -> bool {
        !(self.insert.is_empty() && self.update.is_empty() && self.delete.is_empty())
    }

    pub fn of(plan: &Plan, state_fingerprint: u128) -> Self {
        let keys = |kind: ChangeKind| -> Vec<String> {
            plan.upserts
                .iter()
                .zip(plan.upsert_keys.iter())
                .filter(|(r, _)| r.kind == kind)
                .map(|(_, key)| key.to_owned())
                .collect()
        };
        Self {
            data_fingerprint: format!("{:032x}", plan.data_fingerprint),
            rows_read: plan.rows_read,
            state_fingerprint: format!("{state_fingerprint:032x}"),
            state_keys: plan.delivered_before,
            insert: keys(ChangeKind::Insert),
            update: keys(ChangeKind::Update),
            delete: plan.removals.iter().map(str::to_owned).collect(),
        }
    }

    fn raw(keys: &[String]) -> Vec<Box<RawValue>> {
        keys.iter()
            .filter_map(|k| RawValue::from_string(k.clone()).ok())
            .collect()
    }

    /// The planned sync as recorded in the file.
    pub fn record(
        &self,
        identity: SyncIdentity,
        model_checksum: String,
        rejected: u64,
    ) -> PlannedSync {
        PlannedSync {
            name: identity.name,
            unique_id: identity.unique_id,
            model: identity.model,
            destination: identity.destination,
            object: identity.object,
            model_checksum,
            data_fingerprint: self.data_fingerprint.clone(),
            rows_read: self.rows_read,
            state_fingerprint: self.state_fingerprint.clone(),
            state_keys: self.state_keys,
            insert: Self::raw(&self.insert),
            update: Self::raw(&self.update),
            delete: Self::raw(&self.delete),
            rejected,
        }
    }

    /// Why the recomputed plan is not the recorded one, or `None` when they are the same.
    pub fn differs_from(&self, recorded: &PlannedSync, model_name: &str) -> Option<String> {
        let hint = "nothing was sent for this sync\n  hint: review a new plan (`dbt-activate plan --out plan.json`) and apply that one";
        if self.state_fingerprint != recorded.state_fingerprint {
            return Some(format!(
                "the plan is stale: the state of sync `{}` changed since the plan was made (it then held {} delivered keys, now {}; another run delivered rows, or the sync was reset); {hint}",
                recorded.name, recorded.state_keys, self.state_keys
            ));
        }
        if self.data_fingerprint != recorded.data_fingerprint {
            return Some(format!(
                "the plan is stale: the data of model `{model_name}` changed since the plan was made ({} rows read then, {} now, fingerprint {} then, {} now); {hint}",
                recorded.rows_read,
                self.rows_read,
                recorded.data_fingerprint,
                self.data_fingerprint
            ));
        }
        let same = |now: &[String], then: &[Box<RawValue>]| {
            now.len() == then.len() && now.iter().zip(then).all(|(a, b)| a == b.get())
        };
        if !same(&self.insert, &recorded.insert)
            || !same(&self.update, &recorded.update)
            || !same(&self.delete, &recorded.delete)
        {
            return Some(format!(
                "the plan is stale: sync `{}` now computes other changes (+{} ~{} -{} planned, +{} ~{} -{} now; its mapping or settings changed); {hint}",
                recorded.name,
                recorded.insert.len(),
                recorded.update.len(),
                recorded.delete.len(),
                self.insert.len(),
                self.update.len(),
                self.delete.len()
            ));
        }
        None
    }
}

/// Names of a sync, as recorded.
pub struct SyncIdentity {
    pub name: String,
    pub unique_id: String,
    pub model: String,
    pub destination: String,
    pub object: String,
}

/// The checksum recorded for a query sync (it has no model file): a hash of its SQL.
pub fn query_checksum(sql: &str) -> String {
    format!("query:{:032x}", xxhash_rust::xxh3::xxh3_128(sql.as_bytes()))
}

pub fn write(path: &Path, file: &PlanFile) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(file).map_err(std::io::Error::other)?;
    crate::destination::file::write_atomically(path, json.as_bytes())
}

pub fn read(path: &Path) -> Result<PlanFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("could not read the plan {}: {e}", path.display()))?;
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| format!("the plan {} is not JSON: {e}", path.display()))?
        .get("plan_format_version")
        .and_then(|v| v.as_u64());
    if version != Some(u64::from(PLAN_FORMAT_VERSION)) {
        return Err(format!(
            "the plan {} has plan_format_version {}, this dbt-activate applies version {PLAN_FORMAT_VERSION}\n  hint: make the plan with the same dbt-activate version that applies it",
            path.display(),
            version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "missing".into())
        ));
    }
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "the plan {} is not a dbt-activate plan: {e}\n  hint: write it with `dbt-activate plan --out`",
            path.display()
        )
    })
}
