#!/usr/bin/env bash
# Throughput benchmark of the SaaS destinations against their local fakes (not a test;
# figures in docs/destinations/benchmarks.md):
#   1. installs what the harness needs (scripts/bootstrap.sh)
#   2. starts a private PostgreSQL cluster (the harness gives every project a database)
#   3. builds the debug binary (the harness runs target/debug/dbt-activate) and runs
#      `cargo bench -p dbt-activate-e2e --bench destinations` (the bench profile: the fakes
#      run optimised; the binary under test is the debug build the harness runs)
#
#   bash scripts/bench-destinations.sh                 # all four destinations
#   bash scripts/bench-destinations.sh hubspot stripe  # some of them
#   BENCH_HUBSPOT_ROWS=50000 bash scripts/bench-destinations.sh hubspot
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { echo "bench-destinations.sh: $*" >&2; }

bash "$root/scripts/bootstrap.sh"
export LD_LIBRARY_PATH="$root/.tools/duckdb:${LD_LIBRARY_PATH:-}"

pg_bin=""
for candidate in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
  if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then pg_bin=$candidate; break; fi
done
[ -n "$pg_bin" ] || { log "PostgreSQL server binaries (initdb, pg_ctl) not found"; exit 2; }

if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  as_pg() { (cd / && runuser -u postgres -- "$@"); }
else
  as_pg() { "$@"; }
fi

pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/dbt-activate-bench-pg.XXXXXX")
chmod 755 "$pg_dir"
mkdir -p "$pg_dir/data" "$pg_dir/socket"
if [ "$(id -u)" = 0 ]; then chown -R postgres "$pg_dir"; fi

cleanup() {
  as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$pg_dir/initdb.log" 2>&1 \
  || { cat "$pg_dir/initdb.log" >&2; exit 2; }
if ! as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
  -o "-p $port -k $pg_dir/socket -c listen_addresses=127.0.0.1 -c fsync=off -c timezone=UTC" start >/dev/null; then
  cat "$pg_dir/server.log" >&2
  exit 2
fi
export ACTIVATE_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
log "PostgreSQL on 127.0.0.1:$port"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo build -p dbt-activate
cargo bench -p dbt-activate-e2e --bench destinations -- "$@"
