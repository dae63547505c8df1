//! Warehouse state in Snowflake: sessions are logins of their own (a Snowflake transaction
//! belongs to a session), kept in a small pool; statements run one per request, a transaction
//! is `BEGIN`, the statements, `COMMIT` (`ROLLBACK` on an error). Snowflake has no advisory
//! locks and does not enforce unique keys, so one run at a time comes from a lock row in
//! `<schema>.activate_lock`, taken by an `UPDATE ... WHERE holder IS NULL` (Snowflake runs
//! the UPDATEs of one table one after the other) and given back when the run ends.

use std::sync::Mutex;

use super::{ActualNames, SnowflakeClient, SnowflakeConfig, actual_name};
use crate::error::{StateError, WarehouseError};
use crate::state::warehouse::{
    CandidateRead, Dialect, StateBackend, StateSession, TextRows, give_back_lock_row, lock_holder,
    lock_row_held,
};
use crate::value::Value;
use crate::warehouse::{RowBatch, quote_ident};

pub struct SnowflakeStateBackend {
    config: SnowflakeConfig,
    names: ActualNames,
    /// Logged-in clients not in use.
    idle: Mutex<Vec<SnowflakeClient>>,
    /// The lock row's holder, given back on drop.
    lock: Option<LockRow>,
}

struct LockRow {
    table: String,
    holder: String,
}

fn query_text(client: &SnowflakeClient, sql: &str) -> Result<TextRows, WarehouseError> {
    let result = client.query(sql)?;
    let mut out = Vec::new();
    client.for_each_chunk(result, &mut |rows| {
        out.extend(
            rows.into_iter()
                .map(|row| row.into_iter().map(Value::into_text).collect::<Vec<_>>()),
        );
        Ok(())
    })?;
    Ok(out)
}

fn first_number(rows: &TextRows) -> u64 {
    rows.first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl SnowflakeStateBackend {
    /// State in `schema` of the database the profile names; with `lock`, takes the lock row
    /// or refuses when another run holds it.
    pub fn open(
        config: SnowflakeConfig,
        names: ActualNames,
        schema: &str,
        lock: bool,
    ) -> Result<Self, StateError> {
        let mut backend = Self {
            config,
            names,
            idle: Mutex::new(Vec::new()),
            lock: None,
        };
        if lock {
            backend.lock = Some(backend.take_lock(schema)?);
        }
        Ok(backend)
    }

    fn take_lock(&self, schema: &str) -> Result<LockRow, StateError> {
        let table = format!("{}.{}", quote_ident(schema), quote_ident("activate_lock"));
        let holder = lock_holder();
        let fail = |e: WarehouseError| {
            StateError::Warehouse(format!(
                "warehouse state in schema `{schema}` of {}: could not take the state lock: {}\n  hint: the profile's user needs CREATE SCHEMA on the database (or CREATE TABLE on the schema `{schema}`) and SELECT, INSERT, UPDATE, DELETE on it",
                self.location(),
                e.message
            ))
        };
        let client = self.client().map_err(fail)?;
        for statement in [
            format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)),
            format!("CREATE TABLE IF NOT EXISTS {table} (holder TEXT)"),
            format!(
                "INSERT INTO {table} (holder) SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM {table})"
            ),
        ] {
            query_text(&client, &statement).map_err(fail)?;
        }
        let updated = query_text(
            &client,
            &format!(
                "UPDATE {table} SET holder = {} WHERE holder IS NULL",
                Dialect::Snowflake.text(&holder)
            ),
        )
        .map_err(fail)?;
        if first_number(&updated) == 0 {
            let held_by = query_text(
                &client,
                &format!("SELECT holder FROM {table} WHERE holder IS NOT NULL"),
            )
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .and_then(|row| row.into_iter().next().flatten())
            .unwrap_or_else(|| "holder unknown".to_owned());
            self.give_back(client);
            return Err(lock_row_held(
                "schema",
                schema,
                &self.location(),
                &held_by,
                &format!("UPDATE {table} SET holder = NULL"),
            ));
        }
        self.give_back(client);
        Ok(LockRow { table, holder })
    }

    fn client(&self) -> Result<SnowflakeClient, WarehouseError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(client) => Ok(client),
            None => SnowflakeClient::new(self.config.clone()),
        }
    }

    fn give_back(&self, client: SnowflakeClient) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(client);
    }
}

impl Drop for SnowflakeStateBackend {
    /// Gives the lock back. The drop may happen on any thread, inside or outside the async
    /// runtime, so the release runs on a thread of its own with a runtime and login of its own.
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else {
            return;
        };
        let config = self.config.clone();
        let clear = format!("UPDATE {} SET holder = NULL", lock.table);
        give_back_lock_row(clear, move || {
            let client = SnowflakeClient::new(config).map_err(|e| e.message)?;
            query_text(
                &client,
                &format!(
                    "UPDATE {} SET holder = NULL WHERE holder = {}",
                    lock.table,
                    Dialect::Snowflake.text(&lock.holder)
                ),
            )
            .map(|_| ())
            .map_err(|e| e.message)
        });
    }
}

