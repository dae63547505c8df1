//! Warehouse state in BigQuery: the state tables live in a dataset of the profile's project.
//!
//! BigQuery has no session to hold and no multi-statement transaction is used: every change
//! is one `INSERT` or one `MERGE`, each atomic by itself, and the statements of a commit are
//! ordered so that a run stopped between two of them leaves a state the next run reads
//! correctly ([`crate::state::warehouse::Tables::commit`]). BigQuery has no advisory locks and
//! does not enforce unique keys, so one run at a time comes from a lock row in
//! `<dataset>.activate_lock`, taken by a `MERGE ... WHEN MATCHED THEN UPDATE` of the rows whose
//! holder is NULL, only when no row is held (two runs starting together on a new dataset may
//! each insert a row; the `NOT EXISTS` keeps a second holder out; BigQuery runs mutating
//! statements on one table one at a time, or fails the later of two conflicting ones), and
//! given back when the run ends.

use super::{BigQueryWarehouse, convert_rows, quote, string_literal};
use crate::error::{StateError, WarehouseError};
use crate::state::warehouse::{
    CandidateRead, Dialect, StateBackend, StateSession, TextRows, give_back_lock_row, lock_holder,
    lock_row_held, sql,
};
use crate::value::Value;
use crate::warehouse::RowBatch;

/// Rows per page when reading the answers of the state's own queries.
const TEXT_PAGE_ROWS: usize = 10_000;
/// The longest journal `INSERT` written, in characters: BigQuery takes queries of up to
/// 1,024k characters, and each statement is a job of its own (about a second on BigQuery),
/// so a batch goes in as few statements as fit.
const MAX_INSERT_CHARS: usize = 900_000;

/// How many journal rows one `INSERT` takes: as many as fit in [`MAX_INSERT_CHARS`] at the
/// widest row's length (every character escaped as `\uXXXX`, plus the ids, hashes and
/// separators).
fn pending_rows_per_insert(rows: &[sql::PendingRow]) -> usize {
    // An escaped character takes at most 6 (`\u0001`).
    let widest = rows
        .iter()
        .map(|r| {
            6 * (r.wh_key.len() + r.key_json.len() + r.source_hash.as_ref().map_or(0, String::len))
                + 160
        })
        .max()
        .unwrap_or(160);
    (MAX_INSERT_CHARS / widest).max(1)
}

pub struct BigQueryStateBackend {
    warehouse: BigQueryWarehouse,
    /// The lock row's holder, given back on drop.
    lock: Option<LockRow>,
}

struct LockRow {
    table: String,
    holder: String,
}

impl BigQueryWarehouse {
    /// Runs a statement or query whose answer is read as text; also the rows a DML changed.
    fn query_text(&self, sql: &str) -> Result<(TextRows, Option<u64>), WarehouseError> {
        let mut rows = Vec::new();
        let changed = self.query_pages(sql, TEXT_PAGE_ROWS, &mut |page| {
            rows.extend(
                convert_rows(&page.schema, page.rows)
                    .into_iter()
                    .map(|row| row.into_iter().map(Value::into_text).collect::<Vec<_>>()),
            );
            Ok(())
        })?;
        Ok((rows, changed))
    }
}

impl BigQueryStateBackend {
    /// State in the dataset `schema` of the profile's project; with `lock`, takes the lock
    /// row or refuses when another run holds it.
    pub fn open(
        warehouse: BigQueryWarehouse,
        schema: &str,
        lock: bool,
    ) -> Result<Self, StateError> {
        let mut backend = Self {
            warehouse,
            lock: None,
        };
        if lock {
            backend.lock = Some(backend.take_lock(schema)?);
        }
        Ok(backend)
    }

