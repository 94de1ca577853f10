#!/usr/bin/env bash
# What replication costs: the benchmark tool (`bench`, as scripts/bench.sh
# runs it) against the compose stack with one RabbitMQ node, then against
# the three-node cluster (docker-compose.cluster.yml), everything in
# containers on this machine. The load generator runs in a container of the
# project (`docker compose run` of the project's image with the release
# `bench` binary mounted), on the project's network, so its traffic stays
# between the project's containers.
#
#   scripts/cluster-bench.sh                    # BENCH_N=20000 BENCH_C=32, 3 consumers
#
# Prints one `bench` table per setup. Each stack is removed (`down -v`)
# after its run.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${BENCH_N:-20000}
C=${BENCH_C:-32}
CONSUMERS=${CONSUMERS:-3}
# shellcheck source=scripts/lib/compose-env.sh
. scripts/lib/compose-env.sh
# The compose files' defaults (no API_TOKEN from this shell refusing the
# load); each run below picks its files.
compose_env pipeline-cluster-bench docker-compose.yml docker-compose.cluster.yml
compose_ports PRODUCER_PORT=48280 RABBITMQ_AMQP_PORT=45872 RABBITMQ_UI_PORT=45873

cargo build --release -q -p bench --bin bench
trap 'docker compose down -v --remove-orphans >/dev/null 2>&1 || true' EXIT

run() { # run <label> <compose files> <broker service>
  local label=$1 broker=$3
  export COMPOSE_FILE=$2
  docker compose down -v --remove-orphans >/dev/null 2>&1 || true
  docker compose up --build --wait --scale consumer="$CONSUMERS" >/dev/null 2>&1
  local producer_ip
  producer_ip=$(docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' \
    "$(docker compose ps -q producer)")
  echo "== $label: N=$N C=$C consumers=$CONSUMERS, $(nproc) cores ==" >&2
  docker compose run --rm --no-deps -T -v "$PWD/target/release/bench:/usr/local/bin/bench:ro" \
    producer bench --url "http://$producer_ip:8080" \
    --database-url "postgres://pipeline:pipeline@postgres:5432/pipeline" \
    --amqp-url "amqp://guest:guest@$broker:5672/%2f" \
    --n "$N" --c "$C" --stage-n "$N"
  docker compose down -v --remove-orphans >/dev/null
}

run "one RabbitMQ node" docker-compose.yml rabbitmq
run "three-node RabbitMQ cluster" docker-compose.yml:docker-compose.cluster.yml rabbitmq-1
