//! The end-to-end harness of dbt-activate.
//!
//! Every test gets its own copy of `dbt_project_example/` (already built by a
//! real `dbt build --target ci`), its own PostgreSQL database (with the tables of
//! `ops/postgres_tables.sql`), and its own fake webhook receiver, then drives the
//! real `dbt-activate` binary and real dbt against them.
//!
//! Environment:
//! - `ACTIVATE_TEST_PG_URL`: an admin URL of a PostgreSQL server (`scripts/test.sh`
//!   starts a private cluster and sets it).
//! - `CARGO_TARGET_DIR`: where `cargo build -p dbt-activate` put the binary.
//! - `ACTIVATE_TEST_KEEP=1`: keep each test's project copy and database, and print
//!   where they are (for debugging a failing test).

pub mod fakes;
mod pg;
mod process;
mod project;
mod webhook;

use std::path::PathBuf;

pub use pg::PgDatabase;
pub use process::{RunOutput, run_with_timeout};
pub use project::{ActivateCommand, Project};
/// The loopback HTTP server behind every fake (the webhook fake is its simplest use).
pub use webhook::Webhook as HttpServer;
pub use webhook::{Reply, Request, Webhook};

/// The default sync names of the example project (`<model>__<destination>__<object>`).
pub mod syncs {
    pub const LEADS: &str = "enriched_leads__crm__Lead";
    pub const CHURN_RISK: &str = "churn_risk__cs_tool__companies";
    pub const HIGH_VALUE: &str = "high_value_at_risk__marketing__high_value_at_risk";
    pub const BILLING: &str = "billing_usage__billing__usage_records";
    pub const ALERTS: &str = "churn_alerts__alerts__cs_alerts";
    /// The query sync of activate.yml (`syncs:`).
    pub const LEAD_SCORES: &str = "lead_scores_to_sales";
    pub const ALL: [&str; 6] = [LEADS, CHURN_RISK, HIGH_VALUE, BILLING, ALERTS, LEAD_SCORES];
}

/// The workspace root (the folder with the root `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent folder")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        _ => repo_root().join("target"),
    }
}

/// The `dbt-activate` binary built by `cargo build -p dbt-activate`, or the one
/// `ACTIVATE_TEST_BINARY` names (the benchmarks run the release build that way).
pub fn binary() -> PathBuf {
    let path = match std::env::var_os("ACTIVATE_TEST_BINARY").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => target_dir().join("debug").join("dbt-activate"),
    };
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p dbt-activate` first (scripts/test.sh does)",
        path.display()
    );
    path
}

fn tools() -> PathBuf {
    repo_root().join(".tools")
}

/// dbt in the virtual environment of `scripts/bootstrap.sh`.
pub fn dbt() -> PathBuf {
    let path = tools().join("venv").join("bin").join("dbt");
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/bootstrap.sh` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Python of the same virtual environment (it has the `duckdb` package, pinned to
/// the DuckDB version the binary links), used to read models for comparisons.
pub fn python() -> PathBuf {
    tools().join("venv").join("bin").join("python")
}

/// `LD_LIBRARY_PATH` with the prebuilt `libduckdb.so` of `.tools/duckdb` first.
pub fn ld_library_path() -> String {
    let mut path = tools().join("duckdb").display().to_string();
    if let Ok(old) = std::env::var("LD_LIBRARY_PATH")
        && !old.is_empty()
    {
        path.push(':');
        path.push_str(&old);
    }
    path
}

/// Whether to keep test folders and databases (`ACTIVATE_TEST_KEEP=1`).
pub fn keep() -> bool {
    std::env::var("ACTIVATE_TEST_KEEP").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A name unique to this process and call, for databases and folders.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}_{}_{:x}", std::process::id(), n, nanos)
}

/// Sorts rows so that two sources can be compared regardless of their order.
pub fn sorted<T: Ord>(mut rows: Vec<T>) -> Vec<T> {
    rows.sort();
    rows
}

/// Normalises a decimal or float text (`"2909.00"`, `"2909.0"`, `"2909"`) to one
/// spelling, so a JSON number can be compared with a warehouse DECIMAL.
pub fn num(text: &str) -> String {
    match text.trim().parse::<f64>() {
        Ok(f) => format!("{f}"),
        Err(_) => text.to_owned(),
    }
}

/// The text of a JSON scalar: strings as they are, numbers normalised with
/// [`num`], null as `None`, anything else as compact JSON.
pub fn json_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(num(&n.to_string())),
        other => Some(other.to_string()),
    }
}

/// Re-serialises a JSON text compactly (`["a", "b"]` → `["a","b"]`).
pub fn compact_json(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v.to_string(),
        Err(_) => text.to_owned(),
    }
}
