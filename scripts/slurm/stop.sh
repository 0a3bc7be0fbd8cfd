#!/usr/bin/env bash
# Stop the one-node cluster of scripts/slurm/start.sh (slurmd, slurmctld, munged), by their PID files,
# checking each PID still belongs to that program. Its folder (state, logs) is kept; `--purge` removes it.
set -euo pipefail
base="${DAPBENCH_SLURM_DIR:-/tmp/dapbench-slurm}"
for d in slurmd slurmctld munged; do
  f="$base/run/$d.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if [ -d "/proc/$pid" ] && grep -q "$d" "/proc/$pid/comm" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do
      { [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; } || break
      sleep 0.1
    done
  fi
  rm -f "$f"
done
if [ "${1:-}" = "--purge" ]; then rm -rf "$base"; fi
echo "slurm stopped ($base)"
