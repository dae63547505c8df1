//! Syncs that need no warehouse query because nothing they read changed since their last
//! successful sync (issue #6, workload 7).
//!
//! A sync is up to date, and `run` neither queries the warehouse for it nor sends anything,
//! only when all of these hold (otherwise it runs as always):
//! - it syncs a model (not an activate.yml query) materialized as `table`, `incremental`,
//!   `seed` or `snapshot`: relations that change only when dbt builds them (a view, or
//!   anything else, reads live data and is always queried);
//! - `run_results.json` records when dbt last finished building the model (its `timing`,
//!   else the file's `metadata.generated_at`), and that is before the last sync that read
//!   the model started (`data_as_of` in the history);
//! - the sync's last run that was not skipped succeeded with no rejected row (nothing to
//!   retry) and recorded the same definition hash as now (see [`definition_hash`]);
//! - its state is still there (`dbt-activate reset` removes it: the next run resends).
//!
//! `--full-refresh`, `--ignore-schedule`, `plan` and `run --plan` always query.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use activate_executor::destination::{self, Destination};
use activate_executor::results::SyncResult;
use activate_executor::state::LocalStateStore;
use activate_manifest::{ActivationSpec, RunResults};
use chrono::{DateTime, Utc};
use sha2::Digest as _;

use crate::project::{self, Loaded};

/// Materializations whose relation changes only when dbt builds it.
const BUILT_BY_DBT_ONLY: &[&str] = &["table", "incremental", "seed", "snapshot"];

/// History keys written for each successful sync.
const DATA_AS_OF: &str = "data_as_of";
const DEFINITION_HASH: &str = "definition_hash";

/// A sync found up to date: what the result says, and since when its data is known.
pub struct UpToDate {
    pub message: String,
    /// The start of the last run that read the model (carried over by up-to-date runs).
    pub data_as_of: DateTime<Utc>,
}

/// What the freshness check found for a run's candidate syncs.
#[derive(Default)]
pub struct Check {
    /// Definition hash of each candidate sync, by sync name (recorded in the history).
    pub hashes: BTreeMap<String, String>,
    /// The candidates (spec indices) that need no query.
    pub up_to_date: BTreeMap<usize, UpToDate>,
}

