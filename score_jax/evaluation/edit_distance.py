"""How much the second attempt changed the first: a normalised edit distance.

`edit_distance_ratio(a, b) = levenshtein(a, b) / max(len(a), len(b))`, in
[0, 1]: 0 means the second attempt repeats the first exactly, 1 means nothing
could be kept in place. Levenshtein distance counts single-element insertions,
deletions and substitutions, each of cost 1. On `str` inputs the elements are
Unicode code points (characters, not bytes, not grapheme clusters); on
sequences of ints they are token ids. Two empty attempts have ratio 0.

Cost: O(n * m) time and O(min(n, m)) memory after stripping the common prefix
and suffix (free when the model repeats itself), with one numpy row per element
of the shorter sequence.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

Attempt = Union[str, Sequence[int], np.ndarray]


def _as_array(x: Attempt, name: str) -> np.ndarray:
  if isinstance(x, str):
    return np.frombuffer(x.encode("utf-32-le"), dtype=np.uint32)
  array = np.asarray(x)
  if array.ndim != 1 or not (array.size == 0
                             or np.issubdtype(array.dtype, np.integer)):
    raise ValueError(f"edit distance: {name} must be a str or a 1-D sequence "
                     f"of int token ids, got {type(x).__name__} with dtype "
                     f"{array.dtype} and shape {array.shape}")
  return array.astype(np.int64)


def _strip_common_ends(a: np.ndarray, b: np.ndarray):
  n = min(a.size, b.size)
  differ = a[:n] != b[:n]
  prefix = int(np.argmax(differ)) if differ.any() else n
  a, b = a[prefix:], b[prefix:]
  n = min(a.size, b.size)
  differ = a[a.size - n:][::-1] != b[b.size - n:][::-1]
  suffix = int(np.argmax(differ)) if differ.any() else n
  return a[:a.size - suffix], b[:b.size - suffix]


def levenshtein(a: Attempt, b: Attempt) -> int:
  """Levenshtein distance between two strings or two token-id sequences."""
  x, y = _as_array(a, "first"), _as_array(b, "second")
  if isinstance(a, str) != isinstance(b, str):
    raise ValueError("edit distance: compare str with str or tokens with "
                     "tokens, not a mix")
  x, y = _strip_common_ends(x, y)
  if x.size > y.size:
    x, y = y, x  # loop over the shorter, vectorise over the longer
  if x.size == 0:
    return int(y.size)
  cols = np.arange(y.size + 1)
  prev = cols.copy()
  row = np.empty_like(prev)
  for i, element in enumerate(x, start=1):
    # Substitution / match and deletion come from the previous row; the
    # insertion chain along the row, cur[j] = min_k<=j row[k] + (j - k), is a
    # running minimum of row - j.
    row[0] = i
    np.minimum(prev[:-1] + (y != element), prev[1:] + 1, out=row[1:])
    prev = np.minimum.accumulate(row - cols) + cols
  return int(prev[-1])


def edit_distance_ratio(a: Attempt, b: Attempt) -> float:
  """levenshtein(a, b) / max(len(a), len(b)) in [0, 1]; 0 for two empties."""
  longest = max(len(a), len(b))
  return levenshtein(a, b) / longest if longest else 0.0


def edit_distance_ratios(firsts: Sequence[Attempt],
                         seconds: Sequence[Attempt]) -> np.ndarray:
  """float64[P] edit_distance_ratio of each (first, second) attempt pair."""
  if len(firsts) != len(seconds):
    raise ValueError(f"edit distance: {len(firsts)} first attempts but "
                     f"{len(seconds)} second attempts")
  return np.array([edit_distance_ratio(a, b) for a, b in zip(firsts, seconds)],
                  dtype=np.float64)


def edit_distance_histogram(ratios, bins: int = 10
                            ) -> tuple[np.ndarray, np.ndarray]:
  """Counts of ratios in `bins` equal bins over [0, 1].

  Returns:
    (counts int64[bins], edges float64[bins + 1]); the last bin includes 1.0,
    so a ratio of exactly 1 (complete rewrite) is counted.
  """
  ratios = np.asarray(ratios, dtype=np.float64).ravel()
  if bins < 1:
    raise ValueError(f"edit distance histogram: bins must be >= 1, got {bins}")
  if ratios.size and (not np.all(np.isfinite(ratios)) or ratios.min() < 0
                      or ratios.max() > 1):
    raise ValueError("edit distance histogram: ratios must lie in [0, 1]")
  counts, edges = np.histogram(ratios, bins=bins, range=(0.0, 1.0))
  return counts.astype(np.int64), edges
