#!/usr/bin/env bash
# The virtual environment of the Dagster example (examples/dagster), in .tools/dagster-venv:
# dagster and dagster-dbt from PyPI with the same dbt and DuckDB versions as .tools/venv.
# Idempotent; the orchestrator test runs it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.tools/dagster-venv"
marker="$venv/.complete-1"
if [ ! -f "$marker" ]; then
  echo "dagster-venv: installing dagster and dagster-dbt into .tools/dagster-venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "dagster~=1.13.0" "dagster-dbt~=0.29.0" \
    "dbt-core~=1.11.0" "dbt-duckdb~=1.11.0" "duckdb==1.5.6"
  touch "$marker"
fi
echo "$venv"
