"""Self-correction metrics of the SCoRe paper from a reward matrix.

Every metric is the mean over problems of a per-problem value, so one function
gives the per-problem values (`self_correction_values`, what the bootstrap
resamples) and the metrics are their means (`self_correction_metrics`).

Rewards are expected to be binary. Non-binary rewards are thresholded:
a reward `>= threshold` (0.5 by default) counts as correct, anything below as
wrong, e.g. a unit-test pass rate of 0.6 counts as correct. Callers that need
"all tests pass" must pass binary rewards.

Keys (turns are 1-based, `N` turns):
  acc@t{i}            fraction of problems correct at turn i, for i = 1..N
  delta(t{i},t{j})    acc@t{j} - acc@t{i}
  delta_i2c(t{i},t{j}) fraction of ALL problems wrong at t{i} and right at t{j}
  delta_c2i(t{i},t{j}) fraction of ALL problems right at t{i} and wrong at t{j}
for each consecutive pair (t{i}, t{i+1}) and, when N > 2, for (t1, tN).
Note delta = delta_i2c - delta_c2i.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

DEFAULT_THRESHOLD = 0.5


def acc_key(turn: int) -> str:
  return f"acc@t{turn}"


def delta_key(first: int, second: int) -> str:
  return f"delta(t{first},t{second})"


def i2c_key(first: int, second: int) -> str:
  return f"delta_i2c(t{first},t{second})"


def c2i_key(first: int, second: int) -> str:
  return f"delta_c2i(t{first},t{second})"


def turn_pairs(num_turns: int) -> list[tuple[int, int]]:
  """1-based turn pairs the metrics cover: consecutive ones, then (1, N)."""
  pairs = [(t, t + 1) for t in range(1, num_turns)]
  if num_turns > 2:
    pairs.append((1, num_turns))
  return pairs


def binarize(rewards, threshold: float = DEFAULT_THRESHOLD,
             name: str = "rewards") -> np.ndarray:
  """bool[...] correctness: `rewards >= threshold`; rejects NaN/inf and text."""
  array = np.asarray(rewards)
  if array.dtype == bool:
    return array
  if not (np.issubdtype(array.dtype, np.integer)
          or np.issubdtype(array.dtype, np.floating)):
    raise ValueError(f"{name}: expected numeric or bool rewards, got dtype "
                     f"{array.dtype}")
  if not np.all(np.isfinite(array)):
    bad = np.argwhere(~np.isfinite(array))[0].tolist()
    raise ValueError(f"{name}: non-finite reward {array[tuple(bad)]} at index "
                     f"{bad}")
  return array >= threshold


def _check_matrix(rewards, threshold: float) -> np.ndarray:
  correct = binarize(rewards, threshold)
  if correct.ndim != 2:
    raise ValueError(f"rewards: expected shape [N_turns, P] (2-D), got shape "
                     f"{correct.shape}")
  num_turns, num_problems = correct.shape
  if num_turns < 1 or num_problems < 1:
    raise ValueError(f"rewards: need at least one turn and one problem, got "
                     f"shape {correct.shape} ([N_turns, P])")
  return correct


def _per_problem(correct: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
  for t in range(correct.shape[0]):
    yield acc_key(t + 1), correct[t]
  for first, second in turn_pairs(correct.shape[0]):
    before, after = correct[first - 1], correct[second - 1]
    yield delta_key(first, second), after.astype(np.int8) - before
    yield i2c_key(first, second), ~before & after
    yield c2i_key(first, second), before & ~after


def self_correction_values(rewards, threshold: float = DEFAULT_THRESHOLD
                           ) -> dict[str, np.ndarray]:
  """Per-problem values whose means are the metrics.

  Args:
    rewards: [N_turns, P] rewards of each turn's attempt (bool, int or float).
    threshold: a reward >= threshold is correct.

  Returns:
    {key: float64[P]} in the key order of the module docstring; entries are
    0/1 (accuracies, flips) or -1/0/1 (delta).
  """
  correct = _check_matrix(rewards, threshold)
  return {k: v.astype(np.float64) for k, v in _per_problem(correct)}


def self_correction_metrics(rewards, threshold: float = DEFAULT_THRESHOLD
                            ) -> dict[str, float]:
  """Acc@t_i, Δ, Δ^{i→c}, Δ^{c→i} as fractions in [0, 1] (Δ in [-1, 1]).

  Args:
    rewards: [N_turns, P] rewards, one row per turn, one column per problem.
    threshold: a reward >= threshold is correct (see module docstring).
  """
  values = self_correction_values(rewards, threshold)
  return {k: float(v.mean()) for k, v in values.items()}
