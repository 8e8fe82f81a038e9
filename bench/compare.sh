#!/usr/bin/env bash
# Drain throughput of solidq beside apalis and graphile-worker, in interleaved rounds on the same
# PostgreSQL server (127.0.0.1:5432, user postgres). See bench/peers/README.md.
#
# Usage: [ROUNDS=3] [N=100000] [SKIP_BUILD=1] bash bench/compare.sh
#   SKIP_BUILD=1        use the existing ./target/release/examples/bench instead of building it
#                       (the peers are still built, or installed, when missing or out of date)
#   LOG                 file that gets every run's full JSON line
#                       (default ${TMPDIR:-/tmp}/solidq-compare-<time>.jsonl)
#   APALIS_TARGET_DIR   cargo target dir of the apalis harness
#                       (default $HOME/.cache/solidq-peer-apalis-target, as its run.sh)
#   BEFORE_BENCH        another build of solidq's bench (an earlier commit, built elsewhere): its
#                       PostgreSQL and SQLite drains join each round, for before/after figures
#   SYSTEMS             only these systems, space-separated, from the names below (for example
#                       SYSTEMS="solidq-pg solidq-pg-before solidq-sqlite solidq-sqlite-before")
#
# Each round runs, in this order rotated by one per round: solidq PostgreSQL (defaults), solidq
# PostgreSQL tuned (SOLIDQ_WORKERS=*:400), solidq PostgreSQL with SOLIDQ_POOL_SIZE=32, apalis,
# graphile-worker, solidq SQLite (and the BEFORE_BENCH runs). One line per run, then tables.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ROUNDS=${ROUNDS:-3}
N=${N:-100000}
bench=./target/release/examples/bench
peers=bench/peers
LOG=${LOG:-${TMPDIR:-/tmp}/solidq-compare-$(date +%Y%m%d-%H%M%S).jsonl}
apalis_target=${APALIS_TARGET_DIR:-$HOME/.cache/solidq-peer-apalis-target}

# ---- build what is missing ---------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} == 1 ]]; then
  [[ -x $bench ]] || { echo "SKIP_BUILD=1 but $bench does not exist" >&2; exit 1; }
  echo "using the existing $bench (SKIP_BUILD=1)" >&2
else
  cargo build --release --example bench >&2 ||
    { echo "building solidq's bench failed; SKIP_BUILD=1 uses the existing binary" >&2; exit 1; }
fi
(cd $peers/apalis && CARGO_TARGET_DIR=$apalis_target cargo build --release --locked >&2)
if [[ ! -d $peers/graphile-worker/node_modules/graphile-worker ]]; then
  (cd $peers/graphile-worker && npm install --no-audit --no-fund --loglevel=error >&2)
fi

# ---- runs ----------------------------------------------------------------------------------
systems=(solidq-pg solidq-pg-tuned solidq-pg-pool32 apalis graphile-worker solidq-sqlite)
if [[ -n ${BEFORE_BENCH:-} ]]; then
  [[ -x $BEFORE_BENCH ]] || { echo "BEFORE_BENCH=$BEFORE_BENCH is not an executable" >&2; exit 1; }
  systems+=(solidq-pg-before solidq-sqlite-before)
fi
if [[ -n ${SYSTEMS:-} ]]; then
  read -ra systems <<<"$SYSTEMS"
fi

