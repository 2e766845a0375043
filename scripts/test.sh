#!/usr/bin/env bash
# Installs searcher with its test extras into ./.venv and runs the whole test suite.
# This is the README's test command and what CI (.ci/run) runs on a clean clone. It also starts a
# throw-away PostgreSQL server for the shared-storage test (scripts/postgres.sh) and a throw-away
# single-node SLURM cluster for the SLURM tests (scripts/slurm.sh): installed from Debian's packages
# when missing and running as root; elsewhere without them, those tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
# (this machine's pip prints one "Location ... is ignored" line per package: filtered, pip's exit code kept)
.venv/bin/pip install --quiet -c constraints.txt -e ".[dev]" 2>&1 | { grep -v "^WARNING: Location" || true; }
# The DEHB peer of scripts/bench_search.py (tests/test_benchmarks.py runs it): DEHB 0.1.2 pins numpy<2 but runs on
# numpy 2, so it is installed without its pins, its own dependencies beside it.
.venv/bin/pip install --quiet -c constraints.txt ConfigSpace loguru dask distributed 2>&1 | { grep -v "^WARNING: Location" || true; }
.venv/bin/pip install --quiet -c constraints.txt --no-deps dehb 2>&1 | { grep -v "^WARNING: Location" || true; }
# The UI test drives a real headless browser: install Debian's chromium when it is missing and we may (root + apt-get).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the UI test (apt-get, about 30 s)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "could not install chromium: the browser test will be skipped"
fi
.venv/bin/ruff check searcher scripts tests examples   # lint first: seconds, and a red CI names the line
.venv/bin/lint-imports   # the import rules of docs/design.md §6 (contracts in pyproject.toml)
.venv/bin/mypy   # types ([tool.mypy] in pyproject.toml: searcher/)
source scripts/postgres.sh
source scripts/slurm.sh
trap 'slurm_stop; postgres_stop' EXIT
postgres_start
slurm_start
status=0
# Two test processes (pytest-xdist): the end-to-end tests wait on subprocesses and stores as much as they compute, so
# the suite takes ~10 min on 2 cores instead of ~15; the tests reading one shared search run on one process
# (loadgroup: tests/conftest.py; tests/test_harness.py fails where pytest-xdist cannot group), so that search runs
# once; the slowest tests are listed at the end.
# Long end-to-end variations of scenarios other tests cover (`hunt`) run in scripts/flake_hunt.sh, under load, instead.
.venv/bin/python -m pytest -q -n 2 --dist loadgroup --durations=15 -m "not hunt" "$@" || status=$?
exit $status