    fn take_lock(&self, schema: &str) -> Result<LockRow, StateError> {
        let table = format!("{}.{}", quote(schema), quote("activate_lock"));
        let holder = lock_holder();
        let fail = |e: WarehouseError| {
            StateError::Warehouse(format!(
                "warehouse state in dataset `{schema}` of {}: could not take the state lock: {}\n  hint: the profile's credentials need bigquery.datasets.create on the project (or an existing dataset `{schema}`) and bigquery.tables.create, getData and updateData on it (roles/bigquery.dataEditor)",
                self.location(),
                e.message
            ))
        };
        let wh = &self.warehouse;
        for statement in [
            format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)),
            format!("CREATE TABLE IF NOT EXISTS {table} (holder STRING)"),
            format!(
                "INSERT INTO {table} (holder) SELECT CAST(NULL AS STRING) FROM (SELECT 1) \
                 WHERE NOT EXISTS (SELECT 1 FROM {table})"
            ),
        ] {
            wh.query_text(&statement).map_err(fail)?;
        }
        let (_, taken) = wh
            .query_text(&format!(
                "MERGE {table} AS l USING (SELECT {} AS holder FROM (SELECT 1) \
                 WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE holder IS NOT NULL)) AS n \
                 ON l.holder IS NULL WHEN MATCHED THEN UPDATE SET holder = n.holder",
                string_literal(&holder)
            ))
            .map_err(fail)?;
        if taken.unwrap_or(0) == 0 {
            let held_by = wh
                .query_text(&format!(
                    "SELECT holder FROM {table} WHERE holder IS NOT NULL"
                ))
                .ok()
                .and_then(|(rows, _)| rows.into_iter().next())
                .and_then(|row| row.into_iter().next().flatten())
                .unwrap_or_else(|| "holder unknown".to_owned());
            return Err(lock_row_held(
                "dataset",
                schema,
                &self.location(),
                &held_by,
                &format!("UPDATE {table} SET holder = NULL WHERE TRUE"),
            ));
        }
        Ok(LockRow { table, holder })
    }
}

impl Drop for BigQueryStateBackend {
    /// Gives the lock back. The drop may happen on any thread, inside or outside the async
    /// runtime, so the release runs on a thread of its own with a runtime and client of its
    /// own.
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else {
            return;
        };
        let config = self.warehouse.config.clone();
        let clear = format!("UPDATE {} SET holder = NULL WHERE TRUE", lock.table);
        give_back_lock_row(clear, move || {
            BigQueryWarehouse::open(config)
                .query_text(&format!(
                    "MERGE {} AS l USING (SELECT {} AS holder) AS n ON l.holder = n.holder \
                     WHEN MATCHED THEN UPDATE SET holder = CAST(NULL AS STRING)",
                    lock.table,
                    string_literal(&lock.holder)
                ))
                .map(|_| ())
                .map_err(|e| e.message)
        });
    }
}

impl StateBackend for BigQueryStateBackend {
    fn dialect(&self) -> Dialect {
        Dialect::BigQuery
    }

    fn location(&self) -> String {
        let config = &self.warehouse.config;
        format!(
            "bigquery project {} at {} ({})",
            config.project, config.v2_base_url, config.origin
        )
    }

    fn session(&self) -> Result<Box<dyn StateSession + '_>, String> {
        Ok(Box::new(BigQueryStateSession {
            warehouse: &self.warehouse,
        }))
    }

    /// Through the tables.get API (the emulator has no INFORMATION_SCHEMA): not found is no.
    fn table_exists(&self, schema: &str, name: &str) -> Result<bool, String> {
        let wh = &self.warehouse;
        let client = wh.client().map_err(|e| e.message)?;
        let project = wh.config.project.clone();
        let found = super::block_on(client.table().get(&project, schema, name, None))
            .map_err(|e| e.message)?;
        match found {
            Ok(_) => Ok(true),
            Err(gcp_bigquery_client::error::BQError::ResponseError { error })
                if error.error.code == 404 =>
            {
                Ok(false)
            }
            Err(e) => Err(wh.describe(&e)),
        }
    }
}

/// BigQuery has no connection to hold: a session is the shared client.
struct BigQueryStateSession<'a> {
    warehouse: &'a BigQueryWarehouse,
}

