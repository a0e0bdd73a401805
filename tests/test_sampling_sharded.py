"""The sampler under a mesh of 8 simulated devices equals one device,
greedy and sampling."""

import jax
import numpy as np
import pytest

from score_jax import models, sampling, sharding

PROMPTS = [[5, 17, 33, 9], [40, 41], [7, 8, 9, 10, 11, 3], [200, 3, 4]]


# Greedy, and sampling with every truncation: each row draws from its own
# key, so the draws do not depend on how the batch is split either.
SAMPLERS = {"greedy": sampling.SamplingConfig(greedy=True),
            "sampled": sampling.SamplingConfig(temperature=1.0, top_k=50,
                                               top_p=0.9)}


@pytest.mark.slow
@pytest.mark.parametrize("preset,mesh_shape,sampler", [
    ("tiny-llama", (2, 2, 2), "greedy"), ("tiny-gemma3", (1, 4, 2), "greedy"),
    ("tiny-llama", (2, 2, 2), "sampled")])
def test_sharded_rollout_equals_single_device(preset, mesh_shape, sampler):
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS from tests/conftest.py)")
  config = models.get_preset(preset)
  kw = dict(followup_ids=[3, 4], samples_per_prompt=2, max_new_tokens=[6, 5],
            stop_ids=list(range(0, 256, 23)), rng=jax.random.key(1),
            end_of_turn_id=250, sampling=SAMPLERS[sampler])
  single = sampling.rollout(config, models.init_params(config,
                                                       jax.random.key(0)),
                            PROMPTS, **kw)
  ctx = sharding.ShardingCtx(sharding.make_mesh(mesh_shape))
  params = models.init_params(config, jax.random.key(0), ctx)
  # Params really are sharded (FSDP over 'embed', tensor over heads/MLP).
  q = params["layers"]["attn"]["q"]
  assert len(q.sharding.device_set) == 8 and not q.is_fully_replicated
  sharded = sampling.rollout(models.Transformer(config, sharding=ctx), params,
                             PROMPTS, **kw)
  # The batch (8 rows) is split over the data axes.
  shards = {s.data.shape for s in sharded.tokens.addressable_shards}
  assert shards == {(8 // (mesh_shape[0] * mesh_shape[1]),
                     sharded.tokens.shape[1])}
  np.testing.assert_array_equal(sharded.tokens, single.tokens)
  np.testing.assert_array_equal(sharded.valid, single.valid)
  np.testing.assert_array_equal(sharded.turn_masks, single.turn_masks)
  np.testing.assert_allclose(sharded.logprobs, single.logprobs, atol=1e-5)
