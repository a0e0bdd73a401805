"""The sharded train step: equal to one device, accumulation, NaN guard."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax import models, sharding
from score_jax.rl import losses
from score_jax.rl import state as state_lib
from score_jax.rl import step as step_lib

CONFIG = models.get_preset("tiny-gemma3").replace(vocab_size=128)


def make_batch(rows=8, length=24, seed=0):
  """A two-turn batch shaped like a rollout: [pad | x | y1 | p2 | y2]."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, CONFIG.vocab_size, (rows, length))
  pad = rng.integers(0, 4, rows)
  valid = np.arange(length)[None] >= pad[:, None]
  turn = np.zeros((2, rows, length), bool)
  turn[0, :, 8:14] = True
  turn[1, :, 17:] = True
  valid[:, 12:14] &= rng.random((rows, 2)) > 0.5  # unused slots after a stop
  turn &= valid[None]
  positions = np.maximum(np.cumsum(valid, 1) - 1, 0)
  rewards = rng.integers(0, 2, (2, rows)).astype(np.float32)
  return {"tokens": jnp.asarray(np.where(valid, tokens, 0), jnp.int32),
          "valid": jnp.asarray(valid), "positions": jnp.asarray(positions),
          "turn_masks": jnp.asarray(turn), "rewards": jnp.asarray(rewards)}


def run_steps(ctx, loss_config, micro_batches=1, num_steps=3):
  model = models.Transformer(CONFIG, sharding=ctx)
  # Adam divides by sqrt(v) + eps: with eps = 1e-8 a gradient entry near 1e-8
  # turns float32 reduction-order noise (~1e-9) into a visible update
  # difference. eps = 1e-6 bounds that amplification to lr * noise / eps.
  optimizer = state_lib.make_optimizer(state_lib.OptimizerConfig(eps=1e-6))
  params = models.init_params(CONFIG, jax.random.key(0), ctx)
  ref_params = models.init_params(CONFIG, jax.random.key(1), ctx)
  state = state_lib.init_state(params, optimizer)
  fn = step_lib.make_train_step(model, loss_config, optimizer,
                                step_lib.StepConfig(micro_batches, 0))
  batch = make_batch()
  if ctx is None:
    fn = jax.jit(fn, donate_argnums=(0,))
  else:
    param_sh = models.param_shardings(CONFIG, ctx)
    state_sh = state_lib.state_shardings(jax.eval_shape(lambda s: s, state),
                                         param_sh, optimizer, ctx)
    batch_sh = step_lib.batch_shardings(batch, ctx)
    state = jax.device_put(state, state_sh)
    batch = jax.device_put(batch, batch_sh)
    fn = step_lib.jit_train_step(fn, state_sh, param_sh, batch_sh, ctx)
  history = []
  for i in range(num_steps):
    state, metrics = fn(state, ref_params, make_batch(seed=i) if ctx is None
                        else jax.device_put(make_batch(seed=i), batch_sh),
                        jnp.float32(1e-3))
    history.append(jax.device_get(metrics))
  return jax.device_get(state), history


def test_sharded_steps_equal_single_device():
  loss_config = losses.LossConfig(stage="stage1", k=2)
  want, want_metrics = run_steps(None, loss_config)
  ctx = sharding.ShardingCtx(sharding.make_mesh((2, 2, 2)))
  got, got_metrics = run_steps(ctx, loss_config)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               got.params, want.params)
  np.testing.assert_allclose(got_metrics[-1]["loss"], want_metrics[-1]["loss"],
                             rtol=1e-5)
  assert int(got.step) == 3
  # The params moved: the test would catch a step that does nothing.
  init = models.init_params(CONFIG, jax.random.key(0))
  moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), want.params,
                       init)
  assert max(jax.tree.leaves(moved)) > 1e-4


@pytest.mark.parametrize("stage", ["stage2", "sft"])
def test_micro_batches_equal_one_shot(stage):
  loss_config = losses.LossConfig(stage=stage, k=2)
  one, m1 = run_steps(None, loss_config, micro_batches=1, num_steps=1)
  four, m4 = run_steps(None, loss_config, micro_batches=4, num_steps=1)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               four.params, one.params)
  # Every metric, not only the loss: the micro-batches hold different
  # numbers of tokens (make_batch drops some), so a per-token mean such as
  # entropy or nll/token is not the mean of theirs, nor is a std.
  assert set(m4[0]) == set(m1[0])
  assert not any(key.endswith(losses.TOKENS) for key in m1[0])
  for key, value in m1[0].items():
    np.testing.assert_allclose(m4[0][key], value, rtol=1e-5, atol=1e-6,
                               err_msg=key)


def test_single_turn_reports_no_turn2_reward():
  # A one-turn rollout's batch carries r2 = r1 as a stand-in (rl_batch).
  _, metrics = run_steps(None, losses.LossConfig(stage="single_turn", k=2),
                         num_steps=1)
  assert "reward/t1" in metrics[0]
  assert not [key for key in metrics[0] if key.startswith("reward/")
              and key != "reward/t1"]


