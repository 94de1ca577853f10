#!/usr/bin/env bash
# The benchmark of scheduled messages (issue 19): builds release binaries,
# starts PRODUCERS producers and CONSUMERS consumers (separate processes) on
# a fresh database and a topology prefix of the run's own, runs the
# `schedule` tool (the lateness at 1 000 due/s, then 100 000 due at once),
# prints its tables, stops everything and removes the database and queues.
#
#   scripts/schedule-bench.sh                       # 30 000 at 1 000/s, then 100 000 at once
#   scripts/schedule-bench.sh --n 10000 --burst 20000
#   SCHEDULE_ENV="SCHEDULE_POLL_MS=50" scripts/schedule-bench.sh --only steady
set -euo pipefail
cd "$(dirname "$0")/.."

PRODUCERS=${PRODUCERS:-2}
CONSUMERS=${CONSUMERS:-2}
PG_SERVER=${PG_SERVER:-postgres://root@127.0.0.1:5432}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
PORT=${SCHEDULE_PORT:-18180}
# Extra settings for every process, e.g. "SCHEDULE_POLL_MS=50 BATCH_WAIT_MS=5".
read -r -a extra_env <<<"${SCHEDULE_ENV:-}"

scripts/services.sh up >/dev/null
cargo build --release -q -p producer -p consumer -p bench

db="schedule_bench_$(date +%s)_$$"
prefix="schedule-bench.$$."
psql "$PG_SERVER/postgres" -qc "CREATE DATABASE $db"
export AMQP_URL DATABASE_URL="$PG_SERVER/$db" TOPOLOGY_PREFIX=$prefix RUST_LOG=${RUST_LOG:-warn}
logdir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  # The run's own queues and exchanges: nothing is left for the next one.
  for q in $(rabbitmqctl -q list_queues name --no-table-headers 2>/dev/null | grep -F "$prefix"); do
    rabbitmqctl -q delete_queue "$q" </dev/null >/dev/null 2>&1 || true
  done
  for x in $(rabbitmqctl -q list_exchanges name --no-table-headers 2>/dev/null | grep -F "$prefix"); do
    rabbitmqadmin -q delete exchange name="$x" </dev/null >/dev/null 2>&1 || true
  done
  echo "logs: $logdir" >&2
}
trap cleanup EXIT

urls="" names=""
for i in $(seq "$PRODUCERS"); do
  port=$((PORT + i - 1))
  env "${extra_env[@]}" BIND_ADDR=127.0.0.1:$port target/release/producer >"$logdir/producer$i.log" 2>&1 &
  pids+=($!); names="${names:+$names,}producer$i=$!"
  urls="${urls:+$urls,}http://127.0.0.1:$port"
  # The first producer creates the schema; the others start on it.
  if [ "$i" = 1 ]; then
    for _ in $(seq 100); do
      curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
      sleep 0.2
    done
  fi
done
for i in $(seq "$CONSUMERS"); do
  # Each consumer's metrics listener needs a port of its own.
  env "${extra_env[@]}" METRICS_ADDR=127.0.0.1:0 target/release/consumer >"$logdir/consumer$i.log" 2>&1 &
  pids+=($!); names="$names,consumer$i=$!"
done
for url in ${urls//,/ }; do
  for _ in $(seq 100); do
    curl -sf "$url/readyz" >/dev/null && break
    sleep 0.2
  done
  curl -sf "$url/readyz" >/dev/null || { echo "producer $url not ready; see $logdir" >&2; exit 1; }
done
for pid in "${pids[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "a service exited at startup; see $logdir" >&2; exit 1; }
done

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); producers=$PRODUCERS consumers=$CONSUMERS ${SCHEDULE_ENV:-}" >&2
target/release/schedule --urls "$urls" --database-url "$DATABASE_URL" --pids "$names" "$@"
