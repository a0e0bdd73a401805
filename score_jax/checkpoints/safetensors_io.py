"""HF model directories: `config.json` + `model.safetensors` (or shards listed
in `model.safetensors.index.json`), read and written.

Files are read with a small memory-mapped reader of the safetensors format
(8-byte header length, JSON header, raw little-endian data) so bfloat16
works without torch and a cut-off file is named as such.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Optional

import ml_dtypes
import numpy as np

from score_jax.checkpoints import hf
from score_jax.checkpoints._atomic import atomic_dir, destination
from score_jax.checkpoints.hf import ConversionError
from score_jax.models.config import ModelConfig

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
           "BF16": ml_dtypes.bfloat16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """All tensors of one .safetensors file, as read-only memory maps."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) < 8:
      raise ConversionError(f"{path}: truncated safetensors file ({size} "
                            "bytes, no header)")
    (n,) = struct.unpack("<Q", head)
    if 8 + n > size:
      raise ConversionError(f"{path}: not a safetensors file or truncated "
                            f"(header of {n} bytes, file of {size})")
    try:
      header = json.loads(f.read(n))
    except ValueError as e:
      raise ConversionError(f"{path}: corrupt safetensors header: {e}") from e
  data_size = size - 8 - n
  data = np.memmap(path, np.uint8, "r", offset=8 + n) if data_size else None
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    if info["dtype"] not in _DTYPES:
      raise ConversionError(f"{path}: tensor {name!r} has unsupported dtype "
                            f"{info['dtype']}; supported: {sorted(_DTYPES)}")
    begin, end = info["data_offsets"]
    if end > data_size:
      raise ConversionError(f"{path}: truncated file: tensor {name!r} needs "
                            f"data bytes up to {end}, file has {data_size}")
    dtype = np.dtype(_DTYPES[info["dtype"]])
    shape = tuple(info["shape"])
    if end - begin != dtype.itemsize * int(np.prod(shape)):
      raise ConversionError(f"{path}: tensor {name!r}: {end - begin} bytes "
                            f"do not hold {info['dtype']}{list(shape)}")
    out[name] = data[begin:end].view(dtype).reshape(shape)
  return out


def write_safetensors(path: str, tensors: dict[str, np.ndarray]) -> None:
  """Writes tensors (numpy, C order) as one .safetensors file."""
  header, offset = {"__metadata__": {"format": "pt"}}, 0
  arrays = {}
  for name in sorted(tensors):
    x = np.ascontiguousarray(tensors[name])
    if x.dtype not in _NAMES:
      raise ValueError(f"tensor {name!r}: dtype {x.dtype} cannot be written")
    header[name] = {"dtype": _NAMES[x.dtype], "shape": list(x.shape),
                    "data_offsets": [offset, offset + x.nbytes]}
    arrays[name] = x
    offset += x.nbytes
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)  # data starts 8-byte aligned
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for x in arrays.values():
      f.write(x.tobytes())


def read_hf_tensors(directory: str) -> dict[str, np.ndarray]:
  """Tensors of an HF directory: the single file or all indexed shards."""
  index = os.path.join(directory, INDEX)
  single = os.path.join(directory, SINGLE)
  if os.path.isfile(index):
    with open(index) as f:
      weight_map = json.load(f)["weight_map"]
    tensors = {}
    for shard in sorted(set(weight_map.values())):
      path = os.path.join(directory, shard)
      if not os.path.isfile(path):
        raise FileNotFoundError(f"{index} lists shard {shard!r}, which is "
                                "missing")
      tensors.update(read_safetensors(path))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
      raise ConversionError(f"{index}: tensors listed but not in their "
                            f"shards: {missing[:5]}")
    return tensors
  if os.path.isfile(single):
    return read_safetensors(single)
  raise FileNotFoundError(f"{directory}: no {SINGLE} or {INDEX}")


def read_hf(directory: str, dtype: Optional[Any] = None
            ) -> tuple[ModelConfig, dict[str, Any]]:
  """(config, numpy params) of an HF transformers model directory."""
  directory = os.fspath(directory)
  config_path = os.path.join(directory, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"{directory}: no config.json (not an HF model "
                            "directory)")
  with open(config_path) as f:
    config = hf.config_from_hf(json.load(f))
  tensors = read_hf_tensors(directory)
  # Tied models may still carry lm_head.weight; transformers ignores it too.
  return config, hf.params_from_hf(tensors, config, source=directory,
                                   dtype=dtype)


def write_hf(directory: str, config: ModelConfig, params: Any,
             max_shard_bytes: int = 2 * 1024**3, overwrite: bool = False,
             dtype: Any = np.float32) -> str:
  """Writes an HF directory that `AutoModelForCausalLM.from_pretrained`
  loads; shards above `max_shard_bytes` with an index. Atomic (temp+rename)."""
  directory = destination(directory)
  if os.path.exists(directory) and not overwrite:  # before converting
    raise FileExistsError(f"{directory} exists; pass overwrite=True")
  tensors = {k: np.asarray(v).astype(dtype)
             for k, v in hf.params_to_hf(params, config).items()}
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for name in sorted(tensors):
    if shards[-1] and size + tensors[name].nbytes > max_shard_bytes:
      shards.append({})
      size = 0
    shards[-1][name] = tensors[name]
    size += tensors[name].nbytes
  with atomic_dir(directory, overwrite) as tmp:
    hf_config = hf.config_to_hf(config)
    hf_config["torch_dtype"] = np.dtype(dtype).name
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(hf_config, f, indent=1)
    if len(shards) == 1:
      write_safetensors(os.path.join(tmp, SINGLE), shards[0])
    else:
      weight_map = {}
      for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(os.path.join(tmp, fname), shard)
        weight_map.update({name: fname for name in shard})
      total = sum(x.nbytes for x in tensors.values())
      with open(os.path.join(tmp, INDEX), "w") as f:
        json.dump({"metadata": {"total_size": total},
                   "weight_map": weight_map}, f, indent=1)
  return directory
