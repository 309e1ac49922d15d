#!/usr/bin/env bash
# A real Slurm cluster on this machine for the launcher tests: Debian's slurm-wlm,
# munge, one slurmctld and two slurmd daemons (nodes smoe1 and smoe2, both on
# localhost, so multi-node jobs and ESPnet's --dist_launcher slurm can be tested).
#
# Idempotent: installs the packages if missing (apt-get, needs root), writes the
# config into ${SMOE_SLURM_DIR:-/var/tmp/smoe_slurm} and starts whatever daemon is
# not running (no systemd: the daemons are started directly). Prints
# "SLURM_CONF=<path>" on success; clients (sbatch, srun, squeue) need that variable.
#
#   test/egs2/smoe_asr_st/s2t1/local/slurm_cluster.sh          # start (or check)
#   test/egs2/smoe_asr_st/s2t1/local/slurm_cluster.sh stop     # stop the daemons
#
# The cluster uses its own ports and state directory, so it does not touch an
# existing /etc/slurm setup. Each node offers 2 CPUs whatever the hardware
# (SlurmdParameters=config_overrides): on a 2-core CI machine two array tasks or
# two training ranks still run at the same time.
set -euo pipefail

dir=${SMOE_SLURM_DIR:-/var/tmp/smoe_slurm}
conf=${dir}/slurm.conf
export SLURM_CONF=${conf}

if [ "${1:-}" = stop ]; then
    for pidfile in "${dir}"/slurmd.*.pid "${dir}/slurmctld.pid"; do
        daemon=$(basename "${pidfile}" .pid); daemon=${daemon%%.*}
        if [ -s "${pidfile}" ] && [ "$(cat "/proc/$(cat "${pidfile}")/comm" 2>/dev/null)" = "${daemon}" ]; then
            kill "$(cat "${pidfile}")"
        fi
    done
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "slurm_cluster.sh: slurm-wlm is not installed and this is not root (apt-get install slurm-wlm munge)" >&2
        exit 1
    fi
    echo "slurm_cluster.sh: installing slurm-wlm and munge" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# munge authenticates every Slurm message; its package creates the key.
if ! munge -n </dev/null >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- munged
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n </dev/null >/dev/null || { echo "slurm_cluster.sh: munged did not start" >&2; exit 1; }
fi

host=$(hostname -s)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)   # half the machine per node
mkdir -p "${dir}/state" "${dir}/log" "${dir}/spool"
cat > "${conf}.new" <<EOF
# Written by ${BASH_SOURCE[0]##*/}: a two-node test cluster on one machine.
ClusterName=smoe_test
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=16817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool/%n
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd.%n.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# finished jobs stay visible to squeue/scontrol for 10 minutes (the launcher reads their state)
MinJobAge=600
KillWait=5
InactiveLimit=0
# jobs run at the niceness of the command that submitted them (tests run under nice)
PropagatePrioProcess=1
NodeName=smoe1 NodeHostname=${host} NodeAddr=127.0.0.1 Port=16818 CPUs=2 RealMemory=${mem_mb} State=UNKNOWN
NodeName=smoe2 NodeHostname=${host} NodeAddr=127.0.0.1 Port=16819 CPUs=2 RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=smoe1,smoe2 Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "${conf}.new" "${conf}"; then
    mv "${conf}.new" "${conf}"
    changed=1
else
    rm "${conf}.new"
    changed=0
fi

running() {  # pidfile daemon -> is that daemon alive (a stale pidfile's number may be another process now)
    [ -s "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ]
}

if [ "${changed}" = 1 ] && running "${dir}/slurmctld.pid" slurmctld; then
    scontrol reconfigure
fi
if ! running "${dir}/slurmctld.pid" slurmctld; then
    slurmctld -f "${conf}"
fi
for node in smoe1 smoe2; do
    if ! running "${dir}/slurmd.${node}.pid" slurmd; then
        mkdir -p "${dir}/spool/${node}"
        slurmd -f "${conf}" -N "${node}"
    fi
done

# Ready when both nodes are idle (or already running test jobs).
for _ in $(seq 120); do
    states=$(sinfo -h -N -o '%N %T' 2>/dev/null | sort -u || true)
    if [ "$(grep -cE '^smoe[12] (idle|mixed|allocated)' <<< "${states}")" = 2 ]; then
        echo "SLURM_CONF=${conf}"
        exit 0
    fi
    # a node left down by an earlier run comes back once its slurmd answers
    grep -qE ' (down|drained|drain)' <<< "${states}" && scontrol update nodename=smoe[1-2] state=resume 2>/dev/null || true
    sleep 0.5
done
echo "slurm_cluster.sh: the nodes did not come up: $(sinfo -N 2>&1); see ${dir}/log/" >&2
exit 1
