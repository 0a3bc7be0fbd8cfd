#!/usr/bin/env bash
# Install the Debian packages of a one-node Slurm cluster (munge, slurmctld, slurmd, slurm-client) when any
# is missing; nothing to do otherwise. Needs root (or sudo). See docs/slurm.md.
set -euo pipefail
missing=()
for p in munge slurmctld slurmd slurm-client; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "slurm packages installed ($(slurmd -V))"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
