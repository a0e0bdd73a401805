"""Ablation: SCoRe without reward shaping (paper Table 4, "w/o reward
shaping"): Stage I then Stage II as in SCoRe, with alpha = 0.
`configs/score_no_shaping.py:<task>`."""

import pathlib
import runpy

import ml_collections

_common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = _common["small_setting"](arg)
  c.loss.alpha = 0.0
  return c
