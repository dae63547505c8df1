//! Runs the ready syncs: concurrently up to `threads`, each after the syncs it waits for, a
//! failed sync skipping its dependents. One sync is one straight line:
//! state → warehouse read → plan → breakers → batches → per-row outcomes → state commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use activate_manifest::{OnDelete, Operation, SyncMode};
use serde_json::value::RawValue;
use tokio::task::JoinSet;

use crate::destination::{Destination, WriteBatch, WriteOp};
use crate::plan::{ChangeKind, KeyList, Plan, PlanBuilder, Records};
use crate::plan_file::{Computed, PlannedSync};
use crate::results::{RowRejection, Status, SyncResult};
use crate::secrets;
use crate::state::{Confirmed, StateKey, StateStore, SyncState};
use crate::sync::SyncDefinition;
use crate::value::Value;
use crate::warehouse::{ReadRequest, Warehouse};

/// What every sync of one run shares.
pub struct RunContext {
    pub warehouse: Arc<dyn Warehouse>,
    /// Local files, or tables in the warehouse (then the diff runs there as SQL).
    pub store: Arc<dyn StateStore>,
    pub target: String,
    /// `--full-refresh`: send every row, ignore the cursor.
    pub full_refresh: bool,
    /// `plan`: compute and report, send nothing, write no state.
    pub dry_run: bool,
    /// Sample rows per change kind shown by `plan`.
    pub samples: usize,
    pub read_batch_rows: usize,
    /// Set on SIGINT/SIGTERM: each sync stops before its next batch, keeping what the
    /// destination confirmed (journaled), and syncs not started are skipped.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// `run --plan`: the reviewed plan per sync name; a sync whose recomputed plan differs
    /// fails with nothing sent.
    pub expected_plan: Option<Arc<BTreeMap<String, PlannedSync>>>,
}

impl RunContext {
    pub fn stopping(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }
}

const STOPPED: &str = "stopped by a signal before it finished; what the destination confirmed is kept, and the next run sends the rest";

pub struct SyncJob {
    pub def: Arc<SyncDefinition>,
    pub destination: Arc<dyn Destination>,
    /// Where this sync writes (destination name, type, location, object): part of the state key.
    pub destination_identity: String,
}

pub enum Planned {
    Run(SyncJob),
    Skip(Box<SyncResult>),
}

impl Planned {
    pub fn name(&self) -> &str {
        match self {
            Planned::Run(job) => &job.def.spec.name,
            Planned::Skip(result) => &result.name,
        }
    }
}

/// Progress, in dbt's voice; the binary prints it.
pub trait Reporter: Send + Sync {
    fn started(&self, position: usize, total: usize, job: &SyncJob);
    fn finished(&self, position: usize, total: usize, result: &SyncResult);
}

/// Runs `items` respecting `waits_for` (indices into `items`). Results come back in item order.
pub async fn run_all(
    ctx: Arc<RunContext>,
    items: Vec<Planned>,
    waits_for: BTreeMap<usize, Vec<usize>>,
    threads: usize,
    reporter: Arc<dyn Reporter>,
) -> Vec<SyncResult> {
    let total = items.len();
    let mut results: Vec<Option<SyncResult>> = (0..total).map(|_| None).collect();
    let mut pending: BTreeSet<usize> = (0..total).collect();
    let mut items: Vec<Option<Planned>> = items.into_iter().map(Some).collect();
    let mut running: JoinSet<(usize, usize, SyncResult)> = JoinSet::new();
    let mut position = 0usize;
    loop {
        let mut progressed = true;
        while progressed {
            progressed = false;
            for idx in pending.clone() {
                let waits = waits_for.get(&idx).map(Vec::as_slice).unwrap_or(&[]);
                if waits.iter().any(|w| results[*w].is_none()) {
                    continue;
                }
                let failed_upstream = waits
                    .iter()
                    .filter_map(|w| results[*w].as_ref())
                    .find(|r| r.status == Status::Error)
                    .map(|r| r.name.clone());
                let Some(item) = items[idx].take() else {
                    continue;
                };
                match (item, failed_upstream) {
                    (Planned::Skip(result), _) => {
                        position += 1;
                        reporter.finished(position, total, &result);
                        results[idx] = Some(*result);
                    }
                    (Planned::Run(job), Some(upstream)) => {
                        position += 1;
                        let result = SyncResult::skipped(
                            job.def.unique_id.clone(),
                            &job.def.spec,
                            &format!("upstream sync {upstream} failed"),
                        );
                        reporter.finished(position, total, &result);
                        results[idx] = Some(result);
                    }
                    (Planned::Run(job), None) if ctx.stopping() => {
                        position += 1;
                        let result = SyncResult::skipped(
                            job.def.unique_id.clone(),
                            &job.def.spec,
                            "not started: the run was stopped by a signal",
                        );
                        reporter.finished(position, total, &result);
                        results[idx] = Some(result);
                    }
                    (Planned::Run(job), None) => {
                        if running.len() >= threads.max(1) {
                            items[idx] = Some(Planned::Run(job));
                            continue;
                        }
                        position += 1;
                        reporter.started(position, total, &job);
                        let ctx = ctx.clone();
                        let at = position;
                        running.spawn(async move { (idx, at, run_sync(&ctx, &job).await) });
                    }
                }
                pending.remove(&idx);
                progressed = true;
            }
        }
        match running.join_next().await {
            Some(Ok((idx, at, result))) => {
                reporter.finished(at, total, &result);
                results[idx] = Some(result);
            }
            Some(Err(e)) => {
                // A panicking sync is a bug; report it instead of losing the run.
                tracing::error!("a sync task failed: {e}");
            }
            None => break,
        }
    }
    results.into_iter().flatten().collect()
}

