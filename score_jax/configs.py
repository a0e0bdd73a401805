"""The base training config every `configs/*.py` starts from, and its parsing.

A config file reads like the paper's hyperparameter table: it calls
`base_config()` and sets what its experiment changes. Configs are locked
(`--config.trian.seed=1` is an error, not a new key).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from flax import traverse_util
import ml_collections

from score_jax import sharding
from score_jax.rl import advantages
from score_jax.rl import losses

# Stages a schedule may hold. Supervised: 'sft' (the task's worked solutions
# as first attempts: the warm start), 'star' (own two-turn samples whose turn
# 2 fixed a wrong turn 1, STaR), 'pair_sft' (wrong own first attempts paired
# with a correct answer, Pair-SFT). RL (rl/losses.py): the others.
SFT_STAGES = ("sft", "star", "pair_sft")
RL_STAGES = ("stage1", "stage2", "single_turn")
STAGES = SFT_STAGES + RL_STAGES


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Stages in order, 'name:steps' comma-separated; a name may repeat
  # (interleaving: 'stage1:50,stage2:50,stage1:50,stage2:50').
  c.schedule = "stage1:10,stage2:10"

  c.model = ml_collections.ConfigDict()
  c.model.spec = "preset:tiny-llama"  # anything score_jax.load_model reads
  c.model.dtype = "float32"  # compute dtype (bfloat16 on accelerators)
  c.model.param_dtype = "float32"
  c.model.remat_policy = "none"
  # ModelConfig fields to change on a preset (e.g. vocab_size to fit the
  # tokenizer); ignored for loaded checkpoints.
  c.model.preset_overrides = ml_collections.ConfigDict()

  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.spec = ""  # '' = the checkpoint's own; 'byte', 'gguf:...', ...
  c.tokenizer.chat_format = ""  # '' = the tokenizer's; gemma | chatml | plain

  c.task = ml_collections.ConfigDict()
  c.task.name = "arithmetic"
  c.task.options = ml_collections.ConfigDict()  # kwargs of tasks.get_task
  c.task.train_split = "train"
  c.task.eval_split = "test"
  # Where a step's problems lie in the seeded order of the training split:
  # 'continued', each stage goes on where the one before stopped (a warm
  # start's problems are not RL's); 'step', at step x problems-per-step,
  # so stages of different batch sizes overlap (what the committed rows of
  # docs/RESULTS.md ran with).
  c.task.positions = "continued"

  c.rollout = ml_collections.ConfigDict()
  c.rollout.prompts_per_step = 8
  c.rollout.samples_per_prompt = 4  # k; RLOO groups
  c.rollout.max_new_tokens = 64  # per turn
  c.rollout.temperature = 1.0
  c.rollout.top_k = 0
  c.rollout.top_p = 1.0
  # RL train steps run on the rollout's rows repacked without the slots a
  # turn left unused after its stop (and the prompt bucket's padding), to
  # the longest row rounded up to a multiple of this; 0: the rollout's
  # layout as sampled (episodes.compact).
  c.rollout.repack_multiple = 32

  c.loss = ml_collections.ConfigDict()  # rl/losses.py LossConfig
  c.loss.alpha = 10.0
  c.loss.beta1 = 0.01
  c.loss.beta2 = 0.1
  c.loss.kl_estimator = "k3"
  # 'token': each position's KL with its prefix held fixed (GRPO-style);
  # 'sequence': the gradient of the turn's whole KL (rl/losses.py).
  c.loss.kl_gradient = "token"
  c.loss.advantage = "rloo"  # or 'none'; 'mean' (batch) needs micro_batches=1
  c.loss.aggregation = "sequence_sum"

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.lr = 5e-6
  c.optimizer.warmup_steps = 0  # linear warm-up at the start of each stage
  # After the warm-up, per stage: 'constant' (the paper's) or 'cosine' (to
  # `min_lr_ratio` x peak at the stage's last step).
  c.optimizer.decay = "constant"
  c.optimizer.min_lr_ratio = 0.0
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.95
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.0
  c.optimizer.clip_norm = 1.0

  c.sft = ml_collections.ConfigDict()  # the supervised stages
  c.sft.lr = 1e-3
  # Peak lr of a named stage, over sft.lr / optimizer.lr: e.g. {'star':
  # 3e-5} when the warm start and STaR both are supervised stages.
  c.lr_by_stage = ml_collections.ConfigDict()
  c.sft.decay = "constant"  # as optimizer.decay, for the supervised stages
  c.sft.batch_size = 16  # problems per 'sft' step (star/pair_sft: rollout)
  # Warm start: also train turn 2 to restate the correct solution after the
  # correction instruction (see episodes.solution_batch).
  c.sft.rewrite_turn2 = False
  # The fraction of warm-start rows that get that turn 2 (spread evenly).
  c.sft.turn2_fraction = 1.0
  # The fraction of those whose first turn is left empty (turn 2 learned as
  # an attempt of its own, not only as a restatement of turn 1).
  c.sft.empty_turn1_fraction = 0.0
  # Padded lengths of 'sft' batches, e.g. (160, 256): each batch takes the
  # smallest that fits (one compiled step per length). Empty: powers of two.
  c.sft.buckets = ()

  c.step = ml_collections.ConfigDict()
  c.step.micro_batches = 1  # gradient accumulation; each keeps whole prompts
  c.step.logits_chunk = 0  # positions per logits chunk in the loss (0: all)

  c.mesh = ml_collections.ConfigDict()
  c.mesh.shape = (1, -1, 1)  # ('data', 'fsdp', 'tensor'); -1 fills
  c.mesh.rules = sharding.DEFAULT_RULES

  c.eval = ml_collections.ConfigDict()
  c.eval.every = 0  # steps between greedy evaluations (0: at stage ends)
  c.eval.at_start = False  # also evaluate the initial policy (step 0)
  c.eval.num_problems = 64
  c.eval.num_turns = 2
  c.eval.max_new_tokens = 64
  c.eval.batch_size = 64

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 10  # steps between checkpoints (and at the end)
  c.checkpoint.keep = 2  # latest checkpoints kept (+ the best by reward)
  c.checkpoint.async_save = True

  c.log = ml_collections.ConfigDict()
  c.log.samples_every = 10  # write transcripts every N steps (0: never)
  c.log.num_samples = 8
  c.log.progress = True

  # A fresh workdir may start at another run's checkpoint (its workdir, or
  # <workdir>/checkpoints/<step>): state, reference and step restored, then
  # this config's schedule from that step (e.g. methods sharing a warm start).
  # A workdir names its latest step as this run first found it (kept in
  # <workdir>/start_from.json until the run's first checkpoint).
  c.start_from = ""
  c.max_nonfinite_steps = 5  # consecutive skipped steps before stopping
  return c


@dataclasses.dataclass(frozen=True)
class Stage:
  name: str
  steps: int
  start: int  # global step at which the stage starts


def parse_schedule(schedule: str) -> list[Stage]:
  """'stage1:10,stage2:20' -> [Stage('stage1', 10, 0), Stage('stage2', 20,
  10)]; a clear error names a misspelt stage or a bad step count."""
  stages, start = [], 0
  for item in filter(None, (s.strip() for s in schedule.split(","))):
    name, sep, steps = item.partition(":")
    if name not in STAGES:
      raise ValueError(f"config.schedule: unknown stage {name!r} in "
                       f"{schedule!r}; known stages: {', '.join(STAGES)}")
    if not sep or not steps.strip().isdigit() or int(steps) < 1:
      raise ValueError(f"config.schedule: {item!r} needs a positive step "
                       f"count, as in '{name}:100'")
    stages.append(Stage(name, int(steps), start))
    start += int(steps)
  if not stages:
    raise ValueError("config.schedule is empty; e.g. 'stage1:10,stage2:10'")
  return stages


def stage_at(stages: list[Stage], step: int) -> Stage:
  for stage in stages:
    if stage.start <= step < stage.start + stage.steps:
      return stage
  raise IndexError(f"step {step} is past the schedule's end "
                   f"({stages[-1].start + stages[-1].steps} steps)")


def loss_config(config: ml_collections.ConfigDict, stage: str,
                k: int) -> losses.LossConfig:
  """The LossConfig of one stage; STaR and Pair-SFT train turn 2 only."""
  turns = (False, True) if stage in ("star", "pair_sft") else (True, True)
  return losses.LossConfig(
      stage="sft" if stage in SFT_STAGES else stage, alpha=config.loss.alpha,
      beta1=config.loss.beta1,
      beta2=config.loss.beta2, kl_estimator=config.loss.kl_estimator,
      kl_gradient=config.loss.kl_gradient,
      advantage=config.loss.advantage,
      aggregation=("token_mean" if stage in SFT_STAGES else
                   config.loss.aggregation),
      k=k, sft_turns=turns)


DECAYS = ("constant", "cosine")


def learning_rate(config: ml_collections.ConfigDict, stage: Stage,
                  step: int) -> float:
  """Per-stage lr: a linear warm-up from the stage's start to its peak
  (lr_by_stage, else sft.lr or optimizer.lr), then constant or a cosine down
  to min_lr_ratio x peak at the stage's last step."""
  supervised = stage.name in SFT_STAGES
  peak = config.lr_by_stage.get(
      stage.name, config.sft.lr if supervised else config.optimizer.lr)
  decay = config.sft.decay if supervised else config.optimizer.decay
  warmup = config.optimizer.warmup_steps
  i = step - stage.start  # 0 .. stage.steps - 1
  if warmup > 0 and i < warmup:
    return peak * (i + 1) / warmup
  if decay == "constant" or stage.steps - 1 <= warmup:
    return peak
  progress = (i - warmup) / (stage.steps - 1 - warmup)  # 0 .. 1
  floor = config.optimizer.min_lr_ratio * peak
  return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def missing_required(config: ml_collections.ConfigDict) -> list[str]:
  """Dotted names of fields still None: required overrides left unset
  (`config_dict.placeholder`, e.g. model.spec or a task file path)."""
  out = []

  def walk(node, prefix):
    for key in node.keys():
      value = node[key]
      if isinstance(value, ml_collections.ConfigDict):
        walk(value, f"{prefix}{key}.")
      elif value is None and (prefix + key).startswith(("model.",
                                                        "task.options.")):
        out.append(prefix + key)
  walk(config, "")
  return out


