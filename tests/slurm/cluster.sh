# A one-node Slurm cluster on localhost for tests (sourced by tests/slurm/run.sh): Debian's
# slurm-wlm and munge, slurmctld + slurmd as root with a generated slurm.conf, everything
# (state, spool, logs, pid files) under $SLURM_WORK, on ports picked per run so two runs on one
# machine do not meet. Recipe: /work/shared/DESIGN.md "Slurm on one machine".
#
#   slurm_install            apt-get the packages when a daemon is missing
#   slurm_start              munged (unless one answers already), slurmctld, slurmd; waits idle
#   slurm_stop               stops exactly the daemons slurm_start started (by their pid files)
# Exported for the client commands: SLURM_CONF.

slurm_log() { echo "slurm: $*"; }

slurm_install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    slurm_log "installing slurm-wlm and munge (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
}

SLURM_STARTED_MUNGE=0

slurm_start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        slurm_log "munged already running; using it"
        return 0
    fi
    mkdir -p /run/munge /etc/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /etc/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    chmod 0700 /etc/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        runuser -u munge -- mungekey -c -k /etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- munged || return 1
    SLURM_STARTED_MUNGE=1
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    slurm_log "munged started but does not answer"
    return 1
}

slurm_write_conf() {
    local cpus mem port
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
    port=$(( 20000 + (RANDOM % 2000) * 2 ))
    mkdir -p "$SLURM_WORK/state" "$SLURM_WORK/spool" "$SLURM_WORK/log"
    cat > "$SLURM_WORK/slurm.conf" <<CONF
ClusterName=dsprep-test
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$SLURM_WORK/state
SlurmdSpoolDir=$SLURM_WORK/spool
SlurmctldPidFile=$SLURM_WORK/slurmctld.pid
SlurmdPidFile=$SLURM_WORK/slurmd.pid
SlurmctldLogFile=$SLURM_WORK/log/slurmctld.log
SlurmdLogFile=$SLURM_WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$SLURM_WORK/slurm.conf"
}

# Starts the cluster; returns non-zero (with the reason in the logs it names) when it cannot.
slurm_start() {
    slurm_start_munge || return 1
    slurm_write_conf
    slurmctld -f "$SLURM_CONF" || { slurm_log "slurmctld would not start"; return 1; }
    slurmd -f "$SLURM_CONF" -N localhost || { slurm_log "slurmd would not start"; return 1; }
    local state=""
    for _ in $(seq 120); do
        state=$(sinfo -h -n localhost -o %T 2>/dev/null | head -n 1)
        [ "$state" = idle ] && { slurm_log "node localhost idle ($(sinfo -V))"; return 0; }
        sleep 0.5
    done
    slurm_log "node never became idle (state: ${state:-none})"
    return 1
}

slurm_stop() {
    local f pid
    for f in "$SLURM_WORK/slurmd.pid" "$SLURM_WORK/slurmctld.pid"; do
        if [ -s "$f" ]; then
            pid=$(cat "$f")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    done
    if [ "$SLURM_STARTED_MUNGE" = 1 ] && [ -s /run/munge/munged.pid ]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    fi
}