/// Runs one sync and always returns its result (errors become `status: error`).
pub async fn run_sync(ctx: &RunContext, job: &SyncJob) -> SyncResult {
    let started = Instant::now();
    let mut result = SyncResult::new(job.def.unique_id.clone(), &job.def.spec);
    if let Err(message) = sync_inner(ctx, job, &mut result).await {
        result.status = Status::Error;
        result.message = secrets::redact(&message);
    }
    result.execution_time = started.elapsed().as_secs_f64();
    result.engine_time =
        (result.execution_time - result.warehouse_time - result.destination_time).max(0.0);
    result
}

async fn sync_inner(
    ctx: &RunContext,
    job: &SyncJob,
    result: &mut SyncResult,
) -> Result<(), String> {
    let def = job.def.clone();
    let spec = &def.spec;
    let key = StateKey {
        target: ctx.target.clone(),
        sync: spec.name.clone(),
        destination: job.destination_identity.clone(),
    };

    // State, then the warehouse read and the diff, off the async threads.
    let store = ctx.store.clone();
    let warehouse = ctx.warehouse.clone();
    let full_refresh = ctx.full_refresh;
    let batch_rows = ctx.read_batch_rows;
    let load_key = key.clone();
    let plan_def = def.clone();
    let record_plan = ctx.dry_run || ctx.expected_plan.is_some();
    let refuse_non_finite = !job.destination.carries_non_finite_floats();
    let refuse_case_collisions = job.destination.matches_keys_ignoring_case();
    let (plan, mut state, state_fingerprint, warehouse_time) =
        tokio::task::spawn_blocking(move || -> Result<(Plan, SyncState, u128, f64), String> {
            if let Some(in_warehouse) = store.in_warehouse() {
                let checks = crate::plan::warehouse_diff::Checks {
                    refuse_non_finite_floats: refuse_non_finite,
                    refuse_keys_differing_only_in_case: refuse_case_collisions,
                };
                // The diff runs in the warehouse: its time (with the candidates' mapping,
                // a small part) counts as warehouse time.
                let diff_started = Instant::now();
                let (plan, state, fingerprint) = crate::plan::plan_in_warehouse(
                    in_warehouse,
                    &load_key,
                    &plan_def,
                    full_refresh,
                    checks,
                    batch_rows,
                )?;
                let warehouse_time = diff_started.elapsed().as_secs_f64();
                return Ok((plan, state, fingerprint, warehouse_time));
            }
            let state = store.load(&load_key).map_err(|e| e.to_string())?;
            let state_fingerprint = if record_plan { state.fingerprint() } else { 0 };
            let cursor = match (&plan_def.spec.cursor, &state.cursor) {
                (Some(column), Some(value)) if !full_refresh => Some((column.as_str(), value)),
                _ => None,
            };
            let request = ReadRequest {
                relation: &plan_def.relation,
                columns: &plan_def.read_columns,
                cursor_at_least: cursor,
                batch_rows,
            };
            let mut builder = PlanBuilder::new(&plan_def, &state, full_refresh)
                .refuse_non_finite_floats(refuse_non_finite)
                .refuse_keys_differing_only_in_case(refuse_case_collisions)
                .fingerprint_rows(record_plan);
            // The read runs one batch ahead of the diff, on a thread of its own.
            let warehouse_time =
                crate::warehouse::read_ahead::read_ahead(warehouse.as_ref(), &request, |batch| {
                    builder.add_batch(batch)
                })
                .map_err(|e| e.message)?;
            let plan = builder.finish();
            Ok((plan, state, state_fingerprint, warehouse_time.as_secs_f64()))
        })
        .await
        .map_err(|e| format!("internal error: {e}"))??;

    result.warehouse_time = warehouse_time;
    result.rows_read = plan.rows_read;
    result.unchanged = plan.unchanged;
    result.skipped_rows = plan.skipped_rows;
    for r in &plan.rejected {
        result.rejections.push(RowRejection {
            key: r.key.clone(),
            reason: r.reason.clone(),
        });
    }
    result.rejected = plan.rejected.len() as u64;

    if plan.duplicate_count > 0 {
        return Err(format!(
            "model `{}` returned {} row(s) whose primary key ({}) repeats an earlier row, e.g. {}; nothing was sent\n  hint: deduplicate in the model, and add a dbt `unique` test on the key so `dbt build` catches it",
            spec.model_name,
            plan.duplicate_count,
            spec.primary_key.join(", "),
            plan.duplicate_keys.join(", ")
        ));
    }
    let computed = record_plan.then(|| Computed::of(&plan, state_fingerprint));
    if let (Some(expected), Some(computed)) = (&ctx.expected_plan, &computed) {
        let recorded = expected.get(&spec.name).ok_or_else(|| {
            format!(
                "sync `{}` is not in the plan being applied; nothing was sent for it",
                spec.name
            )
        })?;
        if let Some(why) = computed.differs_from(recorded, &spec.model_name) {
            return Err(why);
        }
    }
    check_plan_breakers(spec, &plan)?;

    let deletes = plan.removals.len() as u64;
    if ctx.dry_run {
        result.inserted = plan.inserts();
        result.updated = plan.updates();
        match spec.on_delete {
            OnDelete::Clear => result.cleared = deletes,
            _ => result.deleted = deletes,
        }
        result.samples = samples(&def, &plan, ctx.samples);
        result.computed_plan = computed.map(Box::new);
        return Ok(());
    }

    let max_rows = job.destination.capabilities().max_batch_rows.max(1);
    let op = match spec.operation {
        Operation::Upsert => WriteOp::Upsert,
        Operation::Update => WriteOp::Update,
        Operation::Insert => WriteOp::Insert,
    };
    let mut rejected_cursors: Vec<Value> = plan
        .rejected
        .iter()
        .filter_map(|r| r.cursor.clone())
        .collect();
    let upsert_fields = Fields {
        op,
        names: &def.fields,
        key_positions: &def.key_positions,
    };
    let upserts = Outgoing {
        keys: &plan.upsert_keys,
        records: &plan.upsert_records,
        new_to_state: &|i| plan.upserts[i].kind == ChangeKind::Insert,
    };
    send_batches(
        ctx,
        job,
        &key,
        &mut state,
        result,
        &upsert_fields,
        &upserts,
        max_rows,
        |i, confirmed, result| {
            let row = plan.upserts[i];
            if !confirmed {
                rejected_cursors.extend(plan.upsert_cursor(i));
                return None;
            }
            let (key, row_hash) = (plan.upsert_keys.get(i).into(), row.row_hash);
            Some(match row.kind {
                ChangeKind::Insert => {
                    result.inserted += 1;
                    Confirmed::Inserted { key, row_hash }
                }
                ChangeKind::Update => {
                    result.updated += 1;
                    Confirmed::Upserted { key, row_hash }
                }
            })
        },
    )
    .await?;

    if !plan.removals.is_empty() {
        let key_only: Vec<usize> = (0..spec.match_on.len()).collect();
        let removal_fields = match spec.on_delete {
            OnDelete::Clear => Fields {
                op: WriteOp::Clear,
                names: &def.fields,
                key_positions: &def.key_positions,
            },
            _ => Fields {
                op: WriteOp::Delete,
                names: &spec.match_on,
                key_positions: &key_only,
            },
        };
        let clear = removal_fields.op == WriteOp::Clear;
        let removals = Outgoing {
            keys: &plan.removals,
            records: &plan.removal_records,
            new_to_state: &|_| false,
        };
        send_batches(
            ctx,
            job,
            &key,
            &mut state,
            result,
            &removal_fields,
            &removals,
            max_rows,
            |i, confirmed, result| {
                if !confirmed {
                    return None;
                }
                if clear {
                    result.cleared += 1;
                } else {
                    result.deleted += 1;
                }
                Some(Confirmed::Removed {
                    key: plan.removals.get(i).into(),
                })
            },
        )
        .await?;
    }
    check_rejected_breaker(spec, result)?;
    let forgotten: Vec<Confirmed> = plan
        .forgotten
        .iter()
        .map(|k| Confirmed::Removed { key: k.clone() })
        .collect();
    journal(ctx, &key, &mut state, forgotten).await?;
    // Every change is sent: the plan's records are freed before the state is written.
    let max_cursor = plan.max_cursor.clone();
    drop(plan);

    // The cursor moves to the newest row read, but never past a rejected row, so the rejected
    // rows are read (and retried) again; rows at the boundary are deduplicated by the snapshot.
    if spec.cursor.is_some() && spec.sync_mode == SyncMode::Incremental {
        let mut next = max_cursor;
        for c in &rejected_cursors {
            if next.as_ref().is_none_or(|n| c.cursor_cmp(n).is_lt()) {
                next = Some(c.clone());
            }
        }
        if next.is_some() {
            state.cursor = next;
        }
    }
    let store = ctx.store.clone();
    let commit_key = key.clone();
    tokio::task::spawn_blocking(move || store.commit(&commit_key, &state))
        .await
        .map_err(|e| format!("internal error: {e}"))?
        .map_err(|e| e.to_string())?;

    if result.rejected > 0 {
        result.status = Status::Warn;
        result.message = format!(
            "{} row(s) rejected (retried on the next run), e.g. {}: {}",
            result.rejected, result.rejections[0].key, result.rejections[0].reason
        );
    }
    Ok(())
}

