//! The Dagster example (examples/dagster/activate_dagster.py) materialized for real in a
//! virtual environment with dagster and dagster-dbt from PyPI (scripts/dagster-venv.sh):
//! dagster-dbt runs `dbt build` of the example, then each sync asset runs the binary and
//! reports its counts. The Airflow example is checked to parse (Airflow itself is not installed).

use std::process::Command;
use std::time::Duration;

use dbt_activate_e2e::{Project, binary, repo_root, run_with_timeout};
use serde_json::Value;

#[test]
fn the_dagster_example_materializes_every_model_and_sync_asset_with_counts() {
    let setup = run_with_timeout(
        Command::new("bash").arg(repo_root().join("scripts/dagster-venv.sh")),
        Duration::from_secs(1200),
    );
    setup.assert_success();
    let venv = repo_root().join(".tools/dagster-venv/bin");

    let p = Project::new();
    let out = run_with_timeout(
        Command::new(venv.join("python"))
            .arg(repo_root().join("tests/dagster/materialize_all.py"))
            .arg(repo_root().join("examples/dagster/activate_dagster.py"))
            .env("DBT_PROJECT_DIR", p.path())
            .env("DBT_TARGET", "dev")
            .env("DBT_ACTIVATE_BIN", binary())
            .env("DBT_EXECUTABLE", venv.join("dbt"))
            .env("DAGSTER_HOME", p.path().join("dagster_home"))
            .env("LD_LIBRARY_PATH", dbt_activate_e2e::ld_library_path())
            .env("NO_COLOR", "1"),
        Duration::from_secs(600),
    );
    out.assert_success();
    let last = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("a JSON line on stdout:\n{out}"));
    let report: Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(report["success"], true, "{out}");
    let assets = report["assets"].as_object().expect("assets");

    // Every dbt model is an asset, and every sync is one downstream of it.
    for model in [
        "enriched_leads",
        "churn_risk",
        "high_value_at_risk",
        "billing_usage",
    ] {
        assert!(
            assets.contains_key(model),
            "model asset {model}: {assets:?}"
        );
    }
    let syncs = p.activate(&["ls", "--output", "json"]);
    syncs.assert_success();
    let names: Vec<String> = syncs
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in &names {
        let metadata = &assets[&format!("activate/{name}")];
        // The first sync of the copy sends every row the model has.
        let read = metadata["rows_read"].as_u64().expect("rows_read");
        assert!(read > 0, "{name}: {metadata}");
        assert_eq!(
            metadata["inserted"].as_u64(),
            Some(read),
            "{name} inserted every row on its first sync: {metadata}"
        );
        assert_eq!(metadata["rejected"].as_u64(), Some(0), "{name}: {metadata}");
    }
    // What the assets report is what landed: the leads file holds the model's rows.
    let leads = p.synced_jsonl("crm", "Lead");
    assert_eq!(
        Some(leads.len() as u64),
        assets["activate/enriched_leads__crm__Lead"]["inserted"].as_u64()
    );
}

#[test]
fn the_airflow_example_parses() {
    let out = run_with_timeout(
        Command::new("python3")
            .args([
                "-c",
                "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])",
            ])
            .arg(repo_root().join("examples/airflow/activate_dag.py")),
        Duration::from_secs(60),
    );
    out.assert_success();
}
