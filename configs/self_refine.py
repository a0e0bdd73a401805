"""Baseline: Self-Refine-style prompting (evaluation only; paper Table 2).
Turn 2 asks the model to review its answer and find problems, turn 3 to
improve it; graded on the first and the final answer. Evaluate the warm-started
base (configs/base.py) with it:

  score-jax train --config=configs/base.py:<task> --workdir=runs/base
  score-jax eval --config=configs/self_refine.py:<task> --checkpoint=runs/base

Training with this config is refused (the periodic evaluations of a run
use the SCoRe protocol); train with base.py.
"""

import pathlib
import runpy

import ml_collections

_common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = _common["small_setting"](arg)
  c.schedule = _common["warm_start"]()
  c.eval.protocol = "self_refine"  # read by `score-jax eval`
  c.eval.num_turns = 3  # answer, feedback, refined answer
  return c
