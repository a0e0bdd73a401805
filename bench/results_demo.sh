#!/bin/bash
# Every row of docs/RESULTS.md's demo-model table, from one shared warm start.
#
#   bash bench/results_demo.sh [RUNS_DIR]     (default runs/demo)
#
# 1. the warm start (configs/demo.py:base, 400 SFT steps; its end-of-stage
#    greedy evaluation is the "base" row);
# 2. each trained method starts at that checkpoint (config.start_from) and
#    runs its own 120 steps; SCoRe twice (seeds 0 and 1);
# (No Self-Refine row: see configs/demo.py.)
# A row whose workdir already holds its final evaluation is skipped, so the
# script can be re-run after an interruption (runs resume from checkpoints).
set -euo pipefail

runs="${1:-runs/demo}"
base="${runs}/base"
mkdir -p "${runs}"

train() {  # train NAME METHOD [extra flags...]
  local name="$1" method="$2"
  shift 2
  if compgen -G "${runs}/${name}/eval/after_*_step520.json" > /dev/null; then
    echo "== ${name}: done"
    return
  fi
  echo "== ${name}: configs/demo.py:${method} $*"
  score-jax train --config="configs/demo.py:${method}" \
    --config.start_from="${base}/checkpoints/400" \
    --workdir="${runs}/${name}" --config.log.progress=False "$@"
}

if [[ ! -d "${base}/checkpoints/400" ]]; then
  echo "== base: configs/demo.py:base"
  score-jax train --config=configs/demo.py:base --workdir="${base}" \
    --config.checkpoint.every=400 --config.log.progress=False
fi
train score score
train score_seed1 score --config.seed=1
train single_turn_rl single_turn_rl
train naive_multiturn_rl naive_multiturn_rl
train score_no_stage1 score_no_stage1
train score_no_shaping score_no_shaping
train star star
train pair_sft pair_sft
