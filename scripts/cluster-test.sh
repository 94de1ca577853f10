#!/usr/bin/env bash
# The partition test: the three-node RabbitMQ cluster of
# docker-compose.cluster.yml, run for real, while nodes die and the network
# splits under a steady stream of messages.
#
#   scripts/cluster-test.sh            # full: 100 msg/s, 15 s between faults
#   scripts/cluster-test.sh --short    # what CI runs: 30 msg/s, 5 s between faults
#
# The messages are of the `email` kind, sharded over four quorum queues
# (KIND_SHARDS=email:4); the test checks their leaders are spread over the
# three nodes before the faults (each node leads one or two of them).
#
# Both forms inject the same faults (bench/src/bin/cluster.rs): SIGKILL of
# the node leading messages.store (started again 15 s later); one node cut
# off the network for 30 s; the producer's node cut off for 30 s; a rolling
# restart of all three nodes. Then every message is classified as lost /
# duplicated / unexpected / recovered (RabbitMQ's Jepsen suite's classes).
# Pass: none lost, duplicated or unexpected, messages.store drained, every
# fault happened, no client waited more than 20 s for a 202 during a fault.
#
# Only the stack's own containers and 127.0.0.1 ports are touched; the
# project has a name of its own and is removed with `down -v` at the end.
#
# Needs a Docker engine with the Compose v2 plugin (2.24.4 or later for the
# override file's !reset/!override). Where none runs, or an image cannot be
# pulled (no registry), it uses ../shared/docker/standins/build.sh when
# present (this repository's CI machines), as scripts/compose-test.sh does.
#
# Environment (all optional):
#   COMPOSE_PROJECT_NAME  project name (default pipeline-cluster-test)
#   PRODUCER_PORT RABBITMQ_AMQP_PORT RABBITMQ_UI_PORT
#                         host ports (default: free ports from 48180, 45772, 45773)
#   STANDINS              the stand-in builder (default ../shared/docker/standins/build.sh)
#   KEEP=1                leave the stack running at the end (for debugging)
# Your .env is ignored (COMPOSE_ENV_FILES=/dev/null): the test checks the
# compose files' defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

short=0
case "${1:-}" in
  --short) short=1 ;;
  "") ;;
  *) echo "usage: $0 [--short]" >&2; exit 2 ;;
esac
if [ "$short" = 1 ]; then RATE=30 SETTLE=5; else RATE=100 SETTLE=15; fi

# shellcheck source=scripts/lib/report.sh
. scripts/lib/report.sh
# shellcheck source=scripts/lib/compose-env.sh
. scripts/lib/compose-env.sh
# Every `docker compose` below (and in the test binary) sees both files.
compose_env pipeline-cluster-test docker-compose.yml docker-compose.cluster.yml
# The cluster override refuses to start without a cookie: one for this run
# (after compose_env, whose scrub clears any from the shell).
export RABBITMQ_ERLANG_COOKIE=cluster-test-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
# The load goes to a sharded kind (issue 17): four quorum queues whose
# leaders spread over the nodes (x-queue-leader-locator: balanced).
export KIND_SHARDS=email:4

log "prerequisites"
need curl curl
need jq jq
compose_engine
compose_images ''

compose_ports PRODUCER_PORT=48180 RABBITMQ_AMQP_PORT=45772 RABBITMQ_UI_PORT=45773
note "project $COMPOSE_PROJECT_NAME; ports: producer $PRODUCER_PORT, AMQP $RABBITMQ_AMQP_PORT, UI $RABBITMQ_UI_PORT"
API=http://127.0.0.1:$PRODUCER_PORT
MGMT=http://127.0.0.1:$RABBITMQ_UI_PORT/api

# The client and fault injector (bench/src/bin/cluster.rs), built while
# nothing else runs.
cargo build -q -p bench --bin cluster
CLUSTER=target/debug/cluster

logs=$(mktemp -d /tmp/cluster-test.XXXXXX)
compose_cleanup_on_exit "$logs"
mgmt() { curl -sf -u guest:guest "$MGMT/$1"; }

log "clean state"
docker compose down -v --remove-orphans

log "docker compose -f docker-compose.yml -f docker-compose.cluster.yml up --build --wait --scale consumer=3"
docker compose -f docker-compose.yml -f docker-compose.cluster.yml up --build --wait --scale consumer=3
timing "up --build --wait" $((SECONDS - step_t))

