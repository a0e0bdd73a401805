"""The training loop: one loop, every stage, every baseline (as configs).

Each step of an RL stage: prompts for this step (a pure function of seed and
step) -> k two-turn samples each -> rewards per turn on the host -> one
sharded train step. 'sft' steps train on worked solutions (warm start) or on
the policy's own filtered transcripts (STaR, Pair-SFT). Everything a run
writes lives under its workdir; started again on the same workdir it resumes
from the last checkpoint and writes the same metrics step for step.

Multi-host (one JAX process per host, `score_jax.distributed`): every process
runs this same loop over one global mesh. The step's batch is sharded over
the data axes and each process owns one contiguous block of its rows
(`sharding.process_rows`, a function of the mesh and the process index
only): it scores and packs those rows on its host, and the global batch is
assembled from the blocks (`jax.make_array_from_process_local_data`).
Sampling is one globally sharded computation in which each row's random
draw is keyed by its index in the global batch (see `sampling.rollout`), so
the batch -- prompts, order and the tokens sampled for each row -- is the
same for any number of processes.
Metrics are sums over processes divided by the batch size; checkpoints are
written by all processes together; process 0 alone writes metrics.jsonl,
TensorBoard, samples/, eval reports and plots, and shows the progress bar.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from typing import Any, Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from score_jax import configs as configs_lib
from score_jax import distributed
from score_jax import episodes as episodes_lib
from score_jax import models
from score_jax import plan as plan_lib
from score_jax import run_state
from score_jax import sampling
from score_jax import sharding as sharding_lib
from score_jax import tasks as tasks_lib
from score_jax.evaluation import files, plots, reports
from score_jax.rl import state as state_lib
from score_jax.rl import step as step_lib

# The checkpoint a fresh run with config.start_from began at (Trainer.
# _open_start), under its workdir.
START_RECORD = "start_from.json"
# Keys of a metrics row that depend on wall time (excluded from the resume
# equality check, nothing else).
TIMING_KEYS = ("time/rollout", "time/reward", "time/update", "time/step",
               "tokens_per_s")


class NonFiniteError(RuntimeError):
  """Too many consecutive steps with a non-finite loss or gradient."""


def load_policy(config: ml_collections.ConfigDict,
                ctx: sharding_lib.ShardingCtx):
  """(model config, sharded params, tokenizer) from config.model/tokenizer."""
  from score_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from score_jax.tokenizers import load_tokenizer  # pylint: disable=g-import-not-at-top
  spec = config.model.spec
  dtypes = dict(dtype=config.model.dtype, param_dtype=config.model.param_dtype,
                remat_policy=config.model.remat_policy)
  tok_spec = config.tokenizer.spec or None
  if spec.startswith("preset:"):
    model_config = models.get_preset(spec.partition(":")[2]).replace(
        **dtypes, **config.model.preset_overrides.to_dict())
    params = models.init_params(model_config, jax.random.key(config.seed),
                                ctx)
    if tok_spec is None:
      raise ValueError("config.tokenizer.spec is required with a preset model "
                       "(e.g. 'byte' for the built-in byte tokenizer)")
    tokenizer = load_tokenizer(tok_spec, **_chat_format(config))
  else:
    loaded = checkpoints.load_model(spec, tokenizer=tok_spec)
    model_config = loaded.config.replace(**dtypes)
    params = jax.device_put(
        jax.tree.map(lambda x: jnp.asarray(x, model_config.param_dtype),
                     loaded.params),
        models.param_shardings(model_config, ctx))
    tokenizer = loaded.tokenizer
    if tokenizer is None:
      raise ValueError(f"{spec} carries no tokenizer; set config.tokenizer.spec")
    if config.tokenizer.chat_format:
      tokenizer = load_tokenizer(loaded.tokenizer_spec, **_chat_format(config))
  if tokenizer.vocab_size > model_config.vocab_size:
    raise ValueError(f"tokenizer has {tokenizer.vocab_size} ids but the model "
                     f"only {model_config.vocab_size}")
  if tokenizer.vocab_size < model_config.vocab_size:
    # Table rows past the tokenizer's ids are never emitted (nor decoded).
    model_config = model_config.replace(output_vocab=tokenizer.vocab_size)
  return model_config, params, tokenizer


def check_process_split(config: ml_collections.ConfigDict,
                        stages: list[configs_lib.Stage],
                        ctx: sharding_lib.ShardingCtx) -> None:
  """Several processes: each must own one contiguous block of a batch's rows
  (`sharding.process_rows` raises otherwise) and, of the rollout, a disjoint
  block of whole prompt groups (its rewards are summed into the metrics
  once; Pair-SFT pairs samples within a group). Raises ValueError naming
  the config fields to change."""
  def blocks(rows):
    sharding = sharding_lib.batch_sharding(ctx, (rows,))
    return [sharding_lib.process_rows(sharding, (rows,), process=p)
            for p in range(jax.process_count())]

  blocks(config.sft.batch_size)
  if all(s.name == "sft" for s in stages):
    return
  r = config.rollout
  k, rows = r.samples_per_prompt, r.prompts_per_step * r.samples_per_prompt
  owned = blocks(rows)
  if sum(hi - lo for lo, hi in owned) != rows:
    data_ways = ctx.mesh.shape["data"] * ctx.mesh.shape["fsdp"]
    raise ValueError(
        f"{jax.process_count()} processes: the rollout's {rows} rows "
        f"(rollout.prompts_per_step x samples_per_prompt) must split over the "
        f"{data_ways} data-parallel devices (mesh data x fsdp) so that each "
        f"host owns its own rows; make the rows a multiple of {data_ways}")
  if any(lo % k or hi % k for lo, hi in owned):
    raise ValueError(
        f"{jax.process_count()} processes own rows {owned} of the rollout: "
        f"each host needs whole groups of samples_per_prompt={k}; make "
        f"rollout.prompts_per_step ({r.prompts_per_step}) a multiple of the "
        f"number of processes")


def _chat_format(config) -> dict[str, str]:
  fmt = config.tokenizer.chat_format
  return {"chat_format": fmt} if fmt else {}


class Trainer:
  """Holds what a run needs; `run()` trains from wherever the workdir is."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.config = config
    self.workdir = files.local_path(workdir, "--workdir")
    self.stages = configs_lib.validate(config)
    protocol = config.eval.get("protocol", "score")
    if protocol != "score":
      # The periodic evaluations run the SCoRe protocol; a run would report
      # them under another protocol's name.
      raise ValueError(f"config.eval.protocol={protocol!r} is evaluation "
                       "only: train the warm start with configs/base.py, "
                       "then `score-jax eval --config=<this config> "
                       "--checkpoint=<its workdir>`")
    self.total_steps = self.stages[-1].start + self.stages[-1].steps
    # Process 0 writes logs, samples and reports (all processes checkpoint).
    self.main = distributed.is_main_process()
    os.makedirs(workdir, exist_ok=True)
    self.ctx = sharding_lib.ShardingCtx(
        sharding_lib.make_mesh(tuple(config.mesh.shape)),
        tuple(tuple(r) for r in config.mesh.rules))
    r = config.rollout
    rows = r.prompts_per_step * r.samples_per_prompt // config.step.micro_batches
    data_ways = self.ctx.mesh.shape["data"] * self.ctx.mesh.shape["fsdp"]
    if rows % data_ways:
      logging.warning(
          "a micro-batch of %d rows does not divide the %d data-parallel "
          "devices: the batch is replicated on every device, not split", rows,
          data_ways)
    if jax.process_count() > 1:
      check_process_split(config, self.stages, self.ctx)
    if (r.top_k or r.top_p < 1) and any(
        s.name in configs_lib.RL_STAGES for s in self.stages):
      logging.warning(
          "rollout.top_k=%s / top_p=%s: RL stages sample from a truncated "
          "distribution but train on the untruncated log-probs, so the "
          "policy gradient is off-policy (biased); the paper samples at "
          "temperature 1 without truncation", r.top_k, r.top_p)
    self.model_config, params, self.tokenizer = load_policy(config, self.ctx)
    self.model = models.Transformer(self.model_config, sharding=self.ctx)
    self.task = tasks_lib.get_task(config.task.name,
                                   **config.task.options.to_dict())
    self.train_problems = self.task.problems(config.task.train_split)
    eval_split = self.task.problems(config.task.eval_split)
    for split, problems in ((config.task.train_split, self.train_problems),
                            (config.task.eval_split, eval_split)):
      if not problems:
        raise ValueError(f"task {self.task.name}: split {split!r} has no "
                         "problems")
    # Held out: the whole evaluation split, not only the problems evaluated,
    # so that eval.num_problems (which a resumed run may change) does not
    # change what trains.
    self.train_problems = self._held_out(self.train_problems, eval_split)
    self.eval_problems = eval_split[:config.eval.num_problems]

    opt = config.optimizer
    self.optimizer = state_lib.make_optimizer(state_lib.OptimizerConfig(
        b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay,
        clip_norm=opt.clip_norm))
    self.param_shardings = models.param_shardings(self.model_config, self.ctx)
    state = jax.jit(lambda p: state_lib.init_state(p, self.optimizer))(params)
    self.state_shardings = state_lib.state_shardings(
        jax.eval_shape(lambda s: s, state), self.param_shardings,
        self.optimizer, self.ctx)
    self.state = jax.device_put(state, self.state_shardings)
    # The reference is the policy as the run starts; for runs that begin with
    # a warm start it is re-taken when the first RL stage begins. A copy: the
    # state's buffers are donated to every train step.
    self._copy = jax.jit(lambda p: jax.tree.map(jnp.copy, p),
                         out_shardings=self.param_shardings)
    self.ref_params = self._copy(params)
    self.checkpoints = run_state.RunCheckpoints(
        workdir, config.checkpoint.keep, config.checkpoint.async_save,
        meta={"model_spec": config.model.spec,
              "model_config": self.model_config.to_dict()})
    self._steps: dict[Any, Any] = {}
    self._writer = None
    # TensorBoard hides events logged at this step or later by an earlier,
    # killed attempt (metrics.jsonl is cut back the same way): set in run().
    self._tb_purge_step: Optional[int] = None
    self._start: Optional[tuple[int, bool]] = None
    self._lock = None  # the workdir's, from restore() to close()
    # The step whose policy ref_params is (0: the initial model); saved with
    # every checkpoint.
    self._reference_step = 0
    self.check_memory()

  def check_memory(self) -> None:
    """Warns, before any step, when plan.py's per-device memory of this run's
    two-turn rollout and update (at the longest layout: the prompt bucket
    of the longest of 256 training prompts, both turns' budgets) exceeds
    what a device has (on CPU: the host's available memory), naming the
    settings that shrink it: an out-of-memory kill gives no message."""
    if all(s.name == "sft" for s in self.stages):
      return
    limit = plan_lib.device_memory_limit()
    if limit is None:
      return
    r, step = self.config.rollout, self.config.step
    prompt = max(len(episodes_lib.prompt_ids(self.tokenizer, p))
                 for p in self.train_problems[:256])
    followup = self.tokenizer.followup_ids(self.task.correction_instruction)
    workload = plan_lib.Workload(
        rows=r.prompts_per_step * r.samples_per_prompt,
        seq=sampling.layout_length(
            sampling.bucket_length(prompt), [r.max_new_tokens] * 2,
            [len(followup)],
            end_of_turn=self.tokenizer.end_of_turn_id is not None),
        decode_steps=2 * r.max_new_tokens, micro_batches=step.micro_batches,
        logits_chunk=step.logits_chunk)
    mesh = plan_lib.MeshSpec(
        "this run's", tuple(self.ctx.mesh.shape[a]
                            for a in sharding_lib.MESH_AXES),
        plan_lib.Chip(jax.local_devices()[0].device_kind,
                      limit / plan_lib.GIB, None, None))
    plan = plan_lib.make_plan(self.model_config, mesh, workload,
                              self.ctx.rules, self.optimizer)
    if plan.fits:
      return
    message = (
        f"this run may run out of memory: an RL step of {workload.rows} rows "
        f"x {workload.seq} slots needs about {plan_lib.human(plan.peak)} per "
        f"device (`score-jax plan`'s estimate), and a {mesh.chip.name} "
        f"device here has {plan_lib.human(limit)} available. Less: "
        f"--config.model.remat_policy=full (now "
        f"{self.model_config.remat_policy!r}), --config.step.logits_chunk=64 "
        f"(now {step.logits_chunk}), --config.step.micro_batches (now "
        f"{step.micro_batches}), or fewer rollout.prompts_per_step. Per "
        f"item:\n{plan_lib.describe(plan)}")
    logging.warning("%s", message)

  # -- data ---------------------------------------------------------------

  def _held_out(self, train: list, evaluation: list) -> list:
    """`train` without the problems of the evaluation split (by prompt
    text): a split read from the same file as the evaluation's, or a
    dataset's duplicates across its splits (3 in MBPP), would be trained on
    and then scored."""
    t = self.config.task
    evaluated = {p.prompt for p in evaluation}
    kept = [p for p in train if p.prompt not in evaluated]
    if not kept:
      raise ValueError(
          f"task {self.task.name}: every problem of the training split "
          f"{t.train_split!r} is one of the evaluation's (split "
          f"{t.eval_split!r}); are both read from the same file?")
    if len(kept) < len(train):
      logging.warning(
          "task %s: %d of the %d problems of split %r are evaluation "
          "problems too (split %r, the same prompt); they are not trained on",
          self.task.name, len(train) - len(kept), len(train), t.train_split,
          t.eval_split)
    return kept

  def problems_for_step(self, step: int) -> list:
    """The training problems of step `step`: a pure function of (seed,
    schedule, step), so resumable."""
    stage = configs_lib.stage_at(self.stages, step)
    return self.training_order(self.first_position(step),
                               self.problems_per_step(stage.name))

  def training_order(self, first: int, count: int) -> list:
    """Positions [first, first + count) of the training order: the split,
    shuffled again each epoch."""
    n = len(self.train_problems)
    orders = {}  # one permutation per epoch touched, not one per prompt
    out = []
    for i in range(first, first + count):
      epoch, pos = divmod(i, n)
      if epoch not in orders:
        orders[epoch] = np.random.default_rng(
            [self.config.seed, epoch]).permutation(n)
      out.append(self.train_problems[orders[epoch][pos]])
    return out

  def problems_per_step(self, stage_name: str) -> int:
    """How many training problems a step of the stage takes: a batch of
    worked solutions in `sft`, prompts to sample from in the others."""
    return (self.config.sft.batch_size if stage_name == "sft" else
            self.config.rollout.prompts_per_step)

  def first_position(self, step: int) -> int:
    """Position in the training order of step `step`'s first problem
    (config.task.positions)."""
    stage = configs_lib.stage_at(self.stages, step)
    count = self.problems_per_step(stage.name)
    if self.config.task.positions == "step":
      return step * count
    position = sum(s.steps * self.problems_per_step(s.name)
                   for s in self.stages if s.start < stage.start)
    return position + (step - stage.start) * count

  def step_rng(self, step: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(self.config.seed), step)

  def batch_rows(self, rows: int) -> tuple[int, int]:
    """[start, stop): the rows of a `rows`-row batch that this process owns
    under the batch sharding; all of them in one process."""
    return sharding_lib.process_rows(
        sharding_lib.batch_sharding(self.ctx, (rows,)), (rows,))

  # -- device steps -------------------------------------------------------

  def train_step_fn(self, stage: str, k: int, batch: dict[str, np.ndarray]):
    loss_config = configs_lib.loss_config(self.config, stage, k)
    key = (loss_config, tuple(sorted(batch)))
    if key not in self._steps:
      fn = step_lib.make_train_step(
          self.model, loss_config, self.optimizer,
          step_lib.StepConfig(self.config.step.micro_batches,
                              self.config.step.logits_chunk,
                              self._train_temperature(stage)))
      shardings = step_lib.batch_shardings(batch, self.ctx)
      self._steps[key] = (step_lib.jit_train_step(
          fn, self.state_shardings, self.param_shardings, shardings,
          self.ctx), shardings)
    return self._steps[key]

  def _train_temperature(self, stage: str) -> float:
    """The RL stages learn the policy their rollouts sample from,
    softmax(logits / T); supervised stages and greedy rollouts (T = 0) use
    the plain softmax."""
    t = self.config.rollout.temperature
    return 1.0 if stage in configs_lib.SFT_STAGES or t <= 0 else float(t)

  def global_batch(self, batch: dict[str, np.ndarray], rows: int,
                   start: int) -> dict[str, jax.Array]:
    """The step's batch of `rows` rows from this process's block of it
    (rows [start, start + local rows)); in one process, the batch on the
    devices. Packed batches are as long as their longest row, so the
    processes first agree on the longest block (left-padding the others)."""
    if jax.process_count() > 1:
      length = int(max(distributed.gather_metrics(
          {"length": batch["tokens"].shape[-1]})["length"]))
      batch = episodes_lib.left_pad(batch, length, self.tokenizer.pad_id)
    shapes = {}
    for name, x in batch.items():
      axis = step_lib.batch_axis(name)
      shapes[name] = jax.ShapeDtypeStruct(
          x.shape[:axis] + (rows,) + x.shape[axis + 1:], x.dtype)
    shardings = step_lib.batch_shardings(shapes, self.ctx)
    lo, hi = self.batch_rows(rows)
    local = batch["tokens"].shape[0]
    if (lo, hi) != (start, start + local):
      raise ValueError(f"this process holds rows [{start}, {start + local}) "
                       f"of the batch, but its devices take [{lo}, {hi})")
    return {name: jax.make_array_from_process_local_data(
        shardings[name], x, shapes[name].shape) for name, x in batch.items()}

  def update(self, stage: configs_lib.Stage, step: int, batch, k: int, *,
             rows: int, start: int = 0):
    """One train step on this process's `batch`: rows [start, ...) of a
    batch of `rows` rows."""
    batch = self.global_batch(batch, rows, start)
    fn, _ = self.train_step_fn(stage.name, k, batch)
    lr = configs_lib.learning_rate(self.config, stage, step)
    self.state, metrics = fn(self.state, self.ref_params, batch,
                             jnp.float32(lr))
    return {k: float(v) for k, v in jax.device_get(metrics).items()}

  # -- one step of each kind ----------------------------------------------

  def sample(self, step: int, problems, num_turns: int, k: int):
    """This process's rows of k samples of every problem (all processes
    pass the same problems and key; see the module docstring)."""
    r = self.config.rollout
    sampler = sampling.SamplingConfig(temperature=r.temperature,
                                      top_k=r.top_k or None,
                                      top_p=r.top_p if r.top_p < 1 else None)
    return episodes_lib.run_episodes(
        self.model, self.state.params, self.tokenizer, self.task, problems,
        num_turns=num_turns, samples_per_prompt=k,
        max_new_tokens=r.max_new_tokens, sampler=sampler,
        rng=self.step_rng(step), ctx=self.ctx)

  def rl_step(self, stage: configs_lib.Stage, step: int):
    r = self.config.rollout
    k = r.samples_per_prompt
    times = {}
    start = time.perf_counter()
    problems = self.problems_for_step(step)
    num_turns = 1 if stage.name == "single_turn" else 2
    eps = self.sample(step, problems, num_turns, k)
    times["time/rollout"] = time.perf_counter() - start
    mid = time.perf_counter()
    batch = episodes_lib.compact(episodes_lib.rl_batch(eps),
                                 r.repack_multiple, self.tokenizer.pad_id)
    metrics = self.update(stage, step, batch, k, rows=eps.total,
                          start=eps.start)
    times["time/update"] = time.perf_counter() - mid
    turns = episodes_lib.turn_metrics(eps)
    tokens = eps.total * sum(v for key, v in turns.items()
                             if key.startswith("length_t"))
    times["tokens_per_s"] = tokens / max(times["time/rollout"], 1e-9)
    return eps, {**turns, **metrics, **times}

  def sft_step(self, stage: configs_lib.Stage, step: int):
    start = time.perf_counter()
    eps = None
    extra = {}
    if stage.name == "sft":
      rows = self.config.sft.batch_size
      first, stop = self.batch_rows(rows)
      problems = self.problems_for_step(step)[first:stop]
      batch = episodes_lib.solution_batch(
          self.tokenizer, self.task, problems, self.config.sft.rewrite_turn2,
          tuple(self.config.sft.buckets) or None,
          turn2_fraction=self.config.sft.turn2_fraction, first_row=first,
          empty_turn1_fraction=self.config.sft.empty_turn1_fraction)
      k = 1
    else:
      r = self.config.rollout
      k = r.samples_per_prompt
      eps = self.sample(step, self.problems_for_step(step), 2, k)
      if stage.name == "star":
        batch, kept = episodes_lib.star_batch(eps, r.repack_multiple,
                                              self.tokenizer.pad_id)
      else:
        batch, kept = episodes_lib.pair_batch(eps, self.tokenizer, self.task,
                                              k)
        k = 1
      extra = {**distributed.sum_metrics({"sft_examples": float(kept)}),
               **episodes_lib.turn_metrics(eps)}
      rows, first = eps.total, eps.start
    batch.pop("rewards", None)
    mid = time.perf_counter()
    metrics = self.update(stage, step, batch, k, rows=rows, start=first)
    return eps, {**extra, **metrics, "time/rollout": mid - start,
                 "time/update": time.perf_counter() - mid}

  # -- evaluation, logging ------------------------------------------------

  def evaluate(self, name: str, step: int) -> dict[str, float]:
    c = self.config.eval
    if not self.eval_problems:
      return {}
    # Every process gets the whole evaluation back (episodes.evaluate).
    eps = episodes_lib.evaluate(
        self.model, self.state.params, self.tokenizer, self.task,
        self.eval_problems, num_turns=c.num_turns,
        max_new_tokens=c.max_new_tokens, batch_size=c.batch_size,
        ctx=self.ctx)
    if self.main:
      write_eval_report(self.workdir, name, eps, {
          "step": step, "model_spec": self.config.model.spec,
          "task": self.task.name, "split": self.config.task.eval_split})
    return {k: v for k, v in reports.summarize(eps.rewards)["metrics"].items()}

  def log(self, step: int, stage: str, metrics: dict[str, float]) -> None:
    if not self.main:
      return
    row = {"step": step, "stage": stage, **metrics}
    with open(os.path.join(self.workdir, "metrics.jsonl"), "a") as f:
      f.write(json.dumps(row, allow_nan=True) + "\n")
    self._tensorboard(step, metrics)

  def _tensorboard(self, step: int, metrics: dict[str, float]) -> None:
    if self._writer is None:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._writer = SummaryWriter(os.path.join(self.workdir, "tb"),
                                   purge_step=self._tb_purge_step)
    for key, value in metrics.items():
      self._writer.add_scalar(key, value, step)

  def truncate_metrics(self, step: int, evals_at_step: bool = True) -> None:
    """Drops what was logged after the checkpoint of `step` (which holds
    steps 0..step-1 and, with evals_at_step, the evaluations logged at
    `step` before it)."""
    path = os.path.join(self.workdir, "metrics.jsonl")
    if not self.main or not os.path.exists(path):
      return
    keep = [row for row in files.read_jsonl(path)
            if row["step"] < step or (evals_at_step and row["stage"] == "eval"
                                      and row["step"] == step)]
    files.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))

  def logged_evaluations(self, step: int) -> dict[str, dict[str, float]]:
    """{report name: metrics} of the evaluations that metrics.jsonl holds up
    to `step`, in step order, read from their reports under eval/ (a report
    of a step past `step` or no longer logged, from an attempt killed before
    its checkpoint, is left out). Empty on processes other than the main."""
    logged = os.path.join(self.workdir, "metrics.jsonl")
    if not self.main or not os.path.exists(logged):
      return {}
    steps = {row["step"] for row in files.read_jsonl(logged)
             if row["stage"] == "eval" and row["step"] <= step}
    found = []
    for path in glob.glob(os.path.join(self.workdir, "eval", "*.json")):
      report = reports.load_report(path)
      at, name = report.get("config", {}).get("step"), report.get("name")
      # The names `run` gives (not those of `score-jax eval` into the same
      # workdir).
      if at in steps and re.fullmatch(rf"start|(after_\w+_)?step{at}",
                                      str(name)):
        found.append((at, name, {k: v for k, v in report["metrics"].items()
                                 if k != EDIT_RATIO}))  # as `evaluate` gives
    return {name: metrics for _, name, metrics in sorted(
        found, key=lambda x: x[0])}

  def write_samples(self, step: int, eps) -> None:
    """samples/step_N.jsonl: the first rows of the step's batch (a
    collective: the rows come from every process)."""
    if eps is None:
      return
    r = self.config.rollout
    eps = episodes_lib.gather(eps, [
        p for p in self.problems_for_step(step)
        for _ in range(r.samples_per_prompt)])
    if not self.main:
      return
    rows = episodes_lib.transcripts(eps, self.config.log.num_samples)
    path = os.path.join(self.workdir, "samples", f"step_{step:06d}.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    files.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))

  # -- the loop -----------------------------------------------------------

  def restore(self) -> tuple[int, bool]:
    """(step to start at, whether this workdir starts afresh). A fresh run
    with `config.start_from` starts at that checkpoint of another run:
    state, reference and step restored, this config's schedule from there.
    Once per run: `run` calls it unless it was called before."""
    if self._start is not None:
      return self._start
    if self.main:
      self._lock = run_state.lock_workdir(self.workdir)
    self._start = self._restore()
    return self._start

  def _restore(self) -> tuple[int, bool]:
    step = self.checkpoints.latest_step()
    source = None
    if step is None:
      if not self.config.start_from:
        return 0, True
      source, step = self._open_start()
    else:
      self.checkpoints.check_meta(step)  # another model: the first thing said
      self.check_resumed_config(step)
    try:
      stored = self.checkpoints.stored_meta(step, source).get(
          "reference_step")
      if source is not None:
        self._check_start_reference(step, stored)
      self.state, self.ref_params = self.checkpoints.restore(
          step, self.state, self.state_shardings, self.ref_params,
          self.param_shardings, source)
      # Not recorded by checkpoints written before the field: as this
      # schedule has it.
      self._reference_step = (self.schedule_reference_step(step)
                              if stored is None else stored)
    finally:
      if source is not None:
        source.close()
    if source is None:
      self.checkpoints.offer_best(step, self.state, self.ref_params)
    if step > self.total_steps:
      raise ValueError(f"config.start_from: step {step} is past this "
                       f"schedule's end ({self.total_steps} steps)")
    self.truncate_metrics(step)
    return step, source is not None

  def _check_start_reference(self, step: int, stored: Optional[int]) -> None:
    """A fresh run from another run's checkpoint at `step` past this
    schedule's RL start keeps that checkpoint's reference (`stored`: the
    step whose policy it is): refused where it is still the initial model
    (the other run had not started RL there), which this schedule's RL
    stages would hold the policy to."""
    want = self.schedule_reference_step(step)
    if want and stored == 0:  # None: written before the field existed
      raise ValueError(
          f"config.start_from: its step {step} lies past the start of this "
          f"schedule's first RL stage (step {want}), where the reference is "
          "taken, but its run had not started RL: its reference is the "
          "initial model. Start from the step where this schedule's RL "
          "begins, or make the warm start end at that checkpoint's step "
          f"(e.g. sft:{step})")

  def _open_start(self):
    """run_state.open_start of config.start_from, at the step this run's
    first attempt resolved it to. A workdir or checkpoints directory names
    its latest (or best) step, which moves while that run goes on: an
    attempt killed before its first save starts again from the same step,
    as it would from its own checkpoint (START_RECORD keeps it)."""
    start_from = self.config.start_from
    record = os.path.join(self.workdir, START_RECORD)
    saved = {}
    if os.path.exists(record):
      with open(record, encoding="utf-8") as f:
        saved = json.load(f)
    if saved.get("start_from") == start_from:
      try:
        return run_state.open_start(saved["checkpoint"])
      except ValueError as e:
        raise ValueError(
            f"config.start_from={start_from}: the checkpoint this run's first "
            f"attempt started from, {saved['checkpoint']} (recorded in "
            f"{record}), cannot be read: {e}") from None
    source, step = run_state.open_start(start_from)
    if self.main:
      files.atomic_write_text(record, json.dumps({
          "start_from": start_from,
          "checkpoint": os.path.join(str(source.directory), str(step))})
          + "\n")
    return source, step

  def check_resumed_config(self, step: int) -> None:
    """A run resumed at `step` of this workdir keeps the config it started
    with (config.json), but for what RESUMABLE_CHANGES lists and stages
    appended to the schedule: another seed, stage length, task, objective or
    optimizer would make a run that is neither."""
    path = os.path.join(self.workdir, "config.json")
    if not os.path.exists(path):
      return
    with open(path, encoding="utf-8") as f:
      changes = configs_lib.resume_changes(json.load(f), self.config)
    if changes:
      raise ValueError(
          f"{self.workdir} holds a run started with another config, which "
          f"resuming it would change: {'; '.join(changes)}. Start it again "
          "with the flags it was started with, or start a new run from its "
          f"checkpoint: --workdir=<new> --config.start_from="
          f"{os.path.join(self.workdir, 'checkpoints', str(step))}")

  def run(self) -> dict[str, Any]:
    config = self.config
    start_step, fresh = self.restore()
    if self.main:  # the config this run goes on with (checked on a resume)
      files.atomic_write_text(os.path.join(self.workdir, "config.json"),
                              config.to_json_best_effort(indent=2))
    if fresh:
      # An attempt killed before its first checkpoint: all of it is redone,
      # its start evaluation too.
      self.truncate_metrics(0, evals_at_step=False)
    self._tb_purge_step = start_step
    logged = os.path.join(self.workdir, "metrics.jsonl")
    if not fresh and self.main and os.path.exists(logged):
      # The evaluations logged at the checkpoint's step, before it, are kept
      # in metrics.jsonl but hidden in TensorBoard with the rest: again.
      for row in files.read_jsonl(logged):
        if row["step"] == start_step:
          self._tensorboard(start_step, {k: v for k, v in row.items()
                                         if k not in ("step", "stage")})
    # A resumed run's results begin with the evaluations logged before the
    # checkpoint it resumes from (its base first), as an uninterrupted run's.
    results = {} if fresh else self.logged_evaluations(start_step)
    if fresh and config.eval.at_start:
      results["start"] = self.evaluate("start", start_step)
      self.log(start_step, "eval",
               {f"eval/{k}": v for k, v in results["start"].items()})
    bar = tqdm.tqdm(total=self.total_steps, initial=start_step,
                    disable=not (config.log.progress and self.main),
                    desc="train", dynamic_ncols=True)
    last_reward: list[float] = []
    for step in range(start_step, self.total_steps):
      stage = configs_lib.stage_at(self.stages, step)
      if (step == stage.start and stage.name not in configs_lib.SFT_STAGES
          and self._first_rl(stage)):
        # The frozen reference is the policy the RL stages start from.
        self.ref_params = self._copy(self.state.params)
        self._reference_step = step
      t0 = time.perf_counter()
      if stage.name in configs_lib.SFT_STAGES:
        eps, metrics = self.sft_step(stage, step)
      else:
        eps, metrics = self.rl_step(stage, step)
      metrics["time/step"] = time.perf_counter() - t0
      self.log(step, stage.name, metrics)
      if int(self.state.skipped) >= config.max_nonfinite_steps:
        raise NonFiniteError(
            f"{int(self.state.skipped)} consecutive steps (to step {step}) had "
            "a non-finite loss or gradient; stopping. The last checkpoint "
            "holds the last finite state. Lower the learning rate or check "
            "the data.")
      if eps is not None:
        # The best checkpoint's training reward: the last turn sampled
        # (turn 1 in single-turn RL).
        last_reward.append(metrics.get("reward_t2", metrics["reward_t1"]))
      if config.log.samples_every and step % config.log.samples_every == 0:
        self.write_samples(step, eps)
      bar.set_postfix(stage=stage.name, **{
          k: f"{metrics[k]:.2f}" for k in ("reward_t1", "reward_t2", "loss")
          if k in metrics})
      bar.update(1)
      done = step + 1
      stage_end = done == stage.start + stage.steps
      if stage_end or (config.eval.every and done % config.eval.every == 0):
        name = (f"after_{stage.name}_step{done}" if stage_end else
                f"step{done}")
        results[name] = self.evaluate(name, done)
        self.log(done, "eval", {f"eval/{k}": v for k, v in
                                results[name].items()})
      if done % config.checkpoint.every == 0 or done == self.total_steps:
        reward = float(np.mean(last_reward)) if last_reward else None
        if self._writer is not None:
          # tensorboardX buffers events: a run killed after this save
          # resumes past the steps still in its buffer.
          self._writer.flush()
        self.checkpoints.save(done, self.state, self.ref_params, reward,
                              self._reference_step)
        last_reward = []
    bar.close()
    self.checkpoints.wait()
    self.write_plots()
    return results

  def schedule_reference_step(self, step: int) -> int:
    """The step whose policy this schedule makes the reference of a
    checkpoint at `step` (after steps 0 .. step - 1): the first RL stage's
    start once it has run, where only supervised stages come before it
    (run() takes the reference there), else 0 (the initial model)."""
    for stage in self.stages:
      if stage.name not in configs_lib.SFT_STAGES:
        taken = self._first_rl(stage) and stage.start < step
        return stage.start if taken else 0
    return 0

  def _first_rl(self, stage: configs_lib.Stage) -> bool:
    """True if `stage` is the first RL stage and warm start preceded it."""
    earlier = [s for s in self.stages if s.start < stage.start]
    return bool(earlier) and all(s.name in configs_lib.SFT_STAGES
                                 for s in earlier)

  def write_plots(self) -> None:
    if not self.main:
      return
    path = os.path.join(self.workdir, "metrics.jsonl")
    rows = [r for r in files.read_jsonl(path) if "reward_t1" in r]
    if rows:
      # Single-turn stages sample (and log) turn 1 only.
      logged = set().union(*rows)
      plots.plot_training_curves(
          rows, os.path.join(self.workdir, "eval", "training_curves.png"),
          reward_keys=[k for k in ("reward_t1", "reward_t2") if k in logged],
          delta_key="delta" if "delta" in logged else None)

  def close(self) -> None:
    self.checkpoints.close()
    if self._writer is not None:
      self._writer.close()
    if self._lock is not None:
      self._lock.close()  # the workdir's lock (run_state.lock_workdir)
      self._lock = None


# The report's mean edit-distance ratio between the first two turns.
EDIT_RATIO = "edit_ratio(t1,t2)"


def write_eval_report(workdir: str, name: str, eps, config: dict[str, Any]
                      ) -> dict[str, Any]:
  """Report JSON/Markdown, transcripts and the edit-distance histogram."""
  from score_jax.evaluation import edit_distance  # pylint: disable=g-import-not-at-top
  extra = {}
  if eps.rewards.shape[0] >= 2:
    ratios = np.asarray(edit_distance.edit_distance_ratios(
        list(eps.texts[0]), list(eps.texts[1])))
    extra[EDIT_RATIO] = ratios
    plots.plot_edit_distance_histogram(
        ratios, os.path.join(workdir, "eval", f"{name}_edit_distance.png"))
  summary = reports.summarize(eps.rewards, extra_values=extra)
  summary["config"].update(config)
  per_problem = [{"id": p.id, **{f"reward_t{t + 1}": float(eps.rewards[t, i])
                                 for t in range(eps.rewards.shape[0])}}
                 for i, p in enumerate(eps.rows)]
  reports.write_report(workdir, name, summary["metrics"],
                       per_problem=per_problem,
                       transcripts=episodes_lib.transcripts(eps, len(eps.rows)),
                       intervals=summary["intervals"],
                       config=summary["config"])
  return summary


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains per `config` under `workdir` (resuming if it holds a run)."""
  trainer = Trainer(config, workdir)
  try:
    return trainer.run()
  finally:
    trainer.close()
