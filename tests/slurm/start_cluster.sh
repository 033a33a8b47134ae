#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests: Debian's slurmctld, slurmd and munge.
# GPUs are a counted GRES (no devices), so GPU requests schedule without a GPU. No accounting
# database: the tests query job state with squeue, which MinJobAge keeps answering after a job ends.
# Idempotent; needs root. Prints the cluster's state on success. Stop it with stop_cluster.sh: a
# slurm.conf left in /etc/slurm after the daemons stop makes every later `scontrol show config` wait
# 10 s for the dead controller, and the Snakemake SLURM plugin runs that command whenever snakemake
# starts. (A private SLURM_CONF would avoid that, but the plugin deletes SLURM_* variables inside
# jobs, so srun there could not find it.)
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "error: starting the test SLURM cluster needs root (apt-get, daemons)" >&2; exit 1; }
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi
host="$(hostname -s)"
cpus="$(nproc)"
mem_mb="$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))"
if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)$'; then
  sinfo -N -o '%N %T %c %m %G'
  exit 0
fi
pkill -x slurmd 2>/dev/null || true
pkill -x slurmctld 2>/dev/null || true
sleep 1
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
cat > /etc/slurm/slurm.conf <<CONF
# xmbench test cluster (tests/slurm/start_cluster.sh)
ClusterName=xmbench-test
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MinJobAge=86400
ReturnToService=2
KillWait=5
InactiveLimit=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=${host} CPUs=${cpus} RealMemory=${mem_mb} Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
# slurmd drops a GPU without a device file; two character devices aliasing /dev/null stand in.
mkdir -p /var/lib/xmbench-fake-gpus
for i in 0 1; do
  [ -c "/var/lib/xmbench-fake-gpus/gpu$i" ] || mknod "/var/lib/xmbench-fake-gpus/gpu$i" c 1 3
done
cat > /etc/slurm/gres.conf <<CONF
# xmbench test cluster (tests/slurm/start_cluster.sh)
AutoDetect=off
NodeName=${host} Name=gpu File=/var/lib/xmbench-fake-gpus/gpu[0-1]
CONF
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
/usr/sbin/slurmctld -c   # -c: start from a clean state, not a stale node record
/usr/sbin/slurmd
for _ in $(seq 1 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    sinfo -N -o '%N %T %c %m %G'
    exit 0
  fi
  sleep 1
done
echo "error: the test SLURM node did not become idle; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
