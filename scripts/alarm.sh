#!/usr/bin/env bash
# The alarm run (issue 8): a RabbitMQ memory alarm under load. It needs a
# broker whose settings it may change, so it starts a private RabbitMQ node
# on 127.0.0.1:5673 (its own data directory, gone afterwards) and never
# touches the one other tests use. Usage: scripts/alarm.sh
set -euo pipefail
cd "$(dirname "$0")/.."

node="alarm-$$@localhost"
base=$(mktemp -d /tmp/pipeline-alarm.XXXXXX)
export RABBITMQ_NODENAME=$node RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=5673 \
       RABBITMQ_DIST_PORT=25673 RABBITMQ_MNESIA_BASE=$base/mnesia RABBITMQ_LOG_BASE=$base/log \
       RABBITMQ_PID_FILE=$base/pid RABBITMQ_ENABLED_PLUGINS_FILE=$base/enabled_plugins \
       RABBITMQ_CONFIG_FILE=$base/rabbitmq RABBITMQ_ADVANCED_CONFIG_FILE=$base/advanced.config
echo '[].' >"$base/enabled_plugins"
printf 'listeners.tcp.default = 127.0.0.1:5673\nloopback_users = none\n' >"$base/rabbitmq.conf"
rm -f "$base/enabled_plugins.tmp"
# Debian's rabbitmq-server drops root for the rabbitmq user.
if id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$base"; fi

stop() {
  rabbitmqctl -n "$node" -q stop >/dev/null 2>&1 || true
  rm -rf "$base"
}
trap stop EXIT

echo "alarm: starting a private RabbitMQ node $node on 127.0.0.1:5673"
rabbitmq-server -detached
for _ in $(seq 90); do rabbitmqctl -n "$node" -q await_startup >/dev/null 2>&1 && break; sleep 1; done
rabbitmqctl -n "$node" -q await_startup

ALARM_NODE=$node TEST_AMQP_URL='amqp://guest:guest@127.0.0.1:5673/%2f' \
  cargo test -p e2e --test alarm -- --ignored --nocapture
