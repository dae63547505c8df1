#!/usr/bin/env bash
# Installs crucible-emulator (a local BigQuery stand-in, PyPI pre-release) into its own venv,
# .tools/crucible-venv (idempotent). Sourced by scripts/test.sh, it also starts
# `crucible serve --dialect bigquery` on a free loopback port, stops it on exit and exports
# ACTIVATE_TEST_BIGQUERY_PORT. Run directly (`bash scripts/crucible.sh`) it only installs.
_cr_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_cr_venv="$_cr_root/.tools/crucible-venv"
_cr_log() { echo "crucible.sh: $*" >&2; }

if [ ! -x "$_cr_venv/bin/crucible" ] || [ ! -f "$_cr_venv/.complete-1" ]; then
  _cr_log "creating $_cr_venv (crucible-emulator[server], pre-release)"
  python3 -m venv "$_cr_venv"
  "$_cr_venv/bin/pip" install --quiet --disable-pip-version-check --pre "crucible-emulator[server]"
  touch "$_cr_venv/.complete-1"
fi

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  _cr_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  _cr_dir=$(mktemp -d "${TMPDIR:-/tmp}/dbt-activate-crucible.XXXXXX")
  "$_cr_venv/bin/crucible" serve --dialect bigquery --host 127.0.0.1 --port "$_cr_port" >"$_cr_dir/server.log" 2>&1 &
  _cr_pid=$!
  # Stop crucible on exit too, keeping whatever EXIT trap the caller set.
  _cr_prev_trap=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
  # shellcheck disable=SC2064
  trap "kill $_cr_pid 2>/dev/null || true; rm -rf $_cr_dir; $_cr_prev_trap" EXIT
  for _ in $(seq 1 150); do
    if curl -sf "http://127.0.0.1:$_cr_port/_crucible/health" >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  if ! curl -sf "http://127.0.0.1:$_cr_port/_crucible/health" >/dev/null 2>&1; then
    cat "$_cr_dir/server.log" >&2; _cr_log "crucible did not start"; exit 2
  fi
  export ACTIVATE_TEST_BIGQUERY_PORT="$_cr_port"
  _cr_log "crucible (bigquery) on 127.0.0.1:$_cr_port (pid $_cr_pid)"
fi