# What a resumed run may change: where and how often it evaluates, saves and
# logs, and how the work is laid out (mesh, micro-batches, logits chunks,
# rematerialisation), none of which changes what a step trains on or with.
RESUMABLE_CHANGES = ("eval.", "checkpoint.", "log.", "mesh.", "step.",
                     "model.remat_policy", "max_nonfinite_steps",
                     "start_from")


# Fields added to the config that change what a run trains, each with the
# value a run started before it existed ran with.
ADDED_FIELDS = {"task.positions": "step"}
# Dicts whose keys the user chooses: a key on one side only is a change.
OPEN_DICTS = ("lr_by_stage.", "task.options.", "model.preset_overrides.")


def resume_changes(saved: dict[str, Any],
                   config: ml_collections.ConfigDict) -> list[str]:
  """'field: saved -> now' for each field whose value in `config` differs
  from `saved` (a run's config.json, loaded) and that a resumed run may not
  change (everything outside RESUMABLE_CHANGES; the schedule may gain stages
  after its last). A key of an OPEN_DICTS dict on one side only is a
  change (an lr of one stage, a task option added or dropped). Another
  field only one side has (a config of another version of this code) is
  not compared, but for a field added since that changes what a run
  trains: a config without it ran as its value in ADDED_FIELDS."""
  before = {**ADDED_FIELDS, **traverse_util.flatten_dict(saved, sep=".")}
  now = traverse_util.flatten_dict(json.loads(config.to_json_best_effort()),
                                   sep=".")
  def allowed(key):
    if key == "schedule":  # stages appended: the steps run so far unchanged
      old = parse_schedule(before[key])
      return parse_schedule(now[key])[:len(old)] == old
    return key.startswith(RESUMABLE_CHANGES)
  def changed(key):
    return key not in before or key not in now or before[key] != now[key]
  def shown(values, key):
    return repr(values[key]) if key in values else "(absent)"
  keys = (before.keys() & now.keys()) | {
      key for key in before.keys() ^ now.keys() if key.startswith(OPEN_DICTS)}
  return [f"{key}: {shown(before, key)} -> {shown(now, key)}"
          for key in sorted(keys) if changed(key) and not allowed(key)]


