"""The README's demo: SCoRe learning self-correction end to end on a CPU.

A small Llama-style model is trained from scratch inside the job (byte
tokenizer, ChatML turns) on the built-in arithmetic task:
  sft     warm start on worked solutions of first attempts only (never a
          correction example), giving a base that is right about half the
          time and still makes mistakes;
  stage1  SCoRe Stage I: reward on turn 2 only, turn 1 held to the base by a
          strong KL (beta2);
  stage2  SCoRe Stage II: r1 + (r2 + alpha (r2 - r1)), beta1 KL on both turns.
Greedy two-turn evaluation on held-out problems runs at the end of every
stage: `after_sft_*` is the base row, `after_stage2_*` the SCoRe row.

  score-jax train --config=configs/demo.py --workdir=/tmp/demo
"""

import ml_collections

from score_jax.configs import base_config

# Short prompts keep byte-level sequences short (CPU time); the correction
# instruction keeps the paper's wording and the task's answer-line format.
PROMPT = "Compute {expression}."
CORRECTION = ("There might be an error in the solution above. Please correct "
              "the error, if any, and rewrite the solution.")


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.schedule = "sft:300,stage1:40,stage2:60"
  c.model.spec = "preset:tiny-llama"
  c.model.preset_overrides = ml_collections.ConfigDict({
      "vocab_size": 264, "num_layers": 4, "embed_dim": 128,
      "hidden_dim": 512, "num_heads": 4, "num_kv_heads": 2, "head_dim": 32})
  c.tokenizer.spec = "byte"
  c.tokenizer.chat_format = "chatml"
  c.task.name = "arithmetic"
  c.task.options = ml_collections.ConfigDict({
      "min_terms": 2, "max_terms": 3, "max_operand": 20,
      "prompt_template": PROMPT, "correction_instruction": CORRECTION,
      "split_sizes": {"train": 20_000, "test": 256}})
  c.sft.lr = 3e-3
  c.sft.batch_size = 64
  c.optimizer.warmup_steps = 10
  c.rollout.prompts_per_step = 16
  c.rollout.samples_per_prompt = 4
  c.rollout.max_new_tokens = 48
  c.rollout.temperature = 1.0
  c.optimizer.lr = 3e-4
  c.loss.alpha = 10.0
  c.loss.beta1 = 0.01
  c.loss.beta2 = 0.1
  c.eval.num_problems = 256
  c.eval.max_new_tokens = 48
  c.eval.batch_size = 128
  c.checkpoint.every = 100
  c.checkpoint.keep = 1
  c.log.samples_every = 20
  return c
