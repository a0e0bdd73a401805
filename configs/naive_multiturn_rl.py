"""Baseline: naive multi-turn RL: both turns trained jointly on r1 + r2 from
the start (Stage II with alpha = 0, no Stage I), the setting in which the
paper sees the second attempt collapse onto the first.
`configs/naive_multiturn_rl.py:<task>`."""

import pathlib
import runpy

import ml_collections

_common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = _common["small_setting"](arg)
  c.schedule = f"{_common['warm_start']()},stage2:{_common['RL_STEPS']}"
  c.loss.alpha = 0.0
  return c
