#!/usr/bin/env bash
# The rolling-upgrade test of kinds of work (issue 17): the binaries of
# before kinds (OLD_REV, built from a git worktree of that commit) and the
# current ones, side by side on one database and one topology, lose nothing.
#
#   1. old producer + old consumer run; messages are posted;
#   2. the old consumer stops: messages wait in messages.store;
#   3. the new producer (KINDS=default,email) and new consumer start beside
#      the old producer, and the old consumer comes back: default messages
#      go to both producers, email messages to the new one;
#   4. the old processes stop, the new consumer drains.
# Passes when every 202 is stored exactly once, each with its kind, and
# nothing is dead-lettered.
#
#   scripts/upgrade-test.sh                   # OLD_REV defaults to the commit before kinds
#   OLD_REV=<sha> N=2000 scripts/upgrade-test.sh
#
# Release builds of both revisions (the old one in its own worktree and
# target directory under $WORK, several minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."

OLD_REV=${OLD_REV:-50ec682}
N=${N:-1000}
WORK=${WORK:-/tmp/upgrade-test}
PG_SERVER=${PG_SERVER:-postgres://root@127.0.0.1:5432}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
OLD_PORT=${OLD_PORT:-18191}
NEW_PORT=${NEW_PORT:-18192}

scripts/services.sh up >/dev/null
mkdir -p "$WORK"
if [ ! -d "$WORK/old" ]; then
  git worktree add --detach "$WORK/old" "$OLD_REV"
fi
(cd "$WORK/old" && cargo build --release -q -p producer -p consumer)
cargo build --release -q -p producer -p consumer
cargo build -q -p e2e --bin delete-topology
bin_teardown=target/debug/delete-topology
old=$WORK/old/target/release
new=target/release

db="upgrade_$(date +%s)_$$"
prefix="upgrade.$$."
psql "$PG_SERVER/postgres" -qc "CREATE DATABASE $db"
export AMQP_URL DATABASE_URL="$PG_SERVER/$db" TOPOLOGY_PREFIX=$prefix RUST_LOG=${RUST_LOG:-warn}
logs=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # Leave nothing behind, pass or fail: the run's queues and exchanges
  # (the names of shared::Topology with this run's prefix) and its database.
  env KINDS=default,email "$bin_teardown" >/dev/null 2>&1 || true
  psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  echo "logs: $logs"
}
trap cleanup EXIT

start() { # name binary env... ; sets $last_pid
  local name=$1 bin=$2; shift 2
  env "$@" "$bin" >"$logs/$name.log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
}
ready() { # port
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    sleep 0.2
  done
  echo "producer on $1 not ready" >&2; exit 1
}
accepted=$logs/accepted
: >"$accepted"
post() { # port count kind-json
  for i in $(seq 1 "$2"); do
    # The body has no final newline: add one, so each id is a line.
    { curl -sf -X POST "http://127.0.0.1:$1/messages" -H 'Content-Type: application/json' \
        -d "{\"content\": \"upgrade $1 $i\"$3}"; echo; } |
      sed -n 's/.*"id":"\([^"]*\)".*/\1/p' >>"$accepted"
  done
}

echo "1. old producer and consumer"
start old-producer "$old/producer" BIND_ADDR=127.0.0.1:$OLD_PORT; old_producer=$last_pid
start old-consumer "$old/consumer" METRICS_ADDR=127.0.0.1:0; old_consumer=$last_pid
ready "$OLD_PORT"
post "$OLD_PORT" "$N" ""

echo "2. the old consumer stops; messages wait in ${prefix}messages.store"
kill -TERM "$old_consumer"; wait "$old_consumer" || true
post "$OLD_PORT" "$N" ""

echo "3. new producer and consumer beside the old ones"
start new-producer "$new/producer" BIND_ADDR=127.0.0.1:$NEW_PORT KINDS=default,email
start new-consumer "$new/consumer" METRICS_ADDR=127.0.0.1:0 KINDS=default,email
start old-consumer2 "$old/consumer" METRICS_ADDR=127.0.0.1:0; old_consumer=$last_pid
ready "$NEW_PORT"
post "$OLD_PORT" "$N" "" & p1=$!
post "$NEW_PORT" "$N" "" & p2=$!
post "$NEW_PORT" "$N" ', "kind": "email"' & p3=$!
wait "$p1" "$p2" "$p3"

echo "4. the old ones stop; the new consumer drains"
kill -TERM "$old_producer" "$old_consumer"; wait "$old_producer" "$old_consumer" || true
want=$(sort -u "$accepted" | wc -l)
sent=$(wc -l <"$accepted")
for _ in $(seq 1 150); do
  got=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM messages")
  [ "$got" -ge "$want" ] && break
  sleep 0.2
done
psql "$DATABASE_URL" -tAc "SELECT kind, count(*) FROM messages GROUP BY kind ORDER BY kind"
dead=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM dead_letters")
# The accepted ids through stdin: thousands of them overflow one argument.
missing=$( { echo "CREATE TEMP TABLE accepted (id uuid); COPY accepted FROM STDIN;"
             sort -u "$accepted"; echo '\.'
             echo "SELECT count(*) FROM accepted WHERE id NOT IN (SELECT id FROM messages);"
           } | psql "$DATABASE_URL" -qtA -f - )
echo "accepted $sent (distinct $want), stored $got, missing $missing, dead-lettered $dead"
email=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM messages WHERE kind = 'email'")
[ "$sent" = "$want" ] && [ "$got" = "$want" ] && [ "$missing" = 0 ] && [ "$dead" = 0 ] \
  && [ "$email" = "$N" ] || { echo "FAIL"; exit 1; }
echo "PASS: nothing lost or stored twice across the upgrade"
