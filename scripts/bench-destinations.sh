#!/usr/bin/env bash
# Throughput benchmark of the SaaS destinations against their local fakes (not a test;
# figures in docs/destinations/benchmarks.md):
#   1. installs what the harness needs (scripts/bootstrap.sh)
#   2. starts a private PostgreSQL cluster (the harness gives every project a database)
#   3. builds the release binary and runs `cargo bench -p dbt-activate-e2e --bench
#      destinations` with ACTIVATE_TEST_BINARY=target/release/dbt-activate (the bench
#      profile: the fakes run optimised too); BENCH_RUNS runs per destination (default 3,
#      the median is reported)
#
#   bash scripts/bench-destinations.sh                 # all four destinations
#   bash scripts/bench-destinations.sh hubspot stripe  # some of them
#   BENCH_HUBSPOT_ROWS=50000 bash scripts/bench-destinations.sh hubspot
#   BENCH_RUNS=5 bash scripts/bench-destinations.sh salesforce
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { echo "bench-destinations.sh: $*" >&2; }

bash "$root/scripts/bootstrap.sh"
export LD_LIBRARY_PATH="$root/.tools/duckdb:${LD_LIBRARY_PATH:-}"

# shellcheck source=scripts/postgres.sh
source "$root/scripts/postgres.sh"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo build --release -p dbt-activate
export ACTIVATE_TEST_BINARY="${ACTIVATE_TEST_BINARY:-${CARGO_TARGET_DIR:-$root/target}/release/dbt-activate}"
log "binary under test: $ACTIVATE_TEST_BINARY"
cargo bench -p dbt-activate-e2e --bench destinations -- "$@"
