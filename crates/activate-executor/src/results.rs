//! `target/activate_results.json`: the machine contract of a run, dbt-shaped.

use std::path::Path;

use serde::Serialize;

use crate::secrets;

pub const RESULTS_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Success,
    /// Some rows were rejected, within the sync's limits.
    Warn,
    Error,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct RowRejection {
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncResult {
    pub unique_id: String,
    pub name: String,
    pub model: String,
    pub destination: String,
    pub object: String,
    pub sync_mode: String,
    pub status: Status,
    pub message: String,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub cleared: u64,
    pub rejected: u64,
    pub skipped_rows: u64,
    pub rows_read: u64,
    pub unchanged: u64,
    pub rejections: Vec<RowRejection>,
    pub execution_time: f64,
    /// Seconds of `execution_time` inside the warehouse client's read (query, transfer,
    /// decoding rows into values), less the diffing done between its batches.
    pub warehouse_time: f64,
    /// Seconds of `execution_time` inside the destination's writes (encoding, sending,
    /// waiting for its answer).
    pub destination_time: f64,
    /// The rest of `execution_time`: state load, diff, plan, journal and commit.
    pub engine_time: f64,
    /// Skipped because its `schedule` says it is not due: when it next is (UTC, RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_due_at: Option<String>,
    /// Not read (status `success`): no activated model was rebuilt since the last successful
    /// sync read it at this time (UTC, RFC 3339); nothing was queried or sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_to_date_since: Option<String>,
    /// `plan` only: the keys per change and the fingerprints, for `plan --out`.
    #[serde(skip)]
    pub computed_plan: Option<Box<crate::plan_file::Computed>>,
    /// `plan` only: a few rows per change kind.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Box<serde_json::value::RawValue>>,
}

impl SyncResult {
    pub fn new(unique_id: String, spec: &activate_manifest::ActivationSpec) -> Self {
        Self {
            unique_id,
            name: spec.name.clone(),
            model: spec.model_id.clone(),
            destination: spec.destination.clone(),
            object: spec.object.clone(),
            sync_mode: spec.sync_mode.as_str().to_owned(),
            status: Status::Success,
            message: String::new(),
            inserted: 0,
            updated: 0,
            deleted: 0,
            cleared: 0,
            rejected: 0,
            skipped_rows: 0,
            rows_read: 0,
            unchanged: 0,
            rejections: Vec::new(),
            execution_time: 0.0,
            warehouse_time: 0.0,
            destination_time: 0.0,
            engine_time: 0.0,
            next_due_at: None,
            up_to_date_since: None,
            computed_plan: None,
            samples: Vec::new(),
        }
    }

    pub fn skipped(
        unique_id: String,
        spec: &activate_manifest::ActivationSpec,
        reason: &str,
    ) -> Self {
        let mut r = Self::new(unique_id, spec);
        r.status = Status::Skipped;
        r.message = reason.to_owned();
        r
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    pub invocation_id: String,
    pub generated_at: String,
    pub dbt_activate_version: String,
    pub results_schema_version: u32,
    pub command: String,
    pub target: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResultsFile<'a> {
    pub metadata: Metadata,
    pub results: &'a [SyncResult],
    pub elapsed_time: f64,
}

/// Writes the results atomically; secrets are masked in every string.
pub fn write(path: &Path, file: &RunResultsFile<'_>) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(file).map_err(std::io::Error::other)?;
    crate::destination::file::write_atomically(path, secrets::redact(&json).as_bytes())
}
