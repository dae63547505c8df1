//! dbt-activate's engine. One run is one straight line:
//!
//! settings → manifest (+run_results) → activation specs → graph (select, gate, order)
//! → for each ready sync: warehouse query → rows → dedupe → diff against state → plan
//! → circuit breakers → destination batches → per-row outcomes → state commit → results

pub mod alerts;
pub mod connections;
pub mod destination;
pub mod error;
pub mod plan;
pub mod plan_file;
pub mod postgres_tls;
pub mod results;
pub mod runner;
pub mod secrets;
pub mod state;
pub mod sync;
#[cfg(test)]
mod test_support;
pub mod value;
pub mod warehouse;

pub use error::{ConfigError, DestinationError, StateError, WarehouseError};
pub use value::Value;
