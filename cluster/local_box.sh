#!/usr/bin/env bash
# Start a Ray head node on this box (all its GPUs and CPUs), submit one sweep as a Ray job, follow its logs.
# Usage: cluster/local_box.sh [CONFIG] [OUT_DIR]
#   CONFIG   sweep config (default jobs/configs/smoke.yaml)
#   OUT_DIR  absolute run directory (default results/runs/<config>-<timestamp> in this checkout)
# The job writes to OUT_DIR directly: a local head node shares this file system with the job.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-jobs/configs/smoke.yaml}"
out="${2:-$PWD/results/runs/$(basename "$config" .yaml)-$(date -u +%Y%m%dT%H%M%SZ)}"
dashboard_port="${RAY_DASHBOARD_PORT:-8265}"
# Ray >= 2.59 protects local clusters with a token; head node and `ray job submit` must both use it.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
[ "$RAY_AUTH_MODE" = token ] && ray get-auth-token --generate >/dev/null
if ! ray status >/dev/null 2>&1; then
  # Ray detects the GPUs itself; --node-ip-address keeps everything on loopback for a single box.
  ray start --head --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 --dashboard-port="$dashboard_port" \
    --disable-usage-stats
  started_here=1
fi
trap '[ "${started_here:-0}" = 1 ] && ray stop' EXIT
ray job submit --address "http://127.0.0.1:$dashboard_port" --working-dir . \
  --runtime-env-json '{"excludes": [".git", ".venv", "results/runs"]}' \
  -- python jobs/sweep.py --config "$config" --out "$out"
echo "results: $out"
