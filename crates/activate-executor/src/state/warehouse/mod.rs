//! The warehouse state store (`state: {type: warehouse, schema: ...}`): the state lives in
//! tables of the warehouse the models live in, and the diff runs there as SQL, so only new,
//! changed and removed rows leave it.
//!
//! ```text
//! <schema>.activate_sync_state  one row per state key: cursor, mapping hash, committed_at
//! <schema>.activate_snapshot    one row per delivered key: wh_key, key_json, source_hash, row_hash
//! <schema>.activate_pending     confirmed changes not yet folded into the snapshot (the journal)
//! <schema>.activate_history     one row per sync per run
//! ```
//! Each confirmed batch is inserted into `activate_pending` at once (its own statement);
//! the commit folds the pending rows into the snapshot and sets the cursor in one
//! transaction; pending rows left by a killed run are folded in when the state is next
//! loaded. The per-warehouse parts (connections, locks, reading rows) are a
//! [`StateBackend`], implemented next to each warehouse.

pub mod journal_keys;
pub mod sql;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::error::StateError;
use crate::state::{Confirmed, StateKey, StateStore, SyncState, cursor_from_json, cursor_to_json};
use crate::value::Value;
use crate::warehouse::{ColumnDesc, RowBatch};

pub use sql::{Dialect, PendingRow, SyncStateRow, Tables};

/// Rows of a query whose every column was cast to text.
pub type TextRows = Vec<Vec<Option<String>>>;

/// The rows to compare in the engine: `from` is a subquery holding the model's `columns`
/// and the [`sql::CANDIDATE_EXTRAS`] columns.
pub struct CandidateRead<'a> {
    pub from: &'a str,
    pub columns: &'a [ColumnDesc],
    pub batch_rows: usize,
}

impl CandidateRead<'_> {
    /// `SELECT <the model's columns, quoted by quote>, <the extras> FROM (<from>)`: the
    /// extras unquoted, as the subquery named them.
    pub fn select_sql(&self, quote: fn(&str) -> String) -> String {
        let select: Vec<String> = self
            .columns
            .iter()
            .map(|c| quote(&c.name))
            .chain(sql::CANDIDATE_EXTRAS.iter().map(|e| (*e).to_owned()))
            .collect();
        format!(
            "SELECT {} FROM ({}) AS activate_c",
            select.join(", "),
            self.from
        )
    }
}

/// Who holds a lock row: this process, since when, and a run id of its own.
pub fn lock_holder() -> String {
    format!(
        "process {} since {}, run {}",
        std::process::id(),
        chrono::Utc::now().to_rfc3339(),
        uuid::Uuid::new_v4()
    )
}

/// Gives a lock row back with `release`, on a thread of its own with a runtime of its own
/// (a backend is dropped on any thread, inside or outside the async runtime); a failure is a
/// warning naming `clear`, the statement that clears the lock by hand.
pub fn give_back_lock_row(
    clear: String,
    release: impl FnOnce() -> Result<(), String> + Send + 'static,
) {
    let released = std::thread::spawn(move || -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let _entered = runtime.enter();
        release()
    });
    if let Ok(Err(message)) = released.join() {
        eprintln!(
            "warning: could not give back the warehouse state lock: {message}\n  hint: clear it with `{clear}` once no run is going on"
        );
    }
}

/// The refusal of a run whose lock row another run holds: who holds it, and the statement
/// that clears a lock left by a killed run. `container` is `schema` or `dataset`.
pub fn lock_row_held(
    container: &str,
    schema: &str,
    location: &str,
    held_by: &str,
    clear: &str,
) -> StateError {
    StateError::Locked(format!(
        "another dbt-activate run holds the warehouse state lock of {container} `{schema}` in {location} (held by {held_by}); wait for it to finish, or give this run another `state.schema` in activate.yml\n  hint: if no run is going on (a run killed before it could give the lock back), clear it with `{clear}`"
    ))
}

/// Pending rows to insert, with what they share.
pub struct PendingInsert<'a> {
    pub tables: &'a Tables,
    pub schema: &'a str,
    pub state_id: &'a str,
    pub run_id: &'a str,
    pub first_seq: i64,
    pub rows: &'a [PendingRow],
}

