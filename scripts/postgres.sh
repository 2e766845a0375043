# Sourced by scripts/test.sh: a throw-away PostgreSQL server for the tests that need one.
#
# Exports SEARCHER_TEST_POSTGRES_URL (postgresql://searcher:<password>@127.0.0.1:<port>/postgres) and
# stops the server and deletes its files at exit. Uses Debian's packages, installed quietly when
# missing and this runs as root; anywhere else without PostgreSQL it exports nothing and the tests
# that need a server skip, saying why. initdb and pg_ctl refuse to run as root, so as root the
# server runs as `nobody` in a data folder under a temp dir that `nobody` can reach (service_tmp.sh).
# SEARCHER_POSTGRES_BIN names the folder of initdb, pg_ctl and postgres where they are not Debian's.
# A server that cannot start never fails the caller (test.sh runs under set -euo pipefail): it says
# why and returns 0, and the tests that need it skip.

source "$(dirname "${BASH_SOURCE[0]}")/service_tmp.sh"

postgres_start() {
    if [ -n "${SEARCHER_TEST_POSTGRES_URL:-}" ]; then return 0; fi  # a server given from outside
    local bin=${SEARCHER_POSTGRES_BIN:-}
    [ -n "$bin" ] || bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing PostgreSQL from Debian's packages for the PostgreSQL test (quiet)..."
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -qq postgresql >/dev/null 2>&1 \
          || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq postgresql >/dev/null 2>&1; }; } \
          || echo "note: apt-get could not install postgresql; the PostgreSQL test will skip"
        bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    fi
    if [ -z "$bin" ]; then echo "note: no PostgreSQL found; the PostgreSQL test will skip"; return 0; fi

    PG_TMP=$(service_tmp nobody) || { echo "note: no temp folder for PostgreSQL; the PostgreSQL test will skip"; return 0; }
    local as=()
    if [ "$(id -u)" = 0 ]; then
        chown nobody "$PG_TMP"
        as=(runuser -u nobody --)
    fi
    local password port
    password=$(python3 -c "import secrets; print(secrets.token_hex(12))")
    port=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    printf '%s\n' "$password" > "$PG_TMP/pw" && chmod 600 "$PG_TMP/pw" && chown "$(stat -c %U "$PG_TMP")" "$PG_TMP/pw"
    PG_CTL=(${as[@]+"${as[@]}"} "$bin/pg_ctl" -D "$PG_TMP/data")
    if ! ${as[@]+"${as[@]}"} "$bin/initdb" -D "$PG_TMP/data" -U searcher --pwfile="$PG_TMP/pw" -A scram-sha-256 >"$PG_TMP/initdb.log" 2>&1 \
        || ! "${PG_CTL[@]}" -l "$PG_TMP/server.log" -w -o "-h 127.0.0.1 -p $port -k $PG_TMP" start >/dev/null; then
        echo "note: PostgreSQL did not start (see below); the PostgreSQL test will skip"
        tail -n 5 "$PG_TMP"/*.log 2>/dev/null || true
        postgres_stop
        return 0
    fi
    rm -f "$PG_TMP/pw"
    export SEARCHER_TEST_POSTGRES_URL="postgresql://searcher:$password@127.0.0.1:$port/postgres"
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') for the tests on 127.0.0.1:$port (stopped at exit)"
}

postgres_stop() {
    if [ -n "${PG_TMP:-}" ]; then
        if [ -d "$PG_TMP/data" ]; then "${PG_CTL[@]}" stop -m fast >/dev/null 2>&1 || true; fi
        rm -rf "$PG_TMP"
        unset PG_TMP
    fi
}
