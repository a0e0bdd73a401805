"""Write a directory atomically: fill a temporary sibling, then rename it.

A crash or an error mid-write leaves the destination as it was (absent, or
the previous version), never half-written. Replacing a directory takes two
renames (the old version aside, the new one in); a crash between them leaves
the old version in a hidden `.name.old-*` sibling, which the next
`atomic_dir` on that destination puts back first. A crash while the old
version is deleted leaves a part of it, renamed first so that it is never
put back; the next `atomic_dir` deletes it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from typing import Iterator

from score_jax.evaluation.files import local_path, umask


_DELETED = "deleted"  # a replaced version, in its `.name.old-*` folder


def destination(directory: str) -> str:
  """The absolute path `atomic_dir(directory)` writes; a URL is an error
  (the write is a local temp folder and a rename). Writers that prepare
  their data first call it to fail before that work."""
  return os.path.abspath(local_path(directory, "checkpoint directory"))


def _put_back_hidden(directory: str) -> None:
  """If `directory` is missing but a crashed replacement hid its previous
  version, renames the newest such version back into place. Deletes what a
  crash left of replaced versions being deleted."""
  parent, name = os.path.split(directory)
  for deleted in glob.glob(os.path.join(
      glob.escape(parent), glob.escape(f".{name}.old-") + "*", _DELETED)):
    shutil.rmtree(os.path.dirname(deleted), ignore_errors=True)
  if os.path.exists(directory):
    return
  hidden = glob.glob(os.path.join(glob.escape(parent),
                                  glob.escape(f".{name}.old-") + "*", name))
  if hidden:
    newest = max(hidden, key=lambda p: os.path.getmtime(os.path.dirname(p)))
    os.rename(newest, directory)
    shutil.rmtree(os.path.dirname(newest), ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(directory: str, overwrite: bool = False) -> Iterator[str]:
  """Yields a temporary folder that becomes `directory` on a clean exit."""
  directory = destination(directory)
  _put_back_hidden(directory)
  if os.path.exists(directory) and not overwrite:
    raise FileExistsError(f"{directory} exists; pass overwrite=True to "
                          "replace it")
  parent = os.path.dirname(directory)
  os.makedirs(parent, exist_ok=True)
  name = os.path.basename(directory)
  tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
  os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private
  try:
    yield tmp
    if os.path.exists(directory):
      old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
      os.rename(directory, os.path.join(old, name))
      try:
        os.rename(tmp, directory)
      except BaseException:
        # The previous version back, unless a racing writer's is there now.
        if not os.path.exists(directory):
          os.rename(os.path.join(old, name), directory)
        raise
      else:
        # Out of `_put_back_hidden`'s sight before it is deleted: a crash
        # mid-delete must not leave a part of it to be put back later.
        os.rename(os.path.join(old, name), os.path.join(old, _DELETED))
      finally:
        shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(tmp, directory)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
