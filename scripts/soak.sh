#!/usr/bin/env bash
# The soak run: a million messages end to end at a steady rate, with small
# consumer batches (so completion events and acks are frequent), sampling the
# resident memory of the producer and each consumer every second. Passes when
# every 202 is stored exactly once and no process grows by 5 MB or more from
# 10 % of the run to the end.
#
# --retention: the same million at SOAK_RATE (1 200/s: the keyed path's
# pace on 2 cores shared with other builds), with an Idempotency-Key on every request and a
# callback on one in SOAK_CALLBACKS (100), first without retention (the
# baseline: the database grows), then with 10-second partitions
# (SOAK_PARTITION, a soak-only size) dropped past SOAK_MESSAGE_RETENTION
# (3m: eighteen partitions in the window, so each drop is a small step),
# keys expiring after 1 minute, the retention every 5 s; samples the
# database's size on disk every 5 s and passes when it stays within 10 %
# over the second half of the retention run (and every 202 is stored
# exactly once, counted by the consumers). Callbacks go to 127.0.0.1:9 and
# no consumer has WEBHOOK_SECRET: nothing is ever sent. Needs autovacuum.
#
#   scripts/soak.sh               # 1 000 000 messages at 3 000/s (~6 min, release build)
#   scripts/soak.sh --short       # CI size: 60 000 messages at 2 000/s (debug build)
#   scripts/soak.sh --retention   # baseline, then retention (~30 min, release build)
#   SOAK_COMPARE=0 scripts/soak.sh --retention   # the retention run only
#   SOAK_N=2000000 SOAK_RATE=4000 SOAK_BATCH_SIZE=1 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${SOAK_PROFILE:-release}
N=${SOAK_N:-1000000}
RATE=${SOAK_RATE:-3000}
mode=plain
case "${1:-}" in
  --short) profile=debug; N=${SOAK_N:-60000}; RATE=${SOAK_RATE:-2000} ;;
  --retention) mode=retention; RATE=${SOAK_RATE:-1200} ;;
esac
BATCH_SIZE=${SOAK_BATCH_SIZE:-10}
CONSUMERS=${CONSUMERS:-2}
PG_SERVER=${PG_SERVER:-postgres://root@127.0.0.1:5432}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
PORT=${SOAK_PORT:-18090}
CALLBACKS=${SOAK_CALLBACKS:-100}
MESSAGE_RETENTION_SOAK=${SOAK_MESSAGE_RETENTION:-3m}
PARTITION=${SOAK_PARTITION:-10s}

scripts/services.sh up >/dev/null
if [ "$mode" = retention ] && [ "$(psql "$PG_SERVER/postgres" -Atc 'SHOW autovacuum')" != on ]; then
  echo "warning: autovacuum is off on this server: pruned rows are never reused, the size cannot stay flat" >&2
fi
if [ "$profile" = release ]; then
  cargo build --release -q -p producer -p consumer -p bench
else
  cargo build -q -p producer -p consumer -p bench
fi

prefix="soak."  # reused between runs, like bench.sh; its queues are deleted after each
export AMQP_URL TOPOLOGY_PREFIX=$prefix RUST_LOG=${RUST_LOG:-warn}
logdir=$(mktemp -d)
pids=()
db=""
stop_run() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  if [ -n "$db" ]; then
    psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  fi
  # The run's queues, so a failed run leaves no messages for the next one.
  for q in $(rabbitmqctl -q list_queues name --no-table-headers 2>/dev/null | grep "^$prefix"); do
    rabbitmqctl -q delete_queue "$q" </dev/null >/dev/null 2>&1 || true
  done
}
trap 'stop_run; echo "logs: $logdir" >&2' EXIT

# One run: a fresh database, the producer and CONSUMERS consumers with the
# environment given as arguments (VAR=value ...), then the soak binary.
run() {
  local label=$1; shift
  db="soak_$(date +%s)_$$"
  psql "$PG_SERVER/postgres" -qc "CREATE DATABASE $db"
  export DATABASE_URL="$PG_SERVER/$db"
  env "$@" BIND_ADDR=127.0.0.1:$PORT target/$profile/producer >"$logdir/$label-producer.log" 2>&1 &
  pids+=($!); local names="producer=$!" metrics=""
  for i in $(seq "$CONSUMERS"); do
    local port=$((PORT + i))
    env "$@" BATCH_SIZE=$BATCH_SIZE METRICS_ADDR=127.0.0.1:$port target/$profile/consumer \
      >"$logdir/$label-consumer$i.log" 2>&1 &
    pids+=($!); names="$names,consumer$i=$!"
    metrics="${metrics:+$metrics,}http://127.0.0.1:$port/metrics"
  done
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "producer not ready; see $logdir" >&2; exit 1; }
  echo "soak ($label): $(nproc) cores; N=$N rate=$RATE/s consumers=$CONSUMERS BATCH_SIZE=$BATCH_SIZE ($profile) $*" >&2
  local extra=()
  if [ "$mode" = retention ]; then
    extra=(--keyed true --callbacks "$CALLBACKS" --metrics "$metrics")
    [ "$label" = retention ] && extra+=(--retention true)
  fi
  local status=0
  target/$profile/soak --url "http://127.0.0.1:$PORT" --database-url "$DATABASE_URL" \
    --n "$N" --rate "$RATE" --pids "$names" "${extra[@]}" || status=$?
  [ "$mode" = retention ] && tables
  stop_run
  return "$status"
}

# What the database holds at the end of a run: the partitions of messages
# and the largest tables (with their dead rows: what autovacuum has left).
tables() {
  psql "$DATABASE_URL" -Atc "SELECT 'messages: ' || count(*) FILTER (WHERE NOT is_default)
    || ' partitions, ' || pg_size_pretty(sum(bytes)) FROM pipeline_message_partitions()" >&2 || true
  psql "$DATABASE_URL" -c "SELECT relname, n_live_tup AS live, n_dead_tup AS dead,
      autovacuum_count AS autovacuums, pg_size_pretty(pg_total_relation_size(relid)) AS size
    FROM pg_stat_user_tables WHERE relname NOT LIKE 'messages\_p%'
    ORDER BY pg_total_relation_size(relid) DESC LIMIT 5" >&2 || true
}

if [ "$mode" = plain ]; then
  run soak
  exit 0
fi
# Callbacks to 127.0.0.1 are refused unless allowed, and so is any port but
# 80 and 443 unless listed: the bench calls back to 127.0.0.1:9 (discard).
# No WEBHOOK_SECRET: no deliverer, nothing is ever sent.
common=(WEBHOOK_ALLOWED_HOSTS=127.0.0.1:9 WEBHOOK_SECRET=)
if [ "${SOAK_COMPARE:-1}" = 1 ]; then
  run baseline "${common[@]}" MESSAGE_PARTITION="$PARTITION" RETENTION_INTERVAL=5s
fi
run retention "${common[@]}" MESSAGE_PARTITION="$PARTITION" MESSAGE_RETENTION="$MESSAGE_RETENTION_SOAK" \
  RETENTION_INTERVAL=5s IDEMPOTENCY_KEY_TTL=1m
