"""Advantage estimators: hand values, RLOO's properties, the registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.rl import advantages
from score_jax.rl.advantages import (advantage_names, compute_advantages,
                                     get_advantage, register_advantage)


def test_hand_values():
  # One prompt, k = 3 samples with rewards 1, 0, 0.
  r = jnp.array([1.0, 0.0, 0.0])
  np.testing.assert_allclose(compute_advantages(r, "none", 3), [1, 0, 0])
  np.testing.assert_allclose(compute_advantages(r, "mean", 3),
                             [2 / 3, -1 / 3, -1 / 3], rtol=1e-6)
  # Leave-one-out: 1 - mean(0, 0) = 1; 0 - mean(1, 0) = -0.5.
  np.testing.assert_allclose(compute_advantages(r, "rloo", 3), [1, -.5, -.5])


def test_rloo_matches_explicit_leave_one_out_and_sums_to_zero_per_prompt():
  rng = np.random.default_rng(0)
  for k, prompts in [(2, 5), (4, 3), (7, 2)]:
    r = rng.normal(size=prompts * k).astype(np.float32)
    adv = np.asarray(compute_advantages(jnp.asarray(r), "rloo", k))
    expected = np.empty_like(r)
    for p in range(prompts):
      for j in range(k):
        others = [r[p * k + i] for i in range(k) if i != j]
        expected[p * k + j] = r[p * k + j] - np.mean(others)
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv.reshape(prompts, k).sum(-1), 0, atol=1e-5)


def test_rloo_baseline_does_not_depend_on_own_reward():
  # dA_j/dr_j = 1 exactly: the baseline of sample j ignores r_j (unbiased
  # REINFORCE); dA_j/dr_i = -1/(k-1) within a prompt, 0 across prompts.
  k = 3
  jac = jax.jacobian(lambda r: compute_advantages(r, "rloo", k))(
      jnp.arange(6.0))
  block = np.full((k, k), -1 / (k - 1)) + np.eye(k) * (1 + 1 / (k - 1))
  expected = np.kron(np.eye(2), block)
  np.testing.assert_allclose(jac, expected, rtol=1e-6, atol=1e-7)


def test_per_turn_rows_are_independent():
  r = jnp.array([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
  adv = compute_advantages(r, "rloo", 2)
  np.testing.assert_allclose(adv, [[1, -1, 0, 0], [0, 0, 1, -1]])
  np.testing.assert_allclose(compute_advantages(r, "mean", 2),
                             r - r.mean(-1, keepdims=True))


def test_jit_and_dtype():
  adv = jax.jit(compute_advantages, static_argnums=(1, 2))(
      jnp.array([1, 0, 1, 1], jnp.int32), "rloo", 2)
  assert adv.dtype == jnp.float32
  np.testing.assert_allclose(adv, [1, -1, 0, 0])


def test_bad_input_is_named():
  with pytest.raises(ValueError, match="k >= 2"):
    compute_advantages(jnp.ones(4), "rloo", 1)
  with pytest.raises(ValueError, match="not a whole number of prompts"):
    compute_advantages(jnp.ones(5), "rloo", 2)
  with pytest.raises(ValueError, match="unknown advantage estimator 'grpo'.*"
                     "mean, none, rloo"):
    get_advantage("grpo")
  with pytest.raises(ValueError, match="already registered"):
    register_advantage("rloo")(lambda r, k: r)


def test_register_a_new_estimator():
  name = "test_group_max"
  try:
    @register_advantage(name)
    def _group_max(r, k):
      g = r.reshape(-1, k)
      return (g - g.max(-1, keepdims=True)).reshape(r.shape)

    assert name in advantage_names()
    np.testing.assert_allclose(
        compute_advantages(jnp.array([1.0, 3.0, 2.0, 0.0]), name, 2),
        [-2, 0, 0, -2])
  finally:
    advantages._ESTIMATORS.pop(name, None)
