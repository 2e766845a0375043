# Sourced by scripts/postgres.sh and scripts/slurm.sh: a temp folder a service's own account can reach.
#
# PostgreSQL runs as `nobody` and munged as `munge`, not as the user running the tests; a folder under a
# TMPDIR that only that user may enter (mode 700, as some CI runners and `mktemp -d` parents are) made
# both fail to start. service_tmp USER prints a new folder (mode 755) under TMPDIR when USER can enter it,
# else under /tmp, which every account can.

service_tmp() {
    local user=$1 folder
    folder=$(mktemp -d) && chmod 755 "$folder" || return 1
    if [ "$(id -u)" = 0 ] && id -u "$user" >/dev/null 2>&1 && ! runuser -u "$user" -- test -x "$folder" 2>/dev/null; then
        rm -rf "$folder"
        folder=$(mktemp -d /tmp/searcher-service.XXXXXX) && chmod 755 "$folder" || return 1
    fi
    printf '%s\n' "$folder"
}
