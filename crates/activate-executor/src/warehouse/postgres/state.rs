//! Warehouse state in PostgreSQL: sessions from the warehouse's own connection setup, the
//! diff in one `REPEATABLE READ READ ONLY` transaction, and one run at a time per state
//! schema through a session advisory lock held on a dedicated connection for the whole run.

use futures_util::SinkExt;
use tokio_postgres::Client;
use tokio_postgres::IsolationLevel;
use tokio_postgres::SimpleQueryMessage;

use super::{PostgresWarehouse, types};
use crate::error::StateError;
use crate::state::warehouse::{
    CandidateRead, Dialect, PendingInsert, StateBackend, StateSession, TextRows,
    sql::CANDIDATE_EXTRAS,
};
use crate::warehouse::{RowBatch, quote_ident};

/// The first half of the advisory lock key: "dbt-activate state" (the second is the schema).
const LOCK_CLASS: i32 = 0x6474_6173;

fn lock_key(schema: &str) -> i32 {
    xxhash_rust::xxh3::xxh3_64(schema.as_bytes()) as u32 as i32
}

pub struct PostgresStateBackend {
    warehouse: PostgresWarehouse,
    /// Holds the advisory lock for as long as the backend lives.
    _lock: Option<Client>,
}

impl PostgresWarehouse {
    /// State in `schema` of this warehouse; with `lock`, refuses when another run holds it.
    pub fn open_state_backend(
        &self,
        schema: &str,
        lock: bool,
    ) -> Result<PostgresStateBackend, StateError> {
        let warehouse =
            PostgresWarehouse::open(&self.profile).map_err(|e| StateError::Warehouse(e.message))?;
        let lock_client = if lock {
            let client = warehouse
                .client()
                .map_err(|e| StateError::Warehouse(e.message))?;
            let key = lock_key(schema);
            let fail = |e: tokio_postgres::Error| {
                StateError::Warehouse(
                    warehouse
                        .query_error("taking the warehouse state lock", &e)
                        .message,
                )
            };
            let got = warehouse
                .block_on(
                    client.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &key]),
                )
                .map_err(|e| StateError::Warehouse(e.message))?
                .map_err(fail)?;
            if !got.get::<_, bool>(0) {
                let holder = warehouse
                    .block_on(client.query(
                        "SELECT l.pid, coalesce(a.application_name, '') FROM pg_locks l \
                         LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
                         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
                         AND l.classid = ($1::int8 & 4294967295)::oid AND l.objid = ($2::int8 & 4294967295)::oid",
                        &[&i64::from(LOCK_CLASS), &i64::from(key)],
                    ))
                    .ok()
                    .and_then(|r| r.ok())
                    .and_then(|rows| rows.into_iter().next())
                    .map(|row| {
                        format!(
                            "server pid {}, application `{}`",
                            row.get::<_, i32>(0),
                            row.get::<_, String>(1)
                        )
                    })
                    .unwrap_or_else(|| "holder unknown".to_owned());
                return Err(StateError::Locked(format!(
                    "another dbt-activate run holds the warehouse state lock of schema `{schema}` in {} (a PostgreSQL advisory lock, {holder}); wait for it to finish, or give this run another `state.schema` in activate.yml",
                    self.profile.location()
                )));
            }
            Some(client)
        } else {
            None
        };
        Ok(PostgresStateBackend {
            warehouse,
            _lock: lock_client,
        })
    }
}

impl StateBackend for PostgresStateBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn location(&self) -> String {
        self.warehouse.profile.location()
    }

    fn session(&self) -> Result<Box<dyn StateSession + '_>, String> {
        let client = self.warehouse.client().map_err(|e| e.message)?;
        Ok(Box::new(PostgresStateSession {
            warehouse: &self.warehouse,
            client: Some(client),
        }))
    }
}

struct PostgresStateSession<'a> {
    warehouse: &'a PostgresWarehouse,
    client: Option<Client>,
}

impl Drop for PostgresStateSession<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.warehouse.give_back(client);
        }
    }
}

fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

