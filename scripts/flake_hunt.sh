#!/usr/bin/env bash
# Repeats the tests whose outcome could depend on timing, under load, to find races before CI does.
#
#   bash scripts/flake_hunt.sh [--times K] [--load N] [-- PYTEST_ARGS...]     (defaults: 10 times, load 2)
#
# The tests: signals and interrupts, leases, kill -9 at every point of a trial's life, stores lost mid-search,
# trials in threads and worker processes, Hydra multiruns with a requeue, SLURM time limits and scancel, the UI
# server, the test services' scripts, and the long variations CI leaves to this script (marker `hunt`). Each repetition runs them as CI does (two pytest-xdist processes) while N
# CPU-bound processes keep the cores busy, with the PostgreSQL server and SLURM cluster of scripts/test.sh. It
# prints one line per repetition, keeps each log in $TMPDIR/flake_hunt.N.log, and exits 1 if any failed. A failure
# is a bug in the product or the test: fix its cause (wait on an event or a marker, never a longer sleep).
set -euo pipefail
cd "$(dirname "$0")/.."
times=10 load=2
while [ $# -gt 0 ]; do
    case "$1" in
        --times) times=$2; shift 2 ;;
        --load) load=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "usage: $0 [--times K] [--load N] [-- PYTEST_ARGS...]"; exit 2 ;;
    esac
done
TIMING_TESTS=(
    tests/test_interrupts.py tests/test_lease.py tests/test_resilience.py tests/test_crash_points.py
    tests/test_threads.py tests/test_parallel.py tests/test_multirun.py tests/test_slurm.py tests/test_ui.py
    tests/test_services.py tests/test_postgres.py
)
[ -x .venv/bin/python ] || { echo "no .venv: run bash scripts/test.sh once first (it installs searcher and its test extras)"; exit 2; }
# A snapshot of the last commit is what runs (with this venv, its package found first on PYTHONPATH): the tests
# compare searches run minutes apart, so an edit to the checkout meanwhile would read as a race.
snapshot=$(mktemp -d "${TMPDIR:-/tmp}/flake_hunt.XXXXXX")
git clone -q . "$snapshot/searcher-head" && ln -s "$PWD/.venv" "$snapshot/searcher-head/.venv"
[ -z "$(git status --porcelain --untracked-files=no)" ] || echo "note: uncommitted changes are not in the hunt (it runs $(git rev-parse --short HEAD))"
cd "$snapshot/searcher-head"
export PYTHONPATH="$PWD"
source scripts/postgres.sh
source scripts/slurm.sh
burners=()
stop_all() {
    for pid in "${burners[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null; done
    slurm_stop
    postgres_stop
    rm -rf "$snapshot"
}
trap stop_all EXIT
postgres_start
slurm_start
for _ in $(seq 1 "$load"); do
    ( exec python3 -c 'while True: pass' ) &
    burners+=($!)
done
failed=0
for run in $(seq 1 "$times"); do
    log="${TMPDIR:-/tmp}/flake_hunt.$run.log"  # (outside the snapshot, which goes at exit)
    started=$(date +%s)
    code=0
    .venv/bin/python -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider "${TIMING_TESTS[@]}" "$@" >"$log" 2>&1 || code=$?
    summary=$(grep -E "[0-9]+ (passed|failed)" "$log" | tail -n 1 || true)
    echo "repetition $run/$times (load $load): exit $code in $(( $(date +%s) - started )) s  $summary  log: $log"
    if [ "$code" -ne 0 ]; then failed=1; grep -E "^(FAILED|ERROR) " "$log" | head -n 20 || true; fi
done
exit "$failed"