/// One connection to the warehouse, for the state.
pub trait StateSession: Send {
    /// Inserts pending rows in one transaction (by default as `INSERT ... VALUES`).
    fn insert_pending(&mut self, insert: &PendingInsert<'_>) -> Result<(), String> {
        let statements = sql::insert_pending(
            insert.tables,
            insert.state_id,
            insert.run_id,
            insert.first_seq,
            insert.rows,
            self.rows_per_insert(insert.rows),
        );
        self.transaction(&statements)
    }
    /// How many of `rows` one `INSERT ... VALUES` of the journal takes.
    fn rows_per_insert(&self, rows: &[PendingRow]) -> usize {
        let _ = rows;
        ROWS_PER_INSERT
    }
    /// Runs the statements in one transaction: all or nothing.
    fn transaction(&mut self, statements: &[String]) -> Result<(), String>;
    /// Creates the state tables (`CREATE ... IF NOT EXISTS` statements): by default in one
    /// transaction.
    fn create_tables(&mut self, statements: &[String]) -> Result<(), String> {
        self.transaction(statements)
    }
    /// A query whose columns are all text.
    fn query_text(&mut self, sql: &str) -> Result<TextRows, String>;
    /// In one read-only snapshot: the text queries, then the candidate rows streamed
    /// (the model's columns converted exactly as the warehouse's own read converts them,
    /// then the extras as text).
    fn diff(
        &mut self,
        queries: &[&str],
        candidates: &CandidateRead<'_>,
        on_batch: &mut dyn FnMut(RowBatch) -> Result<(), String>,
    ) -> Result<Vec<TextRows>, String>;
}

/// A warehouse that can keep state: opened sessions, with the run's lock held.
pub trait StateBackend: Send + Sync {
    fn dialect(&self) -> Dialect;
    /// Where the state is, for messages (no secrets).
    fn location(&self) -> String;
    fn session(&self) -> Result<Box<dyn StateSession + '_>, String>;
    /// The name to write in SQL for a column of `relation` the sync knows as `column` (as
    /// [`crate::warehouse::Warehouse::columns`] showed it). Snowflake shows folded upper-case
    /// names lower-cased; the others use the name as shown.
    fn column_in_sql(&self, relation: &str, column: &str) -> String {
        let _ = relation;
        column.to_owned()
    }
    /// Whether the table `name` is in `schema` (before a first run it is not).
    fn table_exists(&self, schema: &str, name: &str) -> Result<bool, String> {
        let d = self.dialect();
        let sql = format!(
            "SELECT CAST(count(*) AS {}) FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
            d.text_type(),
            d.text(schema),
            d.text(name)
        );
        Ok(first_u64(&self.session()?.query_text(&sql)?) > 0)
    }
}

/// What the engine reads of one sync's state before its diff.
struct Prepared {
    state_id: String,
    cursor: Option<Value>,
    mapping_hash: Option<String>,
    committed_at: Option<String>,
    pending_left: u64,
}

/// What the journal needs to know of the keys a sync may confirm: the warehouse's form of
/// each key and the source hash of its row.
#[derive(Default)]
pub struct SyncKeys {
    pub by_key: journal_keys::JournalKeys,
    pub mapping_hash: String,
    /// Candidates whose source changed but whose record did not: their new source hash is
    /// written at commit, so they are not read again.
    pub refresh: Vec<PendingRow>,
}

/// The answers of one sync's diff.
pub struct DiffAnswers {
    pub rows_read: u64,
    pub delivered: u64,
    pub duplicate_keys: Vec<String>,
    pub duplicate_rows: u64,
    /// `(key_json, wh_key)`, sorted by key_json.
    pub removals: Vec<(String, String)>,
    pub cursor: Option<Value>,
    /// Changes with every commit: equal values mean the same committed state.
    pub state_version: u128,
}

/// A model row the SQL could not rule out, with its key in the warehouse's form, its source
/// hash and what the snapshot holds for it.
pub struct Candidate {
    pub row: Vec<Value>,
    pub wh_key: String,
    pub source_hash: String,
    pub previous: Option<(Box<str>, u64)>,
}

/// A sync's diff, prepared: its SQL, and what the state held before it.
pub struct PreparedDiff {
    /// How many keys the snapshot holds (`delivered_before`): with none, no candidate has a
    /// previous entry.
    pub delivered: u64,
    prepared: Prepared,
    sql: sql::DiffSql,
    columns: Vec<ColumnDesc>,
    batch_rows: usize,
}

