#!/usr/bin/env bash
# Runs the apalis-mysql peer harness once.
# Usage: [N=100000] [WORKERS=1] [BATCH=1000] [DATABASE_URL=mysql://root@127.0.0.1:3306/apalis_bench] bench/peers/apalis-mysql/run.sh
# Builds the release binary first (a no-op when it is up to date; SKIP_BUILD=1 skips the check).
# The database is created if missing; the harness empties the library's tables itself.
set -euo pipefail
cd "$(dirname "$0")"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/solidq-peer-apalis-mysql-target}
DATABASE_URL=${DATABASE_URL:-mysql://root@127.0.0.1:3306/apalis_bench}
bin="$CARGO_TARGET_DIR/release/solidq-peer-apalis-mysql"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  # SQLX_OFFLINE: apalis-mysql's query macros use its bundled .sqlx data, never DATABASE_URL.
  SQLX_OFFLINE=true cargo build --release --locked --quiet >&2
fi

# mysql://user[:password]@host[:port]/db -> the mariadb client's options.
re='^mysql://([^:@/]+)(:([^@/]*))?@([^:/]+)(:([0-9]+))?/([^?]+)'
[[ $DATABASE_URL =~ $re ]] || { echo "run.sh: cannot parse DATABASE_URL=$DATABASE_URL" >&2; exit 2; }
user=${BASH_REMATCH[1]} pass=${BASH_REMATCH[3]} host=${BASH_REMATCH[4]} port=${BASH_REMATCH[6]:-3306} db=${BASH_REMATCH[7]}
MYSQL_PWD=$pass mariadb -h"$host" -P"$port" -u"$user" -e "CREATE DATABASE IF NOT EXISTS \`$db\`"
DATABASE_URL=$DATABASE_URL exec "$bin"
