#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for `darts study --executor slurm` and its test.
#
#   scripts/slurm-local.sh start   install Debian's slurm-wlm + munge if missing, write a one-node
#                                  configuration (this machine's cores and memory), start munged,
#                                  slurmctld and slurmd, and wait until `sinfo` shows the node idle
#   scripts/slurm-local.sh stop    stop the three daemons (the packages and files stay)
#   scripts/slurm-local.sh status  sinfo and squeue
#
# Needs root (it installs packages and runs slurmd, which must be root). Everything it writes lives
# under /etc/slurm (slurm.conf) and $STATE (default /var/tmp/darts-slurm: state, logs, pid files).
# No accounting database: job state comes from squeue while jobs live; `darts study` reads results
# from the run directories themselves.
set -euo pipefail

STATE=${DARTS_SLURM_STATE:-/var/tmp/darts-slurm}
CONF=/etc/slurm/slurm.conf

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "slurm-local.sh: run as root (installs packages and starts slurmd)" >&2
        exit 1
    fi
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return
    fi
    echo "installing slurm-wlm and munge (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    # RealMemory a little under what the kernel reports, so slurmd does not drain the node.
    mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$STATE/log"
    cat >"$CONF" <<EOF
# Written by darts-maxw scripts/slurm-local.sh: one node, this machine.
ClusterName=darts-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem_mb / cpus))
ReturnToService=2
MinJobAge=600
KillWait=10
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    # No cgroups are used (proctrack/linuxproc, task/none); an empty cgroup.conf keeps slurmd quiet.
    [ -f /etc/slurm/cgroup.conf ] || echo "CgroupPlugin=autodetect" >/etc/slurm/cgroup.conf
}

start_munge() {
    if pgrep -x munged >/dev/null; then return; fi
    [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey --create --force 2>/dev/null || \
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
}

wait_idle() {
    local i
    for i in $(seq 1 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qx 'idle'; then
            sinfo
            return 0
        fi
        sleep 1
    done
    echo "slurm-local.sh: the node did not become idle in 60 s; logs in $STATE/log" >&2
    sinfo >&2 || true
    tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
    return 1
}

start() {
    need_root
    install_packages
    write_config
    start_munge
    # -c: start from a clean state (no jobs left over from an earlier run of this script).
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld -c
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    wait_idle
    # A node left DOWN/DRAINED by an earlier run comes back.
    scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true
}

stop() {
    local p
    for p in slurmd slurmctld munged; do
        pkill -x "$p" 2>/dev/null || true
    done
    # pgrep -x matches process names of at most 15 characters, one pattern per daemon.
    running() {
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x munged >/dev/null
    }
    for _ in $(seq 1 20); do
        running || return 0
        sleep 0.5
    done
    for p in slurmd slurmctld munged; do
        pkill -9 -x "$p" 2>/dev/null || true
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo; squeue ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
