//! dbt artifacts (`manifest.json`, `run_results.json`) and the activation specs that
//! `config.meta.activate` declares on models.

pub mod error;
mod load;
pub mod manifest;
pub mod run_results;
pub mod schedule;
pub mod spec;

pub use error::{ManifestError, SpecError, SpecErrors, did_you_mean};
pub use manifest::{Manifest, Node, SUPPORTED_MANIFEST_VERSIONS};
pub use run_results::{Invocation, NodeResult, RunResults, TimingStep};
pub use schedule::Schedule;
pub use spec::{
    ActivationSpec, FieldMapping, Limit, Limits, MappingSource, OnDelete, Operation, Owner,
    QuerySync, SyncMode, add_query_specs, extract_specs,
};