cluster_formed() {
  [ "$(mgmt nodes | jq '[.[] | select(.running)] | length')" = 3 ]
}
ok=0; wait_until 60 cluster_formed && ok=1
check "one cluster of 3 running nodes" "$ok" "$(mgmt nodes | jq -r '[.[] | "\(.name)=\(.running)"] | join(" ")')"
store=$(mgmt "queues/%2F/messages.store" || echo '{}')
members=$(jq -r '(.members // []) | length' <<<"$store")
check "messages.store is a quorum queue on all 3 nodes" \
  "$([ "$(jq -r .type <<<"$store")" = quorum ] && [ "$members" = 3 ] && echo 1 || echo 0)" \
  "type $(jq -r .type <<<"$store"), members $(jq -c '.members // []' <<<"$store"), leader $(jq -r '.leader // "?"' <<<"$store")"
three_consumers() { [ "$(mgmt "queues/%2F/messages.store" | jq '.consumers')" = 3 ]; }
ok=0; wait_until 60 three_consumers && ok=1
check "3 consumers on messages.store" "$ok" "$(mgmt "queues/%2F/messages.store" | jq '.consumers') consumers"
nodes_in_use=$(mgmt connections | jq -r '[.[] | .node] | unique | join(" ")')
note "client connections are on: $nodes_in_use"
shard_leaders() {
  mgmt "queues/%2F" | jq -r '.[] | select(.name | test("^messages\\.store\\.email(\\.[0-9]+)?$")) | "\(.name)=\(.leader // "?")"'
}
shard_members() {
  mgmt "queues/%2F" | jq -r '.[] | select(.name | test("^messages\\.store\\.email(\\.[0-9]+)?$")) | "\(.name)=\((.members // []) | length)"'
}
# Every process declares the balanced shards (1 and up) before any other
# queue, so each lands on the node leading the fewest quorum queues when
# it is created, and four shards over three nodes are 2 + 1 + 1 (see
# docs/cluster.md, "Where a sharded kind's leaders live"). Checked as
# declared, with no rebalance: every shard on all three nodes, no node
# leading more than two, every node leading at least one.
note "shard leaders as declared: $(shard_leaders | tr '\n' ' ')"
note "shard members: $(shard_members | tr '\n' ' ')"
per_node() { # "<node>=<shards it leads>" for each running node
  local leaders node
  leaders=$(shard_leaders | cut -d= -f2)
  for node in $(mgmt nodes | jq -r '.[] | select(.running) | .name'); do
    echo "$node=$(grep -cx "$node" <<<"$leaders" || true)"
  done
}
spread() {
  [ "$(shard_leaders | wc -l)" = 4 ] || return 1
  [ "$(shard_members | cut -d= -f2 | grep -cx 3)" = 4 ] || return 1
  local counts; counts=$(per_node | cut -d= -f2)
  [ "$(wc -l <<<"$counts")" = 3 ] && ! grep -qxE '0|[3-9]' <<<"$counts"
}
ok=0; wait_until 30 spread && ok=1
check "the 4 shards of email have all 3 nodes as members, and each node leads 1 or 2 of them" \
  "$ok" "$(per_node | tr '\n' ' ')| $(shard_leaders | tr '\n' ' ')"

log "faults under load ($RATE msg/s)"
ok=1
"$CLUSTER" --compose-project "$COMPOSE_PROJECT_NAME" --producer-url "$API" --mgmt-url "$MGMT" \
  --rate "$RATE" --settle-secs "$SETTLE" --down-secs 15 --cut-secs 30 --max-wait-secs 20 --kind email \
  2>&1 | tee "$logs/cluster.txt" || ok=0
timing "faults run" $((SECONDS - step_t))
check "partition test: nothing lost, duplicated or unexpected; drained; every fault; waits <= 20 s" "$ok" "see the tables above"

log "docker compose down -v"
docker compose logs --no-color >"$logs/compose.log" 2>&1 || true
[ "${KEEP:-0}" = 1 ] || docker compose down -v --remove-orphans
left=$(compose_leftover)
check "docker compose down -v leaves no container, volume or network" "$([ "$left" = 0 ] && echo 1 || echo 0)" "$left left"

verdict "Cluster test ($([ "$short" = 1 ] && echo short || echo full))"
