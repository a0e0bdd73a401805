"""Atomic file writes and strict JSON for reports.

A report is written to a temporary file in the target directory, flushed to
disk, then renamed over the target: a process killed at any moment leaves
either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import tempfile
from typing import Any, Iterable, Union

import numpy as np

PathLike = Union[str, os.PathLike]


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def local_path(path: PathLike, what: str) -> str:
  """`path` if it names a file system path; a URL (gs://, s3://, ...) is an
  error naming `what`: workdirs and checkpoints are written with local file
  operations (temp file + rename), which object stores do not give."""
  path = os.fspath(path)
  if _URL.match(path):
    raise ValueError(
        f"{what}={path}: a URL, not a directory. score-jax writes it with "
        "local file operations; on several hosts use a directory every host "
        "mounts at the same path (NFS/Filestore, or a bucket mounted with "
        "Cloud Storage FUSE: `gcsfuse --implicit-dirs BUCKET /mnt/BUCKET`, "
        "then /mnt/BUCKET/...)")
  return path


def umask() -> int:
  """The process's umask (reading it means setting it: set back at once)."""
  mask = os.umask(0)
  os.umask(mask)
  return mask


def atomic_write_bytes(path: PathLike, data: bytes) -> pathlib.Path:
  """Writes `data` to `path` via temp file + fsync + rename; returns path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                             suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it private
    os.replace(tmp, path)
  except BaseException:
    try:
      os.unlink(tmp)
    except FileNotFoundError:
      pass
    raise
  return path


def atomic_write_text(path: PathLike, text: str) -> pathlib.Path:
  return atomic_write_bytes(path, text.encode("utf-8"))


def _default(obj: Any):
  """JSON for numpy scalars/arrays and paths; anything else is an error."""
  if isinstance(obj, np.bool_):
    return bool(obj)
  if isinstance(obj, np.integer):
    return int(obj)
  if isinstance(obj, np.floating):
    return float(obj)
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if isinstance(obj, (pathlib.PurePath,)):
    return str(obj)
  raise TypeError(f"not JSON serialisable: {type(obj).__name__} {obj!r:.80}")


def to_json(obj: Any, what: str, indent: int | None = None) -> str:
  """Strict JSON (no NaN/inf: other tools cannot read them); names `what`."""
  try:
    return json.dumps(obj, default=_default, allow_nan=False, indent=indent)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{what}: cannot be written as JSON: {e}") from e


def to_jsonl(rows: Iterable[Any], what: str) -> str:
  return "".join(to_json(row, f"{what} row {i}") + "\n"
                 for i, row in enumerate(rows))


def read_jsonl(path: PathLike) -> list[dict]:
  """Rows of a JSON-lines file, e.g. a run's metrics.jsonl.

  A final line without its newline that does not parse is what a process
  killed mid-append leaves: it is skipped with a warning. Any other bad line
  is an error naming the file and line.
  """
  path = pathlib.Path(path)
  text = path.read_text(encoding="utf-8")
  lines = text.split("\n")
  rows = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      if number == len(lines):  # last piece, no newline after it
        logging.warning("%s:%d: skipping incomplete last line (%s)", path,
                        number, e)
        continue
      raise ValueError(f"{path}:{number}: not a JSON line: {e}") from e
    if not isinstance(row, dict):
      raise ValueError(f"{path}:{number}: expected a JSON object, got "
                       f"{type(row).__name__}")
    rows.append(row)
  return rows
