#!/usr/bin/env bash
# The compose test: the user's deployment, run for real. It does what the
# README's Docker quick start says, with the real docker-compose.yml and
# Dockerfile, overriding nothing but the host ports, then breaks containers
# while messages flow and checks that every 202 is stored exactly once.
#
#   scripts/compose-test.sh            # full: 20 000 clean + 20 000 under faults
#   scripts/compose-test.sh --short    # what CI runs: 20 000 clean + 3 000 under faults
#
# Steps: clean state; `docker compose up --build --wait`; the tutorial's curl
# (202, then the row in GET /messages); `docker compose up --wait --scale
# consumer=3` with 3 distinct consumer connections on messages.store in the
# management API; 20 000 messages stored exactly once, spread over the
# replicas; the per-kind pools (`--scale consumer-email=10 --scale
# consumer-profile=2`) with their consumer counts per queue; the topology tests against this RabbitMQ 4.0; faults on
# containers (consumer replica SIGKILLs, `restart rabbitmq`, `kill -s KILL
# rabbitmq`, `stop postgres` for 20 s) under a client retrying with the same
# Idempotency-Key; `docker compose stop` under load (every exit code 0,
# nothing left unacked) and `docker compose up` finding the data again; the
# monitoring profile's Prometheus targets up and every dashboard query
# answering; `docker compose down -v` leaving nothing behind.
#
# Needs a Docker engine with the Compose v2 plugin. Where none runs, or an
# image cannot be pulled (no registry), it uses ../shared/docker/standins/
# build.sh when present (this repository's CI machines), which starts an
# engine and builds local stand-ins tagged like the official images.
#
# Environment (all optional):
#   COMPOSE_PROJECT_NAME  project name (default pipeline-compose-test), so a
#                         run never touches another stack
#   PRODUCER_PORT RABBITMQ_AMQP_PORT RABBITMQ_UI_PORT PROMETHEUS_PORT GRAFANA_PORT
#                         host ports (default: free ports from 48080, 45672,
#                         45673, 49091, 43000; 5672/15672 are often taken by a
#                         local RabbitMQ)
#   STANDINS              the stand-in builder (default ../shared/docker/standins/build.sh)
#   KEEP=1                leave the stack running at the end (for debugging)
# Your .env is ignored (COMPOSE_ENV_FILES=/dev/null): the test checks the
# compose file's defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

short=0
case "${1:-}" in
  --short) short=1 ;;
  "") ;;
  *) echo "usage: $0 [--short]" >&2; exit 2 ;;
esac
if [ "$short" = 1 ]; then FAULT_N=3000 FAULT_SECS=70; else FAULT_N=20000 FAULT_SECS=150; fi
CLEAN_N=20000
PG_DOWN_SECS=20

# shellcheck source=scripts/lib/report.sh
. scripts/lib/report.sh
# shellcheck source=scripts/lib/compose-env.sh
. scripts/lib/compose-env.sh
compose_env pipeline-compose-test docker-compose.yml
ALL=(--profile '*')

# --- prerequisites -----------------------------------------------------------
log "prerequisites"
need curl curl
need jq jq
compose_engine
# An image nobody can provide is only tolerated for Grafana, whose check is
# then skipped.
compose_images 'grafana/*' "${ALL[@]}"
grafana_image=$(docker compose --profile monitoring config --images | grep '^grafana/' || true)
have_grafana=0
docker image inspect "$grafana_image" >/dev/null 2>&1 && have_grafana=1
[ "$have_grafana" = 1 ] || note "no $grafana_image here: the monitoring check runs without Grafana"

compose_ports PRODUCER_PORT=48080 RABBITMQ_AMQP_PORT=45672 RABBITMQ_UI_PORT=45673 \
  PROMETHEUS_PORT=49091 GRAFANA_PORT=43000
note "project $COMPOSE_PROJECT_NAME; ports: producer $PRODUCER_PORT, AMQP $RABBITMQ_AMQP_PORT, UI $RABBITMQ_UI_PORT, Prometheus $PROMETHEUS_PORT, Grafana $GRAFANA_PORT"
API=http://127.0.0.1:$PRODUCER_PORT
MGMT=http://127.0.0.1:$RABBITMQ_UI_PORT/api
AMQP=amqp://guest:guest@127.0.0.1:$RABBITMQ_AMQP_PORT/%2f
PROM=http://127.0.0.1:$PROMETHEUS_PORT