/// What a batch carries: the operation and the fields (with the key's positions among them).
struct Fields<'a> {
    op: WriteOp,
    names: &'a [String],
    key_positions: &'a [usize],
}

/// Planned changes of one kind: their keys and records, aligned by position.
struct Outgoing<'p> {
    keys: &'p KeyList,
    records: &'p Records,
    /// The change at this position has a key never delivered by this sync (by its state).
    new_to_state: &'p (dyn Fn(usize) -> bool + Sync),
}

/// Sends the `rows` in batches of at most `max_rows`. `outcome` is told of every row by its
/// position, `true` when the destination confirmed it (returning the state change to journal)
/// or `false` when it rejected it; rejections are recorded here. Stops when the
/// `max_rejected` breaker trips.
#[allow(clippy::too_many_arguments)]
async fn send_batches(
    ctx: &RunContext,
    job: &SyncJob,
    key: &StateKey,
    state: &mut SyncState,
    result: &mut SyncResult,
    fields: &Fields<'_>,
    rows: &Outgoing<'_>,
    max_rows: usize,
    mut outcome: impl FnMut(usize, bool, &mut SyncResult) -> Option<Confirmed>,
) -> Result<(), String> {
    let spec = &job.def.spec;
    let total = rows.keys.len();
    // Each batch is decoded over the one before (its strings reused).
    let mut chunk_records = Vec::new();
    // The journal of the batch sent last, being written and synced while the next batch is
    // decoded; it is on disk before anything more is sent.
    let mut pending: Option<PendingJournal> = None;
    for first in (0..total).step_by(max_rows) {
        let chunk = first..(first + max_rows).min(total);
        rows.records.decode_into(chunk.clone(), &mut chunk_records);
        if let Some(journaled) = pending.take() {
            journaled.settle(state).await?;
            check_rejected_breaker(spec, result)?;
        }
        if ctx.stopping() {
            return Err(STOPPED.to_owned());
        }
        let batch = WriteBatch {
            sync: &job.def.unique_id,
            object: &spec.object,
            op: fields.op,
            fields: fields.names,
            key_positions: fields.key_positions,
            records: &chunk_records,
            keys_new_to_state: fields.op == WriteOp::Upsert && chunk.clone().all(rows.new_to_state),
        };
        let write_started = Instant::now();
        let written = job.destination.write(&batch).await;
        result.destination_time += write_started.elapsed().as_secs_f64();
        let written =
            written.map_err(|e| format!("destination `{}`: {}", spec.destination, e.message))?;
        let rejected: BTreeMap<usize, String> = written.rejected.into_iter().collect();
        let mut confirmed = Vec::with_capacity(chunk.len());
        for (i, at) in chunk.enumerate() {
            match rejected.get(&i) {
                Some(reason) => {
                    result.rejected += 1;
                    result.rejections.push(RowRejection {
                        key: rows.keys.get(at).to_owned(),
                        reason: secrets::redact(reason),
                    });
                    outcome(at, false, result);
                }
                None => confirmed.extend(outcome(at, true, result)),
            }
        }
        pending = Some(PendingJournal::start(ctx, key, confirmed));
    }
    if let Some(journaled) = pending {
        journaled.settle(state).await?;
        check_rejected_breaker(spec, result)?;
    }
    Ok(())
}

