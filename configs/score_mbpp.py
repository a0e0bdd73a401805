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

import ml_collections
from ml_collections import config_dict

from score_jax.configs import base_config

PAPER = {"lr": 1e-5, "steps": 1500, "batch": 128, "temperature": 1.0,
         "alpha": 10.0, "beta1": 0.01, "beta2": 0.25}


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  stage1 = PAPER["steps"] // 3
  c.schedule = f"stage1:{stage1},stage2:{PAPER['steps'] - stage1}"

  c.model.spec = config_dict.placeholder(str)  # gemma-flax:<dir> or hf:<dir>
  c.model.dtype = "bfloat16"
  c.model.param_dtype = "float32"  # float32 master weights
  c.model.remat_policy = "dots_no_batch"
  c.tokenizer.chat_format = "gemma"

  c.task.name = "mbpp"
  c.task.options = ml_collections.ConfigDict({
      "path": config_dict.placeholder(str)})

  c.rollout.prompts_per_step = 32
  c.rollout.samples_per_prompt = 4
  c.rollout.max_new_tokens = 512
  c.rollout.temperature = PAPER["temperature"]

  c.loss.alpha = PAPER["alpha"]
  c.loss.beta1 = PAPER["beta1"]
  c.loss.beta2 = PAPER["beta2"]

  c.optimizer.lr = PAPER["lr"]
  c.optimizer.b1, c.optimizer.b2 = 0.9, 0.999  # Adam's defaults
  c.optimizer.weight_decay = 0.0  # Adam, not AdamW

  # A pod: FSDP over all chips, 128 rows in 2 micro-batches, logits in
  # chunks of 512 positions.
  c.mesh.shape = (1, -1, 1)
  c.step.micro_batches = 2
  c.step.logits_chunk = 512

  c.eval.every = 250
  c.eval.at_start = True
  c.eval.num_problems = 500
  c.eval.max_new_tokens = 512
  c.eval.batch_size = 128
  c.checkpoint.every = 100
  c.checkpoint.keep = 3
  c.log.samples_every = 50
  return c
