"""Fast reader of a GGUF file's key/value metadata (no tensor data).

`gguf.GGUFReader` builds a numpy view per array element, which takes ~14 s for
Gemma 3's 262,144-piece vocabulary on a 2-core CPU. This reader walks only the
metadata section of the file with `struct`, returns numeric arrays as numpy
arrays and string arrays as lists of str, and takes well under a second. A test
checks it against `GGUFReader` on the real files.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Any

import numpy as np

_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
# GGUF value type -> (struct format, numpy dtype)
_SCALARS = {
    0: ("<B", np.uint8), 1: ("<b", np.int8), 2: ("<H", np.uint16),
    3: ("<h", np.int16), 4: ("<I", np.uint32), 5: ("<i", np.int32),
    6: ("<f", np.float32), 7: ("<?", np.bool_), 10: ("<Q", np.uint64),
    11: ("<q", np.int64), 12: ("<d", np.float64),
}
_STRING, _ARRAY = 8, 9


class GGUFFormatError(ValueError):
  """The file is not a GGUF file, or its metadata section is malformed."""


def read_gguf_metadata(path: str) -> dict[str, Any]:
  """All metadata of a GGUF file: {key: int | float | bool | str | list[str] | np.ndarray}.

  Raises FileNotFoundError for a missing file and GGUFFormatError (naming the
  file) for a wrong magic, an unknown version or a truncated/malformed header.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"GGUF file not found: {path}")
  with open(path, "rb") as f:
    size = os.fstat(f.fileno()).st_size
    if size < 24:
      raise GGUFFormatError(f"{path} is not a GGUF file: only {size} bytes")
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
      if buf[:4] != _MAGIC:
        raise GGUFFormatError(f"{path} is not a GGUF file: it starts with "
                              f"{bytes(buf[:4])!r}, expected {_MAGIC!r}")
      version, _, count = struct.unpack_from("<IQQ", buf, 4)
      if version not in _VERSIONS:
        raise GGUFFormatError(f"{path}: GGUF version {version} is not "
                              f"supported (expected one of {_VERSIONS})")
      try:
        return _read_pairs(buf, 24, count)
      except (struct.error, IndexError, UnicodeDecodeError, ValueError) as e:
        raise GGUFFormatError(
            f"{path}: malformed or truncated GGUF metadata ({e})") from e


def _read_pairs(buf, pos: int, count: int) -> dict[str, Any]:
  out = {}
  for _ in range(count):
    key, pos = _read_str(buf, pos)
    (vtype,) = struct.unpack_from("<I", buf, pos)
    out[key], pos = _read_value(buf, pos + 4, vtype, key)
  return out


def _read_str(buf, pos: int) -> tuple[str, int]:
  (n,) = struct.unpack_from("<Q", buf, pos)
  end = pos + 8 + n
  if end > len(buf):
    raise ValueError(f"string of {n} bytes at offset {pos} runs past the end")
  return buf[pos + 8:end].decode("utf-8"), end


def _read_value(buf, pos: int, vtype: int, key: str) -> tuple[Any, int]:
  if vtype in _SCALARS:
    fmt, _ = _SCALARS[vtype]
    (v,) = struct.unpack_from(fmt, buf, pos)
    return v, pos + struct.calcsize(fmt)
  if vtype == _STRING:
    return _read_str(buf, pos)
  if vtype == _ARRAY:
    etype, n = struct.unpack_from("<IQ", buf, pos)
    pos += 12
    if etype in _SCALARS:
      dtype = np.dtype(_SCALARS[etype][1])
      end = pos + n * dtype.itemsize
      if end > len(buf):
        raise ValueError(f"array {key!r} runs past the end of the file")
      return np.frombuffer(buf[pos:end], dtype=dtype).copy(), end
    if etype == _STRING:
      values = []
      for _ in range(n):
        s, pos = _read_str(buf, pos)
        values.append(s)
      return values, pos
    raise ValueError(f"array {key!r} has element type {etype}, expected a "
                     f"scalar or string type")
  raise ValueError(f"key {key!r} has value type {vtype}, which GGUF does not "
                   f"define")
