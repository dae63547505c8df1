//! DuckDB, embedded: reads the database file dbt-duckdb built, opened read-only.

mod columns;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use duckdb::types::{TimeUnit, ValueRef};
use duckdb::{AccessMode, Config, Connection};

pub use state::DuckDbStateBackend;

use crate::error::{ConfigError, StateError, WarehouseError};
use crate::state::warehouse::StateBackend;
use crate::value::{self, Value};
use crate::warehouse::{ColumnDesc, ReadRequest, RowBatch, Warehouse, quote_ident, sql_literal};

pub struct DuckDbWarehouse {
    path: PathBuf,
    connection: Mutex<Connection>,
    /// Opened read-write, because the sync state lives in the file.
    writable: bool,
}

impl DuckDbWarehouse {
    /// Opens the file read-only: dbt may build it while dbt-activate reads.
    pub fn open(path: &Path) -> Result<Self, ConfigError> {
        Self::open_as(path, false)
    }

    /// Opens the file read-write, for `state: {type: warehouse}`: no other process (dbt, a
    /// second dbt-activate) can open it until this one ends.
    pub fn open_writable(path: &Path) -> Result<Self, ConfigError> {
        Self::open_as(path, true)
    }

    fn open_as(path: &Path, writable: bool) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::new(format!(
                "the DuckDB database {} (the dbt profile's `path`) does not exist",
                path.display()
            ))
            .with_hint("run `dbt build` first, or check `path:` in profiles.yml and --target"));
        }
        let mode = if writable {
            AccessMode::ReadWrite
        } else {
            AccessMode::ReadOnly
        };
        let config = Config::default()
            .access_mode(mode)
            .map_err(|e| ConfigError::new(format!("DuckDB configuration: {e}")))?;
        let connection = Connection::open_with_flags(path, config).map_err(|e| {
            let text = e.to_string();
            if writable && text.contains("lock") {
                return ConfigError::new(format!(
                    "could not open the DuckDB database {} read-write for the warehouse state (activate.yml, `state: {{type: warehouse}}`): another process has it open: {text}",
                    path.display()
                ))
                .with_hint(
                    "wait for the other dbt-activate run (or dbt) to finish; with warehouse state a run keeps the DuckDB file open read-write for its whole duration",
                );
            }
            ConfigError::new(format!(
                "could not open the DuckDB database {}: {e}",
                path.display()
            ))
            .with_hint(
                "is it a DuckDB file written by dbt-duckdb, and is no other process writing it?",
            )
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
            writable,
        })
    }

    fn connection(&self) -> Result<Connection, WarehouseError> {
        let guard = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .try_clone()
            .map_err(|e| WarehouseError::new(format!("DuckDB: {e}")))
    }
}

/// How a column is read so that every value keeps its exact meaning.
#[derive(Debug, Clone, Copy)]
enum ReadAs {
    Native,
    /// DECIMAL, HUGEINT, UBIGINT: exact digits through VARCHAR.
    NumberText,
    /// LIST, STRUCT, MAP, ARRAY, UNION, JSON: through to_json().
    JsonText,
    TimestampTz,
    /// TIME, INTERVAL, UUID, ENUM, BIT, ...: DuckDB's own text.
    Text,
}

fn read_as(data_type: &str) -> ReadAs {
    let t = data_type.to_ascii_uppercase();
    if t.ends_with(']')
        || t.starts_with("STRUCT")
        || t.starts_with("MAP")
        || t.starts_with("UNION")
        || t == "JSON"
    {
        ReadAs::JsonText
    } else if t.starts_with("DECIMAL")
        || t.starts_with("NUMERIC")
        || t == "HUGEINT"
        || t == "UHUGEINT"
        || t == "UBIGINT"
        || t == "VARINT"
        || t == "BIGNUM"
    {
        ReadAs::NumberText
    } else if t == "TIMESTAMP WITH TIME ZONE" || t == "TIMESTAMPTZ" {
        ReadAs::TimestampTz
    } else if matches!(
        t.as_str(),
        "BOOLEAN"
            | "TINYINT"
            | "SMALLINT"
            | "INTEGER"
            | "BIGINT"
            | "UTINYINT"
            | "USMALLINT"
            | "UINTEGER"
            | "FLOAT"
            | "DOUBLE"
            | "VARCHAR"
            | "DATE"
            | "TIMESTAMP"
            | "TIMESTAMP_S"
            | "TIMESTAMP_MS"
            | "TIMESTAMP_NS"
            | "BLOB"
    ) || t.starts_with("VARCHAR")
    {
        ReadAs::Native
    } else {
        ReadAs::Text
    }
}

