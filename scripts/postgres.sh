#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/bench-destinations.sh: starts a private PostgreSQL
# cluster on a free loopback port, stops it on exit, and exports ACTIVATE_TEST_PG_URL.
# Expects `log` to be defined by the caller.
pg_bin=""
for candidate in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
  if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then pg_bin=$candidate; break; fi
done
[ -n "$pg_bin" ] || { log "PostgreSQL server binaries (initdb, pg_ctl) not found"; exit 2; }

# initdb and pg_ctl refuse to run as root: run them as the `postgres` user then.
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  as_pg() { (cd / && runuser -u postgres -- "$@"); }
else
  as_pg() { "$@"; }
fi

pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/dbt-activate-pg.XXXXXX")
chmod 755 "$pg_dir"
mkdir -p "$pg_dir/data" "$pg_dir/socket"
if [ "$(id -u)" = 0 ]; then chown -R postgres "$pg_dir"; fi

cleanup() {
  as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port: ask the kernel for one.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log" 2>&1 \
  || as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$pg_dir/initdb.log" 2>&1 \
  || { cat "$pg_dir/initdb.log" >&2; exit 2; }
# Members of the role activate_password_auth must log in with their password over TCP (the
# tests of a wrong warehouse password need a server that checks one); everyone else is trusted.
hba="$pg_dir/data/pg_hba.conf"
{ echo "host all +activate_password_auth 127.0.0.1/32 scram-sha-256"; cat "$hba"; } >"$hba.new"
mv "$hba.new" "$hba"
if [ "$(id -u)" = 0 ]; then chown postgres "$hba"; fi
# TLS: a throwaway CA signs a server certificate for `localhost` (not for 127.0.0.1, so the
# tests can tell sslmode verify-ca from verify-full); a second CA signed nothing.
command -v openssl >/dev/null || { log "openssl not found (needed for the test server's TLS certificate)"; exit 2; }
tls_dir="$pg_dir/tls"
mkdir -p "$tls_dir"
(
  cd "$tls_dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=dbt-activate test CA" -keyout ca.key -out ca.crt
  openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=dbt-activate other CA" -keyout other-ca.key -out other-ca.crt
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3 -extfile server.ext -out server.crt
) >"$pg_dir/tls.log" 2>&1 || { cat "$pg_dir/tls.log" >&2; exit 2; }
chmod 600 "$tls_dir/server.key"
if [ "$(id -u)" = 0 ]; then chown -R postgres "$tls_dir"; fi
chmod 755 "$tls_dir"; chmod 644 "$tls_dir/ca.crt" "$tls_dir/other-ca.crt"
if ! as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
  -o "-p $port -k $pg_dir/socket -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c timezone=UTC -c lc_messages=C -c ssl=on -c ssl_cert_file=$tls_dir/server.crt -c ssl_key_file=$tls_dir/server.key" start >/dev/null; then
  cat "$pg_dir/server.log" >&2
  exit 2
fi
export ACTIVATE_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
# The CA of the server's certificate, and one that did not sign it (TLS tests).
export ACTIVATE_TEST_PG_CA="$tls_dir/ca.crt"
export ACTIVATE_TEST_PG_OTHER_CA="$tls_dir/other-ca.crt"
as_pg "$pg_bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
  -c "CREATE ROLE activate_password_auth NOLOGIN" >/dev/null
log "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $NF}') on 127.0.0.1:$port"

