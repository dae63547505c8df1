//! The state seam: where a sync's state is loaded from, journaled to and committed. Two
//! stores stand behind it: [`LocalStateStore`] (files, the default) and
//! [`WarehouseStateStore`](super::WarehouseStateStore) (tables in the warehouse, with the diff
//! computed there as SQL).

use crate::error::StateError;
use crate::state::{Confirmed, LocalStateStore, StateKey, SyncState, WarehouseStateStore};

pub trait StateStore: Send + Sync {
    /// The committed state plus every change confirmed since (a journal replay).
    fn load(&self, key: &StateKey) -> Result<SyncState, StateError>;
    /// Records changes the destination confirmed, durably, before the next batch is sent.
    fn journal(&self, key: &StateKey, changes: &[Confirmed]) -> Result<(), StateError>;
    /// Makes the journaled changes and `state.cursor` the committed state.
    fn commit(&self, key: &StateKey, state: &SyncState) -> Result<(), StateError>;
    /// Forgets a sync's state for a target (every destination it wrote to).
    fn reset(&self, target: &str, sync: &str) -> Result<bool, StateError>;
    fn append_history(&self, target: &str, records: &[serde_json::Value])
    -> Result<(), StateError>;
    /// Every history record of a target, oldest first.
    fn history(&self, target: &str) -> Result<Vec<serde_json::Value>, StateError>;
    /// `Some` for the warehouse store: the runner then computes the diff as SQL there.
    fn in_warehouse(&self) -> Option<&WarehouseStateStore> {
        None
    }
}

impl StateStore for LocalStateStore {
    fn load(&self, key: &StateKey) -> Result<SyncState, StateError> {
        LocalStateStore::load(self, key)
    }
    fn journal(&self, key: &StateKey, changes: &[Confirmed]) -> Result<(), StateError> {
        LocalStateStore::journal(self, key, changes)
    }
    fn commit(&self, key: &StateKey, state: &SyncState) -> Result<(), StateError> {
        LocalStateStore::commit(self, key, state)
    }
    fn reset(&self, target: &str, sync: &str) -> Result<bool, StateError> {
        LocalStateStore::reset(self, target, sync)
    }
    fn append_history(
        &self,
        target: &str,
        records: &[serde_json::Value],
    ) -> Result<(), StateError> {
        LocalStateStore::append_history(self, target, records)
    }
    fn history(&self, target: &str) -> Result<Vec<serde_json::Value>, StateError> {
        Ok(LocalStateStore::read_history(self.root(), target))
    }
}
