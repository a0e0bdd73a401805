"""The decoder, its configs and presets, params and the KV cache."""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from score_jax import sharding as _sharding
from score_jax.models.config import GLOBAL_WINDOW, ModelConfig
from score_jax.models.presets import PRESETS, get_preset
from score_jax.models.transformer import (CACHE_AXES, Transformer,
                                          cache_shapes, init_cache,
                                          positions_from_mask, unstack_layers)


def _boxed_init(config: ModelConfig):
  model = Transformer(config)
  tokens = jnp.zeros((1, 1), jnp.int32)

  def init_fn(rng):
    return model.init(rng, tokens, tokens, tokens > -1)["params"]

  return init_fn


def abstract_params(config: ModelConfig) -> Any:
  """Shapes/dtypes of the params, with logical names (no allocation)."""
  return jax.eval_shape(_boxed_init(config), jax.random.key(0))


def init_params(config: ModelConfig, rng: jax.Array,
                ctx: Optional[_sharding.ShardingCtx] = None) -> Any:
  """Random params; created directly sharded over ctx.mesh when ctx is given."""
  init_fn = _boxed_init(config)
  if ctx is None:
    return jax.jit(lambda r: nn.unbox(init_fn(r)))(rng)
  return _sharding.init_sharded(init_fn, ctx, rng)


def param_shardings(config: ModelConfig, ctx: _sharding.ShardingCtx) -> Any:
  """NamedSharding of every param, as a tree shaped like the params."""
  return _sharding.tree_shardings(abstract_params(config), ctx)


def count_params(config: ModelConfig) -> int:
  return sum(x.size for x in jax.tree.leaves(nn.unbox(abstract_params(config))))


__all__ = [
    "CACHE_AXES", "GLOBAL_WINDOW", "ModelConfig", "PRESETS", "Transformer",
    "abstract_params", "cache_shapes", "count_params", "get_preset", "init_cache",
    "init_params", "param_shardings", "positions_from_mask",
    "unstack_layers",
]
