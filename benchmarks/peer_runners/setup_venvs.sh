#!/usr/bin/env bash
# One venv per peer MI toolkit (never dependencies of ie_ray): torch first, pinned to the CPU build this project
# uses, so that the peers' unpinned torch requirement is already met and nothing downloads CUDA wheels.
# Usage: bash benchmarks/peer_runners/setup_venvs.sh [ROOT]   (default ROOT: ../peers next to the checkout)
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/../../.." && pwd)/peers}"
mkdir -p "$root"
make_venv() {  # name, packages...
  local name="$1"; shift
  python3.11 -m venv "$root/$name"
  "$root/$name/bin/pip" install -q torch==2.13.0
  "$root/$name/bin/pip" install -q "$@"
  "$root/$name/bin/pip" freeze > "$root/$name/freeze.txt"
}
# torch-mist's metadata asks numpy<2 but pandas (needed at import, not declared) would pull numpy 2: pin both.
make_venv torch_mist torch-mist "numpy<2" "pandas<3"
# latentmi pins numpy<2 itself.
make_venv latentmi latentmi
echo "peer venvs under $root"
