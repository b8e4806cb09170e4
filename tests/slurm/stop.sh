#!/usr/bin/env bash
# Stop the SLURM that start.sh started in DIR: cancel its jobs (slurmd ends their steps), then
# stop slurmd, slurmctld and munged by their pid files, and remove start.sh's slurm.conf link.
set -u
dir=$1
export SLURM_CONF="$dir/slurm.conf" PATH="$PATH:/usr/sbin"
if [ -f "$dir/slurmctld.pid" ] && jobs=$(squeue -h -o %i 2>/dev/null) && [ -n "$jobs" ]; then
  scancel $jobs 2>/dev/null
  for _ in $(seq 1 100); do
    [ -z "$(squeue -h -t running,completing -o %i 2>/dev/null)" ] && break
    sleep 0.2
  done
fi
for name in slurmd slurmctld munge; do
  pidfile="$dir/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
done
if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$dir/slurm.conf" ]; then
  rm -f /etc/slurm/slurm.conf
fi
exit 0
