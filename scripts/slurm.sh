# Sourced by scripts/test.sh: a throw-away single-node SLURM cluster for the tests that need one.
#
# Exports SLURM_CONF (its slurm.conf, read by sbatch, squeue, scontrol... and by the jobs) and
# SEARCHER_TEST_SLURM_PARTITION (debug), and stops the daemons and deletes their files at exit.
# Uses Debian's packages (slurmctld, slurmd and slurm-client, the parts of slurm-wlm, and munge),
# installed quietly when missing and this runs as root; the daemons run as root (SlurmUser=root), so
# anywhere else it exports nothing and the SLURM tests skip, saying why. Everything lives in a temp
# dir: its own munge key and socket, free ports, and no accounting storage (as on many small clusters:
# sacct fails there, and searcher skips submitit's sacct polls), in a folder the munge account can
# reach (service_tmp.sh). A cluster that cannot start never fails the caller (test.sh runs under
# set -euo pipefail): it says why and returns 0, and the SLURM tests skip.

source "$(dirname "${BASH_SOURCE[0]}")/service_tmp.sh"

slurm_start() {
    if [ -n "${SEARCHER_TEST_SLURM_PARTITION:-}" ]; then return 0; fi  # a cluster given from outside
    if [ "$(id -u)" != 0 ]; then echo "note: not root, so no throw-away SLURM cluster; the SLURM tests will skip"; return 0; fi
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
        || ! command -v munged >/dev/null; then
        if command -v apt-get >/dev/null; then
            echo "installing SLURM and munge from Debian's packages for the SLURM tests (quiet)..."
            export DEBIAN_FRONTEND=noninteractive
            local packages=(slurmctld slurmd slurm-client munge)
            { apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2>&1 \
              || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2>&1; }; } \
              || echo "note: apt-get could not install ${packages[*]}; the SLURM tests will skip"
        fi
        if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
            || ! command -v munged >/dev/null; then
            echo "note: no SLURM (slurmctld, slurmd, sbatch) or munged found; the SLURM tests will skip"
            return 0
        fi
    fi

    SLURM_TMP=$(service_tmp munge) || { echo "note: no temp folder for SLURM; the SLURM tests will skip"; return 0; }
    local host cpus memory ports
    host=$(hostname -s)
    cpus=$(nproc)
    memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)  # MB the jobs may ask for
    ports=$(python3 -c "
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets: s.bind(('127.0.0.1', 0))
print(*[s.getsockname()[1] for s in sockets])")
    # munged: its own key and socket (in a folder everyone may enter), as the munge user
    mkdir -p "$SLURM_TMP/munge" "$SLURM_TMP/state" "$SLURM_TMP/spool"
    head -c 1024 /dev/urandom > "$SLURM_TMP/munge/munge.key"
    chmod 755 "$SLURM_TMP/munge" && chmod 400 "$SLURM_TMP/munge/munge.key"
    if ! chown -R munge: "$SLURM_TMP/munge" >"$SLURM_TMP/munged.out" 2>&1 || ! runuser -u munge -- munged --key-file="$SLURM_TMP/munge/munge.key" --socket="$SLURM_TMP/munge/socket" \
        --pid-file="$SLURM_TMP/munge/munged.pid" --log-file="$SLURM_TMP/munge/munged.log" --seed-file="$SLURM_TMP/munge/seed" \
        >>"$SLURM_TMP/munged.out" 2>&1; then
        echo "note: munged did not start (see below); the SLURM tests will skip"
        cat "$SLURM_TMP/munged.out" "$SLURM_TMP/munge/munged.log" 2>/dev/null | tail -n 5 || true
        slurm_stop
        return 0
    fi
    # What differs from a production cluster, to keep the tests short: a requeued job may start again
    # 20 s after its last one ended (cred_expire, default 120 s), SIGKILL follows SIGTERM after 10 s
    # (KillWait, default 30 s), the scheduler looks every 2 s, and the log at debug2 notes slurmctld's
    # time-limit checks (every 30 s), with which the time-limit test aligns its job.
    cat > "$SLURM_TMP/slurm.conf" <<EOF
ClusterName=searcher-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=${ports% *}
SlurmdPort=${ports#* }
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SLURM_TMP/munge/socket,cred_expire=20
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$SLURM_TMP/state
SlurmdSpoolDir=$SLURM_TMP/spool
SlurmctldPidFile=$SLURM_TMP/slurmctld.pid
SlurmdPidFile=$SLURM_TMP/slurmd.pid
SlurmctldLogFile=$SLURM_TMP/slurmctld.log
SlurmctldDebug=debug2
SlurmdLogFile=$SLURM_TMP/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
DefMemPerCPU=1024
KillWait=10
SchedulerParameters=sched_interval=2,bf_interval=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$SLURM_TMP/slurm.conf"
    if ! slurmctld -f "$SLURM_CONF" >/dev/null 2>&1 || ! slurmd -f "$SLURM_CONF" >/dev/null 2>&1; then
        echo "note: slurmctld or slurmd did not start (see below); the SLURM tests will skip"
        tail -n 5 "$SLURM_TMP"/*.log 2>/dev/null || true
        slurm_stop
        return 0
    fi
    local waited=0
    until [ "$(sinfo -h -n "$host" -o %t 2>/dev/null)" = idle ]; do
        if [ $waited -ge 60 ]; then
            echo "note: the SLURM node is not idle after 60 s (see below); the SLURM tests will skip"
            sinfo 2>&1 | tail -n 3 || true
            tail -n 5 "$SLURM_TMP"/*.log 2>/dev/null
            slurm_stop
            return 0
        fi
        sleep 1
        waited=$((waited + 1))
    done
    export SEARCHER_TEST_SLURM_PARTITION=debug
    echo "SLURM $(sinfo -V | awk '{print $2}') for the tests: node $host, $cpus CPUs, partition debug (stopped at exit)"
}

slurm_stop() {
    if [ -n "${SLURM_TMP:-}" ]; then
        local pidfile pid
        squeue -h -o %A 2>/dev/null | xargs -r scancel 2>/dev/null || true  # jobs a test left behind end first
        for _ in $(seq 30); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 1; done
        for pidfile in "$SLURM_TMP/slurmd.pid" "$SLURM_TMP/slurmctld.pid" "$SLURM_TMP/munge/munged.pid"; do
            pid=$(cat "$pidfile" 2>/dev/null) || continue
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || break; sleep 0.1; done
        done
        rm -rf "$SLURM_TMP"
        unset SLURM_TMP SLURM_CONF SEARCHER_TEST_SLURM_PARTITION
    fi
}
