"""Smoke test: a tiny random model on the built-in arithmetic task trains a
short warm start, Stage I and Stage II in a couple of minutes on a CPU."""

import ml_collections

from score_jax.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.schedule = "sft:4,stage1:3,stage2:3"
  c.model.spec = "preset:tiny-llama"
  c.model.preset_overrides = ml_collections.ConfigDict({"vocab_size": 264})
  c.tokenizer.spec = "byte"
  c.tokenizer.chat_format = "chatml"
  c.task.name = "arithmetic"
  c.task.options = ml_collections.ConfigDict({
      "max_terms": 2, "max_operand": 30,
      "split_sizes": {"train": 1000, "test": 100}})
  c.rollout.prompts_per_step = 4
  c.rollout.samples_per_prompt = 2
  c.rollout.max_new_tokens = 16
  c.optimizer.lr = 1e-4
  c.sft.batch_size = 8
  c.eval.num_problems = 8
  c.eval.max_new_tokens = 16
  c.eval.batch_size = 8
  c.checkpoint.every = 2
  c.log.samples_every = 2
  return c
