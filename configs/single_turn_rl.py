"""Baseline: single-turn RL (paper Table 4, "w/ single-turn RL"): the same
RL budget spent on turn-1 reward only; turn 2 is sampled only at evaluation.
`configs/single_turn_rl.py:<task>`."""

import pathlib
import runpy

import ml_collections

_common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = _common["small_setting"](arg)
  c.schedule = f"{_common['warm_start']()},single_turn:{_common['RL_STEPS']}"
  return c
