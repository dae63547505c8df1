//! Warehouses: where the rows come from. Chosen at run time from the dbt profile's `type:`.

pub mod bigquery;
pub mod duckdb;
pub mod postgres;
pub mod read_ahead;
pub mod snowflake;

use crate::connections::WarehouseConfig;
use crate::error::{ConfigError, StateError, WarehouseError};
use crate::state::warehouse::StateBackend;
use crate::value::Value;

/// A column of a relation as the warehouse reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDesc {
    pub name: String,
    pub data_type: String,
}

/// What one sync reads: some columns of one relation, optionally past a cursor.
#[derive(Debug, Clone)]
pub struct ReadRequest<'a> {
    pub relation: &'a str,
    pub columns: &'a [ColumnDesc],
    /// `WHERE column >= value`: the cursor filter, pushed into the warehouse.
    pub cursor_at_least: Option<(&'a str, &'a Value)>,
    pub batch_rows: usize,
}

/// Rows in the order of `ReadRequest::columns`.
pub type RowBatch = Vec<Vec<Value>>;

pub trait Warehouse: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Where the warehouse is, for messages (no secrets).
    fn describe_location(&self) -> String;
    fn health_check(&self) -> Result<(), WarehouseError>;
    /// The columns of a relation: a zero-row probe.
    fn columns(&self, relation: &str) -> Result<Vec<ColumnDesc>, WarehouseError>;
    /// Streams the rows in batches; `on_batch` may stop the read by returning an error.
    fn read(
        &self,
        request: &ReadRequest<'_>,
        on_batch: &mut dyn FnMut(RowBatch) -> Result<(), WarehouseError>,
    ) -> Result<(), WarehouseError>;
    /// The sync state kept in `schema` of this warehouse (`state: {type: warehouse}` in
    /// activate.yml); with `lock`, one run at a time: a second one is refused.
    fn state_backend(&self, schema: &str, lock: bool) -> Result<Box<dyn StateBackend>, StateError> {
        let _ = (schema, lock);
        Err(StateError::Warehouse(format!(
            "activate.yml, state: `type: warehouse` is not supported for {} warehouses in this release; the state tables can live in PostgreSQL, DuckDB, Snowflake or BigQuery\n  hint: use `state: {{type: local}}` (the default) with --state-dir on a persistent volume",
            self.kind()
        )))
    }
}

/// Opens the warehouse the profile names.
pub fn open(config: &WarehouseConfig) -> Result<Box<dyn Warehouse>, ConfigError> {
    open_with(config, false)
}

/// Opens the warehouse; `keeps_state`: the sync state lives in it (`state: {type:
/// warehouse}`), so a DuckDB file is opened read-write.
pub fn open_with(
    config: &WarehouseConfig,
    keeps_state: bool,
) -> Result<Box<dyn Warehouse>, ConfigError> {
    match config {
        WarehouseConfig::DuckDb { path } if keeps_state => {
            Ok(Box::new(duckdb::DuckDbWarehouse::open_writable(path)?))
        }
        WarehouseConfig::DuckDb { path } => Ok(Box::new(duckdb::DuckDbWarehouse::open(path)?)),
        WarehouseConfig::Postgres(profile) => {
            Ok(Box::new(postgres::PostgresWarehouse::open(profile)?))
        }
        WarehouseConfig::Snowflake(config) => Ok(Box::new(
            snowflake::SnowflakeWarehouse::open((**config).clone())
                .map_err(|e| ConfigError::new(e.message))?,
        )),
        WarehouseConfig::BigQuery(config) => Ok(Box::new(bigquery::BigQueryWarehouse::open(
            (**config).clone(),
        ))),
        WarehouseConfig::Unsupported { kind } => Err(ConfigError::new(format!(
            "warehouse type `{kind}` is not supported by this release of dbt-activate"
        ))
        .with_hint("supported: duckdb, postgres, snowflake, bigquery")),
    }
}

/// `"a"."b"` style quoting shared by DuckDB, PostgreSQL and Snowflake.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A SQL literal for a cursor value; strings are quoted (`'...'` with `''`), never
/// interpolated raw.
pub fn sql_literal(value: &Value) -> String {
    literal_with(value, |text| format!("'{}'", text.replace('\'', "''")))
}

/// A SQL literal for a cursor value: numbers as they are, everything else as text quoted by
/// `string` (the warehouse's own string literal).
pub fn literal_with(value: &Value, string: fn(&str) -> String) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Number(d)
            if d.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '-' | '.' | 'e' | 'E' | '+')) =>
        {
            d.clone()
        }
        Value::Float(f) if f.is_finite() => format!("{f:?}"),
        other => string(&other.to_text().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted() {
        assert_eq!(
            sql_literal(&Value::Text("a'; drop table x; --".into())),
            "'a''; drop table x; --'"
        );
        assert_eq!(sql_literal(&Value::Number("1; drop".into())), "'1; drop'");
        assert_eq!(sql_literal(&Value::Int(5)), "5");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
