//! The diff: rows from the warehouse against the last committed state, giving the plan of
//! inserts, updates and deletes. Duplicate keys are found here, before anything is sent.

use std::collections::{HashMap, HashSet};

use activate_manifest::{OnDelete, Operation, SyncMode};
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::state::SyncState;
use crate::state::snapshot::EntryPos;
use crate::sync::{FieldSource, SyncDefinition};
use crate::value::{self, Value};
use crate::warehouse::RowBatch;

pub use keys::KeyList;
use new_keys::NewKeys;
pub use records::Records;
use row_hash::{HashedName, RowHashBytes};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The key was never delivered by this sync.
    Insert,
    /// The key was delivered and its mapped row changed (or a full refresh resends it).
    Update,
}

/// One planned upsert; its key, record and cursor are at the same position in the plan's
/// `upsert_keys`, `upsert_records` and `upsert_cursors` (16 bytes here instead of a heap key
/// and an inline cursor value: a first sync plans every row).
#[derive(Debug, Clone, Copy)]
pub struct PlannedRow {
    pub kind: ChangeKind,
    pub row_hash: u64,
}

#[derive(Debug, Clone)]
pub struct Rejection {
    pub key: String,
    pub reason: String,
    /// The row's cursor value: the committed cursor never passes a rejected row.
    pub cursor: Option<Value>,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub upserts: Vec<PlannedRow>,
    /// The key of each upsert (JSON array of the key values), aligned with `upserts`.
    pub upsert_keys: KeyList,
    /// The record of each upsert, aligned with `upserts`, encoded (see [`records`]): decoded
    /// a batch at a time when sent.
    pub upsert_records: Records,
    /// The cursor value of each upsert (one-value records), aligned with `upserts`; empty
    /// when the sync has no cursor.
    pub upsert_cursors: Records,
    /// Mirror: keys that left the model, to delete (`on_delete: delete`) or clear (`clear`).
    pub removals: KeyList,
    /// The record of each removal (key fields, or the key with nulls for `clear`), aligned
    /// with `removals`.
    pub removal_records: Records,
    /// Mirror with `on_delete: ignore`: keys that left the model, forgotten without a request.
    pub forgotten: Vec<Box<str>>,
    pub rows_read: u64,
    pub unchanged: u64,
    /// Rows not sent by rule (`operation: insert` never touches a delivered key).
    pub skipped_rows: u64,
    /// Rows rejected before sending (NULL key).
    pub rejected: Vec<Rejection>,
    pub duplicate_keys: Vec<String>,
    pub duplicate_count: u64,
    pub max_cursor: Option<Value>,
    /// How many keys the destination holds from this sync (the state's size).
    pub delivered_before: u64,
    /// Order-independent hash of every row read (its key and mapped values, or its key and
    /// why it was rejected): equal fingerprints mean the model returned the same rows.
    pub data_fingerprint: u128,
}

/// One row's part of [`Plan::data_fingerprint`]: the hash of its parts, each followed by a
/// zero byte (`buffer` is reused).
fn row_fingerprint(buffer: &mut Vec<u8>, parts: &[&[u8]]) -> u128 {
    buffer.clear();
    for part in parts {
        buffer.extend_from_slice(part);
        buffer.push(0);
    }
    xxh3_128(buffer)
}

impl Plan {
    /// The cursor value of upsert `index`, when the sync has a cursor.
    pub fn upsert_cursor(&self, index: usize) -> Option<Value> {
        if self.upsert_cursors.is_empty() {
            return None;
        }
        self.upsert_cursors.get(index).values.into_iter().next()
    }

    pub fn inserts(&self) -> u64 {
        self.upserts
            .iter()
            .filter(|r| r.kind == ChangeKind::Insert)
            .count() as u64
    }
    pub fn updates(&self) -> u64 {
        self.upserts
            .iter()
            .filter(|r| r.kind == ChangeKind::Update)
            .count() as u64
    }
}

