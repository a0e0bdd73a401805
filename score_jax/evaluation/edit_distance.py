"""How much the second attempt changed the first: a normalised edit distance.

`edit_distance_ratio(a, b) = levenshtein(a, b) / max(len(a), len(b))`, in
[0, 1]: 0 means the second attempt repeats the first exactly, 1 means nothing
could be kept in place. Levenshtein distance counts single-element insertions,
deletions and substitutions, each of cost 1 (exact, not difflib's similarity
heuristic). On `str` inputs the elements are Unicode code points (characters,
not bytes, not grapheme clusters); on sequences of ints they are token ids.
Two empty attempts have ratio 0.

Algorithm: the common prefix and suffix are stripped (free when the model
repeats itself), then Myers' bit-parallel dynamic programme (Myers 1999, in
Hyyrö's 2003 form for Levenshtein distance) runs over the longer sequence with
one column of the O(n * m) table packed into a Python int of min(n, m) bits:
O(max(n, m) * min(n, m) / 64) word operations, ~8 ms for two 3,000-character
attempts.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

Attempt = Union[str, Sequence[int], np.ndarray]


def _elements(x: Attempt, name: str) -> Union[str, list[int]]:
  if isinstance(x, str):
    return x
  array = np.asarray(x)
  if array.ndim != 1 or not (array.size == 0
                             or np.issubdtype(array.dtype, np.integer)):
    raise ValueError(f"edit distance: {name} must be a str or a 1-D sequence "
                     f"of int token ids, got {type(x).__name__} with dtype "
                     f"{array.dtype} and shape {array.shape}")
  return array.tolist()


def _strip_common_ends(a, b):
  n = min(len(a), len(b))
  prefix = 0
  while prefix < n and a[prefix] == b[prefix]:
    prefix += 1
  suffix = 0
  while suffix < n - prefix and a[-1 - suffix] == b[-1 - suffix]:
    suffix += 1
  return a[prefix:len(a) - suffix], b[prefix:len(b) - suffix]


def _myers(a, b) -> int:
  """Levenshtein distance, bit-parallel; bit i of a column word is row i.

  vp / vn hold where the DP column steps +1 / -1 from row i-1 to row i; only
  the bottom row's score (row len(a)) is tracked. The masks keep the words at
  len(a) bits (Python's ~ yields negative, infinitely sign-extended ints;
  bits above the pattern only ever flow upwards, so masking is exact).
  """
  if len(a) > len(b):
    a, b = b, a  # the shorter one is packed into the word
  if not a:
    return len(b)
  match = {}
  for i, element in enumerate(a):
    match[element] = match.get(element, 0) | (1 << i)
  full, last = (1 << len(a)) - 1, 1 << (len(a) - 1)
  vp, vn, distance = full, 0, len(a)
  for element in b:
    x = match.get(element, 0) | vn
    d0 = (((x & vp) + vp) ^ vp) | x
    hp = vn | ~(d0 | vp)
    hn = d0 & vp
    if hp & last:
      distance += 1
    elif hn & last:
      distance -= 1
    hp = (hp << 1) | 1
    hn <<= 1
    vp = (hn | ~(d0 | hp)) & full
    vn = hp & d0 & full
  return distance


def levenshtein(a: Attempt, b: Attempt) -> int:
  """Levenshtein distance between two strings or two token-id sequences."""
  if isinstance(a, str) != isinstance(b, str):
    raise ValueError("edit distance: a pair mixes a str and tokens; compare "
                     "str with str or tokens with tokens")
  x, y = _elements(a, "first attempt"), _elements(b, "second attempt")
  return _myers(*_strip_common_ends(x, y))


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