# run SYSTEM: prints the JSON line with the drain result of one run of SYSTEM.
run() {
  case $1 in
    solidq-pg)        env -u SOLIDQ_POOL_SIZE $bench --backend postgres --scenario drain --jobs "$N" ;;
    solidq-pg-tuned)  SOLIDQ_WORKERS='*:400' $bench --backend postgres --scenario drain --jobs "$N" ;;
    solidq-pg-pool32) SOLIDQ_POOL_SIZE=32 $bench --backend postgres --scenario drain --jobs "$N" ;;
    solidq-pg-before) env -u SOLIDQ_POOL_SIZE "$BEFORE_BENCH" --backend postgres --scenario drain --jobs "$N" ;;
    solidq-sqlite-before) "$BEFORE_BENCH" --backend sqlite --scenario drain --jobs "$N" ;;
    apalis)           N=$N SKIP_BUILD=1 CARGO_TARGET_DIR=$apalis_target bash $peers/apalis/run.sh ;;
    graphile-worker)  N=$N bash $peers/graphile-worker/run.sh ;;
    solidq-sqlite)    $bench --backend sqlite --scenario drain --jobs "$N" ;;
  esac | grep '"drain_per_s"'
}

# field NAME JSON: the number after "NAME": in JSON (top-level keys here are unique).
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$2"; }

# The seeding rate: solidq calls it seed_per_s, the peers enqueue_per_s.
seed_rate() { field seed_per_s "$1" | grep . || field enqueue_per_s "$1"; }

echo "full JSON lines: $LOG" >&2
declare -A drain seed mean
for ((round = 1; round <= ROUNDS; round++)); do
  # Each round starts one system later, so no system always runs right after the same one
  # (a run leaves the server's caches, WAL and checkpoints in a state the next one meets).
  count=${#systems[@]}
  for ((i = 0; i < count; i++)); do
    system=${systems[$(((i + round - 1) % count))]}
    line=$(run "$system")
    drain[$round,$system]=$(field drain_per_s "$line")
    seed[$round,$system]=$(seed_rate "$line")
    printf '{"round":%d,"system":"%s","run":%s}\n' "$round" "$system" "$line" >>"$LOG"
    printf 'round %d  %-16s drain %7s/s  seed %7s/s\n' "$round" "$system" \
      "${drain[$round,$system]}" "${seed[$round,$system]}"
  done
done

# ---- tables --------------------------------------------------------------------------------
thousands() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo
echo "Drain, $N no-op jobs, $(date +%F), $(nproc) cores (jobs/s)"
echo
header="| round |"; rule="|---|"
for system in "${systems[@]}"; do header+=" $system |"; rule+="---|"; done
# The ratio columns, for the peers this run has beside solidq-pg.
peers_run=()
for peer in apalis graphile-worker; do
  [[ " ${systems[*]} " == *" solidq-pg "* && " ${systems[*]} " == *" $peer "* ]] && peers_run+=("$peer")
done
ratio_header=""; ratio_rule=""
for peer in "${peers_run[@]}"; do ratio_header+=" solidq-pg ÷ $peer |"; ratio_rule+="---|"; done
echo "$header$ratio_header"
echo "$rule$ratio_rule"
for ((round = 1; round <= ROUNDS; round++)); do
  row="| $round"
  for system in "${systems[@]}"; do row+=" | $(thousands "${drain[$round,$system]}")"; done
  for peer in "${peers_run[@]}"; do row+=" | $(ratio "${drain[$round,solidq-pg]}" "${drain[$round,$peer]}")"; done
  echo "$row |"
done
row="| mean"
for system in "${systems[@]}"; do
  sum=0
  for ((round = 1; round <= ROUNDS; round++)); do sum=$(awk -v a="$sum" -v b="${drain[$round,$system]}" 'BEGIN { print a + b }'); done
  mean[$system]=$(awk -v s="$sum" -v n="$ROUNDS" 'BEGIN { printf "%d", s / n }')
  row+=" | $(thousands "${mean[$system]}")"
done
for peer in "${peers_run[@]}"; do row+=" | $(ratio "${mean[solidq-pg]}" "${mean[$peer]}")"; done
echo "$row |"

echo
echo "Seeding the same jobs (bulk enqueue, jobs/s):"
echo
echo "$header"
echo "$rule"
for ((round = 1; round <= ROUNDS; round++)); do
  row="| $round"
  for system in "${systems[@]}"; do row+=" | $(thousands "${seed[$round,$system]}")"; done
  echo "$row |"
done
