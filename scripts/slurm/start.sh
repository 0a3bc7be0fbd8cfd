#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (munged + slurmctld + slurmd, as root, no systemd), with
# its config, state, logs and munge key under one folder; idempotent (a running cluster is left as it is).
#
#   scripts/slurm/start.sh          then: source "${DAPBENCH_SLURM_DIR:-/tmp/dapbench-slurm}/env.sh"
#
# DAPBENCH_SLURM_DIR (default /tmp/dapbench-slurm) and DAPBENCH_SLURM_PORT (slurmctld's port, default
# 6817; slurmd uses the next one) choose the folder and ports, so two clusters can share a machine.
# DAPBENCH_SLURM_MAX_ARRAY_SIZE (default 1001, Slurm's) sets MaxArraySize (tests split arrays on a small one).
# env.sh sets SLURM_CONF and puts a small `sacct` first on PATH: this cluster keeps no accounting, and the
# stand-in answers from squeue (finished jobs stay listed for an hour). Stop it with scripts/slurm/stop.sh.
# Needs the Debian packages (scripts/slurm/install.sh). Facts behind each setting: docs/slurm.md.
set -euo pipefail
base="${DAPBENCH_SLURM_DIR:-/tmp/dapbench-slurm}"
port="${DAPBENCH_SLURM_PORT:-6817}"
case "${DAPBENCH_SLURM_MAX_ARRAY_SIZE:-1001}" in ''|*[!0-9]*) echo "error: DAPBENCH_SLURM_MAX_ARRAY_SIZE must be a number" >&2; exit 2 ;; esac
here="$(cd "$(dirname "$0")" && pwd)"

for exe in munged mungekey slurmctld slurmd sbatch; do
  command -v "$exe" >/dev/null || { echo "error: $exe not found; install the packages with scripts/slurm/install.sh" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "error: the local cluster runs its daemons as root; run this as root" >&2; exit 2; }

alive() { [ -f "$1" ] && pid=$(cat "$1") && [ -d "/proc/$pid" ] && grep -q "$2" "/proc/$pid/comm" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status"; }

mkdir -p "$base"/{munge,state,spool,log,run,bin}
chmod 755 "$base" "$base/munge"  # munged refuses a socket folder others cannot traverse
conf="$base/slurm.conf"

# the configuration (rewritten only when the cluster is down, so a running one keeps its own)
if ! alive "$base/run/slurmctld.pid" slurmctld; then
  host=$(hostname -s)
  node=$(slurmd -C | head -1)
  get() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$node"; }
  mem=$(get RealMemory)
  cat > "$conf" <<CONF
# one-node cluster written by scripts/slurm/start.sh
ClusterName=dapbench
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$base/munge/munge.socket.2,cred_expire=10
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool
SlurmctldPidFile=$base/run/slurmctld.pid
SlurmdPidFile=$base/run/slurmd.pid
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
EnforcePartLimits=ALL
MaxArraySize=${DAPBENCH_SLURM_MAX_ARRAY_SIZE:-1001}
SchedulerParameters=batch_sched_delay=0,sched_interval=2
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(get CPUs) Boards=$(get Boards) SocketsPerBoard=$(get SocketsPerBoard) CoresPerSocket=$(get CoresPerSocket) ThreadsPerCore=$(get ThreadsPerCore) RealMemory=$((mem * 9 / 10)) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
fi

cat > "$base/env.sh" <<ENV
export SLURM_CONF=$conf
case ":\$PATH:" in *":$base/bin:"*) ;; *) export PATH=$base/bin:\$PATH ;; esac
ENV
cp "$here/sacct" "$base/bin/sacct"
chmod 755 "$base/bin/sacct"
export SLURM_CONF="$conf"

started=""
if ! alive "$base/run/munged.pid" munged; then
  started+=" munged"
  [ -f "$base/munge/munge.key" ] || mungekey -c -k "$base/munge/munge.key"
  chmod 600 "$base/munge/munge.key"
  munged --force --key-file="$base/munge/munge.key" --socket="$base/munge/munge.socket.2" \
    --pid-file="$base/run/munged.pid" --log-file="$base/log/munged.log" --seed-file="$base/munge/munged.seed"
fi
alive "$base/run/slurmctld.pid" slurmctld || { slurmctld -f "$conf"; started+=" slurmctld"; }
alive "$base/run/slurmd.pid" slurmd || { slurmd -f "$conf"; started+=" slurmd"; }

# Up: the node takes jobs (idle, mix, alloc) or is finishing some (comp: completing), possibly with a
# suffix that does not stop it (sinfo: $ maintenance, @ reboot pending, ^ reboot issued, - planned). A node
# left drained or down by an earlier run (e.g. "Kill task failed") is resumed: this is a test cluster.
resumed=""
for _ in $(seq 100); do
  state=$(sinfo -h -o %t 2>/dev/null | head -1 || true)
  case "$state" in
    idle|mix|alloc|comp|idle[\$@^-]|mix[\$@^-]|alloc[\$@^-]|comp[\$@^-])
      what="already running"
      [ -z "$started" ] || what="started:$started"
      echo "slurm up ($what): node $(hostname -s) $state${resumed}, SLURM_CONF=$conf"
      exit 0 ;;
    drain|drng|down|drain[\$@^-]|down[\$@^-])
      if [ -z "$resumed" ]; then
        why=$(sinfo -h -N -o %E 2>/dev/null | head -1 || true)
        scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
        resumed=" (was $state: ${why:-no reason}; resumed)"
      fi ;;
  esac
  sleep 0.2
done
echo "error: the cluster did not come up in 20 s (node state '${state:-?}'); logs in $base/log" >&2
exit 1
