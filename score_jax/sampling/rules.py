"""Sampling rules: greedy, temperature, top-k and top-p, combinable.

One function turns float32 logits [B, V] into the next token of each row and
the log-prob of that token. Every row draws from its own key (the step key
folded with the row index), so a row's sample does not depend on its batch
neighbours.

A row draws one uniform number and inverts its cumulative distribution
(blocks of _BLOCK tokens: block sums, then one block), rather than adding
Gumbel noise to every logit: the noise costs a counter-based random number
per vocabulary entry per step, which on a CPU took longer than the whole
model's matmuls at batch 64. Float32 cumulative sums resolve probabilities
to about 1e-7 of the row's mass, as float32 Gumbel noise does.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

Array = jax.Array
_BLOCK = 256  # tokens per block of the inverse-CDF draw


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


def _argmax(x: Array) -> Array:
  """First index of the row maximum, int32[B] (a max and a min reduction:
  XLA's CPU backend runs jnp.argmax's paired reduction far slower)."""
  top = jnp.max(x, axis=-1, keepdims=True)
  iota = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
  return jnp.min(jnp.where(x == top, iota, x.shape[-1]), axis=-1)


def _rising_cumsum(x: Array) -> Array:
  """Cumulative sums of the rows of non-negative x [B, N], non-decreasing
  and rising only at positive entries. XLA's CPU cumsum sums each output in
  its own order: over some hundreds of entries it can dip, or rise across a
  zero entry, which would let the search below land on a zero weight."""
  cum = jnp.where(x > 0, jnp.cumsum(x, axis=-1), 0.0)
  return jax.lax.cummax(cum, axis=x.ndim - 1)


def _count_at_most(cum: Array, target: Array) -> Array:
  """Entries of each row of a non-decreasing cum [B, N] that are <= target
  [B]: the index of the first entry above it."""
  return jnp.sum((cum <= target[:, None]).astype(jnp.int32), axis=-1)


def _inverse_cdf(weights: Array, u: Array) -> Array:
  """Index drawn from each row of non-negative weights [B, V] (each row with
  some positive weight) given uniforms u [B] in [0, 1): int32[B].

  Zero-weight entries are never drawn."""
  B, V = weights.shape
  nb = -(-V // _BLOCK)
  if nb * _BLOCK != V:
    weights = jnp.pad(weights, ((0, 0), (0, nb * _BLOCK - V)))
  blocks = weights.reshape(B, nb, _BLOCK)
  cum = _rising_cumsum(blocks.sum(-1))  # [B, nb]
  # Strictly below the total, so some block's cumulative sum exceeds it and
  # that block (the first such) has positive weight.
  total = cum[:, -1]
  target = jnp.minimum(u * total, jnp.nextafter(total, 0.0))
  j = _count_at_most(cum, target)
  before = jnp.where(
      j > 0, jnp.take_along_axis(cum, jnp.maximum(j - 1, 0)[:, None],
                                 axis=-1)[:, 0], 0.0)
  block = jnp.take_along_axis(blocks, j[:, None, None], axis=1)[:, 0]
  i = _count_at_most(_rising_cumsum(block), target - before)
  # A zero-weight entry is first above the residual only past the block's
  # end (rounding between the two sums): take its last positive entry.
  last = _BLOCK - 1 - _argmax((block > 0)[:, ::-1].astype(jnp.int32))
  i = jnp.where(i < _BLOCK, i, last)
  return j * _BLOCK + i


def sample_logits(logits: Array, rng: Array,
                  config: SamplingConfig) -> tuple[Array, Array]:
  """Next tokens int32[B] and their float32 log-probs [B] from logits [B, V].

  rng is one key for the step; row b draws with fold_in(rng, b).
  """
  logits = logits.astype(jnp.float32)
  scaled = logits if config.is_greedy else logits / config.temperature
  top = jnp.max(scaled, axis=-1, keepdims=True)
  weights = jnp.exp(scaled - top)
  norm = jnp.log(jnp.sum(weights, axis=-1)) + top[:, 0]
  if config.is_greedy:
    tokens = _argmax(logits)
  else:
    allowed = truncate(scaled, config.top_k, config.top_p)
    if allowed is not scaled:  # the top logit is always allowed
      weights = jnp.exp(allowed - top)
    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(
        jnp.arange(logits.shape[0]))
    u = jax.vmap(lambda k: jax.random.uniform(k, ()))(keys)
    tokens = _inverse_cdf(weights, u)
  # log_softmax at the drawn token only: no [B, V] log-prob array.
  picked = jnp.take_along_axis(scaled, tokens[:, None], axis=-1)[:, 0]
  return tokens, picked - norm