def check_eval(eval_config: ml_collections.ConfigDict) -> None:
  """config.eval's counts are positive (a slice by 0 or -1 would evaluate no
  problem, or silently leave the last one out)."""
  for field in ("num_problems", "num_turns", "batch_size", "max_new_tokens"):
    if eval_config[field] < 1:
      raise ValueError(f"config.eval.{field}={eval_config[field]}: expected "
                       ">= 1")


POSITIONS = ("continued", "step")  # config.task.positions


def validate(config: ml_collections.ConfigDict) -> list[Stage]:
  """Checks the config's values; returns the parsed schedule."""
  missing = missing_required(config)
  if missing:
    raise ValueError(
        "required config fields are unset: " + ", ".join(missing) + "; give "
        "them as " + " ".join(f"--config.{m}=..." for m in missing))
  stages = parse_schedule(config.schedule)
  r = config.rollout
  if r.samples_per_prompt < 1 or r.prompts_per_step < 1:
    raise ValueError("config.rollout: samples_per_prompt and "
                     "prompts_per_step must be >= 1")
  if r.repack_multiple < 0:
    raise ValueError(f"config.rollout.repack_multiple={r.repack_multiple}: "
                     "expected >= 0 (0: no repacking)")
  micro = config.step.micro_batches
  if micro < 1:
    raise ValueError(f"config.step.micro_batches={micro}: expected >= 1")
  names = {s.name for s in stages}
  rows = r.prompts_per_step * r.samples_per_prompt
  if rows % micro:
    raise ValueError(f"config.step.micro_batches={micro} does not divide "
                     f"the {rows} rows of a step")
  # RL and STaR steps keep each prompt's k samples in one micro-batch.
  if names & {*RL_STAGES, "star"} and (rows // micro) % r.samples_per_prompt:
    raise ValueError(
        f"config.step.micro_batches={micro}: micro-batches of "
        f"{rows // micro} rows cannot hold whole groups of "
        f"rollout.samples_per_prompt={r.samples_per_prompt} samples")
  if "sft" in names and config.sft.batch_size % micro:
    raise ValueError(f"config.step.micro_batches={micro} does not divide "
                     f"sft.batch_size={config.sft.batch_size}")
  if names & set(RL_STAGES):
    advantages.check_micro_batches(config.loss.advantage, micro)
    if config.loss.advantage == "rloo" and r.samples_per_prompt < 2:
      raise ValueError(
          f"config.loss.advantage='rloo' needs rollout.samples_per_prompt >= "
          f"2 (each sample's baseline is the others'), got "
          f"{r.samples_per_prompt}; or use advantage 'mean' or 'none'")
    if r.temperature <= 0:
      raise ValueError(
          f"config.rollout.temperature={r.temperature}: the RL stages "
          f"({', '.join(sorted(names & set(RL_STAGES)))}) need sampling "
          "(temperature > 0); greedy rollouts make a prompt's samples "
          "identical, so their advantages are all zero")
  if config.task.positions not in POSITIONS:
    raise ValueError(f"config.task.positions={config.task.positions!r}: "
                     f"expected one of {', '.join(POSITIONS)}")
  check_eval(config.eval)
  for field in ("every", "keep"):
    if config.checkpoint[field] < 1:
      raise ValueError(f"config.checkpoint.{field}="
                       f"{config.checkpoint[field]}: expected >= 1")
  for where in ("optimizer", "sft"):
    if config[where].decay not in DECAYS:
      raise ValueError(f"config.{where}.decay={config[where].decay!r}: "
                       f"expected one of {DECAYS}")
  if not 0.0 <= config.optimizer.min_lr_ratio <= 1.0:
    raise ValueError(f"config.optimizer.min_lr_ratio="
                     f"{config.optimizer.min_lr_ratio}: expected 0 .. 1")
  unknown = set(config.lr_by_stage) - set(STAGES)
  if unknown:
    raise ValueError(f"config.lr_by_stage: unknown stage(s) {sorted(unknown)};"
                     f" stages are {', '.join(STAGES)}")
  buckets = tuple(config.sft.buckets)
  if not all(isinstance(b, int) and b > 0 for b in buckets):
    raise ValueError(f"config.sft.buckets={buckets}: expected positive "
                     f"integer lengths")
  for field in ("turn2_fraction", "empty_turn1_fraction"):
    if not 0.0 <= config.sft[field] <= 1.0:
      raise ValueError(f"config.sft.{field}={config.sft[field]}: expected "
                       "0 .. 1")
  for stage in {s.name for s in stages}:
    loss_config(config, stage, r.samples_per_prompt)  # validates names
  return stages
