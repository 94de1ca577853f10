#!/usr/bin/env bash
# Benchmark the whole pipeline on this machine: builds release binaries,
# starts a producer and CONSUMERS consumers against a fresh database (queues
# prefixed "bench.", reused between runs), runs the `bench` tool, prints its
# table, and stops everything.
#
#   scripts/bench.sh                      # defaults below
#   BENCH_N=100000 BENCH_C=64 CONSUMERS=2 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${BENCH_N:-50000}
C=${BENCH_C:-64}
CONSUMERS=${CONSUMERS:-2}
PG_SERVER=${PG_SERVER:-postgres://root@127.0.0.1:5432}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
PORT=${BENCH_PORT:-18080}

scripts/services.sh up >/dev/null
cargo build --release -q -p producer -p consumer -p bench

db="bench_$(date +%s)"
psql "$PG_SERVER/postgres" -qc "CREATE DATABASE $db"
export AMQP_URL DATABASE_URL="$PG_SERVER/$db" TOPOLOGY_PREFIX=bench. RUST_LOG=${RUST_LOG:-warn}
logdir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  echo "logs: $logdir" >&2
}
trap cleanup EXIT

BIND_ADDR=127.0.0.1:$PORT target/release/producer >"$logdir/producer.log" 2>&1 &
pids+=($!); names="producer=$!"
for i in $(seq "$CONSUMERS"); do
  # Each consumer's metrics listener needs a port of its own.
  METRICS_ADDR=127.0.0.1:0 target/release/consumer >"$logdir/consumer$i.log" 2>&1 &
  pids+=($!); names="$names,consumer$i=$!"
done
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "producer not ready; see $logdir" >&2; exit 1; }
for pid in "${pids[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "a service exited at startup; see $logdir" >&2; exit 1; }
done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; N=$N C=$C consumers=$CONSUMERS" >&2
target/release/bench --url "http://127.0.0.1:$PORT" --database-url "$DATABASE_URL" \
  --amqp-url "$AMQP_URL" --n "$N" --c "$C" --pids "$names" "$@"
