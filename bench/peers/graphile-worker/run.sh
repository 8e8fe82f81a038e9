#!/usr/bin/env bash
# Runs the graphile-worker peer harness once on a fresh database.
# Usage: [N=100000] [CONCURRENCY=24] [LOCALQ=500] [DB=gw_bench] bench/peers/graphile-worker/run.sh
# Installs node_modules (from package-lock.json) on first use.
set -euo pipefail
cd "$(dirname "$0")"

PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
DB=${DB:-gw_bench}

if [[ ! -d node_modules/graphile-worker || ! -d node_modules/pg ]]; then
  npm install --no-audit --no-fund --loglevel=error >&2
fi

PGOPTIONS="-c client_min_messages=warning" dropdb -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" --if-exists "$DB"
createdb -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" "$DB"
DATABASE_URL=postgres://$PGUSER@$PGHOST:$PGPORT/$DB exec node bench.mjs
