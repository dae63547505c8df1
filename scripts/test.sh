#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
#   1. installs what the tests need (scripts/bootstrap.sh: dbt venv, libduckdb, PostgreSQL binaries)
#   2. starts a private PostgreSQL 15 cluster, fakesnow (scripts/fakesnow.sh) and crucible-emulator
#      (scripts/crucible.sh) on free loopback ports (stopped on exit)
#   3. builds the binary, then runs every crate's tests and the end-to-end tests in tests/
#
#   bash scripts/test.sh                        # everything
#   bash scripts/test.sh -p dbt-activate-e2e    # extra arguments go to `cargo test`
#   bash scripts/test.sh -p dbt-activate-e2e -- first_run
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { echo "test.sh: $*" >&2; }

bash "$root/scripts/bootstrap.sh"
export LD_LIBRARY_PATH="$root/.tools/duckdb:${LD_LIBRARY_PATH:-}"

# ---- a private PostgreSQL cluster ------------------------------------------
# shellcheck source=scripts/postgres.sh
source "$root/scripts/postgres.sh"
# ---- fakesnow, a local Snowflake (the Snowflake source tests) ------------------
# shellcheck source=scripts/fakesnow.sh
source "$root/scripts/fakesnow.sh"
# ---- crucible-emulator, a local BigQuery (the BigQuery source tests) ---------
# shellcheck source=scripts/crucible.sh
source "$root/scripts/crucible.sh"

# ---- build and test ----------------------------------------------------------
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo build -p dbt-activate
# `--workspace` would override a `-p <crate>` given on the command line.
scope=(--workspace)
for arg in "$@"; do
  case "$arg" in
    --) break ;;
    -p|--package|-p*|--package=*) scope=() ;;
  esac
done
cargo test --no-fail-fast "${scope[@]}" "$@"
