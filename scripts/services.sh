#!/usr/bin/env bash
# Start (if needed) and wait for the local PostgreSQL and RabbitMQ that the
# tests and the no-Docker quick start use. Usage: scripts/services.sh up
set -euo pipefail

die() { printf 'services: %s\n' "$*" >&2; exit 1; }

wait_for() { # wait_for <what> <seconds> <command...>
  local what=$1 secs=$2; shift 2
  for _ in $(seq "$secs"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  die "$what did not come up within ${secs}s"
}

postgres_up() {
  if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    command -v pg_ctlcluster >/dev/null || die "PostgreSQL is not running and pg_ctlcluster is missing (apt-get install postgresql)"
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    [ -n "$version" ] || die "no PostgreSQL cluster under /etc/postgresql"
    echo "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  wait_for "PostgreSQL" 60 pg_isready -h 127.0.0.1 -p 5432 -q
  echo "PostgreSQL is up"
}

rabbitmq_up() {
  command -v rabbitmqctl >/dev/null || die "rabbitmqctl is missing (apt-get install rabbitmq-server)"
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    echo "starting RabbitMQ"
    rabbitmq-server -detached || true
    wait_for "RabbitMQ node" 90 rabbitmqctl -q status
  fi
  # The node can be up with the app stopped (after `rabbitmqctl stop_app`).
  rabbitmqctl -q start_app >/dev/null 2>&1 || true
  wait_for "RabbitMQ app" 90 rabbitmqctl -q await_startup
  # The management UI (port 15672) for people watching; tests do not need it.
  rabbitmq-plugins -q enable rabbitmq_management >/dev/null 2>&1 || echo "warning: could not enable rabbitmq_management"
  echo "RabbitMQ is up"
}

case "${1:-up}" in
  up) postgres_up; rabbitmq_up ;;
  *) die "usage: $0 up" ;;
esac