/// A batch's confirmed changes being journaled (written and synced off the async threads).
struct PendingJournal(tokio::task::JoinHandle<Result<Vec<Confirmed>, String>>);

impl PendingJournal {
    fn start(ctx: &RunContext, key: &StateKey, confirmed: Vec<Confirmed>) -> Self {
        let store = ctx.store.clone();
        let key = key.clone();
        PendingJournal(tokio::task::spawn_blocking(move || {
            if !confirmed.is_empty() {
                store.journal(&key, &confirmed).map_err(|e| e.to_string())?;
            }
            Ok(confirmed)
        }))
    }

    /// Waits until the changes are journaled, then applies them to the state.
    async fn settle(self, state: &mut SyncState) -> Result<(), String> {
        let confirmed = self.0.await.map_err(|e| format!("internal error: {e}"))??;
        for c in &confirmed {
            state.apply(c);
        }
        Ok(())
    }
}

async fn journal(
    ctx: &RunContext,
    key: &StateKey,
    state: &mut SyncState,
    confirmed: Vec<Confirmed>,
) -> Result<(), String> {
    if confirmed.is_empty() {
        return Ok(());
    }
    PendingJournal::start(ctx, key, confirmed)
        .settle(state)
        .await
}

fn check_plan_breakers(
    spec: &activate_manifest::ActivationSpec,
    plan: &Plan,
) -> Result<(), String> {
    let delivered = plan.delivered_before;
    let deletes = plan.removals.len() as u64;
    if let Some(limit) = spec.limits.max_deletes
        && limit.exceeded(deletes, delivered)
    {
        return Err(format!(
            "circuit breaker max_deletes tripped: the plan removes {deletes} of the {delivered} rows this sync delivered, limit {limit}; nothing was sent\n  hint: if the model really lost these rows, raise limits.max_deletes or run `dbt-activate reset --select {}`",
            spec.name
        ));
    }
    if let Some(limit) = spec.limits.max_changes {
        let changes = plan.upserts.len() as u64 + deletes;
        if delivered > 0 && limit.exceeded(changes, delivered) {
            return Err(format!(
                "circuit breaker max_changes tripped: the plan changes {changes} rows against {delivered} delivered, limit {limit}; nothing was sent\n  hint: check the model's data; if the change is expected, raise limits.max_changes"
            ));
        }
    }
    Ok(())
}