impl PreparedDiff {
    /// The committed cursor.
    pub fn cursor(&self) -> Option<&Value> {
        self.prepared.cursor.as_ref()
    }
}

/// What one sync's diff needs.
pub struct DiffRequest<'a> {
    pub relation: &'a str,
    pub key_columns: &'a [&'a str],
    pub columns: &'a [ColumnDesc],
    pub cursor_column: Option<&'a str>,
    pub mapping_hash: &'a str,
    pub full_refresh: bool,
    pub mirror: bool,
    pub case_collisions: bool,
    pub batch_rows: usize,
}

pub struct WarehouseStateStore {
    backend: Box<dyn StateBackend>,
    schema: String,
    tables: Tables,
    run_id: String,
    seq: AtomicI64,
    keys: Mutex<HashMap<String, SyncKeys>>,
}

const FORMAT_VERSION: i64 = 1;
/// Rows per `INSERT` statement of the journal.
const ROWS_PER_INSERT: usize = 1000;

pub(crate) fn state_id(key: &StateKey) -> String {
    let text = format!("{}\u{0}{}\u{0}{}", key.target, key.sync, key.destination);
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

impl WarehouseStateStore {
    /// A store over `backend` (which holds the run's lock); `create` makes the tables if
    /// they are missing (commands that only read pass `false`).
    pub fn open(
        backend: Box<dyn StateBackend>,
        schema: &str,
        create: bool,
    ) -> Result<Self, StateError> {
        let store = Self {
            tables: Tables::in_schema(backend.dialect(), schema),
            schema: schema.to_owned(),
            backend,
            run_id: uuid::Uuid::new_v4().to_string(),
            seq: AtomicI64::new(0),
            keys: Mutex::new(HashMap::new()),
        };
        if create {
            let statements = store.tables.create(schema);
            store.with_session("create the state tables", |s| s.create_tables(&statements))?;
        }
        Ok(store)
    }

    pub fn dialect(&self) -> Dialect {
        self.backend.dialect()
    }

    fn fail(&self, what: &str, message: String) -> StateError {
        let schema = &self.schema;
        let grants = match self.backend.dialect() {
            Dialect::BigQuery => format!(
                "the profile's credentials need bigquery.datasets.create on the project (or an existing dataset `{schema}`) and roles/bigquery.dataEditor on it"
            ),
            _ => format!(
                "the profile's user needs CREATE on the database (or the schema `{schema}`) and USAGE, SELECT, INSERT, DELETE on it"
            ),
        };
        StateError::Warehouse(crate::secrets::redact(&format!(
            "warehouse state in schema `{schema}` of {} ({}): could not {what}: {message}\n  hint: {grants}; or use `state: {{type: local}}` in activate.yml",
            self.backend.location(),
            self.backend.dialect().name(),
        )))
    }

    fn with_session<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut dyn StateSession) -> Result<T, String>,
    ) -> Result<T, StateError> {
        let mut session = self.backend.session().map_err(|e| self.fail(what, e))?;
        f(session.as_mut()).map_err(|e| self.fail(what, e))
    }

    /// Folds pending rows a killed run left into the snapshot, then reads the sync's row.
    fn prepare(&self, key: &StateKey) -> Result<Prepared, StateError> {
        let id = state_id(key);
        let t = &self.tables;
        let d = self.dialect();
        let left = self.with_session("read the pending changes", |s| {
            s.query_text(&format!(
                "SELECT CAST(count(*) AS {}) FROM {} WHERE state_id = {}",
                d.text_type(),
                t.pending,
                d.text(&id)
            ))
        })?;
        let pending_left = first_u64(&left);
        if pending_left > 0 {
            let statements = t.apply_pending(&id);
            self.with_session("apply the pending changes of an interrupted run", |s| {
                s.transaction(&statements)
            })?;
        }
        let rows = self.with_session("read the sync state", |s| {
            s.query_text(&format!(
                "SELECT cursor_json, mapping_hash, committed_at, CAST(format AS {}) FROM {} WHERE state_id = {}",
                d.text_type(),
                t.sync_state,
                d.text(&id)
            ))
        })?;
        let row = rows.into_iter().next();
        if let Some(format) = row.as_ref().and_then(|r| r.get(3).cloned().flatten())
            && format.parse::<i64>().unwrap_or(0) > FORMAT_VERSION
        {
            return Err(StateError::Corrupt {
                path: format!("{} (schema `{}`)", t.sync_state, self.schema),
                message: format!(
                    "written in state format v{format}, this dbt-activate reads v{FORMAT_VERSION}; upgrade dbt-activate"
                ),
            });
        }
        let cell = |i: usize| row.as_ref().and_then(|r| r.get(i).cloned().flatten());
        Ok(Prepared {
            state_id: id,
            cursor: cell(0)
                .and_then(|c| serde_json::from_str(&c).ok())
                .and_then(|j: serde_json::Value| cursor_from_json(&j)),
            mapping_hash: cell(1),
            committed_at: cell(2),
            pending_left,
        })
    }

    /// Prepares one sync's diff: folds in what a killed run left pending, reads the sync's
    /// row, writes the diff's SQL and counts the keys delivered before (this run holds the
    /// lock, so the snapshot does not change until the commit).
    pub fn prepare_diff(
        &self,
        key: &StateKey,
        request: &DiffRequest<'_>,
    ) -> Result<PreparedDiff, StateError> {
        let prepared = self.prepare(key)?;
        let in_sql = |name: &str| self.backend.column_in_sql(request.relation, name);
        let columns: Vec<ColumnDesc> = request
            .columns
            .iter()
            .map(|c| ColumnDesc {
                name: in_sql(&c.name),
                data_type: c.data_type.clone(),
            })
            .collect();
        let read_names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let key_owned: Vec<String> = request.key_columns.iter().map(|c| in_sql(c)).collect();
        let key_columns: Vec<&str> = key_owned.iter().map(String::as_str).collect();
        let cursor_column = request.cursor_column.map(in_sql);
        let cursor = match (cursor_column.as_deref(), &prepared.cursor) {
            (Some(column), Some(value)) if !request.full_refresh => Some((column, value)),
            _ => None,
        };
        let input = sql::DiffInput {
            dialect: self.dialect(),
            tables: &self.tables,
            state_id: &prepared.state_id,
            relation: request.relation,
            key_columns: &key_columns,
            read_columns: &read_names,
            cursor_at_least: cursor,
            all_rows: request.full_refresh
                || prepared.mapping_hash.as_deref() != Some(request.mapping_hash),
            mirror: request.mirror,
            case_collisions: request.case_collisions,
        };
        let sql = input.sql();
        let delivered =
            self.with_session("count the delivered keys", |s| s.query_text(&sql.delivered))?;
        Ok(PreparedDiff {
            delivered: first_u64(&delivered),
            prepared,
            sql,
            columns,
            batch_rows: request.batch_rows,
        })
    }

    /// Runs a prepared diff in the warehouse; `on_candidates` receives, batch by batch, each
    /// row the SQL could not rule out (new, changed, NULL key, or every row when the mapping
    /// changed).
    pub fn run_diff(
        &self,
        diff: PreparedDiff,
        on_candidates: &mut dyn FnMut(Vec<Candidate>) -> Result<(), String>,
    ) -> Result<DiffAnswers, StateError> {
        let PreparedDiff {
            prepared,
            sql,
            columns,
            batch_rows,
            delivered,
        } = diff;
        let mut queries = vec![
            sql.count.as_str(),
            sql.duplicate_keys.as_str(),
            sql.duplicate_rows.as_str(),
        ];
        if let Some(removals) = &sql.removals {
            queries.push(removals);
        }
        let read = CandidateRead {
            from: &sql.candidates,
            columns: &columns,
            batch_rows,
        };
        let n = columns.len();
        let mut bad_row = None;
        let answers = self.with_session("compute the diff", |s| {
            s.diff(&queries, &read, &mut |batch| {
                let mut candidates = Vec::with_capacity(batch.len());
                for mut row in batch {
                    if row.len() != n + sql::CANDIDATE_EXTRAS.len() {
                        bad_row = Some(row.len());
                        continue;
                    }
                    let extras: Vec<Option<String>> =
                        row.drain(n..).map(Value::into_text).collect();
                    let mut extras = extras.into_iter();
                    let wh_key = extras.next().flatten().unwrap_or_default();
                    let source_hash = extras.next().flatten().unwrap_or_default();
                    let prev_key = extras.next().flatten();
                    let prev_hash = extras.next().flatten().and_then(|h| h.parse::<i64>().ok());
                    candidates.push(Candidate {
                        row,
                        wh_key,
                        source_hash,
                        previous: prev_key.zip(prev_hash).map(|(k, h)| (k.into(), h as u64)),
                    });
                }
                on_candidates(candidates)
            })
        })?;
        if let Some(len) = bad_row {
            return Err(self.fail(
                "compute the diff",
                format!("a candidate row had {len} columns, expected {}", n + 4),
            ));
        }
        let text_at = |i: usize| answers.get(i).cloned().unwrap_or_default();
        let rows_read = first_u64(&text_at(0));
        let state_version = xxhash_rust::xxh3::xxh3_128(
            format!(
                "{}|{}|{}|{delivered}",
                prepared.committed_at.as_deref().unwrap_or(""),
                prepared.pending_left,
                prepared
                    .cursor
                    .as_ref()
                    .map(|c| cursor_to_json(c).to_string())
                    .unwrap_or_default()
            )
            .as_bytes(),
        );
        Ok(DiffAnswers {
            rows_read,
            delivered,
            duplicate_keys: text_at(1)
                .into_iter()
                .filter_map(|r| r.into_iter().next().flatten())
                .collect(),
            duplicate_rows: first_u64(&text_at(2)),
            removals: text_at(3)
                .into_iter()
                .filter_map(|r| {
                    let mut r = r.into_iter();
                    Some((r.next().flatten()?, r.next().flatten()?))
                })
                .collect(),
            cursor: prepared.cursor,
            state_version,
        })
    }

    /// Remembers, for the journal, the warehouse form and source hash of the keys a sync may
    /// confirm.
    pub fn remember(&self, key: &StateKey, keys: SyncKeys) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(state_id(key), keys);
    }

    fn insert_pending(&self, id: &str, rows: &[PendingRow]) -> Result<(), StateError> {
        if rows.is_empty() {
            return Ok(());
        }
        let first = self.seq.fetch_add(rows.len() as i64, Ordering::SeqCst);
        let insert = PendingInsert {
            tables: &self.tables,
            schema: &self.schema,
            state_id: id,
            run_id: &self.run_id,
            first_seq: first,
            rows,
        };
        self.with_session("record the confirmed rows", |s| s.insert_pending(&insert))
    }
}

