//! The SQL of the warehouse state: the tables, the diff, the journal and the commit. Written
//! once; what differs between warehouses is in [`Dialect`].

use crate::value::Value;
use crate::warehouse::{quote_ident, sql_literal};

/// What differs between the warehouses that keep state. Everything else is the same SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    DuckDb,
    Snowflake,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::DuckDb => "DuckDB",
            Dialect::Snowflake => "Snowflake",
        }
    }

    /// The key of a model row as text, for joins with the snapshot: injective over the key
    /// columns' values (one column: its text; several: a JSON array or object of them).
    pub fn key_expr(self, alias: &str, columns: &[&str]) -> String {
        let text = match self {
            Dialect::Postgres | Dialect::Snowflake => "TEXT",
            Dialect::DuckDb => "VARCHAR",
        };
        if let [column] = columns {
            return format!("CAST({alias}.{} AS {text})", quote_ident(column));
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
        }
    }

    /// A hash of every column a sync reads: equal hashes mean an unchanged source row.
    /// PostgreSQL: md5 of the row's text. DuckDB and Snowflake: their own 64-bit `hash()`
    /// (fast; should an upgrade change it, every row is compared once in the engine and the
    /// new hashes are stored).
    pub fn source_hash_expr(self, alias: &str, columns: &[&str]) -> String {
        let cols: Vec<String> = columns
            .iter()
            .map(|c| format!("{alias}.{}", quote_ident(c)))
            .collect();
        match self {
            Dialect::Postgres => format!("md5(CAST(ROW({}) AS TEXT))", cols.join(", ")),
            Dialect::DuckDb => format!("CAST(hash({}) AS VARCHAR)", cols.join(", ")),
            Dialect::Snowflake => format!("CAST(hash({}) AS TEXT)", cols.join(", ")),
        }
    }

    /// The primary key of the snapshot table. DuckDB checks a key deleted and inserted again
    /// in one transaction as a duplicate, so there the commit's logic keeps keys unique;
    /// Snowflake does not enforce primary keys (and fakesnow is DuckDB underneath).
    fn snapshot_key(self) -> &'static str {
        match self {
            Dialect::Postgres => ", PRIMARY KEY (state_id, wh_key)",
            Dialect::DuckDb | Dialect::Snowflake => "",
        }
    }

    /// The last pending change of each key. Snowflake has no `DISTINCT ON`.
    fn last_change(self, pending: &str, id: &str) -> String {
        match self {
            Dialect::Postgres | Dialect::DuckDb => format!(
                "SELECT DISTINCT ON (wh_key) * FROM {pending} WHERE state_id = {id} ORDER BY wh_key, seq DESC"
            ),
            Dialect::Snowflake => format!(
                "SELECT * FROM {pending} WHERE state_id = {id} \
                 QUALIFY row_number() OVER (PARTITION BY wh_key ORDER BY seq DESC) = 1"
            ),
        }
    }
}

