"""Checkpoints of a training run: Orbax CheckpointManager over the train
state and the frozen reference params, plus a best-by-training-reward copy.

Orbax writes each step to a temporary directory and renames it when complete,
so a run killed at any moment leaves either a whole checkpoint or none; a
restore only ever sees whole ones. Under several JAX processes every process
calls save and restore (each writes and reads its own shards of the arrays).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from typing import Any, Optional, TextIO

from absl import logging
import jax
import orbax.checkpoint as ocp


# ModelConfig fields that say how the model computes, not what a checkpoint
# holds: a run may restore another's weights under a different remat policy
# or compute dtype (e.g. remat to fit a smaller machine).
_COMPUTE_ONLY = ("remat_policy", "dtype", "output_vocab")


LOCK = ".lock"  # under a workdir, held while a run trains there


def lock_workdir(workdir: str) -> Optional[TextIO]:
  """Locks `workdir` for one training run (flock on its LOCK file) and
  returns the open file, which holds the lock until it is closed or its
  process dies (SIGKILL included). A second run on the same workdir, e.g.
  a job restarted while its first instance still runs, is refused: both
  would write the same checkpoints and metrics. None, with a warning,
  where the file system has no locks."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK)
  f = open(path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    f.close()
    if e.errno not in (errno.EAGAIN, errno.EACCES):
      logging.warning("%s: no lock (%s); make sure no other run trains in "
                      "this workdir", path, e)
      return None
    raise ValueError(
        f"{workdir} is in use: another training run holds {path}. Stop it "
        "first, or use another --workdir") from None
  return f


def _abstract(tree: Any, shardings: Any) -> Any:
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree,
      shardings)


def _save_args(state: Any, ref_params: Any, meta: dict) -> ocp.args.Composite:
  """What a checkpoint holds: train state, reference params, meta JSON."""
  return ocp.args.Composite(state=ocp.args.StandardSave(state),
                            ref=ocp.args.StandardSave(ref_params),
                            meta=ocp.args.JsonSave(meta))


class RunCheckpoints:
  """checkpoints/ keeps the last `keep` steps; checkpoints_best/ keeps the
  one with the highest training reward (the mean sampled reward of the last
  turn, turn 2 or turn 1 in single-turn RL, since the previous save).
  `meta` (JSON) records the model config, so a workdir holding another
  model is refused, not half-loaded (fields in _COMPUTE_ONLY may differ)."""

  def __init__(self, workdir: str, keep: int, async_save: bool,
               meta: dict[str, Any]):
    self.meta = meta
    self.latest = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save,
            create=True))
    self.best = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints_best"),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, best_fn=lambda m: m["train_reward"],
            best_mode="max", enable_async_checkpointing=async_save,
            create=True,
            # A step without its metrics is what a run killed while Orbax
            # deleted it left (every step saved here has them): Orbax's
            # default would keep it for good.
            keep_checkpoints_without_metrics=False,
            # Both managers save the same steps; under several processes
            # their barriers (named by step) must not collide.
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                barrier_sync_key_prefix="best")))

  def latest_step(self) -> Optional[int]:
    return self.latest.latest_step()

  def stored_meta(self, step: int,
                  source: Optional[ocp.CheckpointManager] = None
                  ) -> dict[str, Any]:
    """The meta JSON saved with `step` (of this run, or of `source`)."""
    return (source or self.latest).restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def check_meta(self, step: int,
                 source: Optional[ocp.CheckpointManager] = None) -> None:
    stored = self.stored_meta(step, source)
    want = json.loads(json.dumps(self.meta))  # tuples as JSON lists
    for key in ("model_spec", "model_config"):
      old, new = stored.get(key), want.get(key)
      if key == "model_config" and isinstance(old, dict) and isinstance(
          new, dict):
        old, new = ({k: v for k, v in d.items() if k not in _COMPUTE_ONLY}
                    for d in (old, new))
      if old == new:
        continue
      if isinstance(old, dict) and isinstance(new, dict):
        diff = {k: (old.get(k), new.get(k)) for k in sorted({*old, *new})
                if old.get(k) != new.get(k)}
        what = ", ".join(f"{k}: {a!r} there, {b!r} here"
                         for k, (a, b) in diff.items())
      else:
        what = f"{old!r} there, {new!r} here"
      where = ("the workdir's checkpoint" if source is None else
               f"the checkpoint in {source.directory}")
      raise ValueError(
          f"{where} at step {step} was written for another model ({key} "
          f"differs: {what}). Use a new --workdir or the original config.")

  def save(self, step: int, state: Any, ref_params: Any,
           train_reward: Optional[float], reference_step: int = 0) -> None:
    """Saves `step` to checkpoints/ and offers it to checkpoints_best/. The
    latest checkpoint's meta keeps the training reward, so a run killed
    between the two saves offers it again when it resumes (`offer_best`),
    and the step whose policy `ref_params` is (0: the initial model)."""
    meta = {**self.meta, "reference_step": int(reference_step)}
    if train_reward is not None:
      meta["train_reward"] = float(train_reward)
    args = _save_args(state, ref_params, meta)
    self.latest.save(step, args=args)
    if train_reward is not None:
      self.best.save(step, args=args,
                     metrics={"train_reward": float(train_reward)})

  def offer_best(self, step: int, state: Any, ref_params: Any) -> None:
    """Offers checkpoints_best/ the latest checkpoint, `step`, restored as
    `state` and `ref_params`, where it has a training reward that the best
    kept does not beat and is not there: the run was killed between the two
    saves of `save`."""
    kept_steps = self.best.all_steps()
    if step in kept_steps:
      return
    meta = self.latest.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"]
    reward = meta.get("train_reward")
    kept = [_train_reward(str(self.best.directory), s) for s in kept_steps]
    if reward is None or (kept and max(kept) > reward):
      return  # nothing to offer, or it would not be kept
    logging.info("offering step %d to checkpoints_best (not saved there "
                 "before the run stopped)", step)
    self.best.save(step, args=_save_args(state, ref_params, meta),
                   metrics={"train_reward": float(reward)})

  def restore(self, step: int, state_like: Any, state_shardings: Any,
              ref_like: Any, ref_shardings: Any,
              source: Optional[ocp.CheckpointManager] = None
              ) -> tuple[Any, Any]:
    """State and reference at `step` of this run, or of `source` (another
    run's checkpoints, see `open_start`)."""
    manager = source or self.latest
    self.check_meta(step, source)
    out = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(state_like, state_shardings)),
        ref=ocp.args.StandardRestore(_abstract(ref_like, ref_shardings))))
    logging.info("restored step %d from %s", step, manager.directory)
    return out["state"], out["ref"]

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def finished_steps(directory: str) -> list[int]:
  """Committed checkpoint steps under `directory`, ascending (Orbax renames a
  finished save to its step number; temporary directories have other
  names)."""
  return sorted(int(name) for name in os.listdir(directory)
                if name.isdigit()
                and os.path.isdir(os.path.join(directory, name, "state")))


