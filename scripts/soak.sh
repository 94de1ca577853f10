#!/usr/bin/env bash
# The soak run: a million messages end to end at a steady rate, with small
# consumer batches (so completion events and acks are frequent), sampling the
# resident memory of the producer and each consumer every second. Passes when
# every 202 is stored exactly once and no process grows by 5 MB or more from
# 10 % of the run to the end.
#
#   scripts/soak.sh               # 1 000 000 messages at 3 000/s (~6 min, release build)
#   scripts/soak.sh --short       # CI size: 60 000 messages at 2 000/s (debug build)
#   SOAK_N=2000000 SOAK_RATE=4000 SOAK_BATCH_SIZE=1 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
N=${SOAK_N:-1000000}
RATE=${SOAK_RATE:-3000}
if [ "${1:-}" = "--short" ]; then
  profile=debug; N=${SOAK_N:-60000}; RATE=${SOAK_RATE:-2000}
fi
BATCH_SIZE=${SOAK_BATCH_SIZE:-10}
CONSUMERS=${CONSUMERS:-2}
PG_SERVER=${PG_SERVER:-postgres://root@127.0.0.1:5432}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
PORT=${SOAK_PORT:-18090}

scripts/services.sh up >/dev/null
if [ "$profile" = release ]; then
  cargo build --release -q -p producer -p consumer -p bench
else
  cargo build -q -p producer -p consumer -p bench
fi

db="soak_$(date +%s)_$$"
prefix="soak."  # reused between runs, like bench.sh; its queues are deleted after each
psql "$PG_SERVER/postgres" -qc "CREATE DATABASE $db"
export AMQP_URL DATABASE_URL="$PG_SERVER/$db" TOPOLOGY_PREFIX=$prefix RUST_LOG=${RUST_LOG:-warn}
logdir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  # The run's queues, so a failed run leaves no messages for the next one.
  for q in $(rabbitmqctl -q list_queues name --no-table-headers 2>/dev/null | grep "^$prefix"); do
    rabbitmqctl -q delete_queue "$q" </dev/null >/dev/null 2>&1 || true
  done
  echo "logs: $logdir" >&2
}
trap cleanup EXIT

BIND_ADDR=127.0.0.1:$PORT target/$profile/producer >"$logdir/producer.log" 2>&1 &
pids+=($!); names="producer=$!"
for i in $(seq "$CONSUMERS"); do
  BATCH_SIZE=$BATCH_SIZE METRICS_ADDR=127.0.0.1:0 target/$profile/consumer >"$logdir/consumer$i.log" 2>&1 &
  pids+=($!); names="$names,consumer$i=$!"
done
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "producer not ready; see $logdir" >&2; exit 1; }

echo "soak: $(nproc) cores; N=$N rate=$RATE/s consumers=$CONSUMERS BATCH_SIZE=$BATCH_SIZE ($profile)" >&2
target/$profile/soak --url "http://127.0.0.1:$PORT" --database-url "$DATABASE_URL" \
  --n "$N" --rate "$RATE" --pids "$names"
