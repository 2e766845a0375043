#!/usr/bin/env bash
# Installs searcher with its test extras into ./.venv and runs the whole test suite.
# This is the README's test command and what CI (.ci/run) runs on a clean clone. It also starts a
# throw-away PostgreSQL server for the shared-storage test (scripts/postgres.sh): installed from
# Debian's packages when missing and running as root; elsewhere without one, that test skips.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
# (this machine's pip prints one "Location ... is ignored" line per package: filtered, pip's exit code kept)
.venv/bin/pip install --quiet -c constraints.txt -e ".[dev]" 2>&1 | { grep -v "^WARNING: Location" || true; }
source scripts/postgres.sh
trap postgres_stop EXIT
postgres_start
status=0
.venv/bin/python -m pytest -q "$@" || status=$?
exit $status
