"""Our own params checkpoint: an Orbax tree with the ModelConfig beside it.

Layout of `<dir>`: `params/` (Orbax StandardCheckpointer) and `config.json`
(`{"format": "score_jax.params", "version": 1, "config": ModelConfig dict}`).
A save goes to a temporary folder next to `<dir>` and is renamed into place
(`_atomic.atomic_dir`): a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import jax

from score_jax.checkpoints._atomic import atomic_dir, destination
from score_jax.checkpoints.hf import ConversionError
from score_jax.models.config import ModelConfig

FORMAT = "score_jax.params"
VERSION = 1


def save_params(directory: str, config: ModelConfig, params: Any,
                overwrite: bool = False,
                tokenizer_spec: Optional[str] = None) -> str:
  """Writes `params` (numpy or jax arrays, possibly sharded) and `config`;
  `tokenizer_spec` (e.g. 'gguf:/path') is recorded for `load_model`."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:
    # Each process would fill its own temporary folder and wait for the
    # others' shards there forever.
    raise ValueError("save_params writes from one process; a multi-process "
                     "run saves with its trainer's checkpoints")
  directory = destination(directory)
  with atomic_dir(directory, overwrite) as tmp:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(os.path.join(tmp, "params"), params)
      ckptr.wait_until_finished()
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump({"format": FORMAT, "version": VERSION,
                 "config": config.to_dict(), "tokenizer": tokenizer_spec},
                f, indent=1)
  return directory


def _read_meta(directory: str) -> dict[str, Any]:
  path = os.path.join(directory, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{directory}: not a score_jax params checkpoint "
                            "(no config.json)")
  with open(path) as f:
    meta = json.load(f)
  if meta.get("format") != FORMAT:
    raise ConversionError(f"{path}: format {meta.get('format')!r}, expected "
                          f"{FORMAT!r}")
  return meta


def read_config(directory: str) -> ModelConfig:
  return ModelConfig.from_dict(_read_meta(directory)["config"])


def read_tokenizer_spec(directory: str) -> Optional[str]:
  """The tokenizer spec saved with the checkpoint, or None."""
  return _read_meta(directory).get("tokenizer")


def load_params(directory: str, target: Optional[Any] = None
                ) -> tuple[ModelConfig, Any]:
  """(config, params). `target`: a tree of `jax.ShapeDtypeStruct` (with
  shardings) to restore into; default: the saved shapes, as numpy arrays."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = os.path.abspath(os.fspath(directory))
  config = read_config(directory)
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(os.path.join(directory, "params"), target)
  _check_tree(params, config, directory)
  return config, params


def _check_tree(params: Any, config: ModelConfig, directory: str) -> None:
  """Every param the model needs is there with its shape."""
  from score_jax import models  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  want = nn.unbox(models.abstract_params(config))
  flat_want = dict(jax.tree_util.tree_flatten_with_path(want)[0])
  flat_got = dict(jax.tree_util.tree_flatten_with_path(params)[0])
  for path, spec in flat_want.items():
    name = jax.tree_util.keystr(path)
    if path not in flat_got:
      raise ConversionError(f"{directory}: missing param {name} (expected "
                            f"shape {spec.shape})")
    if tuple(flat_got[path].shape) != tuple(spec.shape):
      raise ConversionError(f"{directory}: param {name} has shape "
                            f"{tuple(flat_got[path].shape)}, expected "
                            f"{spec.shape}")