def test_the_optimizer_settings_are_the_configs_not_the_states():
  # optax.inject_hyperparams keeps b1, b2, eps and the weight decay in the
  # optimizer state: a state restored from (or started from) a run made with
  # other settings must update with this config's.
  model = models.Transformer(CONFIG)
  params = models.init_params(CONFIG, jax.random.key(0))
  ref_params = models.init_params(CONFIG, jax.random.key(1))
  config = state_lib.OptimizerConfig(b1=0.5, eps=1e-3, weight_decay=0.5)
  optimizer = state_lib.make_optimizer(config)
  step = jax.jit(step_lib.make_train_step(
      model, losses.LossConfig(stage="stage1", k=2), optimizer))
  other = state_lib.make_optimizer(state_lib.OptimizerConfig())
  lr = jnp.float32(1e-2)
  want, _ = step(state_lib.init_state(params, optimizer), ref_params,
                 make_batch(), lr)
  got, _ = step(state_lib.init_state(params, other), ref_params,
                make_batch(), lr)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               got.params, want.params)
  settings = got.opt_state[1].hyperparams
  assert [float(settings[k]) for k in ("b1", "eps", "weight_decay")] == [
      0.5, np.float32(1e-3), 0.5]


def test_micro_batches_must_keep_groups_whole():
  with pytest.raises(ValueError, match="whole groups of 4"):
    step_lib.split_micro_batches(make_batch(rows=8), 4, k=4)


def test_batch_mean_baseline_is_refused_with_micro_batches():
  # Each micro-batch would subtract its own mean: rewards [1, 1 | 0, 0]
  # would get advantages 0 instead of +-0.5.
  optimizer = state_lib.make_optimizer(state_lib.OptimizerConfig())
  model = models.Transformer(CONFIG)
  with pytest.raises(ValueError, match="'mean' takes its baseline over the "
                     "whole batch, but step.micro_batches=2"):
    step_lib.make_train_step(
        model, losses.LossConfig(stage="stage2", k=2, advantage="mean"),
        optimizer, step_lib.StepConfig(micro_batches=2))


def test_non_finite_step_is_skipped():
  optimizer = state_lib.make_optimizer(state_lib.OptimizerConfig())
  params = models.init_params(CONFIG, jax.random.key(0))
  state = state_lib.init_state(params, optimizer)
  model = models.Transformer(CONFIG)
  fn = jax.jit(step_lib.make_train_step(
      model, losses.LossConfig(stage="stage2", k=2), optimizer))
  batch = make_batch()
  batch["rewards"] = batch["rewards"].at[0, 0].set(jnp.nan)
  new, metrics = fn(state, params, batch, jnp.float32(1e-2))
  assert int(metrics["skipped_step"]) == 1 and int(new.skipped) == 1
  assert int(new.step) == 1
  jax.tree.map(np.testing.assert_array_equal, new.params, params)
  new2, metrics = fn(new, params, make_batch(), jnp.float32(1e-2))
  assert int(metrics["skipped_step"]) == 0 and int(new2.skipped) == 0
  # Finite loss and gradients, but an update that overflows the params (an
  # infinite learning rate here): skipped too, so never checkpointed.
  new3, metrics = fn(new2, params, make_batch(), jnp.float32(jnp.inf))
  assert int(metrics["skipped_step"]) == 1 and int(new3.skipped) == 1
  jax.tree.map(np.testing.assert_array_equal, new3.params, new2.params)


def test_sft_stage_needs_no_reference():
  optimizer = state_lib.make_optimizer(state_lib.OptimizerConfig())
  params = models.init_params(CONFIG, jax.random.key(0))
  state = state_lib.init_state(params, optimizer)
  fn = jax.jit(step_lib.make_train_step(
      models.Transformer(CONFIG), losses.LossConfig(stage="sft", k=1),
      optimizer))
  batch = make_batch()
  del batch["rewards"]
  losses_seen = []
  for _ in range(5):
    state, metrics = fn(state, None, batch, jnp.float32(3e-3))
    losses_seen.append(float(metrics["loss"]))
  assert losses_seen[-1] < losses_seen[0]


