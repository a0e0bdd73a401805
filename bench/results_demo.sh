#!/bin/bash
# Every row of docs/RESULTS.md's demo-model table, from one shared warm start.
#
#   bash bench/results_demo.sh [RUNS_DIR]     (default runs/demo)
#   JOBS=2 bash bench/results_demo.sh ...      (trained rows two at a time,
#                                               each logged to RUNS_DIR/NAME.log)
#
# 1. the warm start (configs/demo.py:base, WARM_START's SFT steps; its
#    end-of-stage greedy evaluation is the "base" row);
# 2. each trained method starts at that checkpoint (config.start_from) and
#    runs its own RL_STEPS steps; SCoRe twice (seeds 0 and 1);
# (No Self-Refine row: see configs/demo.py.)
# A row whose workdir already holds its final evaluation is skipped, so the
# script can be re-run after an interruption (runs resume from checkpoints).
set -euo pipefail

runs="${1:-runs/demo}"
base="${runs}/base"
jobs_max="${JOBS:-1}"
mkdir -p "${runs}"
pids=()
# The warm start's length and the last step of every trained row, from the
# config itself (WARM_START = "sft:N", RL_STEPS).
read -r warm rl_steps < <(python -c "
import runpy
demo = runpy.run_path('configs/demo.py')
print(demo['WARM_START'].split(':')[1], demo['RL_STEPS'])")
last=$((warm + rl_steps))

train() {  # train NAME METHOD [extra flags...]
  local name="$1" method="$2"
  shift 2
  if compgen -G "${runs}/${name}/eval/after_*_step${last}.json" > /dev/null; then
    echo "== ${name}: done"
    return
  fi
  echo "== ${name}: configs/demo.py:${method} $*"
  score-jax train --config="configs/demo.py:${method}" \
    --config.start_from="${base}/checkpoints/${warm}" \
    --workdir="${runs}/${name}" --config.log.progress=False "$@"
}

wait_rows() {  # fails if any row running in the background failed
  local pid
  for pid in "${pids[@]}"; do
    wait "${pid}"
  done
  pids=()
}

row() {  # row NAME METHOD [extra flags...]: now, or in a free job slot
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
  echo "== base: configs/demo.py:base"
  score-jax train --config=configs/demo.py:base --workdir="${base}" \
    --config.checkpoint.every="${warm}" --config.log.progress=False
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