impl StateBackend for SnowflakeStateBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Snowflake
    }

    fn location(&self) -> String {
        format!(
            "snowflake {} database {} ({})",
            self.config.base_url, self.config.database, self.config.origin
        )
    }

    fn session(&self) -> Result<Box<dyn StateSession + '_>, String> {
        let client = self.client().map_err(|e| e.message)?;
        Ok(Box::new(SnowflakeStateSession {
            backend: self,
            client: Some(client),
        }))
    }

    fn column_in_sql(&self, relation: &str, column: &str) -> String {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        match names.get(relation) {
            Some(known) => actual_name(known, column).to_owned(),
            None => column.to_owned(),
        }
    }
}

struct SnowflakeStateSession<'a> {
    backend: &'a SnowflakeStateBackend,
    client: Option<SnowflakeClient>,
}

impl Drop for SnowflakeStateSession<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.backend.give_back(client);
        }
    }
}

impl SnowflakeStateSession<'_> {
    fn client(&self) -> Result<&SnowflakeClient, String> {
        self.client.as_ref().ok_or_else(|| "no session".to_owned())
    }

    /// Runs `body` between `BEGIN` and `COMMIT`, rolling back when it fails.
    fn in_transaction<T>(
        &mut self,
        body: impl FnOnce(&SnowflakeClient) -> Result<T, String>,
    ) -> Result<T, String> {
        let client = self.client()?;
        query_text(client, "BEGIN").map_err(|e| e.message)?;
        match body(client) {
            Ok(value) => {
                query_text(client, "COMMIT").map_err(|e| e.message)?;
                Ok(value)
            }
            Err(e) => {
                let _ = query_text(client, "ROLLBACK");
                Err(e)
            }
        }
    }
}

impl StateSession for SnowflakeStateSession<'_> {
    fn transaction(&mut self, statements: &[String]) -> Result<(), String> {
        self.in_transaction(|client| {
            for statement in statements {
                query_text(client, statement).map_err(|e| e.message)?;
            }
            Ok(())
        })
    }

    /// One by one, outside a transaction: Snowflake commits each DDL statement on its own
    /// anyway (and fakesnow refuses DDL inside an explicit transaction). Each is idempotent.
    fn create_tables(&mut self, statements: &[String]) -> Result<(), String> {
        let client = self.client()?;
        for statement in statements {
            query_text(client, statement).map_err(|e| e.message)?;
        }
        Ok(())
    }

    fn query_text(&mut self, sql: &str) -> Result<TextRows, String> {
        query_text(self.client()?, sql).map_err(|e| e.message)
    }

    /// In one transaction (Snowflake's is READ COMMITTED: each statement sees what was
    /// committed when it started; the lock keeps other runs from writing the state).
    fn diff(
        &mut self,
        queries: &[&str],
        candidates: &CandidateRead<'_>,
        on_batch: &mut dyn FnMut(RowBatch) -> Result<(), String>,
    ) -> Result<Vec<TextRows>, String> {
        self.in_transaction(|client| {
            let mut answers = Vec::with_capacity(queries.len());
            for query in queries {
                answers.push(query_text(client, query).map_err(|e| e.message)?);
            }
            // The model's columns by their Snowflake names, the extras unquoted (they were
            // named unquoted in the subquery).
            let sql = candidates.select_sql(quote_ident);
            let result = client.query(&sql).map_err(|e| e.message)?;
            let batch_rows = candidates.batch_rows.max(1);
            let mut batch: RowBatch = Vec::with_capacity(batch_rows);
            let mut stopped = None;
            let read = client.for_each_chunk(result, &mut |rows| {
                for row in rows {
                    batch.push(row);
                    if batch.len() >= batch_rows
                        && let Err(e) = on_batch(std::mem::take(&mut batch))
                    {
                        stopped = Some(e.clone());
                        return Err(WarehouseError::new(e));
                    }
                }
                Ok(())
            });
            if let Err(e) = read {
                return Err(stopped.unwrap_or(e.message));
            }
            if !batch.is_empty() {
                on_batch(batch)?;
            }
            Ok(answers)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The diff's SQL names a model column by its Snowflake name (`ID` for the shown `id`),
    /// as the source's read does; a quoted lower-case name is kept.
    #[test]
    fn model_columns_are_written_by_their_snowflake_names() {
        let output = serde_json::json!({"account": "a", "user": "u", "password": "pw",
            "database": "d", "schema": "s", "host": "127.0.0.1", "port": 9, "protocol": "http"});
        let config = SnowflakeConfig::from_profile(&output, "p").unwrap();
        let relation = "\"D\".\"S\".\"LEADS\"";
        let names: HashMap<String, String> = [("id", "ID"), ("quoted_lower", "quoted_lower")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        let known: ActualNames =
            Arc::new(Mutex::new(HashMap::from([(relation.to_owned(), names)])));
        let backend = SnowflakeStateBackend::open(config, known, "st", false).unwrap();
        assert_eq!(backend.column_in_sql(relation, "id"), "ID");
        assert_eq!(
            backend.column_in_sql(relation, "quoted_lower"),
            "quoted_lower"
        );
        assert_eq!(backend.column_in_sql("\"D\".\"S\".\"OTHER\"", "id"), "id");
        assert_eq!(backend.dialect(), Dialect::Snowflake);
    }
}
