"""SCoRe on MATH with the paper's settings (Kumar et al. 2024, Table 5, v2):

  base model      Gemma (yours: --config.model.spec, required)
  optimizer       Adam, lr 5e-6, 3000 steps, batch 512, temperature 1.0
  coefficients    alpha = 10, beta1 = 0.01, beta2 = 0.1

Table 5 gives one step count for the whole run; the split is ours: Stage I
for the first third (1000 steps: long enough for the turn-2 policy to move
while turn 1 stays pinned to the base), Stage II for the remaining 2000.
Batch 512 = 128 prompts x 4 samples (RLOO groups of 4). Evaluation: greedy,
two turns, on the test file (MATH500).

  score-jax train --config=configs/score_math.py --workdir=<dir> \
    --config.model.spec=gemma-flax:<dir> --config.tokenizer.spec=<spm> \
    --config.task.options.train_path=<math_train.jsonl> \
    --config.task.options.test_path=<math500_test.jsonl>

Paths are None until given (`config_dict.placeholder`); `score-jax eval`
names any that is missing.
"""

import ml_collections
from ml_collections import config_dict

from score_jax.configs import base_config

PAPER = {"lr": 5e-6, "steps": 3000, "batch": 512, "temperature": 1.0,
         "alpha": 10.0, "beta1": 0.01, "beta2": 0.1}
SAMPLES_PER_PROMPT = 4  # RLOO groups of 4


def paper_setting(paper: dict, *, max_new_tokens: int,
                  micro_batches: int) -> ml_collections.ConfigDict:
  """What the paper-setting configs share (MATH here, MBPP by path): a Gemma
  in bfloat16 over float32 master weights, Table 5's values from `paper`,
  the steps split a third Stage I, two thirds Stage II, FSDP over a pod."""
  c = base_config()
  stage1 = paper["steps"] // 3
  c.schedule = f"stage1:{stage1},stage2:{paper['steps'] - stage1}"

  c.model.spec = config_dict.placeholder(str)  # gemma-flax:<dir> or hf:<dir>
  c.model.dtype = "bfloat16"
  c.model.param_dtype = "float32"  # float32 master weights
  c.model.remat_policy = "dots_no_batch"
  c.tokenizer.chat_format = "gemma"

  c.rollout.prompts_per_step = paper["batch"] // SAMPLES_PER_PROMPT
  c.rollout.samples_per_prompt = SAMPLES_PER_PROMPT
  c.rollout.max_new_tokens = max_new_tokens
  c.rollout.temperature = paper["temperature"]

  c.loss.alpha = paper["alpha"]
  c.loss.beta1 = paper["beta1"]
  c.loss.beta2 = paper["beta2"]

  c.optimizer.lr = paper["lr"]
  c.optimizer.b1, c.optimizer.b2 = 0.9, 0.999  # Adam's defaults
  c.optimizer.weight_decay = 0.0  # Adam, not AdamW

  # A pod: parameters and optimizer state fully sharded (FSDP) over all
  # chips, the batch in micro-batches, logits (Gemma's 256k vocab)
  # materialised 512 positions at a time.
  c.mesh.shape = (1, -1, 1)
  c.step.micro_batches = micro_batches
  c.step.logits_chunk = 512

  c.eval.every = 250
  c.eval.at_start = True
  c.eval.num_problems = 500
  c.eval.max_new_tokens = max_new_tokens
  c.eval.batch_size = 128
  c.checkpoint.every = 100
  c.checkpoint.keep = 3
  c.log.samples_every = 50
  return c


def get_config() -> ml_collections.ConfigDict:
  # 512 rows in 8 micro-batches.
  c = paper_setting(PAPER, max_new_tokens=1024, micro_batches=8)
  c.task.name = "math"
  c.task.options = ml_collections.ConfigDict({
      "train_path": config_dict.placeholder(str),
      "test_path": config_dict.placeholder(str)})
  return c
