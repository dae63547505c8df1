#!/usr/bin/env bash
# The README's first command: install what is needed, build dbt-activate, build the example
# dbt project with the real dbt, sync it, and show where the rows landed. No service, no secret.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/bootstrap.sh"
export LD_LIBRARY_PATH="$root/.tools/duckdb${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DBT_SEND_ANONYMOUS_USAGE_STATS=false DO_NOT_TRACK=1
cargo build --release -p dbt-activate
cd "$root/dbt_project_example"
"$root/.tools/venv/bin/dbt" build --profiles-dir .
"$root/target/release/dbt-activate" run
echo
echo "Rows landed in dbt_project_example/synced/:"
for f in synced/*/*; do
  rows=$(grep -c . "$f")
  case "$f" in *.csv) rows=$((rows - 1)) ;; esac   # the header line
  printf '  %-45s %s rows\n' "$f" "$rows"
done
echo "Results: target/activate_results.json. Run it again: syncs not due by their schedule are skipped"
echo "(dbt-activate ls shows when each is next due); --ignore-schedule runs them, and as nothing changed, nothing is sent."
