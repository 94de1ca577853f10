# shellcheck shell=bash
# Steps, verdicts and the closing table of the scripts that test a whole
# stack (scripts/compose-test.sh, scripts/cluster-test.sh): each check is
# recorded and the run goes on, so one failure does not hide the next; the
# table at the end lists them all and the exit code says whether any failed.
#
# Sourced, never run. Messages are tagged with the sourcing script's name.

REPORT_TAG=$(basename "$0" .sh)
t0=$SECONDS
# shellcheck disable=SC2034 # read by the sourcing script: its step's clock
step_t=$SECONDS
failures=()
results=()

# log <step>: a step's heading, with the seconds since the start; the
# step's own clock (step_t) starts again.
# shellcheck disable=SC2034 # step_t: see above
log() { printf '\n== %s (%ds) ==\n' "$*" "$((SECONDS - t0))"; step_t=$SECONDS; }
note() { printf '%s: %s\n' "$REPORT_TAG" "$*"; }
die() { printf '%s: FATAL: %s\n' "$REPORT_TAG" "$*" >&2; exit 1; }

# check <name> <ok: 0|1> <detail>: record a verdict and go on.
check() {
  local name=$1 ok=$2 detail=${3:-}
  if [ "$ok" = 1 ]; then
    results+=("| $name | pass | $detail |")
    note "pass: $name ($detail)"
  else
    results+=("| $name | FAIL | $detail |")
    failures+=("$name")
    note "FAIL: $name ($detail)"
  fi
}

# timing <what> <seconds>: a row of the table that is no verdict.
timing() { results+=("| time: $1 | | $(($2))s |"); }

# wait_until <seconds> <command...>: poll every second until it succeeds.
wait_until() {
  local secs=$1; shift
  for _ in $(seq "$secs"); do "$@" && return 0; sleep 1; done
  return 1
}

# need <command> <debian package>: install the package when the command is missing.
need() {
  command -v "$1" >/dev/null && return 0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
  command -v "$1" >/dev/null || die "$1 is missing (apt-get install $2)"
}

# verdict <title>: the whole run's time, the table of every check, and the
# exit: 1 if any check failed.
verdict() {
  timing "whole test" $((SECONDS - t0))
  printf '\n| %s | Result | Detail |\n| --- | --- | --- |\n' "$1"
  printf '%s\n' "${results[@]}"
  if [ ${#failures[@]} -gt 0 ]; then
    printf '\n%s: %d check(s) FAILED: %s\n' "$REPORT_TAG" "${#failures[@]}" "$(IFS=';'; echo "${failures[*]}")" >&2
    exit 1
  fi
  printf '\n%s: all checks passed\n' "$REPORT_TAG"
}
