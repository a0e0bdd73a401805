"""Advantage estimators: a small registry of baselines for REINFORCE.

An estimator maps returns float[..., B] to advantages float32[..., B] along
the last axis (leading axes, e.g. the turn axis of [2, B], are independent).
Rows are prompt-major: row p * k + j is sample j of prompt p.

  none  A = r                                   (no baseline)
  mean  A = r - mean_batch(r)
  rloo  A = r - mean of the other k - 1 samples of the same prompt  (default)

RLOO's baseline does not depend on the sample it is subtracted from, so the
gradient stays unbiased; per prompt the advantages sum to zero.

`mean` is registered `whole_batch=True`: its baseline needs every row of the
step, so it cannot be computed per micro-batch (gradient accumulation splits
a batch into groups of whole prompts, which is all `none` and `rloo` need).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
AdvantageFn = Callable[[Array, int], Array]  # (returns [..., B], k) -> [..., B]

_ESTIMATORS: dict[str, AdvantageFn] = {}
_WHOLE_BATCH: set[str] = set()


def register_advantage(name: str, whole_batch: bool = False
                       ) -> Callable[[AdvantageFn], AdvantageFn]:
  """Decorator: `@register_advantage("name")` adds an estimator fn(r, k).
  whole_batch: its value for a row depends on rows of other prompts, so it
  must see the whole step's batch (no micro-batching)."""

  def add(fn: AdvantageFn) -> AdvantageFn:
    if name in _ESTIMATORS:
      raise ValueError(f"advantage estimator {name!r} is already registered")
    _ESTIMATORS[name] = fn
    if whole_batch:
      _WHOLE_BATCH.add(name)
    return fn

  return add


def check_micro_batches(name: str, micro_batches: int) -> None:
  """Raises if estimator `name` cannot run on `micro_batches` > 1 parts of a
  batch (each part would get its own baseline, not the batch's)."""
  get_advantage(name)
  if micro_batches > 1 and name in _WHOLE_BATCH:
    raise ValueError(
        f"advantage estimator {name!r} takes its baseline over the whole "
        f"batch, but step.micro_batches={micro_batches} would give each "
        "micro-batch its own; use micro_batches=1 or a per-prompt estimator "
        "(rloo, none)")


def advantage_names() -> tuple[str, ...]:
  return tuple(sorted(_ESTIMATORS))


def get_advantage(name: str) -> AdvantageFn:
  try:
    return _ESTIMATORS[name]
  except KeyError:
    raise ValueError(f"unknown advantage estimator {name!r}; known: "
                     f"{', '.join(advantage_names())}") from None


def compute_advantages(returns: Array, name: str = "rloo", k: int = 1) -> Array:
  """returns float[..., B] -> float32[..., B] with the named estimator.

  k: samples per prompt (B must be a multiple of k for 'rloo').
  """
  if returns.ndim < 1:
    raise ValueError("returns must be float[..., B], got a scalar")
  return get_advantage(name)(returns.astype(jnp.float32), k)


@register_advantage("none")
def _none(r: Array, k: int) -> Array:
  del k
  return r


@register_advantage("mean", whole_batch=True)
def _batch_mean(r: Array, k: int) -> Array:
  del k
  return r - jnp.mean(r, axis=-1, keepdims=True)


@register_advantage("rloo")
def _leave_one_out(r: Array, k: int) -> Array:
  b = r.shape[-1]
  if k < 2:
    raise ValueError(f"rloo needs k >= 2 samples per prompt, got k={k}")
  if b % k:
    raise ValueError(f"rloo: batch of {b} rows is not a whole number of "
                     f"prompts with k={k} samples each")
  groups = r.reshape(r.shape[:-1] + (b // k, k))
  others = (jnp.sum(groups, axis=-1, keepdims=True) - groups) / (k - 1)
  return (groups - others).reshape(r.shape)
