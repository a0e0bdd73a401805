"""SCoRe objectives and per-token stats: hand-computed values on tiny inputs,
gradient structure, KL estimators against exact numbers, chunked == dense."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from score_jax import models
from score_jax.rl import (LossConfig, kl_estimate, kl_still_to_come,
                          kl_surrogate, loss_denominator, score_loss, sft_loss,
                          token_entropy, token_logprobs, token_stats,
                          token_stats_from_hidden)

LOG2 = math.log(2.0)
sg_ = jax.lax.stop_gradient

# --------------------------------------------------------------------------
# A tiny two-turn batch: one prompt, k = 2 samples, L = 6 laid out as
# [x | y1 y1 | p2 | y2 y2]. Sums of log-probs per turn: row 0: -3 and -2,
# row 1: -2 and -0.5. The p2 slot (-7) and x slot must never matter.
LP = np.array([[0.0, -1.0, -2.0, -7.0, -0.5, -1.5],
               [0.0, -1.0, -1.0, -7.0, -0.25, -0.25]], np.float32)
TURN1 = np.array([0, 1, 1, 0, 0, 0], bool)
TURN2 = np.array([0, 0, 0, 0, 1, 1], bool)


def tiny_batch(r1=(0.0, 1.0), r2=(1.0, 0.0)):
  masks = np.stack([np.tile(TURN1, (2, 1)), np.tile(TURN2, (2, 1))])
  return {"valid": jnp.ones((2, 6), bool), "turn_masks": jnp.asarray(masks),
          "rewards": jnp.asarray([r1, r2], jnp.float32)}


def cfg(**kw):
  return LossConfig(**{"k": 2, **kw})


# Expected policy-gradient losses, by hand. r1 = (0, 1), r2 = (1, 0), RLOO
# with k = 2: A = r - r_other.
#   stage1: A2 = (1, -1); rows: -(1)(-2) = 2, -(-1)(-0.5) = -0.5
#           sequence_sum 0.75, token_mean 1.5 / 8 tokens
#   stage2, alpha 10: r̂2 = r2 + 10 (r2 - r1) = (11, -10), A2 = (21, -21),
#           A1 = (-1, 1); rows: -3 + 42 = 39, 2 - 10.5 = -8.5
#   stage2, alpha 0: A2 = (1, -1); rows: -3 + 2 = -1, 2 - 0.5 = 1.5
#   single_turn: A1 = (-1, 1); rows -3, 2; token_mean over 4 tokens
HAND_PG = [
    (dict(stage="stage1"), "sequence_sum", 0.75),
    (dict(stage="stage1"), "token_mean", 1.5 / 8),
    (dict(stage="stage2", alpha=10.0), "sequence_sum", (39 - 8.5) / 2),
    (dict(stage="stage2", alpha=10.0), "token_mean", (39 - 8.5) / 8),
    (dict(stage="stage2", alpha=0.0), "sequence_sum", 0.25),
    (dict(stage="single_turn"), "sequence_sum", -0.5),
    (dict(stage="single_turn"), "token_mean", -0.25),
]


@pytest.mark.parametrize("kw,aggregation,expected", HAND_PG)
def test_policy_gradient_term_by_hand(kw, aggregation, expected):
  lp = jnp.asarray(LP)
  loss, m = score_loss(lp, lp, tiny_batch(), cfg(aggregation=aggregation, **kw))
  np.testing.assert_allclose(m["pg_loss"], expected, rtol=1e-6)
  np.testing.assert_allclose(m["kl_loss"], 0.0, atol=1e-7)  # ref == policy
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def _ref_shifted():
  """ref = lp + d: d = log 2 on turn-1 tokens, -log 2 on turn 2, 5 on p2."""
  d = np.where(TURN1, LOG2, 0.0) + np.where(TURN2, -LOG2, 0.0)
  d[3] = 5.0
  return jnp.asarray(LP + d[None], jnp.float32)


# Per token k1 = -d, k3 = e^d - d - 1: turn 1: k1 = -log2, k3 = 1 - log2;
# turn 2: k1 = log2, k3 = log2 - 1/2. Two tokens per turn, the same in both
# rows, so the per-sequence mean is the per-row value.
K3_T1, K3_T2 = 2 * (1 - LOG2), 2 * (LOG2 - 0.5)
HAND_KL = [
    ("stage1", "k3", 0.1 * K3_T1 + 0.01 * K3_T2),
    ("stage1", "k1", 0.1 * -2 * LOG2 + 0.01 * 2 * LOG2),
    ("stage2", "k3", 0.01 * (K3_T1 + K3_T2)),  # = 0.01 * 1
    ("single_turn", "k3", 0.01 * K3_T1),
]


@pytest.mark.parametrize("stage,estimator,expected", HAND_KL)
def test_kl_term_by_hand(stage, estimator, expected):
  lp = jnp.asarray(LP)
  c = cfg(stage=stage, kl_estimator=estimator, beta1=0.01, beta2=0.1)
  loss, m = score_loss(lp, _ref_shifted(), tiny_batch(), c)
  np.testing.assert_allclose(m["kl_loss"], expected, rtol=1e-5)
  _, m_same_ref = score_loss(lp, lp, tiny_batch(), c)
  np.testing.assert_allclose(m["pg_loss"], m_same_ref["pg_loss"])
  np.testing.assert_allclose(loss, m["pg_loss"] + m["kl_loss"], rtol=1e-6)
  if estimator == "k3":  # reported even where not trained (single_turn t2)
    np.testing.assert_allclose([m["kl/t1"], m["kl/t2"]], [K3_T1, K3_T2],
                               rtol=1e-5)


def test_full_kl_term_and_its_requirement():
  lp = jnp.asarray(LP)
  full = np.full((2, 6), 99.0, np.float32)  # 99 where not counted
  full[:, TURN1], full[:, TURN2] = 0.3, 0.1
  c = cfg(stage="stage1", kl_estimator="full", beta1=0.01, beta2=0.1)
  _, m = score_loss(lp, lp, tiny_batch(), c, full_kl=jnp.asarray(full))
  np.testing.assert_allclose(m["kl_loss"], 0.1 * 0.6 + 0.01 * 0.2, rtol=1e-6)
  with pytest.raises(ValueError, match="needs full_kl"):
    score_loss(lp, lp, tiny_batch(), c)


def test_metrics_by_hand():
  lp = jnp.asarray(LP)
  ent = jnp.asarray(np.tile([9.0, 1.0, 2.0, 9.0, 3.0, 5.0], (2, 1)))
  _, m = score_loss(lp, lp, tiny_batch(), cfg(stage="stage2", alpha=10.0),
                    entropy=ent)
  # r1 = (0, 1), r2 = (1, 0): row 0 incorrect -> correct, row 1 the reverse.
  expected = {"reward/t1": 0.5, "reward/t2": 0.5, "reward/delta": 0.0,
              "reward/i_to_c": 0.5, "reward/c_to_i": 0.5, "return/t1": 0.5,
              "return/t2": 0.5, "advantage/t1/mean": 0.0,
              "advantage/t1/std": 1.0, "advantage/t2/mean": 0.0,
              "advantage/t2/std": 21.0, "len/t1": 2.0, "len/t2": 2.0,
              "entropy/t1": 1.5, "entropy/t2": 4.0}
  for name, value in expected.items():
    np.testing.assert_allclose(m[name], value, atol=1e-6, err_msg=name)
  assert all(v.shape == () and v.dtype == jnp.float32 for v in m.values())


# --------------------------------------------------------------------------
# Gradient structure.


def _grad(config, batch, lp=LP, ref=None, what="loss", **kw):
  ref = jnp.asarray(LP if ref is None else ref)
  return jax.grad(lambda x: score_loss(x, ref, batch, config, **kw)[1][what])(
      jnp.asarray(lp))


def test_stage1_reward_has_no_gradient_through_turn1_tokens():
  g = _grad(cfg(stage="stage1"), tiny_batch(), what="pg_loss")
  np.testing.assert_array_equal(g[:, TURN1], 0.0)
  # Turn 2 gets -A2 / B per token: A2 = (1, -1), B = 2.
  np.testing.assert_allclose(g[:, TURN2], [[-.5, -.5], [.5, .5]])
  np.testing.assert_array_equal(g[:, ~(TURN1 | TURN2)], 0.0)
  # With the KL on, turn 1's gradient is the KL's alone: rewards can't move it.
  c = cfg(stage="stage1", beta2=0.1)
  g_a = _grad(c, tiny_batch(), ref=_ref_shifted())
  g_b = _grad(c, tiny_batch(r1=(1.0, 1.0), r2=(0.0, 1.0)), ref=_ref_shifted())
  np.testing.assert_array_equal(g_a[:, TURN1], g_b[:, TURN1])
  assert np.all(np.abs(g_a[:, TURN1]) > 0)
  assert not np.allclose(g_a[:, TURN2], g_b[:, TURN2])


def test_stage1_gradient_through_logits():
  # Logits at position i-1 produce token i: turn 1 (tokens 1, 2) comes from
  # logits rows 0, 1; p2 (token 3) from row 2; turn 2 (tokens 4, 5) rows 3, 4.
  keys = jax.random.split(jax.random.key(0), 2)
  logits = jax.random.normal(keys[0], (2, 6, 11))
  tokens = jax.random.randint(keys[1], (2, 6), 0, 11)
  ref = token_logprobs(logits, tokens)

  def pg(lg):
    lp = token_logprobs(lg, tokens)
    return score_loss(lp, ref, tiny_batch(), cfg(stage="stage1"))[1]["pg_loss"]

  g = np.asarray(jax.jit(jax.grad(pg))(logits))
  np.testing.assert_array_equal(g[:, [0, 1, 2, 5]], 0.0)
  assert np.all(np.abs(g[:, [3, 4]]).sum(-1) > 1e-3)


def test_stage2_gamma0_credit():
  # Turn 1 is credited with r1 only: r2 cannot change its gradient.
  c = cfg(stage="stage2", alpha=10.0, beta1=0.0)
  g_a = _grad(c, tiny_batch(r2=(1.0, 0.0)))
  g_b = _grad(c, tiny_batch(r2=(0.0, 1.0)))
  np.testing.assert_array_equal(g_a[:, TURN1], g_b[:, TURN1])
  # Without shaping, turn 2 is credited with r2 only.
  c0 = cfg(stage="stage2", alpha=0.0, beta1=0.0)
  g_a = _grad(c0, tiny_batch(r1=(0.0, 1.0)))
  g_b = _grad(c0, tiny_batch(r1=(1.0, 0.0)))
  np.testing.assert_array_equal(g_a[:, TURN2], g_b[:, TURN2])
  # With shaping it is not: r̂2 rewards the change r2 - r1.
  g_c = _grad(c, tiny_batch(r1=(1.0, 0.0)))
  g_d = _grad(c, tiny_batch(r1=(0.0, 1.0)))
  assert not np.allclose(g_c[:, TURN2], g_d[:, TURN2])


def test_single_turn_never_trains_turn2_tokens():
  c = cfg(stage="single_turn", beta1=0.1)
  g = _grad(c, tiny_batch(), ref=_ref_shifted())
  np.testing.assert_array_equal(g[:, TURN2], 0.0)
  assert np.all(np.abs(g[:, TURN1]) > 0)


def _swap_turns(batch):
  return {**batch, "turn_masks": batch["turn_masks"][::-1],
          "rewards": batch["rewards"][::-1]}


@pytest.mark.parametrize("estimator", ["k1", "k3"])
@pytest.mark.parametrize("aggregation", ["sequence_sum", "token_mean"])
def test_stage2_without_shaping_is_two_single_turn_objectives(estimator,
                                                              aggregation):
  # Naive multi-turn RL (alpha = 0) = single-turn RL on turn 1 + single-turn
  # RL on turn 2 (turn 2 as its own problem with context x, y1, p2).
  rng = np.random.default_rng(1)
  b, length, k = 8, 9, 4
  lp = jnp.asarray(-rng.exponential(size=(b, length)), jnp.float32)
  ref = lp + jnp.asarray(rng.normal(size=(b, length)) * 0.3, jnp.float32)
  t1 = np.zeros((b, length), bool)
  t1[:, 1:4] = True
  t2 = np.zeros((b, length), bool)
  t2[:, 5:] = rng.random((b, 4)) < 0.7
  batch = {"valid": jnp.ones((b, length), bool),
           "turn_masks": jnp.asarray(np.stack([t1, t2])),
           "rewards": jnp.asarray(rng.integers(0, 2, (2, b)), jnp.float32)}
  kw = dict(k=k, kl_estimator=estimator, aggregation=aggregation, beta1=0.05)
  two_turn = LossConfig(stage="stage2", alpha=0.0, **kw)
  single = LossConfig(stage="single_turn", **kw)
  den = loss_denominator(batch, two_turn)

  def total(x):
    return score_loss(x, ref, batch, two_turn, denominator=den)[0]

  def split(x):
    return (score_loss(x, ref, batch, single, denominator=den)[0] +
            score_loss(x, ref, _swap_turns(batch), single, denominator=den)[0])

  (want, want_grad), (got, got_grad) = [jax.jit(jax.value_and_grad(f))(lp)
                                         for f in (total, split)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-7)


def test_padding_and_garbage_outside_turns_never_leak():
  lp = LP.copy()
  ref = LP.copy()
  lp[:, 3], ref[:, 3] = -np.inf, np.nan  # p2 slot
  lp[:, 0], ref[:, 0] = np.nan, np.inf   # prompt slot
  for c in [cfg(stage="stage1", kl_estimator="k3"),
            cfg(stage="stage2", kl_estimator="k1")]:
    clean = score_loss(jnp.asarray(LP), jnp.asarray(LP), tiny_batch(), c)[0]
    dirty = score_loss(jnp.asarray(lp), jnp.asarray(ref), tiny_batch(), c)[0]
    np.testing.assert_allclose(dirty, clean)
    g = _grad(c, tiny_batch(), lp=lp, ref=ref)
    np.testing.assert_allclose(g, _grad(c, tiny_batch()))
  # A row whose turn-2 tokens are padding (valid False) does not count either.
  batch = tiny_batch()
  valid = np.ones((2, 6), bool)
  valid[1, 4:] = False
  batch["valid"] = jnp.asarray(valid)
  _, m = score_loss(jnp.asarray(LP), jnp.asarray(LP), batch,
                    cfg(stage="stage1", aggregation="token_mean"))
  # stage1 rows: 2 (row 0) + 0 (row 1's turn 2 is padding) over 6 tokens.
  np.testing.assert_allclose(m["pg_loss"], 2.0 / 6, rtol=1e-6)


@pytest.mark.parametrize("aggregation", ["sequence_sum", "token_mean"])
def test_micro_batches_with_shared_denominator_add_up(aggregation):
  rng = np.random.default_rng(2)
  b, length = 8, 7
  lp = jnp.asarray(-rng.exponential(size=(b, length)), jnp.float32)
  ref = jnp.asarray(-rng.exponential(size=(b, length)), jnp.float32)
  masks = np.zeros((2, b, length), bool)
  masks[0, :, 1:3] = True
  masks[1, :, 4:] = rng.random((b, 3)) < 0.6
  batch = {"valid": jnp.ones((b, length), bool),
           "turn_masks": jnp.asarray(masks),
           "rewards": jnp.asarray(rng.integers(0, 2, (2, b)), jnp.float32)}
  c = LossConfig(stage="stage2", k=2, aggregation=aggregation)
  halves = [{key: (v[:, :4] if key in ("turn_masks", "rewards") else v[:4])
             for key, v in batch.items()},
            {key: (v[:, 4:] if key in ("turn_masks", "rewards") else v[4:])
             for key, v in batch.items()}]
  den = sum(loss_denominator(h, c) for h in halves)
  np.testing.assert_allclose(den, loss_denominator(batch, c))

  def full(x):
    return score_loss(x, ref, batch, c)[0]

  def accumulated(x):
    return sum(score_loss(x[i * 4:(i + 1) * 4], ref[i * 4:(i + 1) * 4], h, c,
                          denominator=den)[0] for i, h in enumerate(halves))

  (want, want_grad), (got, got_grad) = [jax.jit(jax.value_and_grad(f))(lp)
                                         for f in (full, accumulated)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-7)


def test_sharded_over_8_devices_equals_one_device():
  assert jax.device_count() == 8
  rng = np.random.default_rng(3)
  b, length = 16, 10
  lp = jnp.asarray(-rng.exponential(size=(b, length)), jnp.float32)
  ref = jnp.asarray(-rng.exponential(size=(b, length)), jnp.float32)
  masks = np.zeros((2, b, length), bool)
  masks[0, :, 1:4], masks[1, :, 6:] = True, True
  batch = {"valid": jnp.asarray(rng.random((b, length)) < 0.9),
           "turn_masks": jnp.asarray(masks),
           "rewards": jnp.asarray(rng.integers(0, 2, (2, b)), jnp.float32)}
  c = LossConfig(stage="stage2", k=4)
  step = jax.jit(jax.value_and_grad(
      lambda x, r, bt: score_loss(x, r, bt, c)[0]))
  want = step(lp, ref, batch)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  rows = NamedSharding(mesh, P("data"))
  turns = NamedSharding(mesh, P(None, "data"))
  got = step(jax.device_put(lp, rows), jax.device_put(ref, rows),
             {"valid": jax.device_put(batch["valid"], rows),
              "turn_masks": jax.device_put(batch["turn_masks"], turns),
              "rewards": jax.device_put(batch["rewards"], turns)})
  np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
  np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------
# Supervised (warm start, STaR, Pair-SFT).


def test_sft_by_hand():
  lp = jnp.asarray(LP)
  both = jnp.asarray(np.tile(TURN1 | TURN2, (2, 1)))
  # Turn tokens' NLL: row 0: 1 + 2 + .5 + 1.5 = 5, row 1: 1 + 1 + .25 + .25.
  np.testing.assert_allclose(sft_loss(lp, both, "token_mean"), 7.5 / 8)
  np.testing.assert_allclose(sft_loss(lp, both, "sequence_sum"), 7.5 / 2)
  pair = cfg(stage="sft", sft_turns=(False, True), aggregation="token_mean")
  batch = {k: v for k, v in tiny_batch().items() if k != "rewards"}
  loss, m = score_loss(lp, None, batch, pair)
  np.testing.assert_allclose(loss, 2.5 / 4)  # only y2 tokens: 2 + 0.5
  g = jax.grad(lambda x: score_loss(x, None, batch, pair)[0])(lp)
  np.testing.assert_allclose(g, np.tile(np.where(TURN2, -0.25, 0.0), (2, 1)))
  np.testing.assert_allclose(m["nll/token"], 2.5 / 4)


# --------------------------------------------------------------------------
# Per-token stats and KL estimators.


def _np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_token_stats_against_numpy():
  rng = np.random.default_rng(4)
  b, length, v = 3, 5, 7
  logits = rng.normal(size=(b, length, v)).astype(np.float32) * 3
  ref = rng.normal(size=(b, length, v)).astype(np.float32) * 3
  tokens = rng.integers(0, v, (b, length))
  s = token_stats(jnp.asarray(logits), jnp.asarray(tokens), jnp.asarray(ref),
                  entropy=True)
  want = {k: np.zeros((b, length)) for k in s}
  for i in range(b):
    for j in range(1, length):
      lp = _np_log_softmax(logits[i, j - 1])
      rlp = _np_log_softmax(ref[i, j - 1])
      p = np.exp(lp)
      want["logprobs"][i, j] = lp[tokens[i, j]]
      want["ref_logprobs"][i, j] = rlp[tokens[i, j]]
      want["entropy"][i, j] = -(p * lp).sum()
      want["full_kl"][i, j] = (p * (lp - rlp)).sum()
  for k in s:
    np.testing.assert_allclose(s[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert s[k].dtype == jnp.float32
  np.testing.assert_allclose(token_logprobs(jnp.asarray(logits), tokens),
                             want["logprobs"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(token_entropy(jnp.asarray(logits)),
                             want["entropy"], rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(s["full_kl"]) >= -1e-6)


def _categoricals(v=6, seed=5, scale=0.4):
  rng = np.random.default_rng(seed)
  z = rng.normal(size=v)
  p = np.exp(_np_log_softmax(z))
  q = np.exp(_np_log_softmax(z + scale * rng.normal(size=v)))
  return p, q


def test_k1_and_k3_are_unbiased_and_k3_has_lower_variance():
  p, q = _categoricals()
  exact = float((p * np.log(p / q)).sum())
  n = 200_000
  a = np.random.default_rng(6).choice(len(p), size=n, p=p)
  lp = jnp.asarray(np.log(p[a])[None], jnp.float32)
  ref = jnp.asarray(np.log(q[a])[None], jnp.float32)
  est = {e: np.asarray(kl_estimate(lp, ref, e), np.float64)
         for e in ("k1", "k3")}
  for e, x in est.items():
    stderr = x.std() / math.sqrt(n)
    assert abs(x.mean() - exact) < 4 * stderr, (e, x.mean(), exact, stderr)
  assert est["k3"].var() < 0.5 * est["k1"].var()
  assert est["k3"].min() >= 0 and est["k1"].min() < 0


def test_k3_is_nonnegative_even_far_from_the_reference():
  d = jnp.linspace(-30.0, 30.0, 10_001)[None]
  k3 = kl_estimate(jnp.zeros_like(d), d, "k3")
  assert jnp.all(k3 >= 0) and jnp.all(jnp.isfinite(k3))
  np.testing.assert_allclose(kl_estimate(jnp.zeros((1, 1)), jnp.zeros((1, 1)),
                                         "k3"), 0.0)


def test_full_kl_exact_against_numpy():
  p, q = _categoricals(v=9, seed=7, scale=2.0)
  logits = jnp.asarray(np.log(p)[None, None].repeat(2, 1), jnp.float32)
  ref_logits = jnp.asarray(np.log(q)[None, None].repeat(2, 1), jnp.float32)
  s = token_stats(logits, jnp.zeros((1, 2), jnp.int32), ref_logits)
  np.testing.assert_allclose(kl_estimate(s["logprobs"], s["ref_logprobs"],
                                         "full", s["full_kl"])[0, 1],
                             (p * np.log(p / q)).sum(), rtol=1e-5)


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_kl_surrogate_gradient_is_unbiased(estimator):
  # E_{a ~ pi}[grad_z surrogate(a)] (exact, by enumerating the vocabulary)
  # equals grad_z KL(softmax(z) || q): the penalty optimises the true KL.
  p, q = _categoricals(v=7, seed=8, scale=1.0)
  z = jnp.asarray(np.log(p), jnp.float32)
  log_q = jnp.asarray(np.log(q), jnp.float32)

  def surrogate(z, a):
    lp = jax.nn.log_softmax(z)[a]
    return kl_surrogate(lp[None, None], log_q[a][None, None], estimator)[0, 0]

  grads = jax.vmap(jax.grad(surrogate), in_axes=(None, 0))(z, jnp.arange(7))
  expected_grad = jnp.einsum("a,av->v", jnp.asarray(p, jnp.float32), grads)
  true_grad = jax.grad(
      lambda z: jnp.sum(jax.nn.softmax(z) * (jax.nn.log_softmax(z) - log_q)))(z)
  np.testing.assert_allclose(expected_grad, true_grad, rtol=1e-4, atol=1e-6)
  # The surrogate's value is the estimate itself.
  np.testing.assert_allclose(
      kl_surrogate(jnp.log(jnp.asarray(p))[None], log_q[None], estimator),
      kl_estimate(jnp.log(jnp.asarray(p))[None], log_q[None], estimator))


def _two_turn_kl_problem(v=3, seed=11):
  """Every two-token-per-turn sequence [x | a1 a2 | p2 | b1 b2] of a tabular
  policy over `v` tokens, each token conditioned on the one before it
  (b1 on a2), and its log-probs under the policy and a reference."""
  rng = np.random.default_rng(seed)
  theta = jnp.asarray(rng.normal(size=(4, v, v)), jnp.float32)
  ref = jnp.asarray(rng.normal(size=(4, v, v)), jnp.float32)
  seqs = np.array(np.meshgrid(*[np.arange(v)] * 4, indexing="ij")
                  ).reshape(4, -1).T  # [v^4, 4]: a1 a2 b1 b2
  prev = np.concatenate([np.zeros((len(seqs), 1), int), seqs[:, :3]], 1)

  def logps(table):
    """log-probs [S, 4] of each sampled token, and full log-softmax rows."""
    rows = jax.nn.log_softmax(table[np.arange(4)[None], prev], -1)  # [S,4,v]
    return jnp.take_along_axis(rows, seqs[..., None], -1)[..., 0], rows

  def as_batch(x):  # [S, 4] -> [S, 6] at the turns' slots
    zero = jnp.zeros((x.shape[0], 1), x.dtype)
    return jnp.concatenate([zero, x[:, :2], zero, x[:, 2:]], 1)

  batch = {"valid": jnp.ones((len(seqs), 6), bool),
           "turn_masks": jnp.asarray(np.stack([np.tile(TURN1, (len(seqs), 1)),
                                               np.tile(TURN2,
                                                       (len(seqs), 1))])),
           "rewards": jnp.zeros((2, len(seqs)), jnp.float32)}
  return theta, ref, logps, as_batch, batch


@pytest.mark.parametrize("estimator", ["k1", "k3", "full"])
def test_sequence_kl_gradient_is_the_gradient_of_each_turns_kl(estimator):
  """Stage I's penalty beta2 KL(turn 1) + beta1 KL(turn 2), by enumerating
  every sequence: E[grad surrogate] under kl_gradient='sequence' is the
  exact gradient of the turns' KL (turn 2's given turn 1: gamma = 0, turn 1
  is not charged for turn 2); 'token' misses what a token does to the
  later positions of its turn. Both report the same loss."""
  theta, ref, logps, as_batch, batch = _two_turn_kl_problem()
  ref_lp, ref_rows = logps(ref)
  beta1, beta2 = 0.3, 0.7

  def exact(theta):
    lp, _ = logps(theta)
    p_turn1 = jnp.exp(lp[:, 0] + lp[:, 1])
    p_turn2 = jnp.exp(lp[:, 2] + lp[:, 3])
    kl1 = jnp.sum(p_turn1 * p_turn2 * (lp - ref_lp)[:, :2].sum(-1))
    kl2 = jnp.sum(sg_(p_turn1) * p_turn2 * (lp - ref_lp)[:, 2:].sum(-1))
    return beta2 * kl1 + beta1 * kl2

  def expected_surrogate(theta, kl_gradient):
    lp, rows = logps(theta)
    full = jnp.sum(jnp.exp(rows) * (rows - ref_rows), -1)
    config = LossConfig(stage="stage1", beta1=beta1, beta2=beta2, k=1,
                        advantage="none", kl_estimator=estimator,
                        kl_gradient=kl_gradient)

    def one_row(lp, ref_lp, full, valid, masks, rewards):
      row = {"valid": valid[None], "turn_masks": masks[:, None],
             "rewards": rewards[:, None]}
      return score_loss(lp[None], ref_lp[None], row, config,
                        full_kl=full[None])[0]

    losses = jax.vmap(one_row, in_axes=(0, 0, 0, 0, 1, 1))(
        as_batch(lp), as_batch(ref_lp), as_batch(full), batch["valid"],
        batch["turn_masks"], batch["rewards"])
    weights = sg_(jnp.exp(lp.sum(-1)))  # the probability of each sequence
    return jnp.sum(weights * losses)

  want = jax.grad(exact)(theta)
  got = jax.grad(expected_surrogate)(theta, "sequence")
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  token = jax.grad(expected_surrogate)(theta, "token")
  # The last token of each turn has nothing after it: the same gradient.
  last, first = np.array([1, 3]), np.array([0, 2])
  np.testing.assert_allclose(token[last], want[last], rtol=1e-4, atol=1e-6)
  assert np.abs(token[first] - want[first]).max() > 1e-2
  np.testing.assert_allclose(expected_surrogate(theta, "token"),
                             expected_surrogate(theta, "sequence"), rtol=1e-6)


def test_kl_still_to_come_stays_inside_each_turn():
  # [x | y1 y1 | p2 | y2 y2] twice; per-token KL 1..6 (x and p2 ignored).
  kl = jnp.asarray([[10.0, 1.0, 2.0, 10.0, 3.0, 4.0]] * 2)
  turn1, turn2 = (jnp.asarray(np.tile(m, (2, 1))) for m in (TURN1, TURN2))
  np.testing.assert_allclose(kl_still_to_come(kl, turn1)[0],
                             [0, 2, 0, 0, 0, 0])
  np.testing.assert_allclose(kl_still_to_come(kl, turn2)[0],
                             [0, 0, 0, 0, 4, 0])


# --------------------------------------------------------------------------
# Chunked (memory-lean) stats from hidden states.


def _linear_problem(b=3, length=10, d=8, v=13, seed=9):
  keys = jax.random.split(jax.random.key(seed), 5)
  hidden = jax.random.normal(keys[0], (b, length, d))
  ref_hidden = jax.random.normal(keys[1], (b, length, d))
  w = jax.random.normal(keys[2], (d, v))
  w_ref = jax.random.normal(keys[3], (d, v))
  tokens = jax.random.randint(keys[4], (b, length), 0, v)
  return hidden, ref_hidden, w, w_ref, tokens


def _softcapped(w):
  return lambda h: 5.0 * jnp.tanh((h @ w) / 5.0)


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 9, 16])
def test_chunked_equals_dense(chunk_size):
  hidden, ref_hidden, w, w_ref, tokens = _linear_problem()
  dense = token_stats(_softcapped(w)(hidden), tokens,
                      _softcapped(w_ref)(ref_hidden), entropy=True)
  chunked = jax.jit(lambda h, rh: token_stats_from_hidden(
      h, tokens, _softcapped(w), chunk_size=chunk_size, ref_hidden=rh,
      ref_logits_fn=_softcapped(w_ref), entropy=True))(hidden, ref_hidden)
  assert set(chunked) == set(dense)
  for k in dense:
    np.testing.assert_allclose(chunked[k], dense[k], rtol=1e-5, atol=1e-6,
                               err_msg=k)
  one_token = token_stats_from_hidden(
      hidden[:, :1], tokens[:, :1], _softcapped(w), chunk_size=chunk_size,
      ref_hidden=ref_hidden[:, :1], ref_logits_fn=_softcapped(w_ref),
      entropy=True)
  dense_one = token_stats(_softcapped(w)(hidden[:, :1]), tokens[:, :1],
                          _softcapped(w_ref)(ref_hidden[:, :1]), entropy=True)
  assert set(one_token) == set(dense_one)
  for k in dense_one:
    np.testing.assert_array_equal(one_token[k], dense_one[k])
  only_lp = token_stats_from_hidden(hidden, tokens, _softcapped(w),
                                    chunk_size=chunk_size)
  assert set(only_lp) == {"logprobs"}
  np.testing.assert_allclose(only_lp["logprobs"], dense["logprobs"],
                             rtol=1e-5, atol=1e-6)


def test_chunked_gradients_equal_dense():
  hidden, ref_hidden, w, w_ref, tokens = _linear_problem()
  weights = jax.random.normal(jax.random.key(10), (3, 3, 10))

  def objective(stats):
    return (jnp.sum(weights[0] * stats["logprobs"]) +
            jnp.sum(weights[1] * stats["full_kl"]) +
            jnp.sum(weights[2] * stats["entropy"]))

  def dense(w, h):
    return objective(token_stats(_softcapped(w)(h), tokens,
                                 _softcapped(w_ref)(ref_hidden), entropy=True))

  def chunked(w, h):
    return objective(token_stats_from_hidden(
        h, tokens, _softcapped(w), chunk_size=4, ref_hidden=ref_hidden,
        ref_logits_fn=_softcapped(w_ref), entropy=True))

  for gd, gc in zip(jax.jit(jax.grad(dense, (0, 1)))(w, hidden),
                    jax.jit(jax.grad(chunked, (0, 1)))(w, hidden)):
    np.testing.assert_allclose(gc, gd, rtol=1e-4, atol=1e-5)


def test_chunked_backward_never_holds_all_logits():
  b, length, d, v = 2, 256, 16, 8192
  hidden = jnp.ones((b, length, d))
  w = jnp.full((d, v), 0.01)
  tokens = jnp.zeros((b, length), jnp.int32)

  def temp_bytes(fn):
    return jax.jit(jax.grad(fn)).lower(w).compile().memory_analysis(
    ).temp_size_in_bytes

  def chunked(w):
    return token_stats_from_hidden(hidden, tokens, lambda h: h @ w,
                                   chunk_size=16)["logprobs"].sum()

  def dense(w):
    return token_logprobs(hidden @ w, tokens).sum()

  logits_bytes = b * length * v * 4
  assert temp_bytes(dense) > logits_bytes
  assert temp_bytes(chunked) < logits_bytes / 4


def test_chunked_on_a_real_decoder():
  # tiny-gemma2: tied embeddings and final logit soft-capping.
  config = models.get_preset("tiny-gemma2")
  model = models.Transformer(config)
  params = models.init_params(config, jax.random.key(11))
  ref_params = models.init_params(config, jax.random.key(12))
  tokens = jax.random.randint(jax.random.key(13), (2, 12), 0,
                              config.vocab_size)
  mask = jnp.ones((2, 12), bool).at[0, :3].set(False)
  positions = models.positions_from_mask(mask)

  def forward(p, **kw):
    return model.apply({"params": p}, tokens, positions, mask, **kw)[0]

  def logits_fn(p):
    return lambda h: model.apply({"params": p}, h,
                                 method=models.Transformer.logits)

  @jax.jit
  def both(p, ref_p):
    dense = token_stats(forward(p), tokens, forward(ref_p), entropy=True)
    chunked = token_stats_from_hidden(
        forward(p, return_hidden=True), tokens, logits_fn(p), chunk_size=5,
        ref_hidden=forward(ref_p, return_hidden=True),
        ref_logits_fn=logits_fn(ref_p), entropy=True)
    return dense, chunked

  dense, chunked = both(params, ref_params)
  for k in dense:
    np.testing.assert_allclose(chunked[k], dense[k], rtol=1e-5, atol=1e-5,
                               err_msg=k)


# --------------------------------------------------------------------------
# Bad input gets a message that names it.


def test_bad_config_is_named():
  for kw, pattern in [(dict(stage="stage3"), "stage='stage3'"),
                      (dict(kl_estimator="k2"), "kl_estimator='k2'"),
                      (dict(advantage="grpo"), "advantage='grpo'"),
                      (dict(aggregation="sum"), "aggregation='sum'"),
                      (dict(beta1=-1.0), "beta1=-1.0"),
                      (dict(k=0), "k must be a positive int"),
                      (dict(sft_turns=(False, False)), "sft_turns")]:
    with pytest.raises(ValueError, match=pattern):
      LossConfig(**kw)


def test_bad_batch_is_named():
  lp = jnp.asarray(LP)
  batch = tiny_batch()
  with pytest.raises(ValueError,
                     match=r"turn_masks'\] must be bool\[2, B, L\]"):
    score_loss(lp, lp, {**batch, "turn_masks": batch["turn_masks"][0]}, cfg())
  with pytest.raises(ValueError, match=r"rewards'\] must be float\[2, B\]"):
    score_loss(lp, lp, {**batch, "rewards": jnp.zeros(2)}, cfg())
  with pytest.raises(ValueError, match="needs ref_logprobs"):
    score_loss(lp, None, batch, cfg())
  with pytest.raises(ValueError, match="not a whole number of prompts"):
    score_loss(lp, lp, batch, cfg(k=3))
  with pytest.raises(ValueError, match="tokens must be int"):
    token_stats(jnp.zeros((2, 6, 5)), jnp.zeros((2, 5), jnp.int32))
  with pytest.raises(ValueError, match="chunk_size"):
    token_stats_from_hidden(jnp.zeros((2, 6, 4)), jnp.zeros((2, 6), jnp.int32),
                            lambda h: h, chunk_size=0)
  with pytest.raises(ValueError, match="together"):
    token_stats_from_hidden(jnp.zeros((2, 6, 4)), jnp.zeros((2, 6), jnp.int32),
                            lambda h: h, chunk_size=2,
                            ref_hidden=jnp.zeros((2, 6, 4)))
