"""The strict `Answer: <answer>` format of the arithmetic and procedural tasks.

Strict on purpose: the answer is read only from the LAST non-empty line of the
response, which must be `Answer: <answer>`; an answer anywhere else earns
nothing, so learning the format matters.
"""

import re
from typing import Optional

_LINE = re.compile(r"Answer:[ \t]*(.*?)[ \t]*")


def extract(response: str) -> Optional[str]:
  """The answer on the last non-empty line `Answer: X`, else None."""
  if not isinstance(response, str):
    raise TypeError(f"response must be str, got {type(response).__name__}")
  lines = [line for line in response.strip().splitlines() if line.strip()]
  if not lines:
    return None
  m = _LINE.fullmatch(lines[-1].strip())
  return m.group(1) if m and m.group(1) else None
