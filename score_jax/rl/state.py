"""Train state, optimizer, and the shardings of both.

The learning rate is an input of every step (`lr`), not an optimizer
schedule: the loop computes it from the global step and the stage schedule,
so a skipped (non-finite) step or a stage switch never shifts it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from score_jax import sharding as sharding_lib


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """AdamW with global-norm clipping (Adam when weight_decay == 0)."""
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  weight_decay: float = 0.0
  clip_norm: float = 1.0


def make_optimizer(config: OptimizerConfig) -> optax.GradientTransformation:
  return optax.chain(
      optax.clip_by_global_norm(config.clip_norm),
      optax.inject_hyperparams(optax.adamw)(
          learning_rate=0.0, b1=config.b1, b2=config.b2, eps=config.eps,
          weight_decay=config.weight_decay),
  )


def hyperparams(optimizer: optax.GradientTransformation) -> dict[str, Any]:
  """The settings (b1, b2, eps, weight_decay, ...) a `make_optimizer`
  optimizer was built with, as its inject_hyperparams state holds them."""
  _, adam_state = optimizer.init({})
  return dict(adam_state.hyperparams)


def set_hyperparams(opt_state: Any, lr: jax.Array,
                    settings: dict[str, Any]) -> Any:
  """The chain's inject_hyperparams state with its settings replaced by
  `settings` (from `hyperparams`) and its learning rate by lr. The state
  keeps the settings it was made with: without this, a state restored from
  a run with other settings would go on training with those."""
  clip_state, adam_state = opt_state
  old = adam_state.hyperparams
  hyper = {k: jnp.asarray(settings.get(k, v), v.dtype) for k, v in old.items()}
  hyper["learning_rate"] = jnp.asarray(lr, old["learning_rate"].dtype)
  return clip_state, adam_state._replace(hyperparams=hyper)


@flax.struct.dataclass
class TrainState:
  """step int32[]: updates applied plus steps skipped; params; opt_state;
  skipped int32[]: consecutive non-finite steps (reset by a finite one)."""
  step: jax.Array
  params: Any
  opt_state: Any
  skipped: jax.Array


def init_state(params: Any, optimizer: optax.GradientTransformation
               ) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params),
                    skipped=jnp.zeros((), jnp.int32))


def state_shardings(abstract_state: TrainState, param_shardings: Any,
                    optimizer: optax.GradientTransformation,
                    ctx: sharding_lib.ShardingCtx) -> TrainState:
  """Shardings of a TrainState: optimizer moments like their params,
  everything else (counts, hyperparameters) replicated."""
  replicated = sharding_lib.replicated(ctx)
  opt = optax.tree_map_params(
      optimizer, lambda _, s: s,
      abstract_state.opt_state, param_shardings,
      transform_non_params=lambda _: replicated)
  return TrainState(step=replicated, params=param_shardings, opt_state=opt,
                    skipped=replicated)
