#!/usr/bin/env bash
# Runs every test suite and prints one summary line "N passed, N failed, N skipped".
# Each suite prints TAP-like "ok -" / "not ok -" lines; a suite that dies
# without reporting counts as a failure.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
HOST=${HOST:-bin/aviary}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
export AVIARY_NUM_THREADS=${AVIARY_NUM_THREADS:-2}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# a private scratch folder per run, so concurrent runs do not disturb each other
export AVIARY_TEST_TMP=${AVIARY_TEST_TMP:-tests/.tmp/run.$$}
mkdir -p "$AVIARY_TEST_TMP"
trap 'rm -f "$LOG"; rm -rf "$AVIARY_TEST_TMP"' EXIT

run_suite() { # name, command...
  local name=$1; shift
  local out rc
  out=$("$@" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -E '^(ok|not ok) ' >>"$LOG"
  printf '%s\n' "$out" | grep -vE '^[0-9]+ passed, [0-9]+ failed'
  if [ $rc -ne 0 ] && ! printf '%s\n' "$out" | grep -q '^not ok '; then
    echo "not ok - $name exited with status $rc" | tee -a "$LOG"
  fi
}

run_suite "C tests" "$BUILD/tests/ctest"
for f in tests/lua/test_*.lua; do
  run_suite "lua $f" "$HOST" tests/lua/runner.lua "$f"
done
run_suite "build checks" env HOST="$HOST" tests/build/run.sh
if [ -x tests/host/run.sh ]; then
  run_suite "host tests" env HOST="$HOST" tests/host/run.sh
fi

skipped=$(grep -c '^ok .*# SKIP' "$LOG")
passed=$(( $(grep -c '^ok ' "$LOG") - skipped ))
failed=$(grep -c '^not ok ' "$LOG")
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
