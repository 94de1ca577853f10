#!/usr/bin/env bash
# The partition test: the three-node RabbitMQ cluster of
# docker-compose.cluster.yml, run for real, while nodes die and the network
# splits under a steady stream of messages.
#
#   scripts/cluster-test.sh            # full: 100 msg/s, 15 s between faults
#   scripts/cluster-test.sh --short    # what CI runs: 30 msg/s, 5 s between faults
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

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-pipeline-cluster-test}
export COMPOSE_ENV_FILES=/dev/null
# Every `docker compose` below (and in the test binary) sees both files.
export COMPOSE_FILE=docker-compose.yml:docker-compose.cluster.yml
unset RABBITMQ_USER RABBITMQ_PASSWORD RABBITMQ_ERLANG_COOKIE POSTGRES_USER POSTGRES_PASSWORD \
  POSTGRES_DB API_TOKEN ADMIN_TOKEN RUST_LOG DB_POOL_SIZE DB_TIMEOUT_MS AMQP_TIMEOUT_MS \
  STARTUP_TIMEOUT_MS PUBLISH_TIMEOUT_MS PUBLISH_CHANNELS RETRY_AFTER_SECS HTTP_WORKERS PREFETCH \
  BATCH_SIZE BATCH_WAIT_MS SHUTDOWN_TIMEOUT_MS MAX_ATTEMPTS RETRY_BASE_MS RETRY_MAX_MS \
  COMPOSE_PROFILES
# The cluster override refuses to start without a cookie: one for this run.
export RABBITMQ_ERLANG_COOKIE=cluster-test-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
STANDINS=${STANDINS:-../shared/docker/standins/build.sh}

t0=$SECONDS
failures=()
results=()
log() { printf '\n== %s (%ds) ==\n' "$*" "$((SECONDS - t0))"; }
note() { printf 'cluster-test: %s\n' "$*"; }
die() { printf 'cluster-test: FATAL: %s\n' "$*" >&2; exit 1; }
check() { # check <name> <ok: 0|1> <detail>
  if [ "$2" = 1 ]; then results+=("| $1 | pass | ${3:-} |"); note "pass: $1 (${3:-})"
  else results+=("| $1 | FAIL | ${3:-} |"); failures+=("$1"); note "FAIL: $1 (${3:-})"; fi
}
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }
wait_until() { # wait_until <seconds> <command...>
  local secs=$1; shift
  for _ in $(seq "$secs"); do "$@" && return 0; sleep 1; done
  return 1
}

log "prerequisites"
for tool in curl jq; do
  command -v "$tool" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null \
    || die "$tool is missing (apt-get install $tool)"
done
if ! docker info >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1; then
  [ -x "$STANDINS" ] || die "no Docker engine with the compose plugin answers"
  "$STANDINS"
fi
docker compose version
mapfile -t images < <({ docker compose config --images; awk 'toupper($1)=="FROM"{print $2}' Dockerfile; } \
  | grep -v "^${COMPOSE_PROJECT_NAME}-" | sort -u)
missing=()
for img in "${images[@]}"; do
  docker image inspect "$img" >/dev/null 2>&1 && continue
  timeout 300 docker pull -q "$img" >/dev/null 2>&1 || missing+=("$img")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ -x "$STANDINS" ] && { "$STANDINS" "${missing[@]}" || true; }
  for img in "${missing[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 || die "image $img is neither present, pullable nor buildable as a stand-in"
  done
fi

export PRODUCER_PORT=${PRODUCER_PORT:-$(pick_port 48180)}
export RABBITMQ_AMQP_PORT=${RABBITMQ_AMQP_PORT:-$(pick_port 45772)}
export RABBITMQ_UI_PORT=${RABBITMQ_UI_PORT:-$(pick_port 45773)}
note "project $COMPOSE_PROJECT_NAME; ports: producer $PRODUCER_PORT, AMQP $RABBITMQ_AMQP_PORT, UI $RABBITMQ_UI_PORT"
API=http://127.0.0.1:$PRODUCER_PORT
MGMT=http://127.0.0.1:$RABBITMQ_UI_PORT/api

# The client and fault injector (bench/src/bin/cluster.rs), built while
# nothing else runs.
cargo build -q -p bench --bin cluster
CLUSTER=target/debug/cluster

logs=$(mktemp -d /tmp/cluster-test.XXXXXX)
cleanup() {
  local rc=$?
  if [ -n "$(docker compose ps -aq 2>/dev/null)" ]; then
    docker compose logs --no-color >"$logs/compose.log" 2>&1 || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    note "KEEP=1: stack left running (COMPOSE_FILE=$COMPOSE_FILE docker compose -p $COMPOSE_PROJECT_NAME down -v)"
  else
    docker compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  note "logs: $logs"
  exit "$rc"
}
trap cleanup EXIT
mgmt() { curl -sf -u guest:guest "$MGMT/$1"; }

log "clean state"
docker compose down -v --remove-orphans

log "docker compose -f docker-compose.yml -f docker-compose.cluster.yml up --build --wait --scale consumer=3"
step=$SECONDS
docker compose -f docker-compose.yml -f docker-compose.cluster.yml up --build --wait --scale consumer=3
results+=("| time: up --build --wait | | $((SECONDS - step))s |")

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

log "faults under load ($RATE msg/s)"
step=$SECONDS
ok=1
"$CLUSTER" --compose-project "$COMPOSE_PROJECT_NAME" --producer-url "$API" --mgmt-url "$MGMT" \
  --rate "$RATE" --settle-secs "$SETTLE" --down-secs 15 --cut-secs 30 --max-wait-secs 20 \
  2>&1 | tee "$logs/cluster.txt" || ok=0
results+=("| time: faults run | | $((SECONDS - step))s |")
check "partition test: nothing lost, duplicated or unexpected; drained; every fault; waits <= 20 s" "$ok" "see the tables above"

log "docker compose down -v"
docker compose logs --no-color >"$logs/compose.log" 2>&1 || true
[ "${KEEP:-0}" = 1 ] || docker compose down -v --remove-orphans
leftover() {
  local label=com.docker.compose.project=$COMPOSE_PROJECT_NAME
  { docker ps -aq --filter "label=$label"; docker volume ls -q --filter "label=$label"
    docker network ls -q --filter "label=$label"; } | wc -l
}
left=$(leftover)
check "docker compose down -v leaves no container, volume or network" "$([ "$left" = 0 ] && echo 1 || echo 0)" "$left left"

results+=("| time: whole test | | $((SECONDS - t0))s |")
printf '\n| Cluster test (%s) | Result | Detail |\n| --- | --- | --- |\n' "$([ "$short" = 1 ] && echo short || echo full)"
printf '%s\n' "${results[@]}"
if [ ${#failures[@]} -gt 0 ]; then
  printf '\ncluster-test: %d check(s) FAILED: %s\n' "${#failures[@]}" "$(IFS=';'; echo "${failures[*]}")" >&2
  exit 1
fi
printf '\ncluster-test: all checks passed\n'
