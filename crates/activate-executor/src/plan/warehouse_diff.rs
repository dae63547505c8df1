//! The plan of a sync whose state lives in the warehouse (`state: {type: warehouse}`).
//!
//! The warehouse returns only the rows it could not rule out (new keys, changed source
//! hashes, NULL keys), each with what the snapshot holds for its key, plus the counts and the
//! removals it computed as SQL. Those rows go through the same [`PlanBuilder`] as local rows
//! (mapping, templates, rejections, the row-hash compare, `operation: insert`, the cursor),
//! over a state holding only their previous entries; this module then adds what the SQL
//! found: the unchanged rows, the size of the snapshot, duplicates and mirror removals. So
//! both stores give the same plan, requests and counts.

use std::collections::HashSet;

use activate_manifest::{OnDelete, Operation, SyncMode};

use crate::destination::Record;
use crate::plan::{Plan, PlanBuilder};
use crate::state::warehouse::{Candidate, DiffAnswers, DiffRequest, PendingRow, SyncKeys};
use crate::state::{Confirmed, StateKey, SyncState, WarehouseStateStore};
use crate::sync::{FieldSource, SyncDefinition};
use crate::value::{self, Value};

/// What the engine checks per destination (as for local state).
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    pub refuse_non_finite_floats: bool,
    pub refuse_keys_differing_only_in_case: bool,
}

