"""SCoRe (the full method) on the shared small setting (configs/common.py):
warm start, Stage I (turn 2 rewarded, turn 1 held to the base with the strong
KL beta2), then Stage II with reward shaping alpha. `configs/score.py:<task>`.
"""

import pathlib
import runpy

import ml_collections

_common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return _common["small_setting"](arg)  # the setting's defaults are SCoRe's
