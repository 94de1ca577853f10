#!/usr/bin/env bash
# TLS to RabbitMQ and PostgreSQL, against real servers (issue 16 item 16):
# e2e/tests/tls.rs, run against
# * RabbitMQ (the image docker-compose.yml names) with a TLS listener that
#   requires a client certificate, beside its plain one;
# * PostgreSQL (the image docker-compose.yml names) that accepts TLS
#   sessions only (every TCP line of pg_hba.conf is `hostssl`);
# both with certificates this script makes with openssl for the name
# `localhost`: a CA, the servers' certificates, a client certificate, and a
# second CA that signed none of them.
#
#   scripts/tls-test.sh
#
# Checks: a producer and a consumer, both on amqps:// with the client
# certificate and on DATABASE_URL with sslmode=verify-full, store a message
# end to end; a wrong CA, a certificate for another name, a missing client
# certificate and an amqps:// URL on the plain port are each refused with a
# clear error (never a fallback to clear text); PostgreSQL sessions with
# sslmode=require and verify-full are TLS, verify-full with the wrong CA is
# refused.
#
# Only two containers of its own (labelled, removed at the end whatever
# happens) and free 127.0.0.1 ports from 45671 are used; the local RabbitMQ
# and PostgreSQL are not touched. Needs Docker and openssl; where no Docker
# engine runs or an image cannot be pulled, ../shared/docker/standins/build.sh
# (this repository's CI machines) starts one and builds stand-ins, as
# scripts/compose-test.sh does.
#
# Environment (optional): STANDINS (the stand-in builder), KEEP=1 (leave the
# containers and certificates for debugging).
set -euo pipefail
cd "$(dirname "$0")/.."

STANDINS=${STANDINS:-../shared/docker/standins/build.sh}
RUN_ID=tls-test-$$
t0=$SECONDS
note() { printf 'tls-test: %s\n' "$*"; }
die() { printf 'tls-test: FATAL: %s\n' "$*" >&2; exit 1; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }

command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"
if ! docker info >/dev/null 2>&1; then
  [ -x "$STANDINS" ] || die "no Docker engine answers"
  "$STANDINS"
fi
# The very images the compose file runs.
rabbitmq_image=$(awk '$1 == "image:" && $2 ~ /^rabbitmq:/ { print $2; exit }' docker-compose.yml)
postgres_image=$(awk '$1 == "image:" && $2 ~ /^postgres:/ { print $2; exit }' docker-compose.yml)
for img in "$rabbitmq_image" "$postgres_image"; do
  docker image inspect "$img" >/dev/null 2>&1 && continue
  timeout 300 docker pull -q "$img" >/dev/null 2>&1 && continue
  [ -x "$STANDINS" ] && "$STANDINS" "$img"
  docker image inspect "$img" >/dev/null 2>&1 || die "image $img is neither present, pullable nor buildable"
done

dir=$(mktemp -d /tmp/tls-test.XXXXXX)
cleanup() {
  local rc=$?
  if [ "${KEEP:-0}" = 1 ]; then
    note "KEEP=1: containers ${RUN_ID}-* and $dir left"
  else
    docker ps -aq --filter "label=pipeline.test=$RUN_ID" | xargs -r docker rm -f >/dev/null 2>&1 || true
    rm -rf "$dir"
  fi
  exit "$rc"
}
trap cleanup EXIT