fn text_rows(messages: Vec<SimpleQueryMessage>) -> TextRows {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Appends a text field in COPY text format (`\N` for NULL), then `end` (a tab or a newline).
fn push_copy_field(out: &mut String, value: Option<&str>, end: char) {
    match value {
        None => out.push_str("\\N"),
        Some(text) => crate::destination::postgres::push_copy_escaped(out, text),
    }
    out.push(end);
}

/// The pending rows in COPY text format, in the column order of [`PENDING_COLUMNS`].
fn pending_copy_data(insert: &PendingInsert<'_>) -> String {
    let mut data = String::with_capacity(insert.rows.len() * 96);
    for (n, row) in insert.rows.iter().enumerate() {
        push_copy_field(&mut data, Some(insert.state_id), '\t');
        push_copy_field(&mut data, Some(insert.run_id), '\t');
        push_copy_field(
            &mut data,
            Some(&(insert.first_seq + n as i64).to_string()),
            '\t',
        );
        push_copy_field(&mut data, Some(&row.wh_key), '\t');
        push_copy_field(&mut data, Some(&row.key_json), '\t');
        push_copy_field(&mut data, row.source_hash.as_deref(), '\t');
        // The hash's 64 bits, as the signed BIGINT they fit in.
        let row_hash = row.row_hash.map(|h| (h as i64).to_string());
        push_copy_field(&mut data, row_hash.as_deref(), '\t');
        let removed = if row.source_hash.is_none() { "t" } else { "f" };
        push_copy_field(&mut data, Some(removed), '\n');
    }
    data
}

const PENDING_COLUMNS: &str =
    "state_id, run_id, seq, wh_key, key_json, source_hash, row_hash, removed";

impl StateSession for PostgresStateSession<'_> {
    /// Through `COPY ... FROM STDIN` in one transaction: a first sync journals every row, and
    /// PostgreSQL parses a long `INSERT ... VALUES` far more slowly than it copies.
    fn insert_pending(&mut self, insert: &PendingInsert<'_>) -> Result<(), String> {
        let data = pending_copy_data(insert);
        let copy = format!(
            "COPY {} ({PENDING_COLUMNS}) FROM STDIN",
            insert.tables.pending
        );
        let client = self.client.as_mut().ok_or("no connection")?;
        self.warehouse
            .block_on(async {
                let transaction = client.transaction().await?;
                let sink = transaction.copy_in(&copy).await?;
                futures_util::pin_mut!(sink);
                sink.send(bytes::Bytes::from(data)).await?;
                sink.finish().await?;
                transaction.commit().await
            })
            .map_err(|e| e.message)?
            .map_err(|e| message(&e))
    }

    fn transaction(&mut self, statements: &[String]) -> Result<(), String> {
        let client = self.client.as_mut().ok_or("no connection")?;
        self.warehouse
            .block_on(async {
                let transaction = client.transaction().await?;
                for statement in statements {
                    transaction.batch_execute(statement).await?;
                }
                transaction.commit().await
            })
            .map_err(|e| e.message)?
            .map_err(|e| message(&e))
    }

    fn query_text(&mut self, sql: &str) -> Result<TextRows, String> {
        let client = self.client.as_ref().ok_or("no connection")?;
        self.warehouse
            .block_on(client.simple_query(sql))
            .map_err(|e| e.message)?
            .map(text_rows)
            .map_err(|e| message(&e))
    }

    fn diff(
        &mut self,
        queries: &[&str],
        candidates: &CandidateRead<'_>,
        on_batch: &mut dyn FnMut(RowBatch) -> Result<(), String>,
    ) -> Result<Vec<TextRows>, String> {
        let warehouse = self.warehouse;
        let client = self.client.as_mut().ok_or("no connection")?;
        let block = |e: crate::error::WarehouseError| e.message;
        let transaction = warehouse
            .block_on(
                client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start(),
            )
            .map_err(block)?
            .map_err(|e| message(&e))?;
        let mut answers = Vec::with_capacity(queries.len());
        for query in queries {
            let rows = warehouse
                .block_on(transaction.simple_query(query))
                .map_err(block)?
                .map_err(|e| message(&e))?;
            answers.push(text_rows(rows));
        }
        // The candidates: every column cast as the warehouse's read casts it.
        let names: Vec<&str> = candidates
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .chain(CANDIDATE_EXTRAS)
            .collect();
        let plain: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
        let probe = warehouse
            .block_on(transaction.prepare(&format!(
                "SELECT {} FROM ({}) AS activate_c",
                plain.join(", "),
                candidates.from
            )))
            .map_err(block)?
            .map_err(|e| message(&e))?;
        let how: Vec<types::ReadAs> = probe
            .columns()
            .iter()
            .map(|c| types::read_as(c.type_()))
            .collect();
        let select: Vec<String> = names
            .iter()
            .zip(&how)
            .map(|(n, h)| types::select_expr(n, *h))
            .collect();
        let statement = warehouse
            .block_on(transaction.prepare(&format!(
                "SELECT {} FROM ({}) AS activate_c",
                select.join(", "),
                candidates.from
            )))
            .map_err(block)?
            .map_err(|e| message(&e))?;
        let portal = warehouse
            .block_on(transaction.bind(&statement, &[]))
            .map_err(block)?
            .map_err(|e| message(&e))?;
        let batch_rows = candidates.batch_rows.clamp(1, i32::MAX as usize);
        loop {
            let rows = warehouse
                .block_on(transaction.query_portal(&portal, batch_rows as i32))
                .map_err(block)?
                .map_err(|e| message(&e))?;
            let last = rows.len() < batch_rows;
            let mut batch: RowBatch = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut values = Vec::with_capacity(how.len());
                for (i, h) in how.iter().enumerate() {
                    values.push(types::convert(row, i, *h).map_err(|e| e.message)?);
                }
                batch.push(values);
            }
            if !batch.is_empty() {
                on_batch(batch)?;
            }
            if last {
                break;
            }
        }
        warehouse
            .block_on(transaction.commit())
            .map_err(block)?
            .map_err(|e| message(&e))?;
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::warehouse::sql::{PendingRow, Tables};

    #[test]
    fn pending_rows_are_written_as_copy_text_with_escapes_and_nulls() {
        let tables = Tables::in_schema(Dialect::Postgres, "activate_state");
        let rows = [
            PendingRow {
                wh_key: "a\tb\\c".into(),
                key_json: "[\"a\\tb\"]".into(),
                source_hash: Some("ff".into()),
                row_hash: Some(u64::MAX),
            },
            PendingRow {
                wh_key: "line\nbreak".into(),
                key_json: "[2]".into(),
                source_hash: None,
                row_hash: None,
            },
        ];
        let insert = PendingInsert {
            tables: &tables,
            schema: "activate_state",
            state_id: "s1",
            run_id: "r1",
            first_seq: 7,
            rows: &rows,
        };
        assert_eq!(
            pending_copy_data(&insert),
            "s1\tr1\t7\ta\\tb\\\\c\t[\"a\\\\tb\"]\tff\t-1\tf\n\
             s1\tr1\t8\tline\\nbreak\t[2]\t\\N\t\\N\tt\n"
        );
    }
}