# The load generator and checker (bench/src/bin/faults/), built while
# nothing else runs.
cargo build -q -p bench --bin faults
FAULTS=target/debug/faults

logs=$(mktemp -d /tmp/compose-test.XXXXXX)
compose_cleanup_on_exit "$logs" "${ALL[@]}"

# The README's Docker quick start, word for word: each command the test runs
# as a user would must appear there verbatim (with the default port 8080).
readme_says() {
  grep -qF -- "$1" README.md || die "the README's Docker quick start no longer shows: $1"
}
# Run a quick-start command as written, against this run's producer port.
as_user() {
  readme_says "$1"
  eval "${1//localhost:8080/localhost:$PRODUCER_PORT}"
}

mgmt() { curl -sf -u guest:guest "$MGMT/$1"; }
# psql in the postgres container, as the stack's own user.
sql() {
  docker compose exec -T postgres sh -c 'psql -qtA -U "$POSTGRES_USER" -d "$POSTGRES_DB"' <<<"$1"
}
# One line per running consumer replica: "<container> <counter value>".
replica_counter() { # replica_counter <metric>
  local id
  for id in $(docker compose ps -q consumer); do
    printf '%s %s\n' "${id:0:12}" "$(docker exec "$id" bash -c '
      exec 3<>/dev/tcp/127.0.0.1/9090 &&
      printf "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3 &&
      cat <&3' | awk -v m="$1" '$1 == m { print $2 }')"
  done
}

# --- 1. a clean state ----------------------------------------------------------
log "clean state"
docker compose --profile '*' down -v --remove-orphans

# --- 2. the quick start ---------------------------------------------------------
log "docker compose up --build --wait"
as_user "docker compose up --build --wait"
timing "up --build --wait (image build included)" $((SECONDS - step_t))

log "the tutorial's curl"
answer=$(as_user "curl -s -X POST localhost:8080/add_message -H 'content-type: application/json' -d '{\"content\": \"hello\"}'") || true
echo "$answer"
job_id=$(jq -r '.job_id // empty' <<<"$answer")
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$API/add_message" -H 'content-type: application/json' -d '{"content": "hello again"}')
check "POST /add_message → 202 with a job_id" "$([ -n "$job_id" ] && [ "$code" = 202 ] && echo 1 || echo 0)" "job_id $job_id, status $code"
row_listed() { as_user "curl -s localhost:8080/messages" | jq -e --arg id "$job_id" 'any(.[]; .id == $id and .content == "hello")' >/dev/null; }
ok=0; wait_until 30 row_listed && ok=1
check "the message is in GET /messages" "$ok" "$(as_user "curl -s localhost:8080/messages" | jq -c 'map(.content)')"

log "least privilege: the apps' users and roles"
# RabbitMQ: every client connection is the apps' user, which is no administrator.
amqp_users=$(docker compose exec -T rabbitmq rabbitmqctl -q list_connections --no-table-headers user | tr -d '\r' | sort -u | xargs)
app_tags=$(docker compose exec -T rabbitmq rabbitmqctl -q list_users --no-table-headers | tr -d '\r' | awk '$1 == "pipeline" { print $2 }')
check "RabbitMQ: the apps connect as pipeline, tagged management only" \
  "$([ "$amqp_users" = pipeline ] && [ "$app_tags" = "[management]" ] && echo 1 || echo 0)" "connections as: $amqp_users; pipeline's tags: $app_tags"
