#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on a free port and prints its admin URL on stdout.
# Usage: eval "$(scripts/pg-start.sh)"  -> exports MAESTRO_TEST_DATABASE_URL and MAESTRO_PGDIR.
# Stop it with scripts/pg-stop.sh. Durable settings (fsync) stay on unless PG_FAST=1.
set -euo pipefail
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z "$PGBIN" || ! -x "$PGBIN/initdb" ]]; then
  echo "error: PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install -y postgresql)" >&2
  exit 1
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PGDIR=$(mktemp -d /tmp/maestro-pg.XXXXXX)
chmod 755 "$PGDIR"
RUNAS=()
if [[ $(id -u) -eq 0 ]]; then
  chown postgres:postgres "$PGDIR"
  RUNAS=(su postgres -s /bin/sh -c)
else
  RUNAS=(sh -c)
fi
EXTRA=""
if [[ "${PG_FAST:-0}" == "1" ]]; then EXTRA="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"; fi
"${RUNAS[@]}" "$PGBIN/initdb -D $PGDIR/data -U postgres -A trust -E UTF8 --no-locale --no-sync" >/dev/null
"${RUNAS[@]}" "$PGBIN/pg_ctl -D $PGDIR/data -l $PGDIR/log -w -o '-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=400 $EXTRA' start" >/dev/null
echo "export MAESTRO_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
echo "export MAESTRO_PGDIR=$PGDIR"
