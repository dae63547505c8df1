"""Airflow: `dbt build`, then one dbt-activate task per activated model.

Each sync is gated by dbt-activate itself on its own model's build and tests (from
run_results.json), so a failed model skips only its own syncs. The exit codes tell Airflow
what to do (docs/exit-codes.md):

  0  every selected sync succeeded
  1  a sync failed or rows were rejected: retryable, the next run resends exactly what is
     missing (nothing confirmed is sent twice)
  2  configuration or fatal error (bad meta.activate, unreachable warehouse, missing
     manifest): not retryable until someone fixes it, so it fails the task at once

The sync tasks run the binary from a PythonOperator so that exit code 2 becomes an
AirflowFailException (failed at once, no retries) while exit code 1 is retried. They run
even when `dbt build` failed (trigger_rule="all_done"): dbt-activate skips the syncs of the
models that failed and runs the others.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow import DAG
from airflow.exceptions import AirflowFailException
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator

PROJECT_DIR = os.environ.get("DBT_PROJECT_DIR", "/opt/dbt/dbt_project_example")
TARGET = os.environ.get("DBT_TARGET", "prod")

# Models whose syncs run after `dbt build`: one task each, so one destination's outage
# does not hold back the others.
ACTIVATED_MODELS = ["enriched_leads", "churn_risk", "high_value_at_risk", "billing_usage", "churn_alerts"]


def run_activate(model: str) -> None:
    import subprocess

    proc = subprocess.run(
        ["dbt-activate", "run", "--select", model, "--project-dir", PROJECT_DIR, "--target", TARGET],
        capture_output=True,
        text=True,
    )
    print(proc.stderr)
    print(proc.stdout)
    if proc.returncode == 2:
        raise AirflowFailException(f"dbt-activate configuration error for {model}: fix and rerun")
    if proc.returncode != 0:
        raise RuntimeError(f"dbt-activate run --select {model} exited {proc.returncode}: retrying")


with DAG(
    dag_id="dbt_build_and_activate",
    start_date=datetime(2026, 1, 1),
    schedule="@hourly",
    catchup=False,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=5)},
    tags=["dbt", "reverse-etl"],
) as dag:
    dbt_build = BashOperator(
        task_id="dbt_build",
        bash_command=f"dbt build --project-dir {PROJECT_DIR} --target {TARGET}",
    )
    for model in ACTIVATED_MODELS:
        dbt_build >> PythonOperator(
            task_id=f"activate_{model}",
            python_callable=run_activate,
            op_args=[model],
            trigger_rule="all_done",
        )