/// What a sync's history says about its last run that was not skipped.
struct LastRead {
    succeeded_clean: bool,
    data_as_of: Option<DateTime<Utc>>,
    definition_hash: Option<String>,
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The last run of each sync that was not `skipped`, from the history.
fn last_reads(state_dir: &Path, target: &str) -> BTreeMap<String, LastRead> {
    let mut last = BTreeMap::new();
    for run in LocalStateStore::read_history(state_dir, target) {
        let field = |k: &str| run.get(k).and_then(|v| v.as_str());
        let (Some(name), Some(status)) = (field("name"), field("status")) else {
            continue;
        };
        if status == "skipped" {
            continue;
        }
        let rejected = run.get("rejected").and_then(|v| v.as_u64()).unwrap_or(0);
        last.insert(
            name.to_owned(),
            LastRead {
                succeeded_clean: status == "success" && rejected == 0,
                data_as_of: field(DATA_AS_OF).and_then(parse_time),
                definition_hash: field(DEFINITION_HASH).map(str::to_owned),
            },
        );
    }
    last
}

/// Everything that decides what a sync would send from the same data: the sync as resolved
/// from the manifest and activate.yml (model, mapping, mode, keys, filters, limits, ...), the
/// destination's identity (the same that keys its state; no secret), the warehouse and the
/// relation read, the model's checksum, and this release. A change to any of them queries.
pub fn definition_hash(loaded: &Loaded, spec: &ActivationSpec, destination: &str) -> String {
    let node = loaded.manifest.nodes.get(&spec.model_id);
    let warehouse = match &loaded.profile.warehouse {
        activate_executor::connections::WarehouseConfig::DuckDb { path } => {
            format!("duckdb {}", path.display())
        }
        other => other.kind().to_owned(),
    };
    let mut h = sha2::Sha256::new();
    for part in [
        env!("CARGO_PKG_VERSION"),
        &loaded.profile.target_name,
        &warehouse,
        &serde_json::to_string(spec).unwrap_or_default(),
        destination,
        node.and_then(|n| n.relation_name.as_deref())
            .unwrap_or_default(),
        node.and_then(|n| n.checksum.as_ref())
            .map(|c| c.checksum.as_str())
            .unwrap_or_default(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// When dbt last finished building `model_id`, by `run_results.json`.
fn built_at(run_results: &RunResults, model_id: &str) -> Option<DateTime<Utc>> {
    let result = run_results
        .results
        .iter()
        .find(|r| r.unique_id == model_id)?;
    let text = result
        .completed_at()
        .or(run_results.metadata.generated_at.as_deref())?;
    parse_time(text)
}

/// The materialization of a model, as dbt resolved it in the manifest.
fn materialization(loaded: &Loaded, model_id: &str) -> Option<String> {
    let node = loaded.manifest.nodes.get(model_id)?;
    match node.resource_type.as_str() {
        "seed" | "snapshot" => Some(node.resource_type.clone()),
        _ => node.config.materialized.clone(),
    }
}

/// Checks `candidates` (spec indices, ready and due); `enabled` is false when the run must
/// query anyway (`--full-refresh`, `--ignore-schedule`, a plan), and then only the hashes
/// are computed.
pub fn check(
    loaded: &Loaded,
    run_results: Option<&RunResults>,
    candidates: &[usize],
    enabled: bool,
) -> Check {
    let mut out = Check::default();
    // Each destination built once; the identity is per sync (it names the sync's `object`).
    let mut built: BTreeMap<&str, Option<Arc<dyn Destination>>> = BTreeMap::new();
    for &i in candidates {
        let spec = &loaded.specs[i];
        let identity = built
            .entry(spec.destination.as_str())
            .or_insert_with(|| {
                let config = loaded.activate.destinations.get(&spec.destination)?;
                destination::build(config, &loaded.settings.project_dir).ok()
            })
            .as_ref()
            .map(|dest| project::destination_identity(spec, dest.as_ref()));
        // A destination that cannot be built fails in preflight, with its error.
        let Some(identity) = identity else { continue };
        out.hashes
            .insert(spec.name.clone(), definition_hash(loaded, spec, &identity));
    }
    let Some(run_results) = run_results.filter(|_| enabled) else {
        return out;
    };
    let last = last_reads(&loaded.state_dir, &loaded.profile.target_name);
    for &i in candidates {
        let spec = &loaded.specs[i];
        if spec.query.is_some() {
            continue;
        }
        let Some(materialized) = materialization(loaded, &spec.model_id) else {
            continue;
        };
        if !BUILT_BY_DBT_ONLY.contains(&materialized.as_str()) {
            continue;
        }
        let Some(read) = last.get(&spec.name) else {
            continue;
        };
        let (Some(data_as_of), Some(hash)) = (read.data_as_of, &read.definition_hash) else {
            continue;
        };
        if !read.succeeded_clean || out.hashes.get(&spec.name) != Some(hash) {
            continue;
        }
        let Some(built) = built_at(run_results, &spec.model_id) else {
            continue;
        };
        if built >= data_as_of {
            continue;
        }
        if !loaded
            .state_dir
            .join(&loaded.profile.target_name)
            .join(&spec.name)
            .is_dir()
        {
            continue;
        }
        out.up_to_date.insert(
            i,
            UpToDate {
                message: format!(
                    "up to date: model {} ({materialized}) was last built at {}, before the last successful sync read it at {}; nothing was queried (--full-refresh or --ignore-schedule reads it anyway)",
                    spec.model_name,
                    crate::schedule::display(built),
                    crate::schedule::display(data_as_of)
                ),
                data_as_of,
            },
        );
    }
    out
}

/// The result of an up-to-date sync: `success`, nothing read or sent.
pub fn result(loaded: &Loaded, spec: &ActivationSpec, up_to_date: &UpToDate) -> SyncResult {
    let mut r = SyncResult::new(loaded.unique_id(spec), spec);
    r.message = up_to_date.message.clone();
    r.up_to_date_since = Some(up_to_date.data_as_of.to_rfc3339());
    r
}

/// The history fields of a finished sync that let a later run find it up to date: written
/// only for a clean success; `read_started` is when this run started reading.
pub fn history_fields(
    check: &Check,
    result: &SyncResult,
    read_started: DateTime<Utc>,
) -> Vec<(&'static str, serde_json::Value)> {
    use activate_executor::results::Status;
    if result.status != Status::Success || result.rejected > 0 {
        return Vec::new();
    }
    let Some(hash) = check.hashes.get(&result.name) else {
        return Vec::new();
    };
    let data_as_of = result
        .up_to_date_since
        .clone()
        .unwrap_or_else(|| read_started.to_rfc3339());
    vec![
        (DATA_AS_OF, serde_json::Value::String(data_as_of)),
        (DEFINITION_HASH, serde_json::Value::String(hash.clone())),
    ]
}
