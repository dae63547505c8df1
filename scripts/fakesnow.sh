#!/usr/bin/env bash
# Installs fakesnow's server (a local Snowflake stand-in) and dbt-snowflake into their own venv,
# .tools/snowflake-venv (idempotent). Sourced by scripts/test.sh after bootstrap.sh, it also starts
# fakesnow on a free loopback port, stops it on exit and exports ACTIVATE_TEST_FAKESNOW_PORT and
# ACTIVATE_TEST_SNOWFLAKE_DBT (the dbt executable that has dbt-snowflake).
# Run directly (`bash scripts/fakesnow.sh`) it only installs.
_sf_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_sf_venv="$_sf_root/.tools/snowflake-venv"
_sf_log() { echo "fakesnow.sh: $*" >&2; }

if [ ! -x "$_sf_venv/bin/fakesnow" ] || [ ! -f "$_sf_venv/.complete-1" ]; then
  _sf_log "creating $_sf_venv (fakesnow[server], snowflake-connector-python<5, dbt-snowflake~=1.11.0)"
  python3 -m venv "$_sf_venv"
  "$_sf_venv/bin/pip" install --quiet --disable-pip-version-check \
    "fakesnow[server]" "snowflake-connector-python<5" "dbt-core~=1.11.0" "dbt-snowflake~=1.11.0"
  touch "$_sf_venv/.complete-1"
fi
export ACTIVATE_TEST_SNOWFLAKE_DBT="$_sf_venv/bin/dbt"

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  _sf_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  _sf_dir=$(mktemp -d "${TMPDIR:-/tmp}/dbt-activate-fakesnow.XXXXXX")
  "$_sf_venv/bin/fakesnow" -s -p "$_sf_port" >"$_sf_dir/server.log" 2>&1 &
  _sf_pid=$!
  # Stop fakesnow on exit too, keeping whatever EXIT trap the caller set (scripts/postgres.sh's).
  _sf_prev_trap=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
  # shellcheck disable=SC2064
  trap "kill $_sf_pid 2>/dev/null || true; rm -rf $_sf_dir; $_sf_prev_trap" EXIT
  for _ in $(seq 1 100); do
    if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1', $_sf_port)))"; then break; fi
    sleep 0.2
  done
  if ! kill -0 "$_sf_pid" 2>/dev/null; then cat "$_sf_dir/server.log" >&2; _sf_log "fakesnow did not start"; exit 2; fi
  export ACTIVATE_TEST_FAKESNOW_PORT="$_sf_port"
  _sf_log "fakesnow on 127.0.0.1:$_sf_port (pid $_sf_pid, log $_sf_dir/server.log)"
fi
