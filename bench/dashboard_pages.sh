#!/usr/bin/env bash
# Times every dashboard page over HTTP (server-side reads, rendering and transfer), as an
# operator's browser fetches it: the median of RUNS requests per page, in milliseconds, as a
# markdown table.
#
#   SOLIDQ_DATABASE_URL=sqlite://big.sqlite3 ./target/release/solidq dashboard --bind 127.0.0.1:9292 &
#   bench/dashboard_pages.sh http://127.0.0.1:9292
#
# Seed a big database first with `cargo run --release --example dashboard_seed -- seed`.
# With a token, pass it as TOKEN=… (sent as a bearer header).
set -euo pipefail
base="${1:-http://127.0.0.1:9292}"
runs="${RUNS:-9}"
auth=()
if [[ -n "${TOKEN:-}" ]]; then auth=(-H "Authorization: Bearer $TOKEN"); fi
pages=(
  "/" "/queues" "/processes"
  "/jobs?state=ready" "/jobs?state=failed" "/jobs?state=finished" "/jobs?state=discarded"
  "/jobs?state=ready&queue=mail" "/jobs?state=finished&kind=mail.send" "/jobs?state=ready&q=order"
  "/failed" "/stuck" "/concurrency" "/recurring" "/metrics" "/health/ready"
)
# A job page: the newest ready job's, read from the ready list.
job=$(curl -s "${auth[@]}" "$base/jobs?state=ready" | grep -o 'href="[^"]*/jobs/[0-9]*"' | head -1 | grep -o '[0-9]*"$' | tr -d '"' || true)
if [[ -n "$job" ]]; then pages+=("/jobs/$job"); fi
echo "| page | status | median ms |"
echo "| --- | --- | --- |"
for page in "${pages[@]}"; do
  times=()
  status=""
  for _ in $(seq "$runs"); do
    out=$(curl -s -o /dev/null "${auth[@]}" -w '%{http_code} %{time_total}' "$base$page")
    status=${out% *}
    times+=("${out#* }")
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk -v n="$runs" 'NR == int((n + 1) / 2) { printf "%.1f", $1 * 1000 }')
  echo "| \`$page\` | $status | $median |"
done
