//! The SQL of the warehouse state: the tables, the diff, the journal and the commit. Written
//! once; what differs between warehouses is in [`Dialect`].

use crate::value::Value;
use crate::warehouse::{bigquery, quote_ident, snowflake, sql_literal};

/// What differs between the warehouses that keep state. Everything else is the same SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    DuckDb,
    Snowflake,
    /// GoogleSQL. No statement here relies on a multi-statement transaction: each change is
    /// one `INSERT` or `MERGE` (atomic on its own), ordered so that a run stopped between two
    /// of them leaves a state the next run reads correctly (see [`Tables::commit`]).
    BigQuery,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::DuckDb => "DuckDB",
            Dialect::Snowflake => "Snowflake",
            Dialect::BigQuery => "BigQuery",
        }
    }

    /// A quoted identifier: `"name"`, or `` `name` `` in GoogleSQL.
    pub fn ident(self, name: &str) -> String {
        match self {
            Dialect::BigQuery => bigquery::quote(name),
            _ => quote_ident(name),
        }
    }

    /// Text as a SQL string literal.
    pub fn text(self, value: &str) -> String {
        match self {
            Dialect::BigQuery => bigquery::string_literal(value),
            Dialect::Snowflake => snowflake::string_literal(value),
            _ => sql_literal(&Value::Text(value.to_owned())),
        }
    }

    /// A value (a cursor) as a SQL literal.
    pub fn literal(self, value: &Value) -> String {
        match self {
            Dialect::BigQuery => bigquery::literal(value),
            Dialect::Snowflake => snowflake::literal(value),
            _ => sql_literal(value),
        }
    }

    /// The type of text columns and casts to text.
    pub fn text_type(self) -> &'static str {
        match self {
            Dialect::Postgres | Dialect::Snowflake => "TEXT",
            Dialect::DuckDb => "VARCHAR",
            Dialect::BigQuery => "STRING",
        }
    }

    fn int_type(self) -> &'static str {
        match self {
            Dialect::BigQuery => "INT64",
            _ => "BIGINT",
        }
    }

    fn bool_type(self) -> &'static str {
        match self {
            Dialect::BigQuery => "BOOL",
            _ => "BOOLEAN",
        }
    }

    /// Deletes the rows of `table` that match `condition` (written over its unqualified
    /// columns). GoogleSQL: a `MERGE` that matches nothing and deletes the target rows the
    /// condition names (one atomic statement; the BigQuery emulator has no `DELETE`).
    pub fn delete_where(self, table: &str, condition: &str) -> String {
        match self {
            Dialect::BigQuery => merge_where(table, condition, "DELETE"),
            _ => format!("DELETE FROM {table} WHERE {condition}"),
        }
    }

    /// Sets columns of the rows of `table` that match `condition` (both written over its
    /// unqualified columns). GoogleSQL: a `MERGE` that matches nothing and updates the target
    /// rows the condition names.
    pub fn update_where(self, table: &str, set: &str, condition: &str) -> String {
        match self {
            Dialect::BigQuery => merge_where(table, condition, &format!("UPDATE SET {set}")),
            _ => format!("UPDATE {table} SET {set} WHERE {condition}"),
        }
    }

    /// The key of a model row as text, for joins with the snapshot: injective over the key
    /// columns' values (one column: its text; several: a JSON array or object of them).
    pub fn key_expr(self, alias: &str, columns: &[&str]) -> String {
        if let [column] = columns {
            return format!(
                "CAST({alias}.{} AS {})",
                self.ident(column),
                self.text_type()
            );
        }
        match self {
            Dialect::Postgres => {
                let cols: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{alias}.{}", quote_ident(c)))
                    .collect();
                format!("CAST(jsonb_build_array({}) AS TEXT)", cols.join(", "))
            }
            Dialect::DuckDb => format!(
                "CAST(to_json(struct_pack({})) AS VARCHAR)",
                struct_fields(alias, columns)
            ),
            // An object keeps NULLs and mixed types (an array of mixed types does not
            // translate to DuckDB under fakesnow).
            Dialect::Snowflake => {
                let fields: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("'c{i}', {alias}.{}", quote_ident(c)))
                    .collect();
                format!(
                    "CAST(to_json(object_construct_keep_null({})) AS TEXT)",
                    fields.join(", ")
                )
            }
            Dialect::BigQuery => format!("TO_JSON_STRING({})", bigquery_struct(alias, columns)),
        }
    }

    /// A hash of every column a sync reads: equal hashes mean an unchanged source row.
    /// PostgreSQL: md5 of the row's text. DuckDB and Snowflake: their own 64-bit `hash()`
    /// (fast; should an upgrade change it, every row is compared once in the engine and the
    /// new hashes are stored). BigQuery: md5 of the row as JSON (`FARM_FINGERPRINT` would be
    /// faster, but the emulator the tests run against lacks it).
    pub fn source_hash_expr(self, alias: &str, columns: &[&str]) -> String {
        let cols: Vec<String> = columns
            .iter()
            .map(|c| format!("{alias}.{}", self.ident(c)))
            .collect();
        match self {
            Dialect::Postgres => format!("md5(CAST(ROW({}) AS TEXT))", cols.join(", ")),
            Dialect::DuckDb => format!("CAST(hash({}) AS VARCHAR)", cols.join(", ")),
            Dialect::Snowflake => format!("CAST(hash({}) AS TEXT)", cols.join(", ")),
            Dialect::BigQuery => format!(
                "TO_HEX(MD5(TO_JSON_STRING({})))",
                bigquery_struct(alias, columns)
            ),
        }
    }

    /// The primary key of the snapshot table. DuckDB checks a key deleted and inserted again
    /// in one transaction as a duplicate, so there the commit's logic keeps keys unique;
    /// Snowflake and BigQuery do not enforce primary keys (and fakesnow is DuckDB underneath).
    fn snapshot_key(self) -> &'static str {
        match self {
            Dialect::Postgres => ", PRIMARY KEY (state_id, wh_key)",
            Dialect::DuckDb | Dialect::Snowflake | Dialect::BigQuery => "",
        }
    }

    /// `PRIMARY KEY` on the sync state's `state_id`, where the warehouse enforces it.
    fn sync_state_key(self) -> &'static str {
        match self {
            Dialect::BigQuery => "",
            _ => " PRIMARY KEY",
        }
    }

    /// The last pending change of each key. Snowflake and BigQuery have no `DISTINCT ON`.
    fn last_change(self, pending: &str, id: &str) -> String {
        match self {
            Dialect::Postgres | Dialect::DuckDb => format!(
                "SELECT DISTINCT ON (wh_key) * FROM {pending} WHERE state_id = {id} ORDER BY wh_key, seq DESC"
            ),
            Dialect::Snowflake | Dialect::BigQuery => format!(
                "SELECT * FROM {pending} WHERE state_id = {id} \
                 QUALIFY row_number() OVER (PARTITION BY wh_key ORDER BY seq DESC) = 1"
            ),
        }
    }
}