# --- certificates -----------------------------------------------------------------
# EC P-256, X.509 v3 (rustls refuses v1 certificates). The servers' name is
# `localhost`: the tests also connect as 127.0.0.1, which must be refused.
cert() { # cert <name> <CN> <extensions> <signing CA name>
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/$1.key" \
    -out "$dir/$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%b' "$3" >"$dir/$1.ext"
  openssl x509 -req -in "$dir/$1.csr" -CA "$dir/$4.pem" -CAkey "$dir/$4.key" -CAcreateserial \
    -days 2 -extfile "$dir/$1.ext" -out "$dir/$1.pem" 2>/dev/null
}
for ca in ca wrong-ca; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$dir/$ca.key" -out "$dir/$ca.pem" -subj "/CN=pipeline $ca" 2>/dev/null
done
cert server localhost 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' ca
cert client pipeline 'extendedKeyUsage=clientAuth\n' ca
# Read inside the containers by their own users (test certificates only).
chmod 755 "$dir"
chmod 644 "$dir"/*.pem "$dir"/*.key

# --- RabbitMQ: TLS listener that requires a client certificate --------------------
AMQPS_PORT=$(pick_port 45671)
AMQP_PORT=$(pick_port $((AMQPS_PORT + 1)))
PG_PORT=$(pick_port 45432)
PASSWORD=tls-test-$RANDOM$RANDOM
cat >"$dir/30-tls.conf" <<'EOF'
listeners.ssl.default = 5671
ssl_options.cacertfile = /certs/ca.pem
ssl_options.certfile = /certs/server.pem
ssl_options.keyfile = /certs/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
EOF
docker run -d --name "$RUN_ID-rabbitmq" --label "pipeline.test=$RUN_ID" --hostname rabbitmq \
  -e RABBITMQ_DEFAULT_USER=pipeline -e RABBITMQ_DEFAULT_PASS="$PASSWORD" \
  -v "$dir:/certs:ro" -v "$dir/30-tls.conf:/etc/rabbitmq/conf.d/30-tls.conf:ro" \
  -p "127.0.0.1:$AMQPS_PORT:5671" -p "127.0.0.1:$AMQP_PORT:5672" "$rabbitmq_image" >/dev/null

# --- PostgreSQL: TLS sessions only ----------------------------------------------
# An init script (first boot) copies the certificate into the data
# directory (the key must belong to the server's user, mode 0600) and turns
# every TCP line of pg_hba.conf into hostssl.
cat >"$dir/10-tls.sh" <<'EOF'
cp /certs/server.pem /certs/server.key /certs/ca.pem "$PGDATA/"
chmod 600 "$PGDATA/server.key"
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PGDATA"/server.* "$PGDATA/ca.pem"; fi
printf "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n" >>"$PGDATA/postgresql.conf"
sed -i 's/^host\([[:space:]]\)/hostssl\1/' "$PGDATA/pg_hba.conf"
EOF
docker run -d --name "$RUN_ID-postgres" --label "pipeline.test=$RUN_ID" \
  -e POSTGRES_USER=pipeline -e POSTGRES_PASSWORD="$PASSWORD" -e POSTGRES_DB=pipeline \
  -v "$dir:/certs:ro" -v "$dir/10-tls.sh:/docker-entrypoint-initdb.d/10-tls.sh:ro" \
  -p "127.0.0.1:$PG_PORT:5432" "$postgres_image" >/dev/null

note "RabbitMQ amqps 127.0.0.1:$AMQPS_PORT (plain $AMQP_PORT), PostgreSQL 127.0.0.1:$PG_PORT"
running() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
ready=0
for _ in $(seq 120); do
  running "$RUN_ID-rabbitmq" && running "$RUN_ID-postgres" || break
  if docker exec "$RUN_ID-rabbitmq" rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1 \
    && docker exec "$RUN_ID-postgres" pg_isready -q -h 127.0.0.1 -U pipeline 2>/dev/null; then
    ready=1; break
  fi
  sleep 1
done
[ "$ready" = 1 ] || { docker logs "$RUN_ID-rabbitmq" 2>&1 | tail -40; docker logs "$RUN_ID-postgres" 2>&1 | tail -20
  die "the servers did not come up (within 120 s)"; }
note "servers up after $((SECONDS - t0)) s"

# --- the tests ---------------------------------------------------------------------
export TLS_TEST_DIR=$dir
export TLS_TEST_AMQPS_URL="amqps://pipeline:$PASSWORD@localhost:$AMQPS_PORT/%2f"
export TLS_TEST_AMQP_PORT=$AMQP_PORT
export TLS_TEST_DATABASE_URL="postgres://pipeline:$PASSWORD@localhost:$PG_PORT/pipeline"
cargo test -p e2e --test tls -- --ignored --nocapture
note "passed in $((SECONDS - t0)) s"
