"""The "base model" row: the warm start alone (supervised worked first
attempts, never corrections), evaluated with the two-turn correction prompt.
Its workdir is also the checkpoint the Self-Refine protocol is evaluated on.
`configs/base.py:<task>`."""

import pathlib
import runpy

import ml_collections

_common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = _common["small_setting"](arg)
  c.schedule = _common["warm_start"]()
  return c