impl StateSession for BigQueryStateSession<'_> {
    /// As few `INSERT ... VALUES` statements as fit, run one after the other: a run stopped
    /// between two has journaled part of a confirmed batch, which is still true (the rest
    /// is sent again and found unchanged).
    fn rows_per_insert(&self, rows: &[sql::PendingRow]) -> usize {
        pending_rows_per_insert(rows)
    }

    /// One statement after the other: the state's statements for BigQuery are each atomic
    /// and ordered so that stopping between two of them is safe (see the module's note).
    fn transaction(&mut self, statements: &[String]) -> Result<(), String> {
        for statement in statements {
            self.warehouse
                .query_text(statement)
                .map_err(|e| e.message)?;
        }
        Ok(())
    }

    /// One by one: BigQuery runs DDL statements on their own.
    fn create_tables(&mut self, statements: &[String]) -> Result<(), String> {
        self.transaction(statements)
    }

    fn query_text(&mut self, sql: &str) -> Result<TextRows, String> {
        self.warehouse
            .query_text(sql)
            .map(|(rows, _)| rows)
            .map_err(|e| e.message)
    }

    /// The queries one after the other, then the candidates page by page. BigQuery gives no
    /// snapshot across queries without a transaction; the lock keeps the state tables still,
    /// and a model rebuilt by dbt while the diff runs is read as it is at each query.
    fn diff(
        &mut self,
        queries: &[&str],
        candidates: &CandidateRead<'_>,
        on_batch: &mut dyn FnMut(RowBatch) -> Result<(), String>,
    ) -> Result<Vec<TextRows>, String> {
        let mut answers = Vec::with_capacity(queries.len());
        for query in queries {
            answers.push(self.query_text(query)?);
        }
        let sql = candidates.select_sql(quote);
        let mut stopped = None;
        let read = self
            .warehouse
            .query_pages(&sql, candidates.batch_rows.max(1), &mut |page| {
                let rows = convert_rows(&page.schema, page.rows);
                if rows.is_empty() {
                    return Ok(());
                }
                on_batch(rows).map_err(|e| {
                    stopped = Some(e.clone());
                    WarehouseError::new(e)
                })
            });
        match read {
            Ok(_) => Ok(answers),
            Err(e) => Err(stopped.unwrap_or(e.message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_insert_stays_under_bigquerys_query_length() {
        let row = |key: String| sql::PendingRow {
            wh_key: key.clone(),
            key_json: format!("[\"{key}\"]"),
            source_hash: Some("0123456789abcdef0123456789abcdef".into()),
            row_hash: Some(u64::MAX),
        };
        let rows: Vec<sql::PendingRow> = (0..20_000).map(|i| row(format!("k'\\{i}"))).collect();
        let tables = crate::state::warehouse::Tables::in_schema(Dialect::BigQuery, "st");
        let per = pending_rows_per_insert(&rows);
        let statements = sql::insert_pending(
            &tables,
            "s".repeat(32).as_str(),
            "r".repeat(36).as_str(),
            0,
            &rows,
            per,
        );
        assert!(
            statements.len() > 1 && statements.len() < 20,
            "{}",
            statements.len()
        );
        assert!(statements.iter().all(|s| s.len() <= MAX_INSERT_CHARS));
        let wide = vec![row("x".repeat(2_000_000))];
        assert_eq!(pending_rows_per_insert(&wide), 1);
    }
}

/// Against crucible-emulator (`ACTIVATE_TEST_BIGQUERY_PORT`, started by scripts/test.sh).
#[cfg(test)]
mod tests_against_crucible {
    use super::*;
    use crate::state::warehouse::{SyncKeys, SyncStateRow, Tables, WarehouseStateStore, state_id};
    use crate::state::{Confirmed, StateKey, StateStore, SyncState, cursor_to_json};
    use crate::warehouse::bigquery::BigQueryConfig;

    fn warehouse() -> BigQueryWarehouse {
        let port = std::env::var("ACTIVATE_TEST_BIGQUERY_PORT").expect(
            "ACTIVATE_TEST_BIGQUERY_PORT is not set: run the tests through scripts/test.sh, which starts crucible-emulator",
        );
        let profile = serde_json::json!({"type": "bigquery", "method": "oauth",
            "project": "local-project", "dataset": "d", "location": "US",
            "api_endpoint": format!("http://127.0.0.1:{port}")});
        BigQueryWarehouse::open(BigQueryConfig::from_profile(&profile, "test profile").unwrap())
    }

    fn store(schema: &str) -> WarehouseStateStore {
        let backend = BigQueryStateBackend::open(warehouse(), schema, true).unwrap();
        WarehouseStateStore::open(Box::new(backend), schema, true).unwrap()
    }

    fn keys(names: &[&str]) -> SyncKeys {
        let mut keys = SyncKeys {
            mapping_hash: "mapping".into(),
            ..SyncKeys::default()
        };
        for k in names {
            keys.by_key
                .insert(&format!("[\"{k}\"]"), k, Some(&format!("source-{k}")));
        }
        keys
    }

    fn upserted(k: &str, row_hash: u64) -> Confirmed {
        Confirmed::Upserted {
            key: format!("[\"{k}\"]").into(),
            row_hash,
        }
    }

    fn with_cursor(cursor: i64) -> SyncState {
        let mut state = SyncState::default();
        state.cursor = Some(Value::Int(cursor));
        state
    }

    /// BigQuery's commit is three statements run one after the other (no transaction). A run
    /// stopped after any of them leaves a state the next run reads right: every change the
    /// destination confirmed is in the snapshot, and the cursor is the last commit's or
    /// this one's.
    #[test]
    fn a_commit_stopped_after_any_statement_is_read_right_by_the_next_run() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _entered = runtime.enter();
        let key = StateKey {
            target: "dev".into(),
            sync: "people".into(),
            destination: "crm".into(),
        };
        let id = state_id(&key);
        let cursor_json = cursor_to_json(&Value::Int(2)).to_string();
        let row = SyncStateRow {
            state_id: &id,
            target: &key.target,
            sync: &key.sync,
            destination: &key.destination,
            cursor_json: Some(cursor_json),
            mapping_hash: "mapping",
            committed_at: "2026-11-25T00:00:00Z",
            format: 1,
        };
        let statements = Tables::in_schema(Dialect::BigQuery, "any").commit(&row);
        assert_eq!(statements.len(), 3, "fold, sync row, clear: {statements:?}");
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        for stop_after in 0..=statements.len() {
            let schema = format!("prefix_{stop_after}_{}", &suffix[..8]);
            let first = store(&schema);
            first.remember(&key, keys(&["a", "b", "c"]));
            first
                .journal(
                    &key,
                    &[upserted("a", 1), upserted("b", 2), upserted("c", 3)],
                )
                .unwrap();
            first.commit(&key, &with_cursor(1)).unwrap();
            // The second run: b changed, c removed, d new, all confirmed; then the commit
            // stops after `stop_after` statements.
            first.remember(&key, keys(&["b", "c", "d"]));
            let removed = Confirmed::Removed {
                key: "[\"c\"]".into(),
            };
            first
                .journal(&key, &[upserted("b", 20), removed, upserted("d", 4)])
                .unwrap();
            let commit = Tables::in_schema(Dialect::BigQuery, &schema).commit(&row);
            let backend = BigQueryStateBackend::open(warehouse(), &schema, false).unwrap();
            backend
                .session()
                .unwrap()
                .transaction(&commit[..stop_after])
                .unwrap();
            drop(first);

            let next = store(&schema);
            let state = next.load(&key).unwrap();
            let held: Vec<(String, Option<u64>)> = ["a", "b", "c", "d"]
                .iter()
                .map(|k| ((*k).to_owned(), state.row_hash_of(&format!("[\"{k}\"]"))))
                .collect();
            assert_eq!(
                held,
                [
                    ("a".to_owned(), Some(1)),
                    ("b".to_owned(), Some(20)),
                    ("c".to_owned(), None),
                    ("d".to_owned(), Some(4)),
                ],
                "stopped after {stop_after} statement(s)"
            );
            let expected_cursor = if stop_after >= 2 { 2 } else { 1 };
            assert_eq!(
                state.cursor,
                Some(Value::Int(expected_cursor)),
                "stopped after {stop_after} statement(s)"
            );
            // Loading again (the pending rows now folded and cleared) reads the same.
            assert_eq!(next.load(&key).unwrap().fingerprint(), state.fingerprint());
        }
    }
}
