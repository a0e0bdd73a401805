"""Paired percentile-bootstrap confidence intervals for means over problems.

All metrics of a run are resampled with the SAME resampled problem sets, so
intervals of Acc@t1, Acc@t2 and Δ come from one joint distribution (paired
across turns). A resample is represented by counts: W[r, p] = how often problem
p was drawn in resample r, so every metric of every resample is one matrix
product W @ values.T / P, with no gather of the [R, P] index array per metric.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0
# Resamples drawn per chunk: bounds memory at ~chunk * P * 8 bytes. Fixed, so
# the intervals depend only on (values, num_resamples, confidence, seed).
_CHUNK = 256


def _stack(values: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
  if not values:
    raise ValueError("bootstrap: no metrics given")
  names, rows = [], []
  for name, v in values.items():
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
      raise ValueError(f"bootstrap: metric {name!r} needs per-problem values "
                       f"float[P] with P >= 1, got shape {v.shape}")
    if rows and v.shape != rows[0].shape:
      raise ValueError(f"bootstrap: metric {name!r} has {v.size} problems, "
                       f"{names[0]!r} has {rows[0].size}; paired resampling "
                       f"needs the same problems for every metric")
    if not np.all(np.isfinite(v)):
      raise ValueError(f"bootstrap: metric {name!r} has non-finite values")
    names.append(name)
    rows.append(v)
  return names, np.stack(rows)


def bootstrap_means(values: np.ndarray, num_resamples: int = DEFAULT_RESAMPLES,
                    seed: int = DEFAULT_SEED) -> np.ndarray:
  """Means of `values` [M, P] over R resamples of the P problems -> [R, M]."""
  num_problems = values.shape[1]
  rng = np.random.default_rng(seed)
  out = np.empty((num_resamples, values.shape[0]), np.float64)
  for start in range(0, num_resamples, _CHUNK):
    rows = min(_CHUNK, num_resamples - start)
    draws = rng.integers(0, num_problems, size=(rows, num_problems))
    draws += np.arange(rows)[:, None] * num_problems
    counts = np.bincount(draws.ravel(), minlength=rows * num_problems)
    counts = counts.reshape(rows, num_problems).astype(np.float64)
    out[start:start + rows] = counts @ values.T / num_problems
  return out


def bootstrap_intervals(values: Mapping[str, np.ndarray], *,
                        num_resamples: int = DEFAULT_RESAMPLES,
                        confidence: float = DEFAULT_CONFIDENCE,
                        seed: int = DEFAULT_SEED
                        ) -> dict[str, tuple[float, float]]:
  """Percentile-bootstrap interval of the mean of each per-problem metric.

  Args:
    values: {name: float[P]} per-problem values (e.g. from
      `self_correction_values`); every entry covers the same P problems.
    num_resamples: R, resamples of the P problems drawn with replacement.
    confidence: interval mass, e.g. 0.95 gives the 2.5% and 97.5% quantiles.
    seed: seed of the resampling; fixed seed -> identical intervals.

  Returns:
    {name: (low, high)} in the units of the values (fractions for metrics).
  """
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"bootstrap: confidence must be in (0, 1), got "
                     f"{confidence}")
  if int(num_resamples) != num_resamples or num_resamples < 1:
    raise ValueError(f"bootstrap: num_resamples must be a positive integer, "
                     f"got {num_resamples}")
  names, stacked = _stack(values)
  means = bootstrap_means(stacked, int(num_resamples), seed)
  tail = (1.0 - confidence) / 2.0
  low, high = np.quantile(means, [tail, 1.0 - tail], axis=0)
  return {n: (float(lo), float(hi)) for n, lo, hi in zip(names, low, high)}
