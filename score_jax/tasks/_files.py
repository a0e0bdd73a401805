"""Reading dataset files: JSONL (one object per line) and JSON arrays."""

import json
import os


def read_records(path: str, skips) -> list:
  """[(line_or_index, dict)] from a .jsonl or .json file.

  Unparseable lines and non-object rows are counted in `skips` (a SkipLog),
  never silently dropped.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"dataset file not found: {path}")
  with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is not data
    text = f.read()
  if text.lstrip().startswith("["):
    try:
      rows = json.loads(text)
    except ValueError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from e
    numbered = list(enumerate(rows))
  else:
    numbered = []
    for i, line in enumerate(text.splitlines(), 1):
      if not line.strip():
        continue
      try:
        numbered.append((i, json.loads(line)))
      except ValueError:
        skips.skip(f"{path}:{i}", "invalid JSON")
  out = []
  for where, row in numbered:
    if isinstance(row, dict):
      out.append((where, row))
    else:
      skips.skip(f"{path}:{where}", "not a JSON object")
  return out


def require_str(row: dict, *keys):
  """The named fields if each is a non-empty str, else None."""
  values = [row.get(k) for k in keys]
  if all(isinstance(v, str) and v.strip() for v in values):
    return values
  return None
