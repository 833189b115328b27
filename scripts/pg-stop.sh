#!/usr/bin/env bash
# Stops the throwaway PostgreSQL cluster started by scripts/pg-start.sh ($MAESTRO_PGDIR).
set -euo pipefail
[[ -n "${MAESTRO_PGDIR:-}" && -d "$MAESTRO_PGDIR/data" ]] || exit 0
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [[ $(id -u) -eq 0 ]]; then
  su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $MAESTRO_PGDIR/data -m fast stop" >/dev/null || true
else
  "$PGBIN/pg_ctl" -D "$MAESTRO_PGDIR/data" -m fast stop >/dev/null || true
fi
rm -rf "$MAESTRO_PGDIR"
