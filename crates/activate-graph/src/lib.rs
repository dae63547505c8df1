//! The DAG of a dbt project's nodes and the dbt-activate syncs declared on its models:
//! dbt selection syntax over syncs ([`ProjectGraph::select`]), ordering by lineage and `after:`
//! ([`ProjectGraph::order`], [`SyncOrder`]), and gating on `run_results.json` ([`gate`]).

pub mod error;
pub mod gate;
pub mod graph;
pub mod order;
pub mod selector;

#[cfg(test)]
mod fixture;

pub use error::GraphError;
pub use gate::{Gate, GatePolicy, gate};
pub use graph::ProjectGraph;
pub use order::SyncOrder;