/// Computes one sync's plan with the diff in the warehouse. Returns the plan, the state the
/// runner journals into (the candidates' previous entries and the committed cursor) and a
/// fingerprint of the committed state.
pub fn plan_in_warehouse(
    store: &WarehouseStateStore,
    key: &StateKey,
    def: &SyncDefinition,
    full_refresh: bool,
    checks: Checks,
    batch_rows: usize,
) -> Result<(Plan, SyncState, u128), String> {
    let key_columns = key_columns(def)?;
    let key_names: Vec<&str> = key_columns
        .iter()
        .map(|&c| def.read_columns[c].name.as_str())
        .collect();
    let mapping_hash = mapping_hash(def);
    let request = DiffRequest {
        relation: &def.relation,
        key_columns: &key_names,
        columns: &def.read_columns,
        cursor_column: def.spec.cursor.as_deref(),
        mapping_hash: &mapping_hash,
        full_refresh,
        mirror: def.spec.sync_mode == SyncMode::Mirror,
        case_collisions: checks.refuse_keys_differing_only_in_case,
        batch_rows,
    };
    let diff = store
        .prepare_diff(key, &request)
        .map_err(|e| e.to_string())?;
    let mut keys = SyncKeys {
        mapping_hash,
        ..SyncKeys::default()
    };
    let new_builder = |previous| {
        PlanBuilder::new(def, previous, full_refresh)
            .refuse_non_finite_floats(checks.refuse_non_finite_floats)
            .refuse_keys_differing_only_in_case(checks.refuse_keys_differing_only_in_case)
    };
    let mut previous = SyncState::default();
    previous.cursor = diff.cursor().cloned();
    // Candidates with an entry: (key, wh_key, new source hash, row hash), for the refresh.
    let mut known: Vec<(Box<str>, String, String, u64)> = Vec::new();
    let mut candidates_read = 0u64;
    let (mut plan, answers) = if diff.delivered == 0 {
        // Nothing delivered yet (a first run, or after a reset): no candidate has a previous
        // entry, so the rows go to the plan batch by batch as they arrive, as a local read's.
        let mut builder = new_builder(&previous);
        let answers = store
            .run_diff(diff, &mut |batch| {
                candidates_read += batch.len() as u64;
                if let Some(c) = batch.iter().find(|c| c.previous.is_some()) {
                    return Err(format!(
                        "internal error: the snapshot held no key, yet key {} has a previous entry",
                        c.wh_key
                    ));
                }
                let rows = batch
                    .into_iter()
                    .map(|c| remember_candidate(c, &key_columns, &mut keys))
                    .collect();
                builder.add_batch(rows);
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        (builder.finish(), answers)
    } else {
        // The candidates' previous entries come with them: all are gathered before the plan
        // is built over them (they are the changed rows, unless the mapping changed).
        let mut candidates: Vec<Candidate> = Vec::new();
        let answers = store
            .run_diff(diff, &mut |batch| {
                candidates.extend(batch);
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        let mut rows = Vec::with_capacity(candidates.len());
        for c in candidates {
            if let Some((prev_key, prev_hash)) = &c.previous {
                previous.apply(&Confirmed::Upserted {
                    key: prev_key.clone(),
                    row_hash: *prev_hash,
                });
                known.push((
                    prev_key.clone(),
                    c.wh_key.clone(),
                    c.source_hash.clone(),
                    *prev_hash,
                ));
            }
            rows.push(remember_candidate(c, &key_columns, &mut keys));
        }
        candidates_read = rows.len() as u64;
        let mut builder = new_builder(&previous);
        builder.add_batch(rows);
        (builder.finish(), answers)
    };
    for (key_json, wh_key) in &answers.removals {
        keys.by_key.insert_if_absent(key_json, wh_key, None);
    }
    add_warehouse_answers(&mut plan, def, &answers, candidates_read);

    // Rows whose source changed but whose record did not: remember the new source hash.
    if def.spec.operation != Operation::Insert {
        let sent: HashSet<&str> = plan.upsert_keys.iter().collect();
        let rejected: HashSet<&str> = plan.rejected.iter().map(|r| r.key.as_str()).collect();
        let removed: HashSet<&str> = plan
            .removals
            .iter()
            .chain(plan.forgotten.iter().map(|k| &**k))
            .collect();
        keys.refresh = known
            .into_iter()
            .filter(|(k, ..)| {
                !sent.contains(&**k) && !rejected.contains(&**k) && !removed.contains(&**k)
            })
            .map(|(key_json, wh_key, source_hash, row_hash)| PendingRow {
                wh_key,
                key_json: key_json.into(),
                source_hash: Some(source_hash),
                row_hash: Some(row_hash),
            })
            .collect();
    }
    store.remember(key, keys);
    Ok((plan, previous, answers.state_version))
}

/// Remembers a candidate's key in the warehouse's form and its source hash, for the journal;
/// returns its row.
fn remember_candidate(c: Candidate, key_columns: &[usize], keys: &mut SyncKeys) -> Vec<Value> {
    keys.by_key.insert(
        &key_json(&c.row, key_columns),
        &c.wh_key,
        Some(&c.source_hash),
    );
    c.row
}

/// The key columns (in the read row) of each `match_on` field: the warehouse joins on them.
fn key_columns(def: &SyncDefinition) -> Result<Vec<usize>, String> {
    def.key_positions
        .iter()
        .map(|&p| match def.field_sources[p] {
            FieldSource::Column(c) => Ok(c),
            _ => Err(format!(
                "sync `{}`: field `{}` of match_on is mapped from a literal or a template, and `state: {{type: warehouse}}` (activate.yml) joins on key columns\n  hint: map the key field from a column (compute it in the model), or use `state: {{type: local}}`",
                def.spec.name, def.fields[p]
            )),
        })
        .collect()
}

/// The key as the plan writes it: a JSON array of the key fields' values.
fn key_json(row: &[Value], key_columns: &[usize]) -> String {
    let mut key = String::from("[");
    for (n, &c) in key_columns.iter().enumerate() {
        if n > 0 {
            key.push(',');
        }
        row[c].write_json(&mut key);
    }
    key.push(']');
    key
}

/// Changes when the mapping does (fields, their sources, the columns read and their types):
/// then every row is compared, as the row hashes may all change.
fn mapping_hash(def: &SyncDefinition) -> String {
    let text = format!(
        "{:?}|{:?}|{:?}|{:?}",
        def.fields, def.field_sources, def.read_columns, def.key_positions
    );
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

/// Adds to a plan built from the candidates what the warehouse computed: rows it ruled out
/// as unchanged, the snapshot's size, duplicate keys and mirror removals.
fn add_warehouse_answers(
    plan: &mut Plan,
    def: &SyncDefinition,
    answers: &DiffAnswers,
    candidates_read: u64,
) {
    plan.unchanged += answers.rows_read.saturating_sub(candidates_read);
    plan.rows_read = answers.rows_read.max(candidates_read);
    plan.delivered_before = answers.delivered;
    if answers.duplicate_rows > plan.duplicate_count {
        plan.duplicate_count = answers.duplicate_rows;
        plan.duplicate_keys = answers.duplicate_keys.clone();
    }
    if def.spec.sync_mode != SyncMode::Mirror || plan.duplicate_count > 0 {
        return;
    }
    let planned: HashSet<Box<str>> = plan
        .removals
        .iter()
        .map(Box::from)
        .chain(plan.forgotten.iter().cloned())
        .collect();
    for (key_json, _) in &answers.removals {
        if planned.contains(key_json.as_str()) {
            continue;
        }
        let key: Box<str> = key_json.as_str().into();
        match def.spec.on_delete {
            OnDelete::Ignore => plan.forgotten.push(key),
            OnDelete::Delete | OnDelete::Clear => {
                plan.removal_records.push(&removal_record(def, &key).values);
                plan.removals.push(&key);
            }
        }
    }
    // In key order, as the local diff sends them.
    let records = std::mem::take(&mut plan.removal_records);
    let keys = std::mem::take(&mut plan.removals);
    let mut removals: Vec<(&str, Record)> = keys.iter().zip(records.iter()).collect();
    removals.sort_by(|a, b| a.0.cmp(b.0));
    for (key, record) in removals {
        plan.removals.push(key);
        plan.removal_records.push(&record.values);
    }
    plan.forgotten.sort();
}

/// The record of a removal: the key fields (`on_delete: delete`), or every field with the
/// key's values and NULL elsewhere (`clear`).
fn removal_record(def: &SyncDefinition, key: &str) -> Record {
    let key_values: Vec<Value> = serde_json::from_str::<Vec<serde_json::Value>>(key)
        .unwrap_or_default()
        .iter()
        .map(value::from_json)
        .collect();
    if def.spec.on_delete == OnDelete::Delete {
        return Record { values: key_values };
    }
    let mut values = vec![Value::Null; def.fields.len()];
    for (n, &p) in def.key_positions.iter().enumerate() {
        values[p] = key_values.get(n).cloned().unwrap_or(Value::Null);
    }
    Record { values }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::state::StateStore;
    use crate::warehouse::duckdb::DuckDbWarehouse;
    use crate::warehouse::{ReadRequest, Warehouse};

    fn def(activate: serde_json::Value) -> SyncDefinition {
        let spec = crate::test_support::activation_spec(activate);
        let columns = crate::test_support::columns(&[
            ("id", "INTEGER"),
            ("name", "VARCHAR"),
            ("extra", "INTEGER"),
        ]);
        SyncDefinition::resolve(&spec, "sync.p.s".into(), "main.m".into(), &columns).unwrap()
    }

    fn local_plan(wh: &DuckDbWarehouse, def: &SyncDefinition, state: &SyncState) -> Plan {
        let mut builder = PlanBuilder::new(def, state, false);
        wh.read(
            &ReadRequest {
                relation: &def.relation,
                columns: &def.read_columns,
                cursor_at_least: None,
                batch_rows: 3,
            },
            &mut |b| {
                builder.add_batch(b);
                Ok(())
            },
        )
        .unwrap();
        builder.finish()
    }

    /// Everything a plan decides, in comparable form.
    fn summary(plan: &Plan) -> serde_json::Value {
        let mut upserts: Vec<String> = plan
            .upserts
            .iter()
            .zip(plan.upsert_keys.iter())
            .map(|(r, key)| format!("{:?} {key} {:x}", r.kind, r.row_hash))
            .collect();
        upserts.sort();
        let mut rejected: Vec<String> = plan.rejected.iter().map(|r| r.key.clone()).collect();
        rejected.sort();
        json!({
            "upserts": upserts,
            "removals": plan.removals.iter().collect::<Vec<_>>(),
            "removal_records": plan.removal_records.iter().map(|r| format!("{:?}", r.values)).collect::<Vec<_>>(),
            "rows_read": plan.rows_read,
            "unchanged": plan.unchanged,
            "rejected": rejected,
            "delivered_before": plan.delivered_before,
            "duplicates": plan.duplicate_count,
        })
    }

    /// Confirms every planned change, in both stores.
    fn deliver(
        plan: &Plan,
        local: &mut SyncState,
        store: &WarehouseStateStore,
        key: &StateKey,
        partial: &SyncState,
    ) {
        let mut confirmed: Vec<Confirmed> = plan
            .upserts
            .iter()
            .zip(plan.upsert_keys.iter())
            .map(|(r, key)| Confirmed::Upserted {
                key: key.into(),
                row_hash: r.row_hash,
            })
            .collect();
        confirmed.extend(
            plan.removals
                .iter()
                .map(|key| Confirmed::Removed { key: key.into() }),
        );
        for c in &confirmed {
            local.apply(c);
        }
        store.journal(key, &confirmed).unwrap();
        store.commit(key, partial).unwrap();
    }

    #[test]
    fn the_sql_diff_plans_exactly_what_the_local_diff_plans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        {
            let conn = duckdb::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE m AS SELECT i::INTEGER AS id, 'n' || i AS name, i % 3 AS extra FROM range(1, 21) t(i)",
            )
            .unwrap();
        }
        let wh = DuckDbWarehouse::open_writable(&path).unwrap();
        let def = def(
            json!({"destination": "d", "object": "o", "sync_mode": "mirror", "mapping": {"id": "Id", "name": "Name", "extra": "Extra"}}),
        );
        let store =
            WarehouseStateStore::open(wh.state_backend("st", true).unwrap(), "st", true).unwrap();
        let key = StateKey {
            target: "dev".into(),
            sync: "s".into(),
            destination: "d".into(),
        };
        let checks = Checks {
            refuse_non_finite_floats: false,
            refuse_keys_differing_only_in_case: false,
        };
        let mut local = SyncState::default();
        let steps = [
            "",
            "UPDATE m SET name = 'changed' WHERE id IN (2, 3)",
            "DELETE FROM m WHERE id IN (4, 5); INSERT INTO m VALUES (NULL, 'no key', 0), (21, 'new', 1)",
            "UPDATE m SET extra = extra + 1 WHERE id = 6",
            "",
        ];
        for (n, sql) in steps.iter().enumerate() {
            if !sql.is_empty() {
                wh.state_backend("st", true)
                    .unwrap()
                    .session()
                    .unwrap()
                    .transaction(&[sql.to_string()])
                    .unwrap();
            }
            let expected = local_plan(&wh, &def, &local);
            let (plan, partial, _) =
                plan_in_warehouse(&store, &key, &def, false, checks, 4).unwrap();
            assert_eq!(summary(&plan), summary(&expected), "step {n}: {sql}");
            deliver(&plan, &mut local, &store, &key, &partial);
            assert_eq!(
                store.load(&key).unwrap().fingerprint(),
                local.fingerprint(),
                "step {n}: the committed states differ"
            );
        }
    }
}
