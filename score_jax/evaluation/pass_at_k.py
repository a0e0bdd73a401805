"""Unbiased pass@k from n samples per problem (Chen et al. 2021, HumanEval).

pass@k = E_problems[1 - C(n - c, k) / C(n, k)], with n samples of which c are
correct: the probability that k samples drawn without replacement from the n
contain at least one correct one. Computed as the numerically stable product
1 - prod_{i=n-c+1}^{n} (1 - k / i) of the paper's reference code.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from score_jax.evaluation import metrics


def pass_at_k(num_samples, num_correct, k: int) -> np.ndarray:
  """Per-problem unbiased pass@k.

  Args:
    num_samples: int[P] (or scalar) n, samples drawn for each problem.
    num_correct: int[P] (or scalar) c, correct samples among them.
    k: attempts allowed, 1 <= k <= n.

  Returns:
    float64[P] (shape of the broadcast inputs) in [0, 1].
  """
  n, c = np.broadcast_arrays(np.asarray(num_samples), np.asarray(num_correct))
  for name, a in (("num_samples", n), ("num_correct", c)):
    if not np.issubdtype(a.dtype, np.integer):
      raise ValueError(f"pass_at_k: {name} must be integers, got {a.dtype}")
  if np.any(c < 0) or np.any(c > n):
    raise ValueError("pass_at_k: need 0 <= num_correct <= num_samples for "
                     "every problem")
  if k < 1 or np.any(n < k):
    raise ValueError(f"pass_at_k: need 1 <= k <= num_samples, got k={k} and "
                     f"num_samples min {int(n.min()) if n.size else None}")
  out = np.empty(n.shape, np.float64)
  for index in np.ndindex(n.shape):
    ni, ci = int(n[index]), int(c[index])
    if ni - ci < k:  # every k-subset holds a correct sample
      out[index] = 1.0
    else:
      out[index] = 1.0 - np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1))
  return out


def pass_at_k_values(rewards, ks: Sequence[int] = (1,),
                     threshold: float = metrics.DEFAULT_THRESHOLD
                     ) -> dict[str, np.ndarray]:
  """{"pass@k": float64[P]} per-problem values from rewards [n, P].

  Args:
    rewards: [n, P] rewards of n independent samples (rows) per problem
      (columns), the same layout as the [N_turns, P] turn rewards.
    ks: the k values to report; each must be <= n.
    threshold: a reward >= threshold is correct.
  """
  correct = metrics.binarize(rewards, threshold)
  if correct.ndim != 2 or correct.shape[0] < 1 or correct.shape[1] < 1:
    raise ValueError(f"pass_at_k: rewards must have shape [n_samples, P] with "
                     f"n, P >= 1, got {correct.shape}")
  n = np.full(correct.shape[1], correct.shape[0])
  c = correct.sum(axis=0)
  return {f"pass@{k}": pass_at_k(n, c, k) for k in ks}


def pass_at_k_metrics(rewards, ks: Sequence[int] = (1,),
                      threshold: float = metrics.DEFAULT_THRESHOLD
                      ) -> dict[str, float]:
  """{"pass@k": mean over problems} from rewards [n, P] (pass_at_k_values)."""
  return {k: float(v.mean())
          for k, v in pass_at_k_values(rewards, ks, threshold).items()}