fn check_rejected_breaker(
    spec: &activate_manifest::ActivationSpec,
    result: &SyncResult,
) -> Result<(), String> {
    let Some(limit) = spec.limits.max_rejected else {
        return Ok(());
    };
    let attempted =
        result.inserted + result.updated + result.deleted + result.cleared + result.rejected;
    if limit.exceeded(result.rejected, attempted) {
        return Err(format!(
            "circuit breaker max_rejected tripped: {} of {attempted} rows attempted were rejected, limit {limit}; the sync stopped, keeping the {} rows already confirmed",
            result.rejected,
            attempted - result.rejected
        ));
    }
    Ok(())
}

fn samples(def: &SyncDefinition, plan: &Plan, n: usize) -> Vec<Box<RawValue>> {
    // Built as text, so decimals keep their digits.
    let mut out = Vec::new();
    for kind in [ChangeKind::Insert, ChangeKind::Update] {
        let change = if kind == ChangeKind::Insert {
            "insert"
        } else {
            "update"
        };
        let rows = plan.upserts.iter().enumerate();
        for (i, _) in rows.filter(|(_, r)| r.kind == kind).take(n) {
            let record = crate::destination::record_json(&def.fields, &plan.upsert_records.get(i));
            out.push(format!("{{\"change\":\"{change}\",\"record\":{record}}}"));
        }
    }
    for key in plan.removals.iter().take(n) {
        out.push(format!("{{\"change\":\"delete\",\"key\":{key}}}"));
    }
    out.into_iter()
        .filter_map(|s| RawValue::from_string(s).ok())
        .collect()
}
