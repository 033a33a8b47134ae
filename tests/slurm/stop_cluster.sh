#!/usr/bin/env bash
# Stops the test cluster of start_cluster.sh and removes the configuration it wrote (only files it
# marked), so that no SLURM client on this machine waits on a controller that is gone.
set -uo pipefail
pkill -x slurmd 2>/dev/null
pkill -x slurmctld 2>/dev/null
for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
  if [ -f "$f" ] && grep -q 'xmbench' "$f"; then rm -f "$f"; fi
done
exit 0