def test_tempered_stats_are_those_of_the_sampling_policy():
  """StepConfig.temperature T: log-probs, entropy and KL of softmax(logits/T),
  the distribution the sampler drew from at T (sampling/rules.py)."""
  model = models.Transformer(CONFIG)
  params = models.init_params(CONFIG, jax.random.key(0))
  ref_params = models.init_params(CONFIG, jax.random.key(1))
  batch = make_batch(rows=4)
  t = 2.5
  got = step_lib.token_stats(model, params, ref_params, batch, temperature=t)

  def tempered_logp(p):
    logits, _ = model.apply({"params": p}, batch["tokens"],
                            batch["positions"], batch["valid"])
    return jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32) / t, -1)
  logp, ref_logp = tempered_logp(params), tempered_logp(ref_params)
  targets = batch["tokens"][:, 1:, None]
  np.testing.assert_allclose(
      got["logprobs"][:, 1:], jnp.take_along_axis(logp, targets, -1)[..., 0],
      atol=1e-5)
  np.testing.assert_allclose(
      got["ref_logprobs"][:, 1:],
      jnp.take_along_axis(ref_logp, targets, -1)[..., 0], atol=1e-5)
  np.testing.assert_allclose(
      got["entropy"][:, 1:], -jnp.sum(jnp.exp(logp) * logp, -1), atol=1e-5)
  np.testing.assert_allclose(
      got["full_kl"][:, 1:],
      jnp.sum(jnp.exp(logp) * (logp - ref_logp), -1), atol=1e-5)
  plain = step_lib.token_stats(model, params, ref_params, batch)
  assert not np.allclose(plain["logprobs"], got["logprobs"], atol=1e-3)
  with pytest.raises(ValueError, match="temperature must be > 0"):
    step_lib.StepConfig(temperature=0.0)


def test_a_batch_with_nothing_to_train_changes_nothing():
  """A STaR step that kept no correction (turn 2 trained, every turn-2 mask
  empty) after real updates: Adam's momentum must not move the params."""
  optimizer = state_lib.make_optimizer(state_lib.OptimizerConfig())
  state = state_lib.init_state(models.init_params(CONFIG, jax.random.key(0)),
                               optimizer)
  fn = jax.jit(step_lib.make_train_step(
      models.Transformer(CONFIG),
      losses.LossConfig(stage="sft", k=1, sft_turns=(False, True)), optimizer))
  batch = make_batch()
  del batch["rewards"]
  for _ in range(2):  # non-zero Adam moments
    state, metrics = fn(state, None, batch, jnp.float32(3e-3))
    assert int(metrics["empty_step"]) == 0
  before = jax.device_get(state)
  empty = dict(batch, turn_masks=batch["turn_masks"].at[1].set(False))
  state, metrics = fn(state, None, empty, jnp.float32(3e-3))
  assert int(metrics["empty_step"]) == 1 and int(metrics["skipped_step"]) == 0
  after = jax.device_get(state)
  assert int(after.step) == int(before.step) + 1 and int(after.skipped) == 0
  for a, b in zip(jax.tree.leaves((after.params, after.opt_state)),
                  jax.tree.leaves((before.params, before.opt_state))):
    np.testing.assert_array_equal(a, b)


def test_step_on_a_compacted_rollout_batch_is_the_same_step():
  """episodes.compact drops a rollout's gaps before the train step: the
  update and its metrics must not change (only float rounding)."""
  from score_jax import episodes  # pylint: disable=g-import-not-at-top
  loss_config = losses.LossConfig(stage="stage2", k=2)
  optimizer = state_lib.make_optimizer(state_lib.OptimizerConfig(eps=1e-6))
  model = models.Transformer(CONFIG)
  fn = jax.jit(step_lib.make_train_step(model, loss_config, optimizer))
  params = models.init_params(CONFIG, jax.random.key(0))
  ref_params = models.init_params(CONFIG, jax.random.key(1))
  # A rollout's layout: each turn's unused slots trail its stop.
  rng = np.random.default_rng(0)
  valid = np.arange(40)[None] >= rng.integers(0, 6, 8)[:, None]
  turns = np.zeros((2, 8, 40), bool)
  turns[0, :, 8:20] = True
  turns[1, :, 26:] = True
  for r in range(8):
    valid[r, 8 + rng.integers(1, 8):20] = False
    valid[r, 26 + rng.integers(1, 10):] = False
  turns &= valid[None]
  batch = {"tokens": np.where(valid, rng.integers(1, 128, (8, 40)),
                              0).astype(np.int32),
           "valid": valid,
           "positions": np.maximum(np.cumsum(valid, 1) - 1, 0),
           "turn_masks": turns,
           "rewards": rng.integers(0, 2, (2, 8)).astype(np.float32)}
  packed = episodes.compact(batch, 8, pad_id=0)
  assert packed["tokens"].shape[1] < 40  # the test compares two layouts
  results = [fn(state_lib.init_state(params, optimizer), ref_params,
                jax.tree.map(jnp.asarray, b), jnp.float32(1e-3))
             for b in (batch, packed)]
  (want, want_m), (got, got_m) = jax.device_get(results)
  for key in ("loss", "pg_loss", "kl_loss", "grad_norm", "entropy_t1",
              "entropy_t2"):
    if key in want_m:
      np.testing.assert_allclose(got_m[key], want_m[key], rtol=1e-5,
                                 atol=1e-6, err_msg=key)
  # Adam's step is ~lr = 1e-3 per entry; 1e-5 allows only rounding noise
  # (amplified by Adam where a gradient entry is near eps, see run_steps).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               got.params, want.params)
