"""One module per `score-jax` command (flags are defined on import)."""

import contextlib
import os
import sys
from typing import Iterator, NoReturn

# What bad input raises: a missing or unreadable file, an unknown name, a
# value out of range.
INPUT_ERRORS = (KeyError, ValueError, OSError)


@contextlib.contextmanager
def bad_input(command: str) -> Iterator[None]:
  """Around the part of a command that only reads its input (flags, config,
  files, model specs): an error there is the user's to fix, shown as one
  line, `score-jax <command>: <message>`, exit status 2, not a traceback
  (SCORE_JAX_TRACEBACK=1 shows it)."""
  try:
    yield
  except INPUT_ERRORS as e:
    if os.environ.get("SCORE_JAX_TRACEBACK"):
      raise
    fail(command, message(e))


def fail(command: str, text: str) -> NoReturn:
  """Bad input: `score-jax <command>: <text>` on stderr, exit status 2."""
  print(f"score-jax {command}: {text}", file=sys.stderr)
  raise SystemExit(2)


def message(error: BaseException) -> str:
  """An exception's text: a KeyError's without the quotes repr adds, and an
  error that wraps one (ml_collections' AttributeError) by the inner one."""
  if len(error.args) == 1 and isinstance(error.args[0], BaseException):
    return message(error.args[0])
  if isinstance(error, KeyError) and len(error.args) == 1:
    return str(error.args[0])
  return str(error)
