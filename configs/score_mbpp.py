"""SCoRe on MBPP with the paper's settings (Kumar et al. 2024, Table 5, v2):

  base model      Gemma (yours: --config.model.spec, required)
  optimizer       Adam, lr 1e-5, 1500 steps, batch 128, temperature 1.0
  coefficients    alpha = 10, beta1 = 0.01, beta2 = 0.25

Table 5 gives one step count for the whole run; the split is ours, as for
MATH: Stage I for the first third (500 steps), Stage II for the other 1000.
Batch 128 = 32 prompts x 4 samples. Trains on MBPP's train ids (601-1000),
evaluates greedily on its test ids (11-510); the paper's HumanEval numbers
come from `score-jax eval --task=humaneval` on the trained checkpoint.

  score-jax train --config=configs/score_mbpp.py --workdir=<dir> \
    --config.model.spec=gemma-flax:<dir> --config.tokenizer.spec=<spm> \
    --config.task.options.path=<mbpp.jsonl>
"""

import pathlib
import runpy

import ml_collections
from ml_collections import config_dict

# What it shares with the MATH config (a config file is loaded by path, so
# it imports its sibling by path).
_math = runpy.run_path(str(pathlib.Path(__file__).with_name("score_math.py")))

PAPER = {"lr": 1e-5, "steps": 1500, "batch": 128, "temperature": 1.0,
         "alpha": 10.0, "beta1": 0.01, "beta2": 0.25}


def get_config() -> ml_collections.ConfigDict:
  # 128 rows in 2 micro-batches.
  c = _math["paper_setting"](PAPER, max_new_tokens=512, micro_batches=2)
  c.task.name = "mbpp"
  c.task.options = ml_collections.ConfigDict({
      "path": config_dict.placeholder(str)})
  return c
