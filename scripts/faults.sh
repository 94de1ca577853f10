#!/usr/bin/env bash
# The fault-injection test: builds the binaries and runs `faults`, which
# drives the real producer and 3 consumers against the local RabbitMQ and
# PostgreSQL while killing consumers, restarting and killing RabbitMQ and
# stopping PostgreSQL, then checks that every 202 is exactly one row.
#
# It restarts this machine's RabbitMQ and PostgreSQL: run it on its own.
#
#   scripts/faults.sh                 # full run: 100 000 messages (release build)
#   scripts/faults.sh --smoke         # CI size: 3 000 messages (debug build)
#   scripts/faults.sh --n 20000 --duration-secs 90   # any faults flag
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
args=(--n 100000 --duration-secs 120 --pg-down-secs 20)
if [ "${1:-}" = "--smoke" ]; then
  shift
  profile=debug
  args=(--n 3000 --duration-secs 40 --pg-down-secs 10)
fi

scripts/services.sh up >/dev/null
if [ "$profile" = release ]; then
  cargo build --release -q -p producer -p consumer -p bench
else
  cargo build -q -p producer -p consumer -p bench
fi
status=0
target/$profile/faults "${args[@]}" \
  --producer-bin "target/$profile/producer" --consumer-bin "target/$profile/consumer" "$@" || status=$?
# Whatever happened, leave the services running for whoever comes next.
scripts/services.sh up >/dev/null
exit "$status"
