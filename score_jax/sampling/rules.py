"""Sampling rules: greedy, temperature, top-k and top-p, combinable.

One function turns float32 logits [B, V] into the next token of each row and
the log-prob of that token. Every row draws from its own key (the step key
folded with the row index), so a row's sample does not depend on its batch
neighbours.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How the next token is chosen (hashable: a static jit argument).

  temperature: logits are divided by it; 0 means greedy.
  top_k: keep the k most likely tokens (None or 0: all).
  top_p: keep the smallest set of most likely tokens whose mass reaches p,
    measured after top-k (None or 1.0: all).
  greedy: argmax, ignoring the other fields.

  Log-probs of sampled tokens are always `log_softmax(logits / temperature)`
  of the untruncated distribution (temperature 1 when greedy): the policy's
  own log-prob at that temperature, which is what a training forward over the
  same tokens recomputes. Top-k / top-p only restrict which tokens can be
  drawn; they do not renormalise the reported log-prob.
  """

  temperature: float = 1.0
  top_k: Optional[int] = None
  top_p: Optional[float] = None
  greedy: bool = False

  def __post_init__(self):
    if self.temperature < 0:
      raise ValueError(f"SamplingConfig: temperature must be >= 0, got "
                       f"{self.temperature}")
    if self.top_k is not None and self.top_k < 0:
      raise ValueError(f"SamplingConfig: top_k must be >= 0, got {self.top_k}")
    if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
      raise ValueError(f"SamplingConfig: top_p must be in (0, 1], got "
                       f"{self.top_p}")

  @property
  def is_greedy(self) -> bool:
    return self.greedy or self.temperature == 0.0


def truncate(logits: Array, top_k: Optional[int],
             top_p: Optional[float]) -> Array:
  """Sets logits outside the top-k / top-p set to -inf. float32[B, V]."""
  neg = jnp.asarray(-jnp.inf, logits.dtype)
  if top_k and top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, neg, logits)
  if top_p is not None and top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # Keep a token if the mass strictly before it is below p: the smallest
    # prefix reaching p, and always the most likely token.
    before = jnp.cumsum(probs, axis=-1) - probs
    keep = before < top_p
    threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1,
                        keepdims=True)
    logits = jnp.where(logits < threshold, neg, logits)
  return logits


def sample_logits(logits: Array, rng: Array,
                  config: SamplingConfig) -> tuple[Array, Array]:
  """Next tokens int32[B] and their float32 log-probs [B] from logits [B, V].

  rng is one key for the step; row b draws with fold_in(rng, b).
  """
  logits = logits.astype(jnp.float32)
  if config.is_greedy:
    scaled = logits
    tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  else:
    scaled = logits / config.temperature
    allowed = truncate(scaled, config.top_k, config.top_p)
    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(
        jnp.arange(logits.shape[0]))
    tokens = jax.vmap(jax.random.categorical)(keys, allowed).astype(jnp.int32)
  # log_softmax at the drawn token only: no [B, V] log-prob array.
  picked = jnp.take_along_axis(scaled, tokens[:, None], axis=-1)[:, 0]
  return tokens, picked - jax.nn.logsumexp(scaled, axis=-1)
