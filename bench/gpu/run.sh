#!/usr/bin/env bash
# The ONE command for the GPU machine: a whole measurement, results under $OUT (at most 8 files).
#
# Here, once:   ../shared/tools/devpack && bench/gpu/fetch_wheels.sh
# Device call:  carry [".devpack", ".whl"], timeout_s 600, command:
#               source .devpack/unpack.sh && bash bench/gpu/run.sh
#
# Stages, in order (STAGES picks a subset; each runs under `timeout` inside the BUDGET_S total):
#   check  gpu.check: graphed vs eager TrainStep / GraphedModel, train() tensor data + CUDA graphs vs plain
#   speed  gpu.train_speed and gpu.sample_speed
#   eval   gpu.evaluate, full profile: trains runs/full once, FID rows in priority order,
#          skipping sampling rows that no longer fit (--time-budget)
#   nb     the notebooks under nbval, HW3_PROFILE=full, reusing runs/full (checkpoints, samples, FID cache)
# Environment knobs: OUT (default /tmp/bench_out), STAGES (default "check speed eval nb"), BUDGET_S
# (default 560: the whole script, inside a 600 s call whose first seconds go to unpacking .devpack),
# EVAL_VARIANTS (default "all"), EVAL_SET (extra evaluate --set items, default "fid_batch_size=200"),
# CHECK_ARGS / TRAIN_ARGS / SAMPLE_ARGS (extra bench arguments), EVAL_PROFILE and NB_PROFILE (default
# full; a CPU dry run of this script uses smoke and tiny --set values, as tests/test_bench.py does).
# Files in $OUT: log.txt, check.json, train_speed.json, sample_speed.json, eval.json, eval.md,
# samples_grid.png, nbval.txt. A failing stage is logged and the next one still runs.
set -uo pipefail
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
OUT=${OUT:-/tmp/bench_out}
mkdir -p "$OUT"
LOG=$OUT/log.txt
T0=$(date +%s)
BUDGET_S=${BUDGET_S:-560}
STAGES=${STAGES:-"check speed eval nb"}
PY=${PYTHON:-python3}
TMP=$(mktemp -d)

log() { echo "[gpu_run +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }
want() { [[ " $STAGES " == *" $1 "* ]]; }

# stage NAME MAX_SECONDS CMD...: run CMD under timeout min(MAX, time left), output to the log and $TMP/NAME.txt
stage() {
  local name=$1 max=$2 t rc
  shift 2
  t=$(left)
  (( t > max )) && t=$max
  if (( t < 20 )); then log "SKIP $name: only ${t}s of the ${BUDGET_S}s budget left"; return 0; fi
  log "START $name (timeout ${t}s): $*"
  timeout -k 10 "$t" "$@" 2>&1 | tee -a "$LOG" > "$TMP/$name.txt"
  rc=${PIPESTATUS[0]}
  (( rc == 124 || rc == 137 )) && log "TIMEOUT $name after ${t}s" || log "END $name rc=$rc"
  return 0
}

log "start: stages '$STAGES', budget ${BUDGET_S}s, OUT=$OUT"
# 1. packages the image lacks (bench/gpu/fetch_wheels.sh), 2. this checkout on the path, 3. data + FID weights
if ! $PY -c "import pytorch_fid, nbval, ipykernel" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then
  if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl >> "$LOG" 2>&1; then
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    log "installed $(ls .whl/*.whl | wc -l) wheels from .whl into /tmp/site"
  else
    log "WARNING: wheel install from .whl failed (see above); nbval / pytorch-fid may be missing"
  fi
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
if [ -z "${HW3_DATA_DIR:-}" ] && [ -f .devpack/unpack.sh ]; then source .devpack/unpack.sh >> "$LOG" 2>&1; fi
export HW3_RUNS_DIR=${HW3_RUNS_DIR:-$ROOT/runs}
export JUPYTER_RUNTIME_DIR=${JUPYTER_RUNTIME_DIR:-/tmp/jupyter_runtime} MPLCONFIGDIR=${MPLCONFIGDIR:-/tmp/mplconfig}
{
  echo "== environment"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu \
    --format=csv 2>&1
  nproc
  $PY -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA')" 2>&1
  $PY -c "import pytorch_fid, nbval, ipykernel; print('pytorch_fid', pytorch_fid.__version__, 'nbval', \
nbval.__version__, 'ipykernel', ipykernel.__version__)" 2>&1
  echo "HW3_DATA_DIR=${HW3_DATA_DIR:-unset} TORCH_HOME=${TORCH_HOME:-unset} HW3_RUNS_DIR=$HW3_RUNS_DIR"
  git rev-parse HEAD 2>/dev/null; git status --short 2>/dev/null | head -20
} >> "$LOG" 2>&1

if want check; then
  # shellcheck disable=SC2086
  stage check 120 $PY -m bench gpu.check --json "$OUT/check.json" ${CHECK_ARGS:-}
fi
if want speed; then
  # shellcheck disable=SC2086
  stage train_speed 150 $PY -m bench gpu.train_speed --json "$OUT/train_speed.json" ${TRAIN_ARGS:-}
  # shellcheck disable=SC2086
  stage sample_speed 180 $PY -m bench gpu.sample_speed --batch-sizes 1000 2500 --json "$OUT/sample_speed.json" \
    ${SAMPLE_ARGS:-}
fi
if want eval; then
  # evaluate's own budget ends 15 s before this stage's timeout, so it stops between rows, not inside one
  budget=$(( $(left) - 15 ))
  EVAL_PROFILE=${EVAL_PROFILE:-full}
  # shellcheck disable=SC2086
  stage eval 100000 $PY -m bench gpu.evaluate --profile "$EVAL_PROFILE" --out "$HW3_RUNS_DIR/$EVAL_PROFILE" --variants ${EVAL_VARIANTS:-all} \
    --set ${EVAL_SET:-fid_batch_size=200} --json "$OUT/eval.json" --md "$OUT/eval.md" --grid "$OUT/samples_grid.png" \
    --time-budget "$budget" --no-progress
fi
if want nb; then
  if compgen -G "notebooks/*.ipynb" > /dev/null; then
    stage nb 100000 env HW3_PROFILE="${NB_PROFILE:-full}" $PY -m pytest --nbval-lax -p no:randomly -p no:cacheprovider -q notebooks/
    [ -f "$TMP/nb.txt" ] && cp "$TMP/nb.txt" "$OUT/nbval.txt"
  else
    log "SKIP nb: no notebooks/*.ipynb"
  fi
fi

log "done in $(( $(date +%s) - T0 ))s"
echo
echo "================ SUMMARY (full output in $OUT/log.txt) ================"
for name in check train_speed sample_speed; do
  # each bench prints its table last, starting at its 'device:' or 'gpu.check' line
  [ -f "$TMP/$name.txt" ] && { echo "--- $name"; sed -n '/^device: \|^gpu.check on /,$p' "$TMP/$name.txt" | grep -v '^wrote '; }
done
[ -f "$OUT/eval.md" ] && { echo "--- eval"; cat "$OUT/eval.md"; }
[ -f "$TMP/nb.txt" ] && { echo "--- nb"; tail -n 15 "$TMP/nb.txt"; }
grep -h '^\[gpu_run' "$LOG" | grep -E 'SKIP|TIMEOUT|rc=[1-9]|WARNING' || true
n=$(find "$OUT" -type f | wc -l)
(( n > 8 )) && echo "WARNING: $n files in $OUT, only 8 come back from the device"
rm -rf "$TMP"
exit 0
