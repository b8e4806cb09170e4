#!/usr/bin/env bash
# Start a single-node SLURM (munged + slurmctld + slurmd) on 127.0.0.1, all state under DIR.
# Usage: start.sh DIR [CPUS]   -> prints "export SLURM_CONF=DIR/slurm.conf" on success.
# Stop: kill the pids in DIR/*.pid (the test fixture does this).
set -euo pipefail
dir=$(mkdir -p "$1" && cd "$1" && pwd)
cpus=${2:-2}
node=$(hostname -s)
for exe in munged slurmctld slurmd sinfo; do
  command -v "$exe" >/dev/null 2>&1 || [ -x "/usr/sbin/$exe" ] || {
    echo "start.sh: $exe not found: install Debian's slurm-wlm and munge (.ci/run does)" >&2; exit 1; }
done
export PATH="$PATH:/usr/sbin"
mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
chmod 0700 "$dir/munge"

# munge: a generated key, our own socket (slurm.conf's AuthInfo points there)
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
chmod 0400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"

# two free TCP ports on 127.0.0.1 for slurmctld and slurmd
read -r ctld_port slurmd_port < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)

cat > "$dir/slurm.conf" <<EOF
# edgeprune test cluster (tests/slurm/start.sh)
ClusterName=edgeprune
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# containers usually lack cgroup control: no cgroup plugins
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
# no accounting database: job states come from squeue (finished jobs stay MinJobAge seconds),
# every finished job is appended to the job completion log
AccountingStorageType=accounting_storage/none
MinJobAge=86400
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
SchedulerParameters=defer_batch
SchedulerType=sched/builtin
InactiveLimit=0
KillWait=5
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF

# srun inside a job step finds slurm.conf only at the default path (the executor plugin's
# jobstep drops SLURM_* variables, SLURM_CONF included): link it there, never over a real one.
link=/etc/slurm/slurm.conf
if { [ -L "$link" ] && [ -e "$link" ] && ! grep -q '^# edgeprune test cluster' "$link"; } ||
   { [ ! -L "$link" ] && [ -e "$link" ]; }; then
  echo "start.sh: $link exists and is not a test cluster's: refusing to replace it" >&2
  exit 1
fi
mkdir -p /etc/slurm
ln -sfn "$dir/slurm.conf" "$link"
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N "$node"
for _ in $(seq 1 60); do
  if sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "start.sh: the SLURM node did not come up within 30 s; logs in $dir/log:" >&2
tail -n 20 "$dir"/log/*.log >&2 || true
exit 1
