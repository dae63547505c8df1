//! Which state store a command uses: local files (`--state-dir`, the default) or tables in
//! the warehouse (`state: {type: warehouse, schema: ...}` in activate.yml).

use std::sync::Arc;

use activate_executor::state::{LocalStateStore, StateConfig, StateStore, WarehouseStateStore};
use activate_executor::warehouse::{self, Warehouse};
use anyhow::anyhow;

use crate::project::Loaded;

/// Opens the store for a command that writes state (`run`, `plan`, `reset`), taking its
/// lock: a second run is refused (exit code 2). `warehouse` is the run's warehouse, if
/// one is open (a DuckDB file must be shared, not opened twice).
pub fn open(
    loaded: &Loaded,
    warehouse: Option<Arc<dyn Warehouse>>,
) -> anyhow::Result<Arc<dyn StateStore>> {
    match &loaded.activate.state {
        StateConfig::Local => Ok(Arc::new(LocalStateStore::open(&loaded.state_dir)?)),
        StateConfig::Warehouse { schema } => {
            let warehouse = match warehouse {
                Some(w) => w,
                None => Arc::from(warehouse::open_with(&loaded.profile.warehouse, true)?),
            };
            let store = tokio::task::block_in_place(|| {
                let backend = warehouse.state_backend(schema, true)?;
                WarehouseStateStore::open(backend, schema, true)
            })?;
            Ok(Arc::new(store))
        }
    }
}

/// Every history record of the target, oldest first, read without taking the lock.
pub fn read_history(loaded: &Loaded) -> anyhow::Result<Vec<serde_json::Value>> {
    let target = &loaded.profile.target_name;
    match &loaded.activate.state {
        StateConfig::Local => Ok(LocalStateStore::read_history(&loaded.state_dir, target)),
        StateConfig::Warehouse { schema } => tokio::task::block_in_place(|| {
            let warehouse = warehouse::open(&loaded.profile.warehouse)?;
            let backend = warehouse.state_backend(schema, false)?;
            let store = WarehouseStateStore::open(backend, schema, false)?;
            store.history(target).map_err(|e| anyhow!("{e}"))
        }),
    }
}

/// Runs a store call that may block on the warehouse from async code.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}
