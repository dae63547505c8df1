#!/usr/bin/env bash
# Read throughput of the warehouses (not a test; figures in docs/warehouses.md): the same
# generated model in a private PostgreSQL and in DuckDB, read through each warehouse.
#
#   bash scripts/bench-warehouses.sh
#   BENCH_WAREHOUSE_ROWS=200000 bash scripts/bench-warehouses.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { echo "bench-warehouses.sh: $*" >&2; }

bash "$root/scripts/bootstrap.sh"
export LD_LIBRARY_PATH="$root/.tools/duckdb:${LD_LIBRARY_PATH:-}"

# shellcheck source=scripts/postgres.sh
source "$root/scripts/postgres.sh"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo bench -p activate-executor --bench warehouse_read
