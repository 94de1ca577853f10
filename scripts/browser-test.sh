#!/usr/bin/env bash
# The dashboard's browser test (issue 12), runnable from a clean checkout:
#   scripts/browser-test.sh
# Installs what is missing (Debian's chromium, node/npm, the npm packages in
# e2e/browser from its lock file; never a downloaded browser), builds the
# producer and consumer, starts them on free 127.0.0.1 ports with a fresh
# database and a topology prefix of their own, runs e2e/browser/
# dashboard.test.mjs in headless Chromium, and removes everything again.
# Exits non-zero if any check fails. Screenshots and logs go to
# $ARTIFACTS (default target/browser-artifacts).
#
# With --update-screenshots, the overview first gets a minute of varying
# traffic (so its chart shows something), and a passing run copies the
# README's screenshots to docs/screenshots/.
#
# Needs the local RabbitMQ and PostgreSQL (scripts/services.sh up), reached
# as in the tests: TEST_AMQP_URL, TEST_DATABASE_URL.
set -euo pipefail
update_screenshots=0
for arg in "$@"; do
  case $arg in
    --update-screenshots) update_screenshots=1 ;;
    *) echo "usage: $0 [--update-screenshots]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
root=$PWD

AMQP=${TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
PG_SERVER=${TEST_DATABASE_URL:-postgres://root@127.0.0.1:5432}
ARTIFACTS=${ARTIFACTS:-$root/target/browser-artifacts}
case $ARTIFACTS in /*) ;; *) ARTIFACTS=$root/$ARTIFACTS ;; esac

log() { printf '[browser-test] %s\n' "$*"; }
die() { printf '[browser-test] %s\n' "$*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------
apt_updated=0
need_pkg() { # need_pkg <command> <debian package>
  command -v "$1" >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "$1 is missing: apt-get install $2"
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  command -v "$1" >/dev/null || die "could not install $2"
}
need_pkg chromium chromium
need_pkg node nodejs
need_pkg npm npm
need_pkg psql postgresql-client
need_pkg curl curl
[ -x /usr/bin/chromium ] || die "the test drives /usr/bin/chromium (Debian's package)"

log "npm packages (e2e/browser, from package-lock.json)"
(
  cd e2e/browser
  if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/amqplib ] ||
     [ package-lock.json -nt node_modules/.package-lock.json ]; then
    # playwright-core has no browser download step; say so anyway.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
  fi
)

log "build"
cargo build -q -p producer -p consumer
cargo build -q -p e2e --bin delete-topology # tear-down: the topology's names from shared::Topology
bin=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug
[ -x "$bin/producer" ] && [ -x "$bin/consumer" ] && [ -x "$bin/delete-topology" ] ||
  die "binaries not found in $bin"

# --- services --------------------------------------------------------------
run_id="dash_$$_$(date +%s)"
db="browser_${run_id}"
prefix="${run_id}."
# Two kinds, so the overview's kind table and the messages' kind filter
# have something to show (the consumer consumes both).
common=(AMQP_URL="$AMQP" DATABASE_URL="$PG_SERVER/$db" TOPOLOGY_PREFIX="$prefix" KINDS=default,email RUST_LOG=info)
# One retry queue (1 s), so the run is quick and tear-down knows its names.
consumer_env=(METRICS_ADDR=127.0.0.1:0 RETRY_BASE_MS=1000 RETRY_MAX_MS=1000 MAX_ATTEMPTS=2)
work=$(mktemp -d)
mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS"/*.png "$ARTIFACTS"/*.log
producer_pid=""
consumer_pid=""

stop() { # stop <pid>: SIGTERM, then SIGKILL after 20 s
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop "$consumer_pid"
  stop "$producer_pid"
  cp "$work"/*.log "$ARTIFACTS"/ 2>/dev/null || true
  # The topology, named by shared::Topology from the consumer's own
  # settings (the producer's events queue went with its connection).
  env "${common[@]}" "${consumer_env[@]}" "$bin/delete-topology" ||
    log "could not remove the topology ${prefix}*"
  psql -q "$PG_SERVER/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 ||
    log "could not drop database $db"
  rm -rf "$work"
  if [ "$rc" = 0 ]; then log "passed; screenshots in $ARTIFACTS"; else log "FAILED (exit $rc); logs and screenshots in $ARTIFACTS"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql -q "$PG_SERVER/postgres" -c "CREATE DATABASE \"$db\"" >/dev/null

api_token="api-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
admin_token="admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

# Port 0: the kernel picks a free port; each binary logs the one it got.
env "${common[@]}" BIND_ADDR=127.0.0.1:0 API_TOKEN="$api_token" ADMIN_TOKEN="$admin_token" \
  "$bin/producer" >"$work/producer.log" 2>&1 &
producer_pid=$!
env "${common[@]}" "${consumer_env[@]}" \
  "$bin/consumer" >"$work/consumer.log" 2>&1 &
consumer_pid=$!

port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*producer listening on port \([0-9]*\).*/\1/p' "$work/producer.log" | head -1)
  [ -n "$port" ] && break
  kill -0 "$producer_pid" 2>/dev/null || { cat "$work/producer.log" >&2; die "the producer exited"; }
  sleep 0.1
done
[ -n "$port" ] || die "the producer did not report its port"
base="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null || die "the producer is not ready"
for _ in $(seq 1 300); do
  grep -q "consuming " "$work/consumer.log" 2>/dev/null && break
  kill -0 "$consumer_pid" 2>/dev/null || { cat "$work/consumer.log" >&2; die "the consumer exited"; }
  sleep 0.1
done
log "producer at $base (pid $producer_pid), consumer pid $consumer_pid, database $db, prefix $prefix"

# --- the test ----------------------------------------------------------------
SHOWCASE=$update_screenshots BASE_URL=$base API_TOKEN=$api_token ADMIN_TOKEN=$admin_token AMQP_URL=$AMQP \
  DATABASE_URL="$PG_SERVER/$db" TOPOLOGY_PREFIX=$prefix CONSUMER_PID=$consumer_pid ARTIFACTS=$ARTIFACTS \
  node e2e/browser/dashboard.test.mjs

if [ "$update_screenshots" = 1 ]; then
  mkdir -p docs/screenshots
  for shot in overview messages message-dead-lettered dead-letters confirm batches overview-phone-dark; do
    cp "$ARTIFACTS/$shot.png" docs/screenshots/
  done
  log "README screenshots updated in docs/screenshots/"
fi
