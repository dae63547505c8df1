//! Warehouse state in DuckDB: the state tables live in the database file dbt-duckdb builds,
//! which dbt-activate then opens read-write. One run at a time comes from DuckDB's own file
//! lock: a second process cannot open the file while this one has it open read-write.

use std::sync::Mutex;

use duckdb::Connection;

use super::{DuckDbWarehouse, convert, read_as, select_expr};
use crate::error::StateError;
use crate::state::warehouse::{
    CandidateRead, Dialect, PendingInsert, StateBackend, StateSession, TextRows,
    sql::CANDIDATE_EXTRAS,
};
use crate::warehouse::{ColumnDesc, RowBatch};

pub struct DuckDbStateBackend {
    path: String,
    connection: Mutex<Connection>,
}

impl DuckDbWarehouse {
    /// `for_writing`: the file must have been opened read-write (commands that only read the
    /// history open it read-only).
    pub fn open_state_backend(&self, for_writing: bool) -> Result<DuckDbStateBackend, StateError> {
        if for_writing && !self.writable {
            return Err(StateError::Warehouse(format!(
                "the DuckDB database {} is open read-only; warehouse state needs it read-write (internal error)",
                self.path.display()
            )));
        }
        let connection = self
            .connection()
            .map_err(|e| StateError::Warehouse(e.message))?;
        Ok(DuckDbStateBackend {
            path: self.path.display().to_string(),
            connection: Mutex::new(connection),
        })
    }
}

impl StateBackend for DuckDbStateBackend {
    fn dialect(&self) -> Dialect {
        Dialect::DuckDb
    }

    fn location(&self) -> String {
        format!("duckdb file {}", self.path)
    }

    fn session(&self) -> Result<Box<dyn StateSession + '_>, String> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_clone()
            .map_err(|e| e.to_string())?;
        Ok(Box::new(DuckDbStateSession { connection }))
    }
}

struct DuckDbStateSession {
    connection: Connection,
}

fn query_text(connection: &Connection, sql: &str) -> Result<TextRows, duckdb::Error> {
    let mut statement = connection.prepare(sql)?;
    let mut rows = statement.query([])?;
    let columns = rows.as_ref().map(|s| s.column_count()).unwrap_or(0);
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(row.get::<_, Option<String>>(i)?);
        }
        out.push(values);
    }
    Ok(out)
}

impl StateSession for DuckDbStateSession {
    /// Through DuckDB's appender: binding a long `VALUES` list costs DuckDB far more.
    fn insert_pending(&mut self, insert: &PendingInsert<'_>) -> Result<(), String> {
        let transaction = self.connection.transaction().map_err(|e| e.to_string())?;
        {
            let mut appender = transaction
                .appender_to_db("activate_pending", insert.schema)
                .map_err(|e| e.to_string())?;
            for (n, row) in insert.rows.iter().enumerate() {
                appender
                    .append_row(duckdb::params![
                        insert.state_id,
                        insert.run_id,
                        insert.first_seq + n as i64,
                        row.wh_key,
                        row.key_json,
                        row.source_hash,
                        row.row_hash.map(|h| h as i64),
                        row.source_hash.is_none(),
                    ])
                    .map_err(|e| e.to_string())?;
            }
            appender.flush().map_err(|e| e.to_string())?;
        }
        transaction.commit().map_err(|e| e.to_string())
    }

    fn transaction(&mut self, statements: &[String]) -> Result<(), String> {
        let transaction = self.connection.transaction().map_err(|e| e.to_string())?;
        for statement in statements {
            transaction
                .execute_batch(statement)
                .map_err(|e| e.to_string())?;
        }
        transaction.commit().map_err(|e| e.to_string())
    }

    fn query_text(&mut self, sql: &str) -> Result<TextRows, String> {
        query_text(&self.connection, sql).map_err(|e| e.to_string())
    }

    fn diff(
        &mut self,
        queries: &[&str],
        candidates: &CandidateRead<'_>,
        on_batch: &mut dyn FnMut(RowBatch) -> Result<(), String>,
    ) -> Result<Vec<TextRows>, String> {
        // One transaction: every query sees the same snapshot of the database.
        let transaction = self.connection.transaction().map_err(|e| e.to_string())?;
        let mut answers = Vec::with_capacity(queries.len());
        for query in queries {
            answers.push(query_text(&transaction, query).map_err(|e| e.to_string())?);
        }
        let columns: Vec<ColumnDesc> = candidates
            .columns
            .iter()
            .cloned()
            .chain(CANDIDATE_EXTRAS.iter().map(|name| ColumnDesc {
                name: (*name).to_owned(),
                data_type: "VARCHAR".to_owned(),
            }))
            .collect();
        let select: Vec<String> = columns.iter().map(select_expr).collect();
        let how: Vec<_> = columns.iter().map(|c| read_as(&c.data_type)).collect();
        let sql = format!(
            "SELECT {} FROM ({}) AS activate_c",
            select.join(", "),
            candidates.from
        );
        {
            let mut statement = transaction.prepare(&sql).map_err(|e| e.to_string())?;
            let mut rows = statement.query([]).map_err(|e| e.to_string())?;
            let batch_rows = candidates.batch_rows.max(1);
            let mut batch: RowBatch = Vec::with_capacity(batch_rows);
            while let Some(row) = rows.next().map_err(|e| e.to_string())? {
                let mut values = Vec::with_capacity(how.len());
                for (i, h) in how.iter().enumerate() {
                    values.push(convert(row.get_ref(i).map_err(|e| e.to_string())?, *h));
                }
                batch.push(values);
                if batch.len() >= batch_rows {
                    on_batch(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(batch_rows),
                    ))?;
                }
            }
            if !batch.is_empty() {
                on_batch(batch)?;
            }
        }
        transaction.commit().map_err(|e| e.to_string())?;
        Ok(answers)
    }
}
