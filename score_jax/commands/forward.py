"""`score-jax forward`: one forward pass of a preset with random weights."""

import time

from absl import flags
import jax
import jax.numpy as jnp

from score_jax import commands
from score_jax import models

_PRESET = flags.DEFINE_string("preset", "gemma3-270m", "Model preset name.")
_BATCH = flags.DEFINE_integer("batch", 2, "Batch size.")
_LENGTH = flags.DEFINE_integer("length", 64, "Sequence length.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed for weights and tokens.")


def main(argv):
  if len(argv) > 1:
    commands.fail("forward", f"unexpected arguments: {argv[1:]}")
  with commands.bad_input("forward"):
    config = models.get_preset(_PRESET.value)
  print(f"{_PRESET.value}: {models.count_params(config) / 1e6:.1f}M params, "
        f"{config.num_layers} layers, devices: {jax.devices()}")
  rng_params, rng_tokens = jax.random.split(jax.random.key(_SEED.value))
  params = models.init_params(config, rng_params)
  tokens = jax.random.randint(rng_tokens, (_BATCH.value, _LENGTH.value), 0,
                              config.vocab_size)
  mask = jnp.ones(tokens.shape, bool)
  model = models.Transformer(config)
  fwd = jax.jit(lambda p, t, m: model.apply(
      {"params": p}, t, models.positions_from_mask(m), m)[0])
  start = time.perf_counter()
  logits = fwd(params, tokens, mask).block_until_ready()
  compiled = time.perf_counter() - start
  start = time.perf_counter()
  logits = fwd(params, tokens, mask).block_until_ready()
  step = time.perf_counter() - start
  print(f"logits {logits.shape} {logits.dtype}: mean {float(logits.mean()):.4f}"
        f" std {float(logits.std()):.4f}; first call {compiled:.2f}s "
        f"(compile + run), second {step * 1e3:.1f}ms")
