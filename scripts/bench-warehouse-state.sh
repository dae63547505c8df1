#!/usr/bin/env bash
# Benchmark of issue #4 (not a test; figures in docs/performance.md, "State in the
# warehouse"): the mirror diff of a generated model with 1% of its rows changed, computed
# locally (local state: every row streamed to dbt-activate) and in the warehouse
# (`state: {type: warehouse}`: only changed rows leave it), in DuckDB and in a private
# PostgreSQL. Measures `dbt-activate plan` (the diff, nothing sent): wall time, peak memory,
# and the bytes PostgreSQL sent to dbt-activate (counted by a loopback proxy).
#
#   bash scripts/bench-warehouse-state.sh                 # 1,000,000 rows
#   BENCH_STATE_ROWS=10000000 bash scripts/bench-warehouse-state.sh
#   BENCH_STATE_REPEAT=5 ...                              # plan runs per case (default 3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { echo "bench-warehouse-state.sh: $*" >&2; }

bash "$root/scripts/bootstrap.sh"
export LD_LIBRARY_PATH="$root/.tools/duckdb:${LD_LIBRARY_PATH:-}"

# shellcheck source=scripts/postgres.sh
source "$root/scripts/postgres.sh"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo build --release -p dbt-activate
"$root/.tools/venv/bin/python" "$root/scripts/bench_warehouse_state.py" \
  --binary "$root/target/release/dbt-activate" \
  --dbt "$root/.tools/venv/bin/dbt" \
  --rows "${BENCH_STATE_ROWS:-1000000}" \
  --pg-url "$ACTIVATE_TEST_PG_URL" \
  --repeat "${BENCH_STATE_REPEAT:-3}"
