"""Ablation: SCoRe without Stage I (paper Table 4, "w/o Stage I"): Stage II
with shaping (alpha = 10) from the warm-started base, same RL budget.
`configs/score_no_stage1.py:<task>`."""

import pathlib
import runpy

import ml_collections

_common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = _common["small_setting"](arg)
  c.schedule = f"{_common['warm_start']()},stage2:{_common['RL_STEPS']}"
  return c
