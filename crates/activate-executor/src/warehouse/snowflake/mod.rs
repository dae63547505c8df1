//! Snowflake: reads the relations dbt-snowflake built, through Snowflake's HTTP protocol
//! (client.rs), at the account or the `host`/`port`/`protocol` of the dbt profile.

pub mod client;
pub mod config;
pub mod convert;
mod ipc;
mod keypair;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{StateError, WarehouseError};
use crate::state::warehouse::StateBackend;
use crate::warehouse::{ColumnDesc, ReadRequest, RowBatch, Warehouse, literal_with, quote_ident};

/// A Snowflake string literal: in single-quoted strings a backslash starts an escape
/// sequence, so backslashes are doubled as well as quotes.
pub fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A Snowflake literal for a cursor value: numbers as they are, everything else as a string.
pub fn literal(value: &crate::value::Value) -> String {
    literal_with(value, string_literal)
}

pub use client::SnowflakeClient;
pub use config::SnowflakeConfig;

pub struct SnowflakeWarehouse {
    client: SnowflakeClient,
    /// Per relation, each column's name as shown (see [`shown_name`]) to its name in Snowflake,
    /// so reads select the real column.
    actual_names: ActualNames,
}

/// Per relation, shown column name to Snowflake column name (shared with the state backend).
pub(crate) type ActualNames = Arc<Mutex<HashMap<String, HashMap<String, String>>>>;

/// The name a column is shown by. Snowflake stores unquoted identifiers upper-cased (`select id`
/// yields `ID`), while dbt users write them in lower case in their SQL and schema.yml, and DuckDB,
/// PostgreSQL and BigQuery return them as written. A name with no lower-case letter is therefore
/// shown lower-cased, so a sync without `mapping` sends the same field names, and templates see
/// the same variables, whichever warehouse dbt built the model in. Any other name (quoted with
/// mixed or lower case) is shown as it is.
pub fn shown_name(actual: &str) -> String {
    if actual.chars().any(|c| c.is_lowercase()) {
        actual.to_owned()
    } else {
        actual.to_lowercase()
    }
}

/// The Snowflake name of a column asked for by `name`: its own entry, else one that matches
/// but for case, else `name` itself.
pub(crate) fn actual_name<'a>(names: &'a HashMap<String, String>, name: &'a str) -> &'a str {
    if let Some(actual) = names.get(name) {
        return actual;
    }
    names
        .iter()
        .find(|(shown, _)| shown.eq_ignore_ascii_case(name))
        .map_or(name, |(_, actual)| actual.as_str())
}

impl SnowflakeWarehouse {
    /// Connects lazily: the login happens on the first probe, on a blocking thread.
    pub fn open(config: SnowflakeConfig) -> Result<Self, WarehouseError> {
        Ok(Self {
            client: SnowflakeClient::new(config)?,
            actual_names: Arc::new(Mutex::new(HashMap::new())),
        })
    }
}

/// Splits rows into batches of at most `size`, handing each to `on_batch`.
fn rebatch(
    rows: Vec<Vec<crate::value::Value>>,
    size: usize,
    pending: &mut RowBatch,
    on_batch: &mut dyn FnMut(RowBatch) -> Result<(), WarehouseError>,
) -> Result<(), WarehouseError> {
    for row in rows {
        pending.push(row);
        if pending.len() >= size.max(1) {
            on_batch(std::mem::take(pending))?;
        }
    }
    Ok(())
}

impl Warehouse for SnowflakeWarehouse {
    fn kind(&self) -> &'static str {
        "snowflake"
    }

    fn describe_location(&self) -> String {
        let c = self.client.config();
        format!(
            "snowflake {} database {} ({})",
            c.base_url, c.database, c.origin
        )
    }

    fn health_check(&self) -> Result<(), WarehouseError> {
        let result = self.client.query("SELECT 1")?;
        self.client.for_each_chunk(result, &mut |_| Ok(()))
    }

    fn columns(&self, relation: &str) -> Result<Vec<ColumnDesc>, WarehouseError> {
        let result = self
            .client
            .query(&format!("SELECT * FROM {relation} LIMIT 0"))?;
        let columns: Vec<ColumnDesc> = result
            .columns
            .iter()
            .map(|c| ColumnDesc {
                name: shown_name(&c.name),
                data_type: c.type_name(),
            })
            .collect();
        let names = columns
            .iter()
            .zip(&result.columns)
            .map(|(shown, actual)| (shown.name.clone(), actual.name.clone()))
            .collect();
        if let Ok(mut known) = self.actual_names.lock() {
            known.insert(relation.to_owned(), names);
        }
        Ok(columns)
    }

    fn state_backend(&self, schema: &str, lock: bool) -> Result<Box<dyn StateBackend>, StateError> {
        Ok(Box::new(state::SnowflakeStateBackend::open(
            self.client.config().clone(),
            self.actual_names.clone(),
            schema,
            lock,
        )?))
    }

    fn read(
        &self,
        request: &ReadRequest<'_>,
        on_batch: &mut dyn FnMut(RowBatch) -> Result<(), WarehouseError>,
    ) -> Result<(), WarehouseError> {
        let known = self
            .actual_names
            .lock()
            .ok()
            .and_then(|k| k.get(request.relation).cloned());
        let names = match known {
            Some(names) => names,
            None => {
                self.columns(request.relation)?;
                self.actual_names
                    .lock()
                    .ok()
                    .and_then(|k| k.get(request.relation).cloned())
                    .unwrap_or_default()
            }
        };
        let select: Vec<String> = request
            .columns
            .iter()
            .map(|c| quote_ident(actual_name(&names, &c.name)))
            .collect();
        let mut sql = format!("SELECT {} FROM {}", select.join(", "), request.relation);
        if let Some((column, value)) = request.cursor_at_least {
            sql.push_str(&format!(
                " WHERE {} >= {}",
                quote_ident(actual_name(&names, column)),
                literal(value)
            ));
        }
        let result = self.client.query(&sql)?;
        let mut pending: RowBatch = Vec::new();
        self.client.for_each_chunk(result, &mut |rows| {
            rebatch(rows, request.batch_rows, &mut pending, on_batch)
        })?;
        if !pending.is_empty() {
            on_batch(pending)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod column_name_tests {
    use super::*;

    #[test]
    fn folded_identifiers_are_shown_lower_cased_and_others_as_they_are() {
        assert_eq!(shown_name("LIFETIME_VALUE"), "lifetime_value");
        assert_eq!(shown_name("ID2"), "id2");
        assert_eq!(shown_name("quoted_lower"), "quoted_lower");
        assert_eq!(shown_name("MixedCase"), "MixedCase");
        assert_eq!(shown_name("_1"), "_1");
    }

    #[test]
    fn reads_select_the_snowflake_name_of_each_shown_name() {
        let names: HashMap<String, String> = [("updated_at", "UPDATED_AT"), ("Mixed", "Mixed")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        assert_eq!(actual_name(&names, "updated_at"), "UPDATED_AT");
        assert_eq!(actual_name(&names, "UPDATED_AT"), "UPDATED_AT");
        assert_eq!(actual_name(&names, "Mixed"), "Mixed");
        assert_eq!(actual_name(&names, "unknown"), "unknown");
    }
}
