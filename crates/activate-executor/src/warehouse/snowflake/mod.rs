//! Snowflake: reads the relations dbt-snowflake built, through Snowflake's HTTP protocol
//! (client.rs), at the account or the `host`/`port`/`protocol` of the dbt profile.

pub mod client;
pub mod config;
pub mod convert;
mod ipc;
mod keypair;

use crate::error::WarehouseError;
use crate::warehouse::{ColumnDesc, ReadRequest, RowBatch, Warehouse, quote_ident, sql_literal};

pub use client::SnowflakeClient;
pub use config::SnowflakeConfig;

pub struct SnowflakeWarehouse {
    client: SnowflakeClient,
}

impl SnowflakeWarehouse {
    /// Connects lazily: the login happens on the first probe, on a blocking thread.
    pub fn open(config: SnowflakeConfig) -> Result<Self, WarehouseError> {
        Ok(Self {
            client: SnowflakeClient::new(config)?,
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
        Ok(result
            .columns
            .iter()
            .map(|c| ColumnDesc {
                name: c.name.clone(),
                data_type: c.type_name(),
            })
            .collect())
    }

    fn read(
        &self,
        request: &ReadRequest<'_>,
        on_batch: &mut dyn FnMut(RowBatch) -> Result<(), WarehouseError>,
    ) -> Result<(), WarehouseError> {
        let select: Vec<String> = request
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let mut sql = format!("SELECT {} FROM {}", select.join(", "), request.relation);
        if let Some((column, value)) = request.cursor_at_least {
            sql.push_str(&format!(
                " WHERE {} >= {}",
                quote_ident(column),
                sql_literal(value)
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