/// Builds a plan batch by batch, so the rows stream through and only changes are kept.
///
/// An unchanged row costs no allocation: its key is written into a reused buffer, its mapped
/// values are hashed where they lie in the row, and its key is marked seen by one bit per state
/// entry; a `Record` is built only for a change. The row's key is first compared with the
/// state entry after the last one found, so a model read in the order its keys were first
/// delivered walks the state in order, without a hash or a table probe per row. A key not in the state is
/// always planned (an insert); [`NewKeys`] catches one read twice (by the last one, while they
/// come in order, else by a table of positions in the plan's `upsert_keys`).
pub struct PlanBuilder<'a> {
    def: &'a SyncDefinition,
    state: &'a SyncState,
    send_all: bool,
    /// One bit per state entry (by [`EntryPos::index`]): that key was read.
    seen_in_state: Vec<u64>,
    /// The state entry after the last one read: where the next row's key is looked for first
    /// (a model read in the order its keys were first delivered walks the state in order).
    expected: Option<EntryPos>,
    /// The keys read that are not in the state, to catch a repeated one.
    new_keys: NewKeys,
    /// The key of the row being added (reused).
    key: String,
    /// The bytes a row's hash is computed over (reused).
    hash_input: RowHashBytes,
    /// The bytes a row's fingerprint is computed over (reused).
    fingerprint_input: Vec<u8>,
    templates: Option<minijinja::Environment<'static>>,
    /// Field positions sorted by field name, each with the row hash's bytes for its name (the
    /// name and a zero byte): the row hash does not depend on mapping order.
    hash_fields: Vec<(FieldAt, HashedName)>,
    /// The key's fields, in key order.
    key_fields: Vec<FieldAt>,
    /// Reject rows holding NaN or ±Infinity (destinations without a form for them).
    refuse_non_finite: bool,
    /// Compute [`Plan::data_fingerprint`] (for `plan --out` and `run --plan`).
    fingerprint_rows: bool,
    /// For destinations that match keys without case: every key seen, by its lower-cased form.
    keys_by_folded_case: Option<HashMap<String, Vec<String>>>,
    plan: Plan,
}

/// At most this many duplicate keys are named in the error.
const DUPLICATES_SHOWN: usize = 5;

impl<'a> PlanBuilder<'a> {
    /// `full_refresh`: send every row whatever the state says (`--full-refresh` or the mode).
    pub fn new(def: &'a SyncDefinition, state: &'a SyncState, full_refresh: bool) -> Self {
        let templates = def
            .field_sources
            .iter()
            .any(|s| matches!(s, FieldSource::Template(_)))
            .then(|| {
                let mut env = minijinja::Environment::new();
                for (i, s) in def.field_sources.iter().enumerate() {
                    if let FieldSource::Template(t) = s {
                        let _ = env.add_template_owned(format!("f{i}"), t.clone());
                    }
                }
                env
            });
        let mut order: Vec<usize> = (0..def.fields.len()).collect();
        order.sort_by(|a, b| def.fields[*a].cmp(&def.fields[*b]));
        let hash_fields = order
            .into_iter()
            .map(|i| (FieldAt::of(def, i), HashedName::new(&def.fields[i])))
            .collect();
        Self {
            def,
            state,
            hash_fields,
            key_fields: def
                .key_positions
                .iter()
                .map(|&p| FieldAt::of(def, p))
                .collect(),
            send_all: full_refresh || def.spec.sync_mode == SyncMode::FullRefresh,
            seen_in_state: vec![0; state.snapshot.index_bound().div_ceil(64)],
            expected: state.snapshot.first_entry(),
            new_keys: NewKeys::default(),
            key: String::new(),
            hash_input: RowHashBytes::default(),
            fingerprint_input: Vec::new(),
            templates,
            refuse_non_finite: false,
            fingerprint_rows: true,
            keys_by_folded_case: None,
            plan: Plan {
                delivered_before: state.len() as u64,
                ..Plan::default()
            },
        }
    }

    /// Rejects rows holding NaN or ±Infinity, for a destination that cannot carry them
    /// (see [`crate::destination::Destination::carries_non_finite_floats`]).
    pub fn refuse_non_finite_floats(mut self, refuse: bool) -> Self {
        self.refuse_non_finite = refuse;
        self
    }

    /// Rejects every row whose key equals another row's key but for letter case, for a
    /// destination that matches keys without case (they would overwrite one record).
    pub fn refuse_keys_differing_only_in_case(mut self, refuse: bool) -> Self {
        self.keys_by_folded_case = refuse.then(HashMap::new);
        self
    }