fn select_expr(column: &ColumnDesc) -> String {
    let q = quote_ident(&column.name);
    match read_as(&column.data_type) {
        ReadAs::Native | ReadAs::TimestampTz => q,
        ReadAs::NumberText | ReadAs::Text => format!("CAST({q} AS VARCHAR)"),
        ReadAs::JsonText => format!("CAST(to_json({q}) AS VARCHAR)"),
    }
}

/// DuckDB's unit for an Arrow timestamp unit.
fn unit_of(unit: duckdb::arrow::datatypes::TimeUnit) -> TimeUnit {
    use duckdb::arrow::datatypes::TimeUnit as Arrow;
    match unit {
        Arrow::Second => TimeUnit::Second,
        Arrow::Millisecond => TimeUnit::Millisecond,
        Arrow::Microsecond => TimeUnit::Microsecond,
        Arrow::Nanosecond => TimeUnit::Nanosecond,
    }
}

fn micros(unit: TimeUnit, v: i64) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v / 1_000,
    }
}

fn convert(v: ValueRef<'_>, how: ReadAs) -> Value {
    match (v, how) {
        (ValueRef::Null, _) => Value::Null,
        (ValueRef::Text(bytes), ReadAs::NumberText) => {
            Value::Number(String::from_utf8_lossy(bytes).into_owned())
        }
        (ValueRef::Text(bytes), ReadAs::JsonText) => {
            let text = String::from_utf8_lossy(bytes);
            match serde_json::from_str(&text) {
                Ok(json) => Value::json(json),
                Err(_) => Value::Text(text.into_owned()),
            }
        }
        (ValueRef::Text(bytes), _) => Value::Text(String::from_utf8_lossy(bytes).into_owned()),
        (ValueRef::Boolean(b), _) => Value::Bool(b),
        (ValueRef::TinyInt(i), _) => Value::Int(i.into()),
        (ValueRef::SmallInt(i), _) => Value::Int(i.into()),
        (ValueRef::Int(i), _) => Value::Int(i.into()),
        (ValueRef::BigInt(i), _) => Value::Int(i),
        (ValueRef::UTinyInt(i), _) => Value::Int(i.into()),
        (ValueRef::USmallInt(i), _) => Value::Int(i.into()),
        (ValueRef::UInt(i), _) => Value::Int(i.into()),
        (ValueRef::UBigInt(i), _) => Value::Number(i.to_string()),
        (ValueRef::HugeInt(i), _) => Value::Number(i.to_string()),
        (ValueRef::UHugeInt(i), _) => Value::Number(i.to_string()),
        (ValueRef::Float(f), _) => Value::Float(f.to_string().parse().unwrap_or(f64::from(f))),
        (ValueRef::Double(f), _) => Value::Float(f),
        (ValueRef::Date32(days), _) => Value::Date(value::format_date_days(days)),
        (ValueRef::Timestamp(unit, v), ReadAs::TimestampTz) => {
            Value::TimestampTz(value::format_timestamp_micros(micros(unit, v), true))
        }
        (ValueRef::Timestamp(unit, v), _) => {
            Value::Timestamp(value::format_timestamp_micros(micros(unit, v), false))
        }
        (ValueRef::Blob(b), _) => Value::Blob(b.to_vec()),
        (other, _) => Value::Text(format!("{other:?}")),
    }
}

impl Warehouse for DuckDbWarehouse {
    fn kind(&self) -> &'static str {
        "duckdb"
    }

    fn state_backend(
        &self,
        _schema: &str,
        lock: bool,
    ) -> Result<Box<dyn StateBackend>, StateError> {
        // The lock is DuckDB's own: a file open read-write is this process's alone.
        Ok(Box::new(self.open_state_backend(lock)?))
    }

    fn describe_location(&self) -> String {
        format!("duckdb file {}", self.path.display())
    }

    fn health_check(&self) -> Result<(), WarehouseError> {
        let conn = self.connection()?;
        conn.query_row("SELECT 1", [], |r| r.get::<_, i32>(0))
            .map(|_| ())
            .map_err(|e| WarehouseError::new(format!("DuckDB {}: {e}", self.path.display())))
    }

    fn columns(&self, relation: &str) -> Result<Vec<ColumnDesc>, WarehouseError> {
        let conn = self.connection()?;
        let sql = format!("DESCRIBE SELECT * FROM {relation}");
        let mut stmt = conn
            .prepare(&sql)
            .map_err(|e| WarehouseError::new(format!("DuckDB: {e}")))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ColumnDesc {
                    name: r.get(0)?,
                    data_type: r.get(1)?,
                })
            })
            .map_err(|e| WarehouseError::new(format!("DuckDB: {e}")))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| WarehouseError::new(format!("DuckDB: {e}")))
    }

    fn read(
        &self,
        request: &ReadRequest<'_>,
        on_batch: &mut dyn FnMut(RowBatch) -> Result<(), WarehouseError>,
    ) -> Result<(), WarehouseError> {
        let conn = self.connection()?;
        let select: Vec<String> = request.columns.iter().map(select_expr).collect();
        let mut sql = format!("SELECT {} FROM {}", select.join(", "), request.relation);
        if let Some((column, value)) = request.cursor_at_least {
            sql.push_str(&format!(
                " WHERE {} >= {}",
                quote_ident(column),
                sql_literal(value)
            ));
        }
        let how: Vec<ReadAs> = request
            .columns
            .iter()
            .map(|c| read_as(&c.data_type))
            .collect();
        let fail = |e: duckdb::Error| {
            WarehouseError::new(format!("query on {} failed: {e}", request.relation))
        };
        let mut stmt = conn.prepare(&sql).map_err(fail)?;
        stream_rows(&mut stmt, &how, request.batch_rows, None, on_batch).map_err(|e| match e {
            StreamError::Query(e) => fail(e),
            StreamError::Stopped(e) => e,
        })
    }
}

