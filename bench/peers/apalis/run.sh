#!/usr/bin/env bash
# Runs the apalis peer harness once on a fresh database.
# Usage: [N=100000] [WORKERS=4] [BATCH=1000] [DB=apalis_bench] bench/peers/apalis/run.sh
# Builds the release binary first (a no-op when it is up to date; SKIP_BUILD=1 skips the check).
set -euo pipefail
cd "$(dirname "$0")"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/solidq-peer-apalis-target}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
DB=${DB:-apalis_bench}
bin="$CARGO_TARGET_DIR/release/solidq-peer-apalis"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cargo build --release --locked --quiet >&2
fi

PGOPTIONS="-c client_min_messages=warning" dropdb -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" --if-exists "$DB"
createdb -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" "$DB"
DATABASE_URL=postgres://$PGUSER@$PGHOST:$PGPORT/$DB exec "$bin"