    /// Renders the row's template fields (the returned values, by field position; empty when
    /// the mapping has no template) and checks every field; a template that fails to render,
    /// or a NaN/±Infinity the destination cannot carry, rejects the row.
    fn check_fields(&self, row: &[Value]) -> Result<Vec<Value>, String> {
        let mut rendered = Vec::new();
        if self.templates.is_none() && !self.refuse_non_finite {
            return Ok(rendered);
        }
        if self.templates.is_some() {
            rendered = vec![Value::Null; self.def.field_sources.len()];
        }
        for i in 0..self.def.field_sources.len() {
            if let FieldSource::Template(_) = self.def.field_sources[i] {
                rendered[i] = self.render(i, row)?;
            }
            if self.refuse_non_finite
                && let Value::Float(f) = *field(self.def, i, row, &rendered)
                && !f.is_finite()
            {
                return Err(format!(
                    "`{}` is {f}, which this destination cannot carry (JSON has no NaN or Infinity); \
                     replace it in the model, e.g. with NULL (`case when isfinite(x) then x end`) or a string",
                    self.def.fields[i]
                ));
            }
        }
        Ok(rendered)
    }

    fn render(&self, field: usize, row: &[Value]) -> Result<Value, String> {
        let failed = |e: String| {
            format!(
                "the mapping template for `{}` failed: {e}",
                self.def.fields[field]
            )
        };
        let env = self
            .templates
            .as_ref()
            .ok_or_else(|| failed("not compiled".into()))?;
        let template = env
            .get_template(&format!("f{field}"))
            .map_err(|e| failed(e.to_string()))?;
        // Decimals render with their exact digits.
        let ctx: std::collections::BTreeMap<&str, serde_json::Value> = self
            .def
            .read_columns
            .iter()
            .zip(row)
            .map(|(c, v)| {
                let json = match v {
                    Value::Number(digits) => serde_json::Value::String(digits.clone()),
                    other => serde_json::from_str(&other.to_json_string())
                        .unwrap_or(serde_json::Value::Null),
                };
                (c.name.as_str(), json)
            })
            .collect();
        template
            .render(ctx)
            .map(Value::Text)
            .map_err(|e| failed(e.to_string()))
    }

    /// Whether to compute [`Plan::data_fingerprint`] (one more hash a row), which only a
    /// recorded plan or a check against one needs. On by default.
    pub fn fingerprint_rows(mut self, fingerprint: bool) -> Self {
        self.fingerprint_rows = fingerprint;
        self
    }

    fn fingerprint(&mut self, parts: &[&[u8]]) {
        if !self.fingerprint_rows {
            return;
        }
        self.plan.data_fingerprint = self
            .plan
            .data_fingerprint
            .wrapping_add(row_fingerprint(&mut self.fingerprint_input, parts));
    }

    pub fn add_batch(&mut self, rows: RowBatch) {
        self.add_rows(&rows);
    }

    /// Adds rows read from the model (in read order), borrowing them.
    pub fn add_rows(&mut self, rows: &[Vec<Value>]) {
        for row in rows {
            self.add_row(row);
        }
    }

    fn add_row(&mut self, row: &[Value]) {
        self.plan.rows_read += 1;
        let rendered = match self.check_fields(row) {
            Ok(r) => r,
            Err(reason) => {
                let key: Vec<String> = self
                    .def
                    .key_columns
                    .iter()
                    .map(|&c| row[c].to_json_string())
                    .collect();
                let key = format!("[{}]", key.join(","));
                self.fingerprint(&[key.as_bytes(), reason.as_bytes()]);
                self.plan.rejected.push(Rejection {
                    key,
                    reason,
                    cursor: self.def.cursor_column.map(|c| row[c].clone()),
                });
                return;
            }
        };
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        key.push('[');
        let mut null_key = false;
        for (n, at) in self.key_fields.iter().enumerate() {
            if n > 0 {
                key.push(',');
            }
            match at.value(self.def, row, &rendered) {
                // The most common key, written without a call (a key is written a row).
                Value::Int(i) => value::push_int(&mut key, *i),
                v => {
                    null_key |= v.is_null();
                    v.write_json(&mut key);
                }
            }
        }
        key.push(']');
        if null_key {
            self.fingerprint(&[key.as_bytes(), b"null key"]);
            self.plan.rejected.push(Rejection {
                key: key.clone(),
                reason: format!(
                    "primary key ({}) is NULL",
                    self.def.spec.primary_key.join(", ")
                ),
                cursor: self.def.cursor_column.map(|c| row[c].clone()),
            });
        } else {
            self.add_keyed_row(row, &rendered, &key);
        }
        self.key = key;
    }

