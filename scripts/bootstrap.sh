#!/usr/bin/env bash
# Installs everything dbt-activate's example and tests need, into .tools/ (idempotent):
#   .tools/venv     dbt-core 1.11 with dbt-duckdb and dbt-postgres, Python duckdb pinned to the linked library
#   .tools/duckdb   the official prebuilt libduckdb.so (from the npm package @duckdb/node-bindings-linux-x64)
#   PostgreSQL 15 server binaries through apt when they are missing (tests start their own cluster)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools"

DUCKDB_VERSION=1.5.6            # must match the duckdb crate's =1.10506.x in Cargo.toml
DUCKDB_NPM_VERSION=1.5.6-r.1

log() { echo "bootstrap: $*" >&2; }

# 1. The prebuilt DuckDB library.
if [ ! -f "$tools/duckdb/libduckdb.so" ] || [ "$(cat "$tools/duckdb/VERSION" 2>/dev/null)" != "$DUCKDB_NPM_VERSION" ]; then
  log "fetching libduckdb $DUCKDB_NPM_VERSION (npm package @duckdb/node-bindings-linux-x64)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@duckdb/node-bindings-linux-x64@$DUCKDB_NPM_VERSION" >/dev/null 2>&1)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  mkdir -p "$tools/duckdb"
  cp "$(find "$tmp" -name 'libduckdb.so' | head -n 1)" "$tools/duckdb/libduckdb.so"
  # headers for libduckdb-sys when it generates bindings (it ships pre-generated ones, but keep them)
  find "$tmp" -name 'duckdb.h' -exec cp {} "$tools/duckdb/" \; 2>/dev/null || true
  echo "$DUCKDB_NPM_VERSION" > "$tools/duckdb/VERSION"
  rm -rf "$tmp"
fi

# 2. dbt in a virtual environment.
if [ ! -x "$tools/venv/bin/dbt" ] || [ ! -f "$tools/venv/.complete-$DUCKDB_VERSION" ]; then
  log "creating the dbt virtual environment in .tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
    "dbt-core~=1.11.0" "dbt-duckdb~=1.11.0" "dbt-postgres~=1.11.0" "duckdb==$DUCKDB_VERSION"
  touch "$tools/venv/.complete-$DUCKDB_VERSION"
fi

# 3. PostgreSQL server binaries (the tests start a private cluster on loopback).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  log "installing PostgreSQL through apt"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
fi
log "ready: $tools"
