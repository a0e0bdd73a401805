"""Baseline: STaR for self-correction (paper Table 2): iterated supervised
fine-tuning on the policy's own two-turn samples whose second attempt fixed a
wrong first one (turn-2 tokens only), sampled afresh every step.
`configs/star.py:<task>`.

Like every method here it starts from the same warm-started base.
"""

import pathlib
import runpy

import ml_collections

_common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = _common["small_setting"](arg)
  c.schedule = f"{_common['warm_start']()},star:{_common['RL_STEPS']}"
  return c