    /// A row with a key that is not NULL.
    fn add_keyed_row(&mut self, row: &[Value], rendered: &[Value], key: &str) {
        let def = self.def;
        let state = self.state;
        let in_state = state.snapshot.locate(key, self.expected);
        let first_time = match in_state {
            Some(found) => {
                self.expected = state.snapshot.live_after(found);
                let at = found.pos.index();
                let bit = 1u64 << (at % 64);
                let first = self.seen_in_state[at / 64] & bit == 0;
                self.seen_in_state[at / 64] |= bit;
                first
            }
            None => self
                .new_keys
                .is_first(key, &self.plan.upsert_keys, &self.plan.upserts),
        };
        if !first_time {
            self.plan.duplicate_count += 1;
            if self.plan.duplicate_keys.len() < DUPLICATES_SHOWN
                && !self.plan.duplicate_keys.iter().any(|k| k == key)
            {
                self.plan.duplicate_keys.push(key.to_owned());
            }
            return;
        }
        if let Some(folded) = &mut self.keys_by_folded_case {
            folded
                .entry(key.to_lowercase())
                .or_default()
                .push(key.to_owned());
        }
        let cursor = def.cursor_column.map(|c| &row[c]);
        if let Some(c) = cursor
            && !c.is_null()
            && self
                .plan
                .max_cursor
                .as_ref()
                .is_none_or(|m| c.cursor_cmp(m).is_gt())
        {
            self.plan.max_cursor = Some(c.clone());
        }
        // The row hash: each field's name, a zero byte and its value's hash encoding, in field
        // name order.
        self.hash_input.clear();
        for (at, name) in &self.hash_fields {
            self.hash_input.name(name);
            self.hash_input.value(at.value(def, row, rendered));
        }
        let row_hash = xxh3_64(self.hash_input.as_bytes());
        self.fingerprint(&[key.as_bytes(), &row_hash.to_le_bytes()]);
        let kind = match in_state {
            None => ChangeKind::Insert,
            Some(found) if found.row_hash != row_hash || self.send_all => ChangeKind::Update,
            Some(_) => {
                self.plan.unchanged += 1;
                return;
            }
        };
        if kind == ChangeKind::Update && def.spec.operation == Operation::Insert {
            self.plan.skipped_rows += 1;
            return;
        }
        self.plan
            .upsert_records
            .push((0..def.field_sources.len()).map(|i| field(def, i, row, rendered)));
        if in_state.is_none() {
            self.new_keys.planned(self.plan.upsert_keys.len());
        }
        self.plan.upsert_keys.push(key);
        if let Some(c) = cursor {
            self.plan.upsert_cursors.push([c]);
        }
        self.plan.upserts.push(PlannedRow { kind, row_hash });
    }

    /// Plans the removal of a delivered key (JSON array of the key values) that left the
    /// model, as `on_delete` says: a delete (the key fields), a clear (the key with every
    /// other field NULL), or, for `ignore`, forgetting it without a request.
    fn push_removal(&mut self, key: Box<str>) {
        let on_delete = self.def.spec.on_delete;
        if on_delete == OnDelete::Ignore {
            self.plan.forgotten.push(key);
            return;
        }
        let key_values: Vec<Value> = serde_json::from_str::<Vec<serde_json::Value>>(&key)
            .unwrap_or_default()
            .iter()
            .map(value::from_json)
            .collect();
        if on_delete == OnDelete::Delete {
            self.plan.removal_records.push(&key_values);
        } else {
            let mut values = vec![Value::Null; self.def.fields.len()];
            for (n, &p) in self.def.key_positions.iter().enumerate() {
                values[p] = key_values.get(n).cloned().unwrap_or(Value::Null);
            }
            self.plan.removal_records.push(&values);
        }
        self.plan.removals.push(&key);
    }

    pub fn finish(mut self) -> Plan {
        self.reject_case_collisions();
        if self.def.spec.sync_mode == SyncMode::Mirror && self.plan.duplicate_count == 0 {
            let state = self.state;
            let seen = std::mem::take(&mut self.seen_in_state);
            let was_seen = |pos: EntryPos| {
                let at = pos.index();
                seen[at / 64] & (1u64 << (at % 64)) != 0
            };
            let mut gone: Vec<&str> = state
                .snapshot
                .positions()
                .filter(|pos| !was_seen(*pos))
                .map(|pos| state.snapshot.key_at(pos))
                .collect();
            if !gone.is_empty() {
                // A key written twice in a hand-edited snapshot file has two entries, and a
                // read marks one of them: a key seen at any entry has not left the model.
                let unseen: HashSet<&str> = gone.iter().copied().collect();
                let still_there: HashSet<&str> = state
                    .snapshot
                    .entries()
                    .filter(|(pos, key)| was_seen(*pos) && unseen.contains(key))
                    .map(|(_, key)| key)
                    .collect();
                gone.retain(|key| !still_there.contains(key));
            }
            gone.sort_unstable();
            gone.dedup();
            for key in gone {
                self.push_removal(key.into());
            }
        }
        self.plan
    }
}

