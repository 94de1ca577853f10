# shellcheck shell=bash
# The setup every script that runs this repository's compose stack shares
# (scripts/compose-test.sh, scripts/cluster-test.sh, scripts/cluster-bench.sh):
# its own project name, the compose files' defaults whatever the shell holds,
# free host ports, and the images. Kept in one place because two copies had
# drifted: a variable one script stopped taking from the shell still leaked
# into the other.
#
# Sourced from the repository root, after scripts/lib/report.sh (note, die).

# compose_env <default project name> <compose file>...: this run's project
# (COMPOSE_PROJECT_NAME wins when set) on exactly these files, with the
# defaults a new user gets: .env is ignored, and every variable the files
# read is unset but the host ports (*_PORT: see compose_ports).
compose_env() {
  export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-$1}
  shift
  export COMPOSE_ENV_FILES=/dev/null
  local var
  # Derived from the files, so that a variable added to them is never
  # taken from the shell by mistake.
  while read -r var; do
    case "$var" in *_PORT) ;; *) unset "$var" ;; esac
  done < <(grep -ohE '\$\{[A-Za-z_][A-Za-z0-9_]*' "$@" | cut -c3- | sort -u)
  unset COMPOSE_PROFILES
  COMPOSE_FILE=$(IFS=:; echo "$*")
  export COMPOSE_FILE
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# compose_ports VAR=start...: export each VAR not already set as the first
# free port from start on that no VAR before it took.
compose_ports() {
  local pair var port taken=" "
  for pair in "$@"; do
    var=${pair%%=*}
    if [ -z "${!var:-}" ]; then
      port=${pair#*=}
      while [[ "$taken" == *" $port "* ]] || ! port_free "$port"; do port=$((port + 1)); done
      export "$var=$port"
    fi
    taken+="${!var} "
  done
}

# compose_engine: a Docker engine with the compose plugin, started (and the
# stand-in images built) with $STANDINS where none answers.
compose_engine() {
  STANDINS=${STANDINS:-../shared/docker/standins/build.sh}
  if ! docker info >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1; then
    [ -x "$STANDINS" ] || die "no Docker engine with the compose plugin answers (install Docker Engine and docker-compose-plugin)"
    note "no Docker engine / compose plugin: starting them (and building stand-ins) with $STANDINS"
    "$STANDINS"
  fi
  docker compose version
}

# compose_images <optional pattern> [compose option...]: every image the
# files name (with these options, e.g. --profile '*') and the Dockerfile's
# FROM, but the project's own: present, pulled, or (no registry) built as a
# stand-in. One matching the pattern (a case glob) may stay missing: the
# caller checks for it and says what it skips; any other is fatal.
compose_images() {
  local optional=$1 img
  shift
  local images missing=()
  mapfile -t images < <({ docker compose "$@" config --images; awk 'toupper($1)=="FROM"{print $2}' Dockerfile; } \
    | grep -v "^${COMPOSE_PROJECT_NAME}-" | sort -u)
  for img in "${images[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 && continue
    timeout 300 docker pull -q "$img" >/dev/null 2>&1 || missing+=("$img")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ -x "$STANDINS" ]; then
    note "no registry for ${missing[*]}: building stand-ins"
    "$STANDINS" "${missing[@]}" || true
  fi
  for img in "${missing[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 && continue
    # shellcheck disable=SC2254 # the pattern is meant to match as a glob
    case "$img" in
      $optional) ;;
      *) die "image $img is neither present, pullable nor buildable as a stand-in" ;;
    esac
  done
}

# compose_cleanup_on_exit <logs dir> [compose option...]: at exit, keep the
# stack's logs in the folder and remove the stack (down -v), unless KEEP=1;
# the script's exit code is kept.
compose_cleanup_on_exit() {
  COMPOSE_LOGS=$1
  shift
  COMPOSE_OPTIONS=("$@")
  COMPOSE_OPTIONS_TEXT=""
  if [ $# -gt 0 ]; then COMPOSE_OPTIONS_TEXT=$(printf '%q ' "$@"); fi
  trap compose_cleanup EXIT
}
compose_cleanup() {
  local rc=$?
  if [ -n "$(docker compose ps -aq 2>/dev/null)" ]; then
    docker compose "${COMPOSE_OPTIONS[@]}" logs --no-color >"$COMPOSE_LOGS/compose.log" 2>&1 || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    note "KEEP=1: stack left running (COMPOSE_FILE=$COMPOSE_FILE docker compose -p $COMPOSE_PROJECT_NAME ${COMPOSE_OPTIONS_TEXT}down -v)"
  else
    docker compose "${COMPOSE_OPTIONS[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  note "logs: $COMPOSE_LOGS"
  exit "$rc"
}

# compose_leftover: how many containers, volumes and networks of this
# project are still there.
compose_leftover() {
  local label=com.docker.compose.project=$COMPOSE_PROJECT_NAME
  { docker ps -aq --filter "label=$label"; docker volume ls -q --filter "label=$label"
    docker network ls -q --filter "label=$label"; } | wc -l
}