enum StreamError {
    Query(duckdb::Error),
    /// `on_batch` stopped the read.
    Stopped(WarehouseError),
}

/// Runs `stmt` as a stream and hands its rows to `on_batch`, `batch_rows` at a time.
///
/// Executed as a stream: DuckDB hands out one chunk at a time instead of materializing the
/// whole result first (`query` would hold all of a 10,000,000-row model in memory). Each chunk
/// arrives as Arrow arrays and is converted column by column when every column's type allows
/// it (`by_column: None` decides; tests force either way); otherwise cell by cell through
/// `Rows`. Both report a failed fetch as an error (the Arrow iterator would panic).
fn stream_rows(
    stmt: &mut duckdb::Statement<'_>,
    how: &[ReadAs],
    batch_rows: usize,
    by_column: Option<bool>,
    on_batch: &mut dyn FnMut(RowBatch) -> Result<(), WarehouseError>,
) -> Result<(), StreamError> {
    drop(stmt.stream_arrow([]).map_err(StreamError::Query)?);
    let types: Vec<_> = stmt
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let mut batch: RowBatch = Vec::with_capacity(batch_rows);
    let mut emit = |batch: &mut RowBatch, last: bool| -> Result<(), StreamError> {
        if batch.len() >= batch_rows || (last && !batch.is_empty()) {
            let full = std::mem::replace(batch, Vec::with_capacity(batch_rows));
            on_batch(full).map_err(StreamError::Stopped)?;
        }
        Ok(())
    };
    if by_column.unwrap_or_else(|| columns::supported(&types)) {
        while let Some(chunk) = stmt.step().map_err(StreamError::Query)? {
            columns::append_rows(&chunk, how, &mut batch);
            emit(&mut batch, false)?;
        }
        return emit(&mut batch, true);
    }
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(StreamError::Query)? {
        let mut values = Vec::with_capacity(how.len());
        for (i, h) in how.iter().enumerate() {
            values.push(convert(row.get_ref(i).map_err(StreamError::Query)?, *h));
        }
        batch.push(values);
        emit(&mut batch, false)?;
    }
    emit(&mut batch, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_common_type_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.duckdb");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE t AS SELECT 1::INTEGER AS i, 12345678901234567890.123::DECIMAL(38,3) AS d, \
                 170141183460469231731687303715884105727::HUGEINT AS h, 1.5::DOUBLE AS f, 'x''y' AS s, \
                 DATE '2024-02-29' AS dt, TIMESTAMP '2024-01-01 10:00:00.5' AS ts, \
                 TIMESTAMPTZ '2024-01-01 10:00:00+02' AS tz, [1,2] AS l, {'a': 1} AS st, NULL::VARCHAR AS n, true AS b, \
                 '7a5a4c8e-5e3a-4b7c-9d1e-2f3a4b5c6d7e'::UUID AS u",
            )
            .unwrap();
        }
        let wh = DuckDbWarehouse::open(&path).unwrap();
        let columns = wh.columns("t").unwrap();
        let mut rows = Vec::new();
        wh.read(
            &ReadRequest {
                relation: "t",
                columns: &columns,
                cursor_at_least: None,
                batch_rows: 10,
            },
            &mut |b| {
                rows.extend(b);
                Ok(())
            },
        )
        .unwrap();
        let row = &rows[0];
        assert_eq!(row[0], Value::Int(1));
        assert_eq!(row[1], Value::Number("12345678901234567890.123".into()));
        assert_eq!(
            row[2],
            Value::Number("170141183460469231731687303715884105727".into())
        );
        assert_eq!(row[3], Value::Float(1.5));
        assert_eq!(row[4], Value::Text("x'y".into()));
        assert_eq!(row[5], Value::Date("2024-02-29".into()));
        assert_eq!(
            row[6],
            Value::Timestamp("2024-01-01T10:00:00.500000".into())
        );
        assert_eq!(
            row[7],
            Value::TimestampTz("2024-01-01T08:00:00.000000Z".into())
        );
        assert_eq!(row[8], Value::json(serde_json::json!([1, 2])));
        assert_eq!(row[9], Value::json(serde_json::json!({"a": 1})));
        assert_eq!(row[10], Value::Null);
        assert_eq!(row[11], Value::Bool(true));
        assert_eq!(
            row[12],
            Value::Text("7a5a4c8e-5e3a-4b7c-9d1e-2f3a4b5c6d7e".into())
        );
    }

    #[test]
    fn missing_file_is_a_config_error() {
        let err = DuckDbWarehouse::open(Path::new("/nonexistent/dev.duckdb"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("does not exist"));
        assert!(err.hint.unwrap().contains("dbt build"));
    }

    /// Column by column and cell by cell give the same values, NULLs included, for every
    /// type the read selects natively or as text.
    #[test]
    fn reading_by_column_converts_as_reading_by_cell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.duckdb");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE t AS SELECT i::INTEGER AS i, (i % 100)::TINYINT AS ti, i::SMALLINT AS si, \
                 i::BIGINT * 1000000000000 AS bi, (i % 200)::UTINYINT AS ut, i::USMALLINT AS us, i::UINTEGER AS ui, \
                 (i * 1e15)::UBIGINT AS ub, (i / 3)::FLOAT AS fl, (i / 7)::DOUBLE AS db, \
                 (i * 1.25)::DECIMAL(10,2) AS dec, 'x''' || i AS s, DATE '2024-02-29' + i::INTEGER AS d, \
                 TIMESTAMP '2024-01-01 10:00:00.123456' + to_seconds(i) AS ts, \
                 TIMESTAMP_S '2024-01-01 10:00:00' AS ts_s, TIMESTAMP_MS '2024-01-01 10:00:00.123' AS ts_ms, \
                 TIMESTAMP_NS '2024-01-01 10:00:00.123456789' AS ts_ns, \
                 TIMESTAMPTZ '2024-01-01 10:00:00+02' + to_seconds(i) AS tz, [i, i + 1] AS l, \
                 {'a': i} AS st, i % 2 = 0 AS b, 'ab'::BLOB AS bl, \
                 uuid() AS u, INTERVAL 1 DAY AS iv, NULL AS nothing \
                 FROM range(0, 5000) r(i) \
                 UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
            )
            .unwrap();
        }
        let wh = DuckDbWarehouse::open(&path).unwrap();
        let columns = wh.columns("t").unwrap();
        let select: Vec<String> = columns.iter().map(select_expr).collect();
        let how: Vec<ReadAs> = columns.iter().map(|c| read_as(&c.data_type)).collect();
        let sql = format!("SELECT {} FROM t ORDER BY i NULLS LAST", select.join(", "));
        let conn = wh.connection().unwrap();
        let read = |by_column: bool| {
            let mut stmt = conn.prepare(&sql).unwrap();
            let mut rows = Vec::new();
            let mut batches = 0;
            let done = stream_rows(&mut stmt, &how, 1000, Some(by_column), &mut |b| {
                assert!(b.len() <= 3000, "batches near batch_rows");
                batches += 1;
                rows.extend(b);
                Ok(())
            });
            assert!(done.is_ok());
            (rows, batches)
        };
        let (by_column, batches) = read(true);
        let (by_cell, _) = read(false);
        assert_eq!(by_column.len(), 5001);
        assert!(batches >= 2);
        // uuid() differs per read: compare its kind, and everything else exactly.
        let u = columns.iter().position(|c| c.name == "u").unwrap();
        for (a, b) in by_column.iter().zip(&by_cell) {
            assert_eq!(a.len(), b.len());
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if i == u {
                    assert_eq!(std::mem::discriminant(x), std::mem::discriminant(y));
                } else {
                    assert_eq!(x, y, "column {}", columns[i].name);
                }
            }
        }
        assert!(by_column[5000].iter().all(|v| *v == Value::Null));
        assert_eq!(by_column[3][0], Value::Int(3));
    }
}
