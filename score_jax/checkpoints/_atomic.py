"""Write a directory atomically: fill a temporary sibling, then rename it.

A crash or an error mid-write leaves the destination as it was (absent, or
the previous version), never half-written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_dir(directory: str, overwrite: bool = False) -> Iterator[str]:
  """Yields a temporary folder that becomes `directory` on a clean exit."""
  directory = os.path.abspath(os.fspath(directory))
  if os.path.exists(directory) and not overwrite:
    raise FileExistsError(f"{directory} exists; pass overwrite=True to "
                          "replace it")
  parent = os.path.dirname(directory)
  os.makedirs(parent, exist_ok=True)
  name = os.path.basename(directory)
  tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
  os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private
  try:
    yield tmp
    if os.path.exists(directory):
      old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
      os.rename(directory, os.path.join(old, name))
      os.rename(tmp, directory)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(tmp, directory)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
