#!/usr/bin/env bash
# The whole test suite in one command, from a fresh Debian machine to CI
# (`.ci/run` calls exactly this): it brings up what the tests need, then runs
# every one of them.
#
#   scripts/test.sh            # CI size
#   scripts/test.sh --full     # the full-size fault-injection and compose runs
#
# 1. The local RabbitMQ and PostgreSQL the integration tests use: started if
#    down (scripts/services.sh); on a machine that has neither installed
#    (root on Debian), installed first, with the `root` PostgreSQL role the
#    tests connect as (postgres://root@127.0.0.1:5432, trusted on 127.0.0.1).
# 2. cargo test --workspace: unit and integration tests.
# 3. scripts/schemathesis.sh: the OpenAPI document fuzzed against a running
#    producer and consumer (schemathesis from PyPI, in a venv under target/).
# 4. scripts/browser-test.sh: the dashboard in Debian's headless Chromium.
# 5. scripts/alarm.sh: a RabbitMQ memory alarm, on a private node of its own.
# 6. scripts/soak.sh --short: memory stays flat while messages flow.
# 7. scripts/faults.sh --smoke: fault injection on local processes (it
#    restarts the local RabbitMQ and PostgreSQL).
# 8. scripts/compose-test.sh --short: the Docker deployment, for real. It
#    starts a Docker engine and builds stand-in images where no registry
#    answers (see that script).
# 9. scripts/cluster-test.sh --short: the three-node RabbitMQ cluster
#    (docker-compose.cluster.yml) while nodes are killed, cut off the
#    network and restarted; reuses the image and stand-ins of step 8.
# 10. scripts/tls-test.sh: amqps:// and PostgreSQL TLS against a RabbitMQ
#    and a PostgreSQL container with certificates made for the run; reuses
#    the stand-ins of step 8.
set -euo pipefail
cd "$(dirname "$0")/.."

full=0
case "${1:-}" in
  --full) full=1 ;;
  "") ;;
  *) echo "usage: $0 [--full]" >&2; exit 2 ;;
esac
log() { printf '\n== test: %s ==\n' "$*"; }
die() { printf 'test: %s\n' "$*" >&2; exit 1; }

install_pkg() { # install_pkg <package...>: Debian, as root
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    || die "please install: $* (Debian: apt-get install $*)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

log "local services"
command -v cargo >/dev/null || die "cargo is missing: install the Rust toolchain (https://rustup.rs)"
command -v rabbitmqctl >/dev/null || install_pkg rabbitmq-server
if ! command -v pg_ctlcluster >/dev/null; then
  # A fresh PostgreSQL: give the tests the superuser role they connect as,
  # trusted from 127.0.0.1 only (never touched on an existing installation).
  install_pkg postgresql postgresql-client
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  sed -i '0,/^host/s//host    all             root            127.0.0.1\/32            trust\n&/' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  runuser -u postgres -- psql -qc 'CREATE ROLE root SUPERUSER LOGIN' 2>/dev/null || true
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
fi
command -v pg_isready >/dev/null || install_pkg postgresql-client
scripts/services.sh up

log "cargo test --workspace"
cargo test --workspace

log "the OpenAPI document, fuzzed (schemathesis)"
scripts/schemathesis.sh

log "the dashboard in a real browser"
scripts/browser-test.sh

log "a RabbitMQ memory alarm (private node)"
scripts/alarm.sh

log "soak: memory stays flat"
if [ "$full" = 1 ]; then scripts/soak.sh; else scripts/soak.sh --short; fi

log "fault injection on local processes"
if [ "$full" = 1 ]; then scripts/faults.sh; else scripts/faults.sh --smoke; fi

log "the Docker deployment"
if [ "$full" = 1 ]; then scripts/compose-test.sh; else scripts/compose-test.sh --short; fi

log "the three-node RabbitMQ cluster under node kills, partitions and a rolling restart"
if [ "$full" = 1 ]; then scripts/cluster-test.sh; else scripts/cluster-test.sh --short; fi

log "TLS to RabbitMQ and PostgreSQL (containers with certificates made for the run)"
scripts/tls-test.sh

log "all passed"
