//! The warehouse read on a thread of its own, one batch ahead of the diff (issue #6).
//!
//! Planning a sync is a warehouse read and a diff of what it returns, and nothing else runs
//! while it lasts (the destination is not written until the plan is whole). Done in turn on
//! one thread, the reader converting a batch (DuckDB's scan and Arrow export, our `Value`s)
//! and the diff of the batch before added up; with the read on a second thread they overlap,
//! so the planning takes about the longer of the two instead of their sum.
//!
//! At most [`BATCHES_AHEAD`] batches wait between the two, so memory stays a few batches.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{ReadRequest, RowBatch, Warehouse};
use crate::error::WarehouseError;

/// Batches read and waiting for the diff before the reader pauses.
const BATCHES_AHEAD: usize = 1;

/// Reads `request` on a thread of its own and hands each batch to `handle` on this one, in
/// the warehouse's order.
///
/// Returns the warehouse's time: the reader's time less the time it waited for `handle` to
/// take a batch. So `handle`'s time counts as the warehouse's only where the reader had
/// nothing to do but wait for it, and the time the two overlap counts once, as the
/// warehouse's.
pub fn read_ahead(
    warehouse: &dyn Warehouse,
    request: &ReadRequest<'_>,
    mut handle: impl FnMut(RowBatch),
) -> Result<Duration, WarehouseError> {
    let (sender, receiver) = mpsc::sync_channel::<RowBatch>(BATCHES_AHEAD);
    // The Snowflake and BigQuery clients block on the runtime of the thread that calls them.
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("warehouse-read".into())
            .spawn_scoped(scope, move || {
                let _in_runtime = runtime.as_ref().map(tokio::runtime::Handle::enter);
                let started = Instant::now();
                let mut waiting = Duration::ZERO;
                warehouse.read(request, &mut |batch| {
                    let handing = Instant::now();
                    // Fails only when this side is gone: `handle` panicked.
                    sender
                        .send(batch)
                        .map_err(|_| WarehouseError::new("the read was abandoned"))?;
                    waiting += handing.elapsed();
                    Ok(())
                })?;
                Ok(started.elapsed().saturating_sub(waiting))
            })
            .map_err(|e| {
                WarehouseError::new(format!("could not start the warehouse read's thread: {e}"))
            })?;
        // Ends when the reader is done and its sender dropped.
        for batch in receiver {
            handle(batch);
        }
        match reader.join() {
            Ok(read) => read,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;
    use crate::warehouse::duckdb::DuckDbWarehouse;

    fn warehouse_with(rows: usize) -> (tempfile::TempDir, DuckDbWarehouse) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.duckdb");
        ::duckdb::Connection::open(&path)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TABLE t AS SELECT i::BIGINT AS id, 'name ' || i AS name FROM range(0, {rows}) r(i) ORDER BY i"
            ))
            .unwrap();
        let warehouse = DuckDbWarehouse::open(&path).unwrap();
        (dir, warehouse)
    }

    fn read_all(
        warehouse: &DuckDbWarehouse,
        relation: &str,
        handle: impl FnMut(RowBatch),
    ) -> Result<Duration, WarehouseError> {
        let columns = warehouse.columns("t").unwrap();
        let request = ReadRequest {
            relation,
            columns: &columns,
            cursor_at_least: None,
            batch_rows: 1_000,
        };
        read_ahead(warehouse, &request, handle)
    }

    #[test]
    fn every_batch_arrives_whole_and_in_the_warehouse_order() {
        let (_dir, warehouse) = warehouse_with(25_500);
        let mut ids = Vec::new();
        let mut batches = 0;
        read_all(&warehouse, "t", |batch| {
            batches += 1;
            // The reader runs ahead while a batch is handled: a slow handler loses nothing.
            std::thread::sleep(Duration::from_millis(1));
            for row in batch {
                assert_eq!(row[1], Value::Text(format!("name {}", ids.len())));
                ids.push(row[0].clone());
            }
        })
        .unwrap();
        assert_eq!(ids.len(), 25_500);
        assert!(
            ids.iter()
                .enumerate()
                .all(|(i, id)| *id == Value::Int(i as i64))
        );
        // DuckDB hands out chunks of 2,048 rows: a batch is one chunk here.
        assert!(batches >= 12, "read in batches, not at once: {batches}");
    }

    #[test]
    fn a_failed_read_is_the_warehouse_error() {
        let (_dir, warehouse) = warehouse_with(10);
        let mut handled = 0;
        let error = read_all(&warehouse, "no_such_table", |_| handled += 1).unwrap_err();
        assert!(error.message.contains("no_such_table"), "{}", error.message);
        assert_eq!(handled, 0);
    }

    #[test]
    fn a_handler_that_panics_stops_the_read_and_the_panic_reaches_the_caller() {
        let (_dir, warehouse) = warehouse_with(50_000);
        let mut handled = 0;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_all(&warehouse, "t", |_| {
                handled += 1;
                if handled == 3 {
                    panic!("handler failed");
                }
            })
        }));
        let panic = outcome.unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"handler failed"));
        assert_eq!(handled, 3);
    }
}