fn first_u64(rows: &TextRows) -> u64 {
    rows.first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl StateStore for WarehouseStateStore {
    /// The whole committed snapshot (after folding in leftover pending rows). The runner
    /// does not call it for a warehouse store: the diff reads only what changed.
    fn load(&self, key: &StateKey) -> Result<SyncState, StateError> {
        let prepared = self.prepare(key)?;
        let d = self.dialect();
        let rows = self.with_session("read the snapshot", |s| {
            s.query_text(&format!(
                "SELECT key_json, CAST(row_hash AS {}) FROM {} WHERE state_id = {}",
                d.text_type(),
                self.tables.snapshot,
                d.text(&prepared.state_id)
            ))
        })?;
        let mut state = SyncState {
            cursor: prepared.cursor,
            ..SyncState::default()
        };
        for row in rows {
            let mut row = row.into_iter();
            if let (Some(Some(key)), Some(Some(hash))) = (row.next(), row.next()) {
                state.apply(&Confirmed::Upserted {
                    key: key.into(),
                    row_hash: hash.parse::<i64>().unwrap_or(0) as u64,
                });
            }
        }
        Ok(state)
    }

    fn journal(&self, key: &StateKey, changes: &[Confirmed]) -> Result<(), StateError> {
        let id = state_id(key);
        let rows: Vec<PendingRow> = {
            let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            let known = keys.get(&id);
            let mut rows = Vec::with_capacity(changes.len());
            for change in changes {
                let (key_json, row_hash) = match change {
                    Confirmed::Upserted { key, row_hash }
                    | Confirmed::Inserted { key, row_hash } => (key, Some(*row_hash)),
                    Confirmed::Removed { key } => (key, None),
                };
                let Some((wh_key, source_hash)) = known.and_then(|k| k.by_key.get(key_json)) else {
                    return Err(self.fail(
                        "record the confirmed rows",
                        format!("key {key_json} was not part of this run's diff (internal error)"),
                    ));
                };
                rows.push(PendingRow {
                    wh_key: wh_key.to_owned(),
                    key_json: key_json.to_string(),
                    source_hash: row_hash.map(|_| source_hash.unwrap_or_default().to_owned()),
                    row_hash,
                });
            }
            rows
        };
        self.insert_pending(&id, &rows)
    }

    fn commit(&self, key: &StateKey, state: &SyncState) -> Result<(), StateError> {
        let id = state_id(key);
        let (mapping_hash, refresh) = {
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            match keys.remove(&id) {
                Some(k) => (k.mapping_hash, k.refresh),
                None => (String::new(), Vec::new()),
            }
        };
        self.insert_pending(&id, &refresh)?;
        let committed_at = chrono::Utc::now().to_rfc3339();
        let statements = self.tables.commit(&SyncStateRow {
            state_id: &id,
            target: &key.target,
            sync: &key.sync,
            destination: &key.destination,
            cursor_json: state.cursor.as_ref().map(|c| cursor_to_json(c).to_string()),
            mapping_hash: &mapping_hash,
            committed_at: &committed_at,
            format: FORMAT_VERSION,
        });
        self.with_session("commit the sync state", |s| s.transaction(&statements))
    }

    fn reset(&self, target: &str, sync: &str) -> Result<bool, StateError> {
        let t = &self.tables;
        let d = self.dialect();
        let this_sync = format!("target = {} AND sync = {}", d.text(target), d.text(sync));
        // Qualified: it is also a subquery of statements on the other tables.
        let which = format!(
            "SELECT ss.state_id FROM {} AS ss WHERE ss.target = {} AND ss.sync = {}",
            t.sync_state,
            d.text(target),
            d.text(sync)
        );
        let found = self.with_session("read the sync state", |s| s.query_text(&which))?;
        if found.is_empty() {
            return Ok(false);
        }
        // First the sync row forgets its cursor and mapping (a run after a reset stopped
        // half-way then reads and compares every row, as after a finished one); the row goes
        // last, so a reset stopped half-way is found and finished by the next.
        let statements = vec![
            d.update_where(
                &t.sync_state,
                &format!(
                    "cursor_json = CAST(NULL AS {text}), mapping_hash = CAST(NULL AS {text})",
                    text = d.text_type()
                ),
                &this_sync,
            ),
            d.delete_where(&t.snapshot, &format!("state_id IN ({which})")),
            d.delete_where(&t.pending, &format!("state_id IN ({which})")),
            d.delete_where(&t.sync_state, &this_sync),
        ];
        self.with_session("forget the sync state", |s| s.transaction(&statements))?;
        Ok(true)
    }

    fn append_history(
        &self,
        target: &str,
        records: &[serde_json::Value],
    ) -> Result<(), StateError> {
        if records.is_empty() {
            return Ok(());
        }
        let d = self.dialect();
        let mut sql = format!(
            "INSERT INTO {} (target, sync, run_id, seq, finished_at, record) VALUES ",
            self.tables.history
        );
        for (i, record) in records.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let field = |k: &str| record.get(k).and_then(|v| v.as_str()).unwrap_or("");
            let seq = self.seq.fetch_add(1, Ordering::SeqCst);
            sql.push_str(&format!(
                "({}, {}, {}, {seq}, {}, {})",
                d.text(target),
                d.text(field("name")),
                d.text(&self.run_id),
                d.text(field("finished_at")),
                d.text(&record.to_string())
            ));
        }
        self.with_session("record the run history", |s| s.transaction(&[sql]))
    }

    fn history(&self, target: &str) -> Result<Vec<serde_json::Value>, StateError> {
        let sql = format!(
            "SELECT record FROM {} WHERE target = {} ORDER BY finished_at, run_id, seq",
            self.tables.history,
            self.dialect().text(target)
        );
        let rows = match self.with_session("read the run history", |s| s.query_text(&sql)) {
            Ok(rows) => rows,
            // Tables not created yet (no run with warehouse state): no history.
            Err(_) if !self.tables_exist()? => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect())
    }

    fn in_warehouse(&self) -> Option<&WarehouseStateStore> {
        Some(self)
    }
}

impl WarehouseStateStore {
    fn tables_exist(&self) -> Result<bool, StateError> {
        self.backend
            .table_exists(&self.schema, "activate_history")
            .map_err(|e| self.fail("look for the state tables", e))
    }
}