/// GoogleSQL's `DELETE`/`UPDATE ... WHERE` as one `MERGE`: its source matches nothing, so
/// `action` applies to every target row `condition` names.
fn merge_where(table: &str, condition: &str, action: &str) -> String {
    format!(
        "MERGE {table} USING (SELECT 1 AS activate_one) AS activate_nothing ON FALSE \
         WHEN NOT MATCHED BY SOURCE AND ({condition}) THEN {action}"
    )
}

/// `STRUCT(m.a AS c0, m.b AS c1)`: the columns by position, so the JSON does not depend on
/// the columns' names.
fn bigquery_struct(alias: &str, columns: &[&str]) -> String {
    let fields: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{alias}.{} AS c{i}", bigquery::quote(c)))
        .collect();
    format!("STRUCT({})", fields.join(", "))
}

fn struct_fields(alias: &str, columns: &[&str]) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("c{i} := {alias}.{}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The names of the state tables in one schema, and the SQL that changes them.
#[derive(Debug, Clone)]
pub struct Tables {
    pub dialect: Dialect,
    pub sync_state: String,
    pub snapshot: String,
    pub pending: String,
    pub history: String,
}

/// What the commit writes to a sync's row of `activate_sync_state`.
pub struct SyncStateRow<'a> {
    pub state_id: &'a str,
    pub target: &'a str,
    pub sync: &'a str,
    pub destination: &'a str,
    pub cursor_json: Option<String>,
    pub mapping_hash: &'a str,
    pub committed_at: &'a str,
    pub format: i64,
}