# PostgreSQL: the services' sessions are the runtime roles, no superuser, no DDL.
pg_sessions() { sql "SELECT string_agg(DISTINCT a.usename || CASE WHEN r.rolsuper THEN '(superuser)' ELSE '' END, ' ')
  FROM pg_stat_activity a JOIN pg_roles r ON r.rolname = a.usename
  WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"; }
both_roles() { [ "$(pg_sessions)" = "pipeline_consumer pipeline_producer" ]; }
ok=0; wait_until 30 both_roles && ok=1
check "PostgreSQL: the producer and the consumer are pipeline_producer and pipeline_consumer, not superusers" "$ok" "sessions: $(pg_sessions)"
ddl=$(docker compose exec -T postgres sh -c 'psql -qtA -U pipeline_producer -d "$POSTGRES_DB" -c "CREATE TABLE intruder (id int)"; psql -qtA -U pipeline_consumer -d "$POSTGRES_DB" -c "DROP TABLE messages"' 2>&1 | tr -d '\r' | xargs || true)
check "PostgreSQL: the runtime roles can neither create nor drop a table" \
  "$([ "$(grep -o 'permission denied\|must be owner' <<<"$ddl" | wc -l)" = 2 ] && echo 1 || echo 0)" "$ddl"
migrated=$(docker compose ps -a --format '{{.Service}} {{.State}} {{.ExitCode}}' | awk '$1 == "migrate" { print $2 "/" $3 }')
check "the migrate service ran once and exited 0" "$([ "$migrated" = exited/0 ] && echo 1 || echo 0)" "migrate: $migrated"
cookie=$(RABBITMQ_ERLANG_COOKIE='' docker compose -f docker-compose.yml -f docker-compose.cluster.yml config -q 2>&1 || true)
check "the cluster override refuses to start without RABBITMQ_ERLANG_COOKIE" \
  "$(grep -q RABBITMQ_ERLANG_COOKIE <<<"$cookie" && echo 1 || echo 0)" "$(head -c 120 <<<"$cookie")"

# --- 3. three consumers ----------------------------------------------------------
log "docker compose up --wait --scale consumer=3"
as_user "docker compose up --wait --scale consumer=3"
store_consumers() { # the client-given names of the connections consuming messages.store
  local conns
  conns=$(mgmt connections) || return 1
  mgmt "consumers/%2F" | jq -r --argjson conns "$conns" '
    ($conns | map({(.name): (.user_provided_name // .client_properties.connection_name // "?")}) | add // {}) as $names
    | .[] | select(.queue.name == "messages.store") | $names[.channel_details.connection_name]'
}
three_consumers() { [ "$(store_consumers | wc -l)" = 3 ]; }
wait_until 60 three_consumers || true
names=$(store_consumers | sort | tr '\n' ' ')
n_consumers=$(store_consumers | wc -l)
n_names=$(store_consumers | sort -u | wc -l)
check "management API: 3 consumers on messages.store" "$([ "$n_consumers" = 3 ] && echo 1 || echo 0)" "$n_consumers consumers"
check "management API: the 3 consumer connections have distinct names" "$([ "$n_names" = 3 ] && echo 1 || echo 0)" "$names"

log "$CLEAN_N messages over 3 replicas"
replica_counter pipeline_consumer_rows_stored_total >"$logs/rows-before"
step_t=$SECONDS
ok=1
"$FAULTS" --compose-project "$COMPOSE_PROJECT_NAME" --producer-url "$API" --amqp-url "$AMQP" \
  --faults none --n "$CLEAN_N" --duration-secs 0 --poison 0 2>&1 | tee "$logs/clean.txt" || ok=0
timing "$CLEAN_N messages sent and stored" $((SECONDS - step_t))
check "$CLEAN_N messages: every 202 stored exactly once" "$ok" "see the table above"
replica_counter pipeline_consumer_rows_stored_total >"$logs/rows-after"
spread=$(awk 'NR == FNR { before[$1] = $2; next } { d = $2 - before[$1]; total += d; if (d <= 0) idle++; printf "%s:%d ", $1, d }
  END { printf "(total %d, idle replicas %d)", total, idle }' "$logs/rows-before" "$logs/rows-after")
idle=$(awk 'NR == FNR { before[$1] = $2; next } { if ($2 - before[$1] <= 0) idle++ } END { print idle + 0 }' "$logs/rows-before" "$logs/rows-after")
replicas=$(wc -l <"$logs/rows-after")
check "rows spread over every replica" "$([ "$replicas" = 3 ] && [ "$idle" = 0 ] && echo 1 || echo 0)" "$spread"

# --- 3b. a pool per kind of work ---------------------------------------------------
# "10 Email Workers and only 2 Profile Workers": each pool consumes its own
# kind's queue; the plain consumer takes every kind (compose's KINDS is
# default,email,profile). The management API shows each queue's consumers.
log "docker compose up --wait --scale consumer-email=10 --scale consumer-profile=2"
as_user "docker compose up --wait --scale consumer-email=10 --scale consumer-profile=2"
queue_consumers() { mgmt "queues/%2F/$1" | jq -r '.consumers // 0'; }
n_plain=$(docker compose ps -q consumer | wc -l)
pools_up() {
  [ "$(queue_consumers messages.store.email)" = $((10 + n_plain)) ] \
    && [ "$(queue_consumers messages.store.profile)" = $((2 + n_plain)) ] \
    && [ "$(queue_consumers messages.store)" = "$n_plain" ]
}
ok=0; wait_until 60 pools_up && ok=1
check "management API: messages.store.email has the 10 email consumers (+$n_plain plain), messages.store.profile the 2 profile ones (+$n_plain), messages.store only the plain ones" \
  "$ok" "email $(queue_consumers messages.store.email), profile $(queue_consumers messages.store.profile), default $(queue_consumers messages.store)"
kind_ids=()
for kind in email profile; do
  kind_ids+=("$(curl -s -X POST "$API/messages" -H 'content-type: application/json' \
    -d "{\"content\": \"a $kind\", \"kind\": \"$kind\"}" | jq -r '.id // empty')")
done
kinds_stored() {
  [ "$(curl -s "$API/messages/${kind_ids[0]}" | jq -r '.kind')" = email ] \
    && [ "$(curl -s "$API/messages/${kind_ids[1]}" | jq -r '.kind')" = profile ]
}
ok=0; wait_until 30 kinds_stored && ok=1
check "an email and a profile message are stored with their kinds" "$ok" "ids ${kind_ids[*]}"
# Back to the plain consumers only (replicas 0 for the pools), for the steps below.
docker compose up --wait --scale consumer=3 --scale consumer-email=0 --scale consumer-profile=0 >/dev/null 2>&1

# --- 4. the topology on this RabbitMQ -------------------------------------------
log "integration tests against this RabbitMQ ($(docker compose exec -T rabbitmq rabbitmqctl -q version 2>/dev/null | tr -d '\r'))"
# The topology tests need only the broker; the dead-letter, poison and
# retry tests also need the local PostgreSQL (TEST_DATABASE_URL).
filters=(topology::)
if pg_isready -q -d "${TEST_DATABASE_URL:-postgres://root@127.0.0.1:5432}" 2>/dev/null; then
  filters+=(dead_letters:: poison:: retries::)
else
  note "no PostgreSQL at TEST_DATABASE_URL: only the topology tests run against the container"
fi
ok=1
# (Indented, so that CI's tally of cargo's "test result:" lines does not count them twice.)
TEST_AMQP_URL=$AMQP cargo test -q -p e2e --test pipeline -- "${filters[@]}" 2>&1 | tee "$logs/e2e.txt" \
  | grep -E '^test result|FAILED|panicked' | sed 's/^/  e2e on RabbitMQ 4.0: /' || true
grep -q '^test result: ok' "$logs/e2e.txt" || ok=0
check "e2e ${filters[*]} against RabbitMQ 4.0" "$ok" "$(grep '^test result' "$logs/e2e.txt" | head -1)"
used=$(docker compose exec -T rabbitmq rabbitmqctl -q list_deprecated_features --used 2>&1 | grep -v '^\s*$' | grep -v '^name' || true)
check "no deprecated RabbitMQ feature in use" "$([ -z "$used" ] && echo 1 || echo 0)" "${used:-none}"

# --- 5. faults on containers ------------------------------------------------------
log "faults: $FAULT_N messages over ${FAULT_SECS}s while containers are killed and restarted"
step_t=$SECONDS
ok=1
"$FAULTS" --compose-project "$COMPOSE_PROJECT_NAME" --producer-url "$API" --amqp-url "$AMQP" \
  --n "$FAULT_N" --duration-secs "$FAULT_SECS" --pg-down-secs "$PG_DOWN_SECS" 2>&1 | tee "$logs/faults.txt" || ok=0
timing "faults run" $((SECONDS - step_t))
check "faults: every 202 stored exactly once, messages.store drained" "$ok" "see the table above"

# --- 6. a graceful stop under load, and the data after it --------------------------
# The same retrying client sends STOP_N messages over STOP_SECS; halfway
# through, the whole stack stops as `docker compose stop` stops it, then comes
# back with `docker compose up`. The client keeps retrying (same keys) across
# the gap, so at the end every 202 must be a row exactly once: the ones the
# broker held over the stop, and the ones sent after it.
log "docker compose stop under load, then docker compose up"
docker compose up --wait --scale consumer=3 >/dev/null 2>&1
STOP_N=6000 STOP_SECS=12
"$FAULTS" --compose-project "$COMPOSE_PROJECT_NAME" --producer-url "$API" --amqp-url "$AMQP" \
  --faults none --n "$STOP_N" --duration-secs "$STOP_SECS" --poison 0 >"$logs/stop-load.txt" 2>&1 &
load=$!
sleep $((STOP_SECS / 2))
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
step_t=$SECONDS
as_user "docker compose stop"
timing "docker compose stop (under load)" $((SECONDS - step_t))
# Exit code 0 from every container: nothing was SIGKILLed at the end of
# its grace period. A third-party image built here rather than pulled (no
# registry digest: a stand-in) is reported, not judged: the stand-ins run
# their server under `runuser`, which does not pass SIGINT on and exits 143
# after SIGTERM, whatever the server did. The official images exec the
# server as PID 1.
bad=() warned=()
while read -r service image state code; do
  if [ "$state $code" = "exited 0" ]; then continue; fi
  if [ "$service" != producer ] && [ "$service" != consumer ] \
    && [ "$(docker image inspect --format '{{len .RepoDigests}}' "$image" 2>/dev/null)" = 0 ]; then
    warned+=("$service=$state/$code")
  else
    bad+=("$service=$state/$code")
  fi
done < <(docker compose ps -a --format '{{.Service}} {{.Image}} {{.State}} {{.ExitCode}}')
states=$(docker compose ps -a --format '{{.Service}}={{.State}}/{{.ExitCode}}' | sort | tr '\n' ' ')
check "docker compose stop: every container exited 0 within its grace period" "$([ ${#bad[@]} = 0 ] && echo 1 || echo 0)" "$states"
if [ ${#warned[@]} -gt 0 ]; then
  results+=("| stand-in images (built here, not pulled): exit codes not judged | warn | ${warned[*]} |")
fi
docker compose logs --no-color --since "$since" consumer >"$logs/stop-consumers.log" 2>&1 || true
stopped=$(grep -c 'consumer stopped' "$logs/stop-consumers.log" || true)
unclean=$(grep -cE 'shutdown timeout|broker session failed' "$logs/stop-consumers.log" || true)
check "every consumer stored and acked what it held before exiting (nothing left unacked)" \
  "$([ "$stopped" = 3 ] && [ "$unclean" = 0 ] && echo 1 || echo 0)" \
  "$stopped of 3 drained; $unclean shutdown timeouts or failed sessions"

as_user "docker compose up --wait"
ok=1
wait "$load" || ok=0
cat "$logs/stop-load.txt"
check "stop under load: every 202 stored exactly once after up" "$ok" "see the table above"
# The tutorial's 2, the per-kind pools' 2 (kind_ids), and the loads.
expected=$((2 + ${#kind_ids[@]} + CLEAN_N + FAULT_N + STOP_N))
counts=$(sql 'SELECT count(*), count(DISTINCT id) FROM messages' | tr '|' ' ')
check "the volumes kept everything: $expected rows, each once" \
  "$([ "$counts" = "$expected $expected" ] && echo 1 || echo 0)" "rows, distinct ids: $counts"
status=$(curl -s "$API/messages/$job_id" | jq -r .status)
check "the tutorial's message is still there (GET /messages/{id})" "$([ "$status" = stored ] && echo 1 || echo 0)" "$status"

# --- 7. monitoring -------------------------------------------------------------------
log "monitoring profile"
if [ "$have_grafana" = 1 ]; then
  docker compose --profile monitoring up --wait --scale consumer=3
else
  # No Grafana image here (no registry, no stand-in): everything else, by name.
  docker compose --profile monitoring up --wait --scale consumer=3 rabbitmq postgres producer consumer prometheus
fi
targets_up() {
  curl -sf "$PROM/api/v1/targets" | jq -e '
    [.data.activeTargets[] | select(.health == "up") | .labels.job] as $up
    | ($up | map(select(. == "consumer")) | length) == 3
      and ($up | any(. == "producer")) and ($up | any(. == "rabbitmq"))
      and ($up | any(. == "rabbitmq-queues"))
      and ([.data.activeTargets[] | select(.health != "up")] | length) == 0' >/dev/null
}
ok=0; wait_until 90 targets_up && ok=1
check "Prometheus: producer, 3 consumers and RabbitMQ targets up" "$ok" \
  "$(curl -sf "$PROM/api/v1/targets" | jq -r '[.data.activeTargets[] | "\(.labels.job)=\(.health)"] | sort | join(" ")')"
# Something to graph: messages, a few bad requests, one poison message.
"$FAULTS" --compose-project "$COMPOSE_PROJECT_NAME" --producer-url "$API" --amqp-url "$AMQP" \
  --faults none --n 2000 --duration-secs 20 --poison 1 >"$logs/monitoring-load.txt" 2>&1 \
  || note "monitoring load failed; see $logs/monitoring-load.txt"
# Every query of the dashboard, with Grafana's $__rate_interval as 1m. A
# trailing "> 0" only hides idle series in the panels: without it the
# query must answer.
query_answers() {
  curl -sf --get "$PROM/api/v1/query" --data-urlencode "query=$1" | jq -e '.data.result | length > 0' >/dev/null
}
empty=()
n_queries=0
while IFS= read -r expr; do
  n_queries=$((n_queries + 1))
  q=${expr//\$__rate_interval/1m}
  q=${q//\$__interval/1m}
  if ! wait_until 60 query_answers "$q"; then
    bare=$(sed -E 's/[[:space:]]*>[[:space:]]*0[[:space:]]*$//' <<<"$q")
    [ "$bare" != "$q" ] && query_answers "$bare" && continue
    empty+=("$expr")
  fi
done < <(jq -r '.. | objects | .expr? // empty' monitoring/grafana/dashboards/pipeline.json)
check "every dashboard query returns series" "$([ ${#empty[@]} = 0 ] && echo 1 || echo 0)" \
  "$((n_queries - ${#empty[@]})) of $n_queries${empty:+; empty: ${empty[*]}}"
if [ "$have_grafana" = 1 ]; then
  anonymous=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GRAFANA_PORT/api/search?query=Pipeline")
  check "Grafana: no anonymous access" "$([ "$anonymous" = 401 ] && echo 1 || echo 0)" "anonymous search: $anonymous"
  ok=0
  curl -sf -u admin:admin "http://127.0.0.1:$GRAFANA_PORT/api/search?query=Pipeline" | jq -e 'length > 0' >/dev/null && ok=1
  errors=$(docker compose logs --no-color grafana 2>&1 | grep -ciE 'level=error.*provisioning' || true)
  check "Grafana: the Pipeline dashboard is provisioned, no provisioning errors" \
    "$([ "$ok" = 1 ] && [ "$errors" = 0 ] && echo 1 || echo 0)" "$errors provisioning errors"
else
  results+=("| Grafana | skipped | no image (no registry, no stand-in) |")
fi

# --- 8. down -v --------------------------------------------------------------------
log "docker compose down -v"
docker compose --profile '*' logs --no-color >"$logs/compose.log" 2>&1 || true
docker compose --profile monitoring down -v
left=$(compose_leftover)
check "docker compose down -v leaves no container, volume or network" "$([ "$left" = 0 ] && echo 1 || echo 0)" "$left left"

# --- verdict -------------------------------------------------------------------------
verdict "Compose test ($([ "$short" = 1 ] && echo short || echo full))"
