//! End-to-end tests: a real `dbt build` of `dbt_project_example/`, then the real
//! `dbt-activate` binary against a real PostgreSQL, a fake webhook and files.
//!
//! One test binary (so the dbt template is built once); each test gets its own
//! project copy, database and webhook. Run them with `bash scripts/test.sh`.

#[macro_use]
mod common;

mod alerts;
mod audit;
mod bad_input;
mod bigquery_source;
mod cli;
mod destination_faults;
mod exposures;
mod field_types;
mod freshness;
mod gating;
mod history;
mod hostile;
mod injection;
mod kills;
mod orchestrators;
mod packaging;
mod plan_apply;
mod postgres_source;
mod query_syncs;
mod results;
mod schedule;
mod secrets;
mod select;
mod serve;
mod signals;
mod snowflake_source;
mod state_faults;
mod sync;
mod tls;
mod warehouse_state;
mod webhook;

mod hubspot;
mod intercom;
mod salesforce;
mod slack;
mod stripe;