fn struct_fields(alias: &str, columns: &[&str]) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("c{i} := {alias}.{}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Text as a SQL string literal.
pub fn text(value: &str) -> String {
    sql_literal(&Value::Text(value.to_owned()))
}

/// The names of the state tables in one schema.
#[derive(Debug, Clone)]
pub struct Tables {
    pub sync_state: String,
    pub snapshot: String,
    pub pending: String,
    pub history: String,
}

impl Tables {
    pub fn in_schema(schema: &str) -> Self {
        let q = |t: &str| format!("{}.{}", quote_ident(schema), quote_ident(t));
        Self {
            sync_state: q("activate_sync_state"),
            snapshot: q("activate_snapshot"),
            pending: q("activate_pending"),
            history: q("activate_history"),
        }
    }

    pub fn create(&self, dialect: Dialect, schema: &str) -> Vec<String> {
        vec![
            format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (state_id TEXT NOT NULL PRIMARY KEY, target TEXT NOT NULL, \
                 sync TEXT NOT NULL, destination TEXT NOT NULL, cursor_json TEXT, mapping_hash TEXT, \
                 committed_at TEXT NOT NULL, format INTEGER NOT NULL)",
                self.sync_state
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (state_id TEXT NOT NULL, wh_key TEXT NOT NULL, \
                 key_json TEXT NOT NULL, source_hash TEXT NOT NULL, row_hash BIGINT NOT NULL{})",
                self.snapshot,
                dialect.snapshot_key()
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (state_id TEXT NOT NULL, run_id TEXT NOT NULL, \
                 seq BIGINT NOT NULL, wh_key TEXT NOT NULL, key_json TEXT NOT NULL, \
                 source_hash TEXT, row_hash BIGINT, removed BOOLEAN NOT NULL)",
                self.pending
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (target TEXT NOT NULL, sync TEXT NOT NULL, \
                 run_id TEXT NOT NULL, seq BIGINT NOT NULL, finished_at TEXT, record TEXT NOT NULL)",
                self.history
            ),
        ]
    }

    /// Folds a state's pending rows into its snapshot (the last change per key wins) and
    /// empties them: the journal replay, run inside the caller's transaction.
    pub fn apply_pending(&self, dialect: Dialect, state_id: &str) -> Vec<String> {
        let id = text(state_id);
        let last_change = dialect.last_change(&self.pending, &id);
        vec![
            format!(
                "DELETE FROM {snap} WHERE state_id = {id} AND wh_key IN \
                 (SELECT wh_key FROM {pend} WHERE state_id = {id})",
                snap = self.snapshot,
                pend = self.pending
            ),
            format!(
                "INSERT INTO {snap} (state_id, wh_key, key_json, source_hash, row_hash) \
                 SELECT state_id, wh_key, key_json, source_hash, row_hash FROM \
                 ({last_change}) AS last_change WHERE NOT removed",
                snap = self.snapshot,
            ),
            format!("DELETE FROM {} WHERE state_id = {id}", self.pending),
        ]
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
        let model = format!("(SELECT * FROM {}) AS m", self.relation);
        let key = d.key_expr("m", self.key_columns);
        let hash = d.source_hash_expr("m", self.read_columns);
        let cursor = self
            .cursor_at_least
            .map(|(c, v)| format!("m.{} >= {}", quote_ident(c), sql_literal(v)));
        let where_cursor = cursor
            .as_ref()
            .map(|c| format!(" WHERE {c}"))
            .unwrap_or_default();
        let key_not_null = self
            .key_columns
            .iter()
            .map(|c| format!("m.{} IS NOT NULL", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let non_null_rows = match &cursor {
            Some(c) => format!(" WHERE {c} AND {key_not_null}"),
            None => format!(" WHERE {key_not_null}"),
        };
        let id = text(self.state_id);
        let snap = &self.tables.snapshot;
        let key_group = self
            .key_columns
            .iter()
            .map(|c| format!("m.{}", quote_ident(c)))
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
             s.key_json AS activate_prev_key, CAST(s.row_hash AS TEXT) AS activate_prev_hash \
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
            count: format!("SELECT CAST(count(*) AS TEXT) FROM {model}{where_cursor}"),
            delivered: format!("SELECT CAST(count(*) AS TEXT) FROM {snap} WHERE state_id = {id}"),
            duplicate_keys: format!(
                "SELECT {key} FROM {model}{non_null_rows} GROUP BY {key_group} HAVING count(*) > 1 ORDER BY 1 LIMIT 5"
            ),
            duplicate_rows: format!(
                "SELECT CAST(coalesce(sum(n - 1), 0) AS TEXT) FROM \
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
        let tables = Tables::in_schema("st");
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
        let tables = Tables::in_schema("st");
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
        let tables = Tables::in_schema("st");
        let fold = tables.apply_pending(Dialect::Snowflake, "x").join(";");
        assert!(!fold.contains("DISTINCT ON"), "{fold}");
        assert!(
            fold.contains("QUALIFY row_number() OVER (PARTITION BY wh_key ORDER BY seq DESC) = 1")
        );
        assert!(tables.apply_pending(Dialect::Postgres, "x")[1].contains("DISTINCT ON"));
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
        let create = tables.create(Dialect::Snowflake, "st").join(";");
        assert!(
            !create.contains("PRIMARY KEY (state_id, wh_key)"),
            "{create}"
        );
    }
}
