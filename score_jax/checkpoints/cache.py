"""On-disk cache of converted params (dequantising a GGUF takes seconds).

An entry is a folder of one `.npy` per param leaf plus `config.json`, under
`$XDG_CACHE_HOME/score_jax` (or `~/.cache/score_jax`), keyed by the source
file's absolute path, size and mtime, so an edited or replaced file misses.
Entries are written to a temporary folder and renamed into place: a reader
never sees half an entry, and two writers racing leave one whole entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, Optional

from absl import logging
import numpy as np

from score_jax.checkpoints._atomic import atomic_dir
from score_jax.models.config import ModelConfig

# Bump when the conversion changes, so old entries are not reused.
FORMAT_VERSION = 1


def cache_root() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(base, "score_jax")


def cache_key(path: str, kind: str) -> str:
  """Hex key of a source file's identity (absolute path, size, mtime)."""
  st = os.stat(path)
  ident = (f"{kind}|v{FORMAT_VERSION}|{os.path.abspath(path)}|{st.st_size}|"
           f"{st.st_mtime_ns}")
  return hashlib.sha256(ident.encode()).hexdigest()[:32]


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    name = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, name + "."))
    else:
      out[name] = v
  return out


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for name, v in flat.items():
    *path, leaf = name.split(".")
    node = tree
    for k in path:
      node = node.setdefault(k, {})
    node[leaf] = v
  return tree


def read_entry(folder: str) -> Optional[tuple[ModelConfig, dict[str, Any]]]:
  """(config, numpy params) of a cache entry, or None if it is not whole."""
  try:
    with open(os.path.join(folder, "config.json")) as f:
      meta = json.load(f)
    # Memory-mapped: jnp.asarray copies straight from the page cache, 3x
    # faster than np.load on this machine.
    flat = {name: np.load(os.path.join(folder, name + ".npy"), mmap_mode="r")
            for name in meta["leaves"]}
  except (OSError, ValueError, KeyError):
    return None
  return ModelConfig.from_dict(meta["config"]), _unflatten(flat)


def write_entry(folder: str, config: ModelConfig, params: Any) -> None:
  """Writes an entry atomically (temp folder beside it, then rename)."""
  # Racing writers each rename a whole entry into place; the last one stays.
  with atomic_dir(folder, overwrite=True) as tmp:
    flat = _flatten(params)
    for name, v in flat.items():
      np.save(os.path.join(tmp, name + ".npy"), np.asarray(v))
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump({"config": config.to_dict(), "leaves": sorted(flat)}, f)


def cached(path: str, kind: str,
           convert: Callable[[], tuple[ModelConfig, Any]],
           root: Optional[str] = None) -> tuple[ModelConfig, Any, bool]:
  """(config, params, hit): the cached conversion of `path`, else `convert()`
  written to the cache. A cache that cannot be written is skipped."""
  folder = os.path.join(root or cache_root(), kind, cache_key(path, kind))
  entry = read_entry(folder)
  if entry is not None:
    return entry[0], entry[1], True
  config, params = convert()
  try:
    write_entry(folder, config, params)
  except OSError as e:  # read-only home: loading works, only slower next time
    logging.warning("score_jax: could not write cache entry %s: %s", folder, e)
  return config, params, False