/// Where a field's value is for a row, resolved once per sync: the column read (most fields,
/// without matching the field's source per row), or the field itself (a literal or a
/// rendered template, through [`field`]).
#[derive(Clone, Copy)]
enum FieldAt {
    Column(usize),
    Field(usize),
}

impl FieldAt {
    fn of(def: &SyncDefinition, field: usize) -> Self {
        match def.field_sources[field] {
            FieldSource::Column(c) => FieldAt::Column(c),
            _ => FieldAt::Field(field),
        }
    }

    fn value<'r>(
        self,
        def: &'r SyncDefinition,
        row: &'r [Value],
        rendered: &'r [Value],
    ) -> &'r Value {
        match self {
            FieldAt::Column(c) => &row[c],
            FieldAt::Field(i) => field(def, i, row, rendered),
        }
    }
}

/// A field's value for a row: its column, its literal, or its rendered template.
fn field<'r>(
    def: &'r SyncDefinition,
    i: usize,
    row: &'r [Value],
    rendered: &'r [Value],
) -> &'r Value {
    match &def.field_sources[i] {
        FieldSource::Column(c) => &row[*c],
        FieldSource::Literal(v) => v,
        FieldSource::Template(_) => &rendered[i],
    }
}

impl PlanBuilder<'_> {
    /// Moves every upsert whose key collides with another key but for case to the rejected
    /// rows (all of a group, so which row wins never depends on read order).
    fn reject_case_collisions(&mut self) {
        let Some(folded) = self.keys_by_folded_case.take() else {
            return;
        };
        let mut colliding: HashMap<&str, &[String]> = HashMap::new();
        for group in folded.values().filter(|g| g.len() > 1) {
            for key in group {
                colliding.insert(key.as_str(), group.as_slice());
            }
        }
        if colliding.is_empty() {
            return;
        }
        let reason = |key: &str, group: &[String]| {
            let others: Vec<&str> = group
                .iter()
                .map(String::as_str)
                .filter(|k| *k != key)
                .collect();
            format!(
                "primary key {key} differs from {} only in letter case, and this destination matches keys without case: the rows would overwrite one record; make the keys distinct (or lower-case them) in the model",
                others.join(", ")
            )
        };
        let upserts = std::mem::take(&mut self.plan.upserts);
        let mut kept = Vec::with_capacity(upserts.len());
        let mut rejected_keys: HashSet<&str> = HashSet::new();
        let mut keys = std::mem::take(&mut self.plan.upsert_keys);
        for (i, row) in upserts.into_iter().enumerate() {
            let key = keys.get(i);
            kept.push(!colliding.contains_key(key));
            match colliding.get(key) {
                Some(group) => {
                    rejected_keys.insert(group.iter().find(|k| **k == key).map_or("", |k| k));
                    self.plan.rejected.push(Rejection {
                        reason: reason(key, group),
                        key: key.to_owned(),
                        cursor: self.plan.upsert_cursor(i),
                    });
                }
                None => self.plan.upserts.push(row),
            }
        }
        keys.retain_indices(|i| kept[i]);
        self.plan.upsert_keys = keys;
        self.plan.upsert_records.retain_indices(|i| kept[i]);
        if !self.plan.upsert_cursors.is_empty() {
            self.plan.upsert_cursors.retain_indices(|i| kept[i]);
        }
        // Colliding keys already delivered and unchanged are reported too.
        for (key, group) in &colliding {
            if !rejected_keys.contains(key) {
                self.plan.unchanged = self.plan.unchanged.saturating_sub(1);
                self.plan.rejected.push(Rejection {
                    key: (*key).to_owned(),
                    reason: reason(key, group),
                    cursor: None,
                });
            }
        }
    }
}

mod keys;
mod new_keys;
pub mod records;
mod row_hash;
#[cfg(test)]
mod tests;

pub mod warehouse_diff;
pub use warehouse_diff::plan_in_warehouse;
