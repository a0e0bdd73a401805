"""Baseline: Pair-SFT (paper Table 2, after Welleck et al.): supervised
fine-tuning on the policy's wrong first attempts each followed by the
correction instruction and a correct answer (a correct sibling sample, else
the task's worked solution), trained on that answer only.
`configs/pair_sft.py:<task>`.

Like every method here it starts from the same warm-started base.
"""

import pathlib
import runpy

import ml_collections

_common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = _common["small_setting"](arg)
  c.schedule = f"{_common['warm_start']()},pair_sft:{_common['RL_STEPS']}"
  return c
