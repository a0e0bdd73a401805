"""The decoder: cached decoding, sharding, presets, scan compile time."""

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax import models, sharding
from score_jax.models import transformer as transformer_lib

FAMILIES = ["tiny-llama", "tiny-gemma", "tiny-gemma2", "tiny-gemma3"]


def forward(config, params, tokens, mask, ctx=None):
  model = models.Transformer(config, sharding=ctx)
  logits, _ = model.apply({"params": params}, tokens,
                          models.positions_from_mask(mask), mask)
  return logits


def left_padded_batch(vocab, lengths, total, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, vocab, (len(lengths), total))
  mask = np.arange(total)[None, :] >= (total - np.asarray(lengths))[:, None]
  return jnp.asarray(np.where(mask, tokens, 0)), jnp.asarray(mask)


@pytest.mark.parametrize("name", FAMILIES)
def test_cached_decode_equals_full_forward(name):
  """Prefill a block, then one token at a time: every position's logits equal
  the full forward's, with left padding (rows of different lengths)."""
  config = models.get_preset(name)
  params = models.init_params(config, jax.random.key(0))
  tokens, mask = left_padded_batch(config.vocab_size, [12, 7, 3], 12)
  full = forward(config, params, tokens, mask)
  model = models.Transformer(config)
  positions = models.positions_from_mask(mask)
  step = jax.jit(lambda p, t, pos, m, c: model.apply({"params": p}, t, pos, m,
                                                     cache=c))
  cache = models.init_cache(config, 3, 16)
  prefill = 5
  logits, cache = step(params, tokens[:, :prefill], positions[:, :prefill],
                       mask[:, :prefill], cache)
  outs = [logits]
  for i in range(prefill, 12):
    logits, cache = step(params, tokens[:, i:i + 1], positions[:, i:i + 1],
                         mask[:, i:i + 1], cache)
    outs.append(logits)
  cached = jnp.concatenate(outs, axis=1)
  assert int(cache["index"]) == 12
  valid = np.asarray(mask)  # only real tokens' logits are defined
  np.testing.assert_allclose(np.asarray(cached)[valid], np.asarray(full)[valid],
                             atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_padding_does_not_change_logits(name):
  config = models.get_preset(name)
  params = models.init_params(config, jax.random.key(0))
  tokens, mask = left_padded_batch(config.vocab_size, [6], 6)
  alone = forward(config, params, tokens, mask)
  padded_tokens = jnp.pad(tokens, ((0, 0), (4, 0)))
  padded_mask = jnp.pad(mask, ((0, 0), (4, 0)))
  padded = forward(config, params, padded_tokens, padded_mask)
  np.testing.assert_allclose(np.asarray(padded[:, 4:]), np.asarray(alone),
                             atol=1e-5, rtol=0)


@pytest.mark.parametrize("mesh_shape", [(1, 4, 2), (2, 4, 1)])
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_sharded_forward_equals_single_device(name, mesh_shape):
  assert jax.device_count() == 8, "conftest sets 8 simulated CPU devices"
  config = models.get_preset(name).replace(vocab_size=512)
  params = models.init_params(config, jax.random.key(0))
  tokens, mask = left_padded_batch(config.vocab_size, [10, 4, 8, 10], 10)
  want = forward(config, params, tokens, mask)

  ctx = sharding.ShardingCtx(sharding.make_mesh(mesh_shape))
  sharded_params = models.init_params(config, jax.random.key(0), ctx)
  jax.tree.map(np.testing.assert_array_equal, params, sharded_params)
  batch = sharding.batch_sharding(ctx, tokens.shape)
  fwd = jax.jit(lambda p, t, m: forward(config, p, t, m, ctx))
  got = fwd(sharded_params, jax.device_put(tokens, batch),
            jax.device_put(mask, batch))
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5,
                             rtol=0)
  # A large weight is really split: each device holds a fraction of it.
  mlp_up = sharded_params["layers"]["mlp"]["up"]  # [L, D, F]: D fsdp, F tensor
  shard = mlp_up.addressable_shards[0].data
  fsdp, tensor = mesh_shape[1], mesh_shape[2]
  assert shard.shape == (mlp_up.shape[0], mlp_up.shape[1] // fsdp,
                         mlp_up.shape[2] // tensor)
  assert shard.size * fsdp * tensor == mlp_up.size


def test_every_param_has_logical_names():
  config = models.get_preset("tiny-gemma3")
  abstract = models.abstract_params(config)
  leaves = jax.tree.leaves(
      abstract, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
  for leaf in leaves:
    assert len(leaf.names) == leaf.value.ndim
    assert leaf.names[0] == "layers" or leaf.value.ndim <= 2


def test_mqa_kv_heads_fall_back_to_replicated():
  mesh = sharding.make_mesh((1, 4, 2))
  spec = sharding.logical_to_spec(("embed", "kv_heads", "head_dim"),
                                  (64, 1, 16), mesh, sharding.DEFAULT_RULES)
  assert spec == jax.sharding.PartitionSpec("fsdp", None, None)


def test_vocab_tables_split_by_rows_whichever_way_they_are_stored():
  # 'vocab' precedes 'vocab_embed' in the rules, so it claims 'fsdp' first
  # also in lm_head [D, V]; a vocabulary 'fsdp' does not divide leaves it to
  # the rows' other dimension.
  mesh = sharding.make_mesh((1, 4, 2))
  P = jax.sharding.PartitionSpec  # pylint: disable=invalid-name
  rules = sharding.DEFAULT_RULES
  for vocab, rows, other in ((64, ("tensor", "fsdp"), None),
                             (6, "tensor", "fsdp")):
    assert sharding.logical_to_spec(("vocab", "vocab_embed"), (vocab, 16),
                                    mesh, rules) == P(rows, other)
    assert sharding.logical_to_spec(("vocab_embed", "vocab"), (16, vocab),
                                    mesh, rules) == P(other, rows)
    # The rows of a vocabulary-parallel op stay split over 'fsdp' where the
    # vocabulary is not.
    assert sharding.vocab_rows(vocab, mesh) == (
        "act_vocab_rows" if vocab == 64 else "batch")
  # The training logits line up with the table's rows; sampling's split the
  # batch first.
  assert sharding.logical_to_spec(("act_vocab_rows", "length", "act_vocab"),
                                  (8, 4, 64), mesh, rules) == P(
                                      None, None, ("tensor", "fsdp"))
  assert sharding.logical_to_spec(("batch", "length", "act_vocab"),
                                  (8, 4, 64), mesh, rules) == P(
                                      "fsdp", None, "tensor")


def test_make_mesh_fills_and_validates():
  assert sharding.make_mesh((2, -1, 1)).devices.shape == (2, 4, 1)
  with pytest.raises(ValueError, match="at most one -1"):
    sharding.make_mesh((-1, -1, 1))
  assert sharding.make_mesh((1, 2, 1)).devices.size == 2  # a subset
  with pytest.raises(ValueError, match="needs 16 devices"):
    sharding.make_mesh((2, 4, 2))
  with pytest.raises(ValueError, match="does not divide"):
    sharding.make_mesh((3, -1, 1))


# Published sizes (total parameters, tied embeddings counted once).
PUBLISHED = {
    "gemma-2b": 2.51e9,
    "gemma2-2b": 2.61e9,
    "gemma3-1b": 1.00e9,
    "gemma3-270m": 268e6,
    "smollm2-135m": 134.5e6,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_param_counts_match_published(name):
  count = models.count_params(models.get_preset(name))
  assert abs(count - PUBLISHED[name]) / PUBLISHED[name] < 0.005, count


def test_all_presets_build_abstractly():
  for name in models.PRESETS:
    assert models.count_params(models.get_preset(name)) > 0


def test_bad_config_is_named():
  with pytest.raises(ValueError, match="num_kv_heads"):
    models.get_preset("tiny-llama").replace(num_kv_heads=3)
  with pytest.raises(ValueError, match="remat_policy 'sometimes'"):
    models.get_preset("tiny-llama").replace(remat_policy="sometimes")
  with pytest.raises(KeyError, match="unknown model preset 'gpt-5'"):
    models.get_preset("gpt-5")
  with pytest.raises(ValueError, match=r"output_vocab=300 must be in \[1, "
                     r"vocab_size=256\]"):
    models.get_preset("tiny-llama").replace(output_vocab=300)


@pytest.mark.parametrize("policy", ["full", "dots", "dots_no_batch"])
def test_remat_policies_keep_values_and_grads(policy):
  config = models.get_preset("tiny-gemma2")
  params = models.init_params(config, jax.random.key(0))
  tokens, mask = left_padded_batch(config.vocab_size, [8, 5], 8)

  def loss(p, c):
    return jnp.mean(forward(c, p, tokens, mask) ** 2)

  want_loss, want_grad = jax.value_and_grad(loss)(params, config)
  got_loss, got_grad = jax.value_and_grad(loss)(
      params, config.replace(remat_policy=policy))
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               got_grad, want_grad)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_dense_gradients_equal_autodiff_of_the_matmul(dtype):
  # The model's projections take the weight gradient as x^T g (a custom
  # VJP, for XLA's CPU layouts); it must equal autodiff of x @ w.
  kx, kw, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (3, 5, 8)).astype(dtype)
  w = jax.random.normal(kw, (8, 6)).astype(dtype)
  g = jax.random.normal(kg, (3, 5, 6)).astype(dtype)
  got, got_vjp = jax.vjp(transformer_lib._dense, x, w)  # pylint: disable=protected-access
  want, want_vjp = jax.vjp(jnp.matmul, x, w)
  tol = 1e-6 if dtype == "float32" else 2e-2
  np.testing.assert_allclose(np.float32(got), np.float32(want), atol=tol)
  for a, b in zip(got_vjp(g), want_vjp(g)):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_allclose(np.float32(a), np.float32(b), rtol=tol,
                               atol=tol)


def _compile_seconds(num_layers):
  config = models.get_preset("gemma2-2b").replace(
      num_layers=num_layers, vocab_size=1024, embed_dim=256, hidden_dim=512,
      num_heads=4, num_kv_heads=2, head_dim=64, query_pre_attn_scalar=64)
  model = models.Transformer(config)
  params = jax.eval_shape(lambda: nn.unbox(models.abstract_params(config)))
  tokens = jax.ShapeDtypeStruct((2, 64), jnp.int32)
  mask = jax.ShapeDtypeStruct((2, 64), jnp.bool_)
  fn = jax.jit(lambda p, t, m: model.apply(
      {"params": p}, t, models.positions_from_mask(m), m)[0])
  start = time.perf_counter()
  fn.lower(params, tokens, mask).compile()
  return time.perf_counter() - start


def test_compile_time_does_not_grow_with_depth():
  _compile_seconds(2)  # warm up JAX/XLA start-up costs
  shallow = min(_compile_seconds(2) for _ in range(2))
  deep = min(_compile_seconds(26) for _ in range(2))
  assert deep < 2 * shallow, (shallow, deep)