impl Tables {
    pub fn in_schema(dialect: Dialect, schema: &str) -> Self {
        let q = |t: &str| format!("{}.{}", dialect.ident(schema), dialect.ident(t));
        Self {
            dialect,
            sync_state: q("activate_sync_state"),
            snapshot: q("activate_snapshot"),
            pending: q("activate_pending"),
            history: q("activate_history"),
        }
    }

    pub fn create(&self, schema: &str) -> Vec<String> {
        let d = self.dialect;
        let (text, int, boolean) = (d.text_type(), d.int_type(), d.bool_type());
        vec![
            format!("CREATE SCHEMA IF NOT EXISTS {}", d.ident(schema)),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (state_id {text} NOT NULL{}, target {text} NOT NULL, \
                 sync {text} NOT NULL, destination {text} NOT NULL, cursor_json {text}, mapping_hash {text}, \
                 committed_at {text} NOT NULL, format {int} NOT NULL)",
                self.sync_state,
                d.sync_state_key()
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (state_id {text} NOT NULL, wh_key {text} NOT NULL, \
                 key_json {text} NOT NULL, source_hash {text} NOT NULL, row_hash {int} NOT NULL{})",
                self.snapshot,
                d.snapshot_key()
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (state_id {text} NOT NULL, run_id {text} NOT NULL, \
                 seq {int} NOT NULL, wh_key {text} NOT NULL, key_json {text} NOT NULL, \
                 source_hash {text}, row_hash {int}, removed {boolean} NOT NULL)",
                self.pending
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (target {text} NOT NULL, sync {text} NOT NULL, \
                 run_id {text} NOT NULL, seq {int} NOT NULL, finished_at {text}, record {text} NOT NULL)",
                self.history
            ),
        ]
    }

    /// Folds a state's pending rows into its snapshot: the last change per key wins.
    /// Folding twice gives what folding once gives, so a fold interrupted before the
    /// pending rows were cleared is simply done again.
    fn fold_pending(&self, state_id: &str) -> Vec<String> {
        let d = self.dialect;
        let id = d.text(state_id);
        let last_change = d.last_change(&self.pending, &id);
        let (snap, pend) = (&self.snapshot, &self.pending);
        match d {
            Dialect::BigQuery => vec![format!(
                "MERGE {snap} AS s USING ({last_change}) AS p \
                 ON s.state_id = p.state_id AND s.wh_key = p.wh_key \
                 WHEN MATCHED AND p.removed THEN DELETE \
                 WHEN MATCHED THEN UPDATE SET key_json = p.key_json, source_hash = p.source_hash, row_hash = p.row_hash \
                 WHEN NOT MATCHED AND NOT p.removed THEN INSERT (state_id, wh_key, key_json, source_hash, row_hash) \
                 VALUES (p.state_id, p.wh_key, p.key_json, p.source_hash, p.row_hash)"
            )],
            _ => vec![
                format!(
                    "DELETE FROM {snap} WHERE state_id = {id} AND wh_key IN \
                     (SELECT wh_key FROM {pend} WHERE state_id = {id})"
                ),
                format!(
                    "INSERT INTO {snap} (state_id, wh_key, key_json, source_hash, row_hash) \
                     SELECT state_id, wh_key, key_json, source_hash, row_hash FROM \
                     ({last_change}) AS last_change WHERE NOT removed"
                ),
            ],
        }
    }

    fn clear_pending(&self, state_id: &str) -> String {
        let d = self.dialect;
        d.delete_where(&self.pending, &format!("state_id = {}", d.text(state_id)))
    }

    /// Folds a state's pending rows into its snapshot and empties them: the journal replay
    /// of a run that was stopped before its commit.
    pub fn apply_pending(&self, state_id: &str) -> Vec<String> {
        let mut statements = self.fold_pending(state_id);
        statements.push(self.clear_pending(state_id));
        statements
    }

    /// The commit of one sync: fold the pending rows into the snapshot, write the sync's
    /// row (cursor, mapping hash), empty the pending rows. Run in one transaction where the
    /// warehouse has them; in BigQuery one by one, in this order: stopped after the fold, the
    /// state is the one a killed run leaves (pending rows folded again at the next load, the
    /// cursor not moved); stopped after the sync row, the fold is done again, with the same
    /// result.
    pub fn commit(&self, row: &SyncStateRow<'_>) -> Vec<String> {
        let d = self.dialect;
        let mut statements = self.fold_pending(row.state_id);
        let id = d.text(row.state_id);
        let names = [
            "state_id",
            "target",
            "sync",
            "destination",
            "cursor_json",
            "mapping_hash",
            "committed_at",
            "format",
        ];
        let values = [
            id.clone(),
            d.text(row.target),
            d.text(row.sync),
            d.text(row.destination),
            row.cursor_json
                .as_deref()
                .map_or(format!("CAST(NULL AS {})", d.text_type()), |c| d.text(c)),
            d.text(row.mapping_hash),
            d.text(row.committed_at),
            row.format.to_string(),
        ];
        match d {
            Dialect::BigQuery => {
                let selected: Vec<String> = names
                    .iter()
                    .zip(&values)
                    .map(|(n, v)| format!("{v} AS {n}"))
                    .collect();
                let set: Vec<String> = names[1..].iter().map(|n| format!("{n} = n.{n}")).collect();
                let from_new: Vec<String> = names.iter().map(|n| format!("n.{n}")).collect();
                statements.push(format!(
                    "MERGE {} AS t USING (SELECT {}) AS n ON t.state_id = n.state_id \
                     WHEN MATCHED THEN UPDATE SET {} \
                     WHEN NOT MATCHED THEN INSERT ({}) VALUES ({})",
                    self.sync_state,
                    selected.join(", "),
                    set.join(", "),
                    names.join(", "),
                    from_new.join(", ")
                ));
            }
            _ => {
                statements.push(format!(
                    "DELETE FROM {} WHERE state_id = {id}",
                    self.sync_state
                ));
                statements.push(format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    self.sync_state,
                    names.join(", "),
                    values.join(", ")
                ));
            }
        }
        statements.push(self.clear_pending(row.state_id));
        statements
    }
}

