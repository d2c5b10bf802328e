#!/usr/bin/env bash
# Start a Ray head node on this box with all its GPUs and CPUs, submit one sweep as a Ray job, follow its logs.
# Usage: cluster/local_box.sh [CONFIG] [OUT_DIR]
#   CONFIG   sweep config (default jobs/configs/smoke.yaml)
#   OUT_DIR  absolute run directory (default results/runs/<config>-<timestamp> in this checkout)
# Environment:
#   RAY_DASHBOARD_PORT  dashboard / job API port (default 8265)
#   IE_RAY_SPILL_DIR    where the object store spills block states (default results/runs/ray_spill here);
#                       put it on a fast local disk with room for the activations (docs/scaling.md)
#   IE_RAY_DRY_RUN=1    print the commands instead of running them
# The job writes to OUT_DIR directly: a local head node shares this file system with the job.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-jobs/configs/smoke.yaml}"
out="${2:-$PWD/results/runs/$(basename "$config" .yaml)-$(date -u +%Y%m%dT%H%M%SZ)}"
dashboard_port="${RAY_DASHBOARD_PORT:-8265}"
spill_dir="${IE_RAY_SPILL_DIR:-$PWD/results/runs/ray_spill}"
run() { if [ "${IE_RAY_DRY_RUN:-0}" = 1 ]; then echo "$*"; else "$@"; fi; }

# GPUs: count and memory per device from nvidia-smi (none without it). Ray would detect the count itself;
# passing it makes the head node's resources explicit in the log, and the memory lets `num_gpus: auto` size
# the extraction actors without a probe task.
num_gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpu_rows="$(nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits 2>/dev/null || true)"
  num_gpus="$(printf '%s\n' "$gpu_rows" | grep -c . || true)"
  if [ "$num_gpus" -gt 0 ]; then
    min_mib="$(printf '%s\n' "$gpu_rows" | awk -F', *' 'NF >= 3 {print $3}' | sort -n | head -n 1)"
    export IE_RAY_GPU_MEMORY_GB=$((min_mib / 1024))
    echo "GPUs: $num_gpus (smallest ${IE_RAY_GPU_MEMORY_GB} GiB); IE_RAY_GPU_MEMORY_GB=$IE_RAY_GPU_MEMORY_GB"
  fi
fi

# Ray >= 2.59 protects local clusters with a token; head node and `ray job submit` must both use it.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
[ "$RAY_AUTH_MODE" = token ] && run ray get-auth-token --generate >/dev/null
if [ "${IE_RAY_DRY_RUN:-0}" = 1 ] || ! ray status >/dev/null 2>&1; then
  # --node-ip-address keeps everything on loopback for a single box.
  run ray start --head --num-gpus="$num_gpus" --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 \
    --dashboard-port="$dashboard_port" --object-spilling-directory="$spill_dir" --disable-usage-stats
  started_here=1
fi
trap '[ "${started_here:-0}" = 1 ] && run ray stop' EXIT
env_json="{\"excludes\": [\".git\", \".venv\", \"results/runs\"]"
[ -n "${IE_RAY_GPU_MEMORY_GB:-}" ] && env_json="$env_json, \"env_vars\": {\"IE_RAY_GPU_MEMORY_GB\": \"$IE_RAY_GPU_MEMORY_GB\"}"
run ray job submit --address "http://127.0.0.1:$dashboard_port" --working-dir . --runtime-env-json "$env_json}" \
  -- python jobs/sweep.py --config "$config" --out "$out"
echo "results: $out"