def find_checkpoint(path: str) -> Optional[tuple[str, int]]:
  """The training checkpoint `path` names: a step directory
  (`<workdir>/checkpoints/<step>`, holding state/), a checkpoints directory
  (`checkpoints`: its latest finished step; `checkpoints_best`: its step of
  the highest training reward) or a workdir (the latest step of its
  checkpoints/). Returns (the checkpoints directory, the step), or None
  when `path` is none of these; ValueError, naming the path, for a step
  directory not named by its number or a run without a finished
  checkpoint."""
  path = os.path.realpath(path)
  if os.path.isdir(os.path.join(path, "state")):
    directory, name = os.path.split(path)
    if not name.isdigit():
      raise ValueError(f"{path}: a checkpoint step directory is named by its "
                       "step number")
    return directory, int(name)
  if (os.path.basename(path) in ("checkpoints", "checkpoints_best")
      and os.path.isdir(path)):
    directory = path
  elif os.path.isdir(os.path.join(path, "checkpoints")):
    directory = os.path.join(path, "checkpoints")
  else:
    return None
  steps = finished_steps(directory)
  if not steps and os.path.basename(directory) == "checkpoints_best":
    raise ValueError(
        f"{directory}: holds no best checkpoint (steps are kept there by "
        "their training reward, which only RL, STaR and Pair-SFT steps have: "
        "a warm start alone has none); name the run's workdir or "
        "checkpoints/<step> instead")
  if not steps:
    raise ValueError(f"{directory}: holds no finished checkpoint (was the run "
                     "stopped before its first save?)")
  if os.path.basename(directory) == "checkpoints_best":
    # One step, except when a run stopped between saving a step and
    # dropping the worse one: the best, the latest of equals.
    return directory, max(steps, key=lambda s: (_train_reward(directory, s), s))
  return directory, steps[-1]


def _train_reward(directory: str, step: int) -> float:
  """The training reward `RunCheckpoints.best` saved with a step (Orbax's
  metrics item); -inf where it cannot be read."""
  try:
    with open(os.path.join(directory, str(step), "metrics", "metrics"),
              encoding="utf-8") as f:
      return float(json.load(f)["train_reward"])
  except (OSError, ValueError, KeyError, TypeError):
    return float("-inf")


def open_start(path: str) -> tuple[ocp.CheckpointManager, int]:
  """Another run's checkpoint to start from (`config.start_from`, any path
  `find_checkpoint` takes). Returns a read-only manager of that run's
  checkpoints and the step."""
  try:
    found = find_checkpoint(path)
  except ValueError as e:
    raise ValueError(f"config.start_from={path}: {e}") from None
  if found is None:
    raise ValueError(f"config.start_from={path}: neither a training workdir "
                     "(no checkpoints/) nor a checkpoint step directory "
                     "(no state/)")
  directory, step = found
  manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(read_only=True))
  if step not in manager.all_steps():
    manager.close()
    raise ValueError(f"config.start_from={path}: step {step} is not a "
                     "finished checkpoint")
  return manager, step