/// One pending row: a change the destination confirmed (or, with `removed`, a key it no
/// longer holds), not yet folded into the snapshot.
#[derive(Debug, Clone)]
pub struct PendingRow {
    pub wh_key: String,
    pub key_json: String,
    /// `None` for a removal.
    pub source_hash: Option<String>,
    pub row_hash: Option<u64>,
}

/// `INSERT ... VALUES` statements for pending rows, at most `per_statement` rows each.
pub fn insert_pending(
    tables: &Tables,
    state_id: &str,
    run_id: &str,
    first_seq: i64,
    rows: &[PendingRow],
    per_statement: usize,
) -> Vec<String> {
    let d = tables.dialect;
    let text = |v: &str| d.text(v);
    let mut statements = Vec::new();
    let mut seq = first_seq;
    for chunk in rows.chunks(per_statement.max(1)) {
        let mut sql = format!(
            "INSERT INTO {} (state_id, run_id, seq, wh_key, key_json, source_hash, row_hash, removed) VALUES ",
            tables.pending
        );
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "({}, {}, {seq}, {}, {}, {}, {}, {})",
                text(state_id),
                text(run_id),
                text(&row.wh_key),
                text(&row.key_json),
                row.source_hash.as_deref().map_or("NULL".into(), text),
                // The hash's 64 bits, as the signed BIGINT they fit in.
                row.row_hash
                    .map_or("NULL".into(), |h| (h as i64).to_string()),
                if row.source_hash.is_none() {
                    "TRUE"
                } else {
                    "FALSE"
                }
            ));
            seq += 1;
        }
        statements.push(sql);
    }
    statements
}

/// The queries of one sync's diff, all run in one read-only snapshot of the warehouse.
pub struct DiffSql {
    /// `count(*)` of the model rows read (past the cursor): `rows_read`.
    pub count: String,
    /// How many keys the snapshot holds: `delivered_before`.
    pub delivered: String,
    /// Keys repeated in the model: the first few, and how many rows repeat an earlier one.
    pub duplicate_keys: String,
    pub duplicate_rows: String,
    /// Mirror: snapshot keys no longer in the model (`key_json`, `wh_key`).
    pub removals: Option<String>,
    /// The rows to compare in the engine, as a subquery: the model's columns plus
    /// `activate_wh_key`, `activate_source_hash`, `activate_prev_key`, `activate_prev_hash`.
    pub candidates: String,
}

