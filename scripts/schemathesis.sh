#!/usr/bin/env bash
# Fuzz the producer's HTTP API against its own OpenAPI document with
# schemathesis (PyPI), every check on: it generates schema-valid and
# schema-invalid requests for every operation and fails on any 5xx, any
# schema-valid request refused, any invalid one accepted, any undocumented
# status, header or body, and any 405 without a correct `Allow`.
#
# Starts a producer and a consumer (debug build) on free ports, against a
# database and a topology prefix of their own, runs schemathesis, stops both
# and drops the database. Exits non-zero when schemathesis reports a failure.
#
#   scripts/schemathesis.sh                  # ~2 minutes
#   ST_MAX_EXAMPLES=200 scripts/schemathesis.sh
#
# schemathesis comes from PATH, else from a virtualenv under target/
# (created on first use). /events is excluded: it is an endless SSE stream by
# design, which a fuzzer cannot read to its end (tests/pipeline/events.rs
# covers it). The dead-letter tools are fuzzed too, with an ADMIN_TOKEN.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES=${ST_MAX_EXAMPLES:-100}
PG_SERVER=${PG_SERVER:-postgres://root@127.0.0.1:5432}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
SCHEMATHESIS_VERSION=${SCHEMATHESIS_VERSION:-4.32.5}

if command -v schemathesis >/dev/null; then
  st=schemathesis
else
  venv=target/schemathesis-venv
  if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
  fi
  st=$PWD/$venv/bin/schemathesis
fi

cargo build -q -p producer -p consumer

suffix="$(date +%s)_$$"
db="schemathesis_$suffix"
prefix="schemathesis.$suffix."
admin="st-admin-$suffix"
psql "$PG_SERVER/postgres" -qc "CREATE DATABASE $db"
export AMQP_URL DATABASE_URL="$PG_SERVER/$db" TOPOLOGY_PREFIX=$prefix RUST_LOG=${RUST_LOG:-warn,producer=info}
unset API_TOKEN
export ADMIN_TOKEN=$admin
logdir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  # The topology is this run's alone: delete it (best effort, through the
  # management API when it is there; the queues are empty by now).
  if curl -sf -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1; then
    for kind in queues exchanges; do
      curl -sf -u guest:guest "http://127.0.0.1:15672/api/$kind/%2f" \
        | python3 -c 'import json,sys; [print(x["name"]) for x in json.load(sys.stdin) if x["name"].startswith(sys.argv[1])]' "$prefix" \
        | while read -r name; do
            curl -sf -u guest:guest -X DELETE "http://127.0.0.1:15672/api/$kind/%2f/$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$name")" || true
          done
    done
  fi
  echo "logs: $logdir" >&2
}
trap cleanup EXIT

# The producer alone gets a WEBHOOK_SECRET, so that GET /webhooks/signing-key
# answers 200 (without one it is a 503, which the fuzzer counts as a server
# error); the consumer gets none, so nothing is ever delivered to the
# callback URLs the fuzzer makes up.
BIND_ADDR=127.0.0.1:0 WEBHOOK_SECRET="st-webhook-$suffix" target/debug/producer >"$logdir/producer.log" 2>&1 &
pids+=($!)
METRICS_ADDR=127.0.0.1:0 WEBHOOK_SECRET= target/debug/consumer >"$logdir/consumer.log" 2>&1 &
pids+=($!)
port=
for _ in $(seq 300); do
  port=$(sed -n 's/.*producer listening on port \([0-9]*\).*/\1/p' "$logdir/producer.log" | head -1)
  [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done
[ -n "$port" ] && curl -sf "http://127.0.0.1:$port/readyz" >/dev/null \
  || { echo "producer not ready; see $logdir" >&2; exit 1; }

base="http://127.0.0.1:$port"
echo "schemathesis $("$st" --version | awk '{print $NF}') against $base (max $MAX_EXAMPLES examples per operation)" >&2
# Bounded: examples per operation and a timeout per request. The longest
# legitimate answer is GET /messages/{id}?wait=30, hence the response-time
# limit of 35 s (the default 10 s would flag a wait that works as documented).
# One worker: schemathesis' workers are threads, and CPython 3.11's
# ast.parse (which Hypothesis calls to describe strategies) is not
# thread-safe ("AST constructor recursion depth mismatch").
# From a directory under target/: schemathesis keeps its replay cache
# (`st replay <id>`) in ./.schemathesis.
mkdir -p target/schemathesis
config=$PWD/scripts/schemathesis.toml
cd target/schemathesis
"$st" --config-file "$config" run "$base/openapi.json" \
  --checks all \
  --exclude-checks ensure_resource_availability \
  --max-examples "$MAX_EXAMPLES" \
  --exclude-path /events \
  --header "Authorization: Bearer $admin" \
  --request-timeout 40 \
  --max-response-time 35 \
  --workers 1 \
  --seed "${ST_SEED:-1}" \
  "$@"
