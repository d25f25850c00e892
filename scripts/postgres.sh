#!/usr/bin/env bash
# Starts (once) a private PostgreSQL server for the server test suite and prints its
# URL. Idempotent: a running instance is reused; PostgreSQL is installed from the
# Debian archive when missing. The cluster lives in /tmp, listens on 127.0.0.1 only,
# and trusts local connections: it is a throwaway for tests, never a real database.
set -euo pipefail

port=${FLEETKIT_PG_PORT:-54329}
data=${FLEETKIT_PG_DATA:-/tmp/fleetkit-pg/data}
sock=$(dirname "$data")

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "postgres.sh: installing postgresql" >&2
  stamp=/tmp/.fleetkit-apt-updated
  if [ ! -e "$stamp" ]; then
    as_root apt-get update -qq
    touch "$stamp"
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
fi

# PostgreSQL refuses to run as root: run it as the packaged `postgres` user then.
run() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "$(id -u)" -eq 0 ]; then
  mkdir -p "$sock"
  chown postgres "$sock"
fi
mkdir -p "$sock" 2>/dev/null || true

if [ ! -s "$data/PG_VERSION" ]; then
  run "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
fi
if ! run "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  run "$bindir/pg_ctl" -D "$data" -w -l "$sock/server.log" \
    -o "-p $port -k $sock -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
fi
echo "postgres://postgres@127.0.0.1:$port/postgres"