/// The extra columns of [`DiffSql::candidates`], read as text.
pub const CANDIDATE_EXTRAS: [&str; 4] = [
    "activate_wh_key",
    "activate_source_hash",
    "activate_prev_key",
    "activate_prev_hash",
];

pub struct DiffInput<'a> {
    pub dialect: Dialect,
    pub tables: &'a Tables,
    pub state_id: &'a str,
    pub relation: &'a str,
    pub key_columns: &'a [&'a str],
    pub read_columns: &'a [&'a str],
    pub cursor_at_least: Option<(&'a str, &'a Value)>,
    /// Every row is a candidate (first run, full refresh, or the mapping changed).
    pub all_rows: bool,
    pub mirror: bool,
    /// Rows whose key equals another's but for letter case are candidates too.
    pub case_collisions: bool,
}

impl DiffInput<'_> {
    pub fn sql(&self) -> DiffSql {
        let d = self.dialect;
        let t = d.text_type();
        let model = format!("(SELECT * FROM {}) AS m", self.relation);
        let key = d.key_expr("m", self.key_columns);
        let hash = d.source_hash_expr("m", self.read_columns);
        let cursor = self
            .cursor_at_least
            .map(|(c, v)| format!("m.{} >= {}", d.ident(c), d.literal(v)));
        let where_cursor = cursor
            .as_ref()
            .map(|c| format!(" WHERE {c}"))
            .unwrap_or_default();
        let key_not_null = self
            .key_columns
            .iter()
            .map(|c| format!("m.{} IS NOT NULL", d.ident(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let non_null_rows = match &cursor {
            Some(c) => format!(" WHERE {c} AND {key_not_null}"),
            None => format!(" WHERE {key_not_null}"),
        };
        let id = d.text(self.state_id);
        let snap = &self.tables.snapshot;
        let key_group = self
            .key_columns
            .iter()
            .map(|c| format!("m.{}", d.ident(c)))
            .collect::<Vec<_>>()
            .join(", ");

        let mut filters: Vec<String> = cursor.iter().cloned().collect();
        if !self.all_rows {
            let mut changed = vec![
                "s.wh_key IS NULL".to_owned(),
                format!("s.source_hash <> {hash}"),
            ];
            if self.case_collisions {
                changed.push(format!(
                    "lower({key}) IN (SELECT lower({key}) FROM {model}{non_null_rows} GROUP BY 1 HAVING count(DISTINCT {key}) > 1)"
                ));
            }
            filters.push(format!("({})", changed.join(" OR ")));
        }
        let where_candidates = if filters.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", filters.join(" AND "))
        };
        let candidates = format!(
            "SELECT m.*, {key} AS activate_wh_key, {hash} AS activate_source_hash, \
             s.key_json AS activate_prev_key, CAST(s.row_hash AS {t}) AS activate_prev_hash \
             FROM {model} LEFT JOIN {snap} AS s ON s.state_id = {id} AND s.wh_key = {key}{where_candidates}"
        );
        let removals = self.mirror.then(|| {
            let in_model = match &cursor {
                Some(c) => format!("{c} AND {key} = s.wh_key"),
                None => format!("{key} = s.wh_key"),
            };
            format!(
                "SELECT s.key_json, s.wh_key FROM {snap} AS s WHERE s.state_id = {id} \
                 AND NOT EXISTS (SELECT 1 FROM {model} WHERE {in_model}) ORDER BY s.key_json"
            )
        });
        DiffSql {
            count: format!("SELECT CAST(count(*) AS {t}) FROM {model}{where_cursor}"),
            delivered: format!("SELECT CAST(count(*) AS {t}) FROM {snap} WHERE state_id = {id}"),
            duplicate_keys: format!(
                "SELECT {key} AS activate_key FROM {model}{non_null_rows} GROUP BY {key_group} HAVING count(*) > 1 ORDER BY activate_key LIMIT 5"
            ),
            duplicate_rows: format!(
                "SELECT CAST(coalesce(sum(n - 1), 0) AS {t}) FROM \
                 (SELECT count(*) AS n FROM {model}{non_null_rows} GROUP BY {key_group} HAVING count(*) > 1) AS repeated"
            ),
            removals,
            candidates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_values_are_quoted() {
        let tables = Tables::in_schema(Dialect::Postgres, "st");
        let rows = [PendingRow {
            wh_key: "[\"o'k\"]".into(),
            key_json: "[\"o'k\"]".into(),
            source_hash: Some("abc".into()),
            row_hash: Some(u64::MAX),
        }];
        let sql = insert_pending(&tables, "id", "run", 1, &rows, 10);
        assert_eq!(sql.len(), 1);
        assert!(sql[0].contains("'[\"o''k\"]'"), "{}", sql[0]);
        assert!(sql[0].contains(", -1, FALSE)"), "{}", sql[0]);
        let k = Dialect::Postgres.key_expr("m", &["we\"ird"]);
        assert_eq!(k, "CAST(m.\"we\"\"ird\" AS TEXT)");
        let k = Dialect::Postgres.key_expr("m", &["a", "b"]);
        assert_eq!(k, "CAST(jsonb_build_array(m.\"a\", m.\"b\") AS TEXT)");
    }

    #[test]
    fn first_runs_read_every_row_and_later_ones_only_changes() {
        let tables = Tables::in_schema(Dialect::DuckDb, "st");
        let mut input = DiffInput {
            dialect: Dialect::DuckDb,
            tables: &tables,
            state_id: "x",
            relation: "\"db\".\"main\".\"leads\"",
            key_columns: &["id"],
            read_columns: &["id", "name"],
            cursor_at_least: None,
            all_rows: true,
            mirror: true,
            case_collisions: false,
        };
        assert!(!input.sql().candidates.contains("source_hash <>"));
        input.all_rows = false;
        let sql = input.sql();
        assert!(
            sql.candidates
                .contains("s.wh_key IS NULL OR s.source_hash <>")
        );
        assert!(sql.removals.unwrap().contains("NOT EXISTS"));
    }

    #[test]
    fn snowflake_sql_avoids_what_snowflake_lacks() {
        let tables = Tables::in_schema(Dialect::Snowflake, "st");
        let fold = tables.apply_pending("x").join(";");
        assert!(!fold.contains("DISTINCT ON"), "{fold}");
        assert!(
            fold.contains("QUALIFY row_number() OVER (PARTITION BY wh_key ORDER BY seq DESC) = 1")
        );
        let postgres = Tables::in_schema(Dialect::Postgres, "st");
        assert!(postgres.apply_pending("x")[1].contains("DISTINCT ON"));
        let k = Dialect::Snowflake.key_expr("m", &["A", "b'"]);
        assert_eq!(
            k,
            "CAST(to_json(object_construct_keep_null('c0', m.\"A\", 'c1', m.\"b'\")) AS TEXT)"
        );
        assert_eq!(
            Dialect::Snowflake.key_expr("m", &["ID"]),
            "CAST(m.\"ID\" AS TEXT)"
        );
        assert_eq!(
            Dialect::Snowflake.source_hash_expr("m", &["ID", "EMAIL"]),
            "CAST(hash(m.\"ID\", m.\"EMAIL\") AS TEXT)"
        );
        let create = tables.create("st").join(";");
        assert!(
            !create.contains("PRIMARY KEY (state_id, wh_key)"),
            "{create}"
        );
    }

    /// GoogleSQL: backtick identifiers, backslash-escaped strings, its own type names, no
    /// `DELETE`/`UPDATE` (one `MERGE` each) and no primary keys.
    #[test]
    fn bigquery_sql_is_googlesql_without_delete_or_transactions() {
        let d = Dialect::BigQuery;
        let tables = Tables::in_schema(d, "st`ate");
        assert_eq!(tables.snapshot, "`st\\`ate`.`activate_snapshot`");
        assert_eq!(d.text("o'k\\\n"), "'o\\'k\\\\\\n'");
        assert_eq!(d.literal(&Value::Int(3)), "3");
        assert_eq!(d.literal(&Value::Text("a'b".into())), "'a\\'b'");
        let create = tables.create("st`ate").join(";");
        for absent in ["TEXT", "BIGINT", "BOOLEAN", "PRIMARY KEY"] {
            assert!(!create.contains(absent), "{absent} in {create}");
        }
        assert!(create.contains("row_hash INT64 NOT NULL"), "{create}");
        let row = SyncStateRow {
            state_id: "x",
            target: "dev",
            sync: "s",
            destination: "d",
            cursor_json: None,
            mapping_hash: "h",
            committed_at: "now",
            format: 1,
        };
        let commit = tables.commit(&row);
        assert_eq!(commit.len(), 3, "{commit:?}");
        assert!(commit[0].starts_with("MERGE `st\\`ate`.`activate_snapshot`"));
        assert!(commit[0].contains("WHEN MATCHED AND p.removed THEN DELETE"));
        assert!(
            commit[1].contains("CAST(NULL AS STRING) AS cursor_json"),
            "{}",
            commit[1]
        );
        assert!(commit[1].contains("WHEN NOT MATCHED THEN INSERT"));
        assert!(commit[2].contains("WHEN NOT MATCHED BY SOURCE AND (state_id = 'x') THEN DELETE"));
        for statement in commit.iter().chain(&tables.apply_pending("x")) {
            assert!(!statement.starts_with("DELETE") && !statement.starts_with("UPDATE"));
        }
        assert_eq!(
            d.key_expr("m", &["a", "b"]),
            "TO_JSON_STRING(STRUCT(m.`a` AS c0, m.`b` AS c1))"
        );
        assert_eq!(d.key_expr("m", &["id"]), "CAST(m.`id` AS STRING)");
        let input = DiffInput {
            dialect: d,
            tables: &tables,
            state_id: "x",
            relation: "`p`.`d`.`leads`",
            key_columns: &["id"],
            read_columns: &["id", "name"],
            cursor_at_least: Some(("updated_at", &Value::Text("2024-01-01 00:00:00".into()))),
            all_rows: false,
            mirror: true,
            case_collisions: false,
        };
        let sql = input.sql();
        assert!(
            sql.candidates
                .contains("m.`updated_at` >= '2024-01-01 00:00:00'")
        );
        assert!(
            sql.candidates
                .contains("TO_HEX(MD5(TO_JSON_STRING(STRUCT(m.`id` AS c0, m.`name` AS c1))))")
        );
        assert!(sql.count.starts_with("SELECT CAST(count(*) AS STRING)"));
    }

    /// The commit of the transactional warehouses: the fold, the sync row replaced, the
    /// pending rows emptied; a sync without a cursor writes a typed NULL.
    #[test]
    fn the_commit_writes_the_sync_row_between_the_fold_and_the_clear() {
        let tables = Tables::in_schema(Dialect::Postgres, "st");
        let row = SyncStateRow {
            state_id: "x",
            target: "dev",
            sync: "s",
            destination: "d",
            cursor_json: Some("{\"int\":3}".into()),
            mapping_hash: "h",
            committed_at: "now",
            format: 1,
        };
        let commit = tables.commit(&row);
        assert_eq!(commit.len(), 5, "{commit:?}");
        assert!(commit[2].starts_with("DELETE FROM \"st\".\"activate_sync_state\""));
        assert!(
            commit[3].contains("VALUES ('x', 'dev', 's', 'd', '{\"int\":3}', 'h', 'now', 1)"),
            "{}",
            commit[3]
        );
        assert_eq!(
            commit[4],
            "DELETE FROM \"st\".\"activate_pending\" WHERE state_id = 'x'"
        );
    }

    /// Snowflake reads a backslash in a string literal as an escape: it is doubled. A reset
    /// first forgets the sync row's cursor and mapping (GoogleSQL: one `MERGE`).
    #[test]
    fn snowflake_doubles_backslashes_and_updates_have_a_bigquery_form() {
        assert_eq!(Dialect::Snowflake.text("a\\b'c"), "'a\\\\b''c'");
        assert_eq!(
            Dialect::Snowflake.literal(&Value::Text("x\\".into())),
            "'x\\\\'"
        );
        assert_eq!(Dialect::Postgres.text("a\\b'c"), "'a\\b''c'");
        assert_eq!(
            Dialect::Postgres.update_where("t", "a = NULL", "b = 1"),
            "UPDATE t SET a = NULL WHERE b = 1"
        );
        assert!(
            Dialect::BigQuery
                .update_where("t", "a = NULL", "b = 1")
                .ends_with("WHEN NOT MATCHED BY SOURCE AND (b = 1) THEN UPDATE SET a = NULL")
        );
    }
}
