"""Per-token log-probs, entropy and KL to the reference: dense and chunked.

Alignment (all outputs): position i holds the statistic of the distribution
that *produced* token i, i.e. the one predicted from logits[:, i - 1]; position
0 predicts nothing and holds 0. So `token_logprobs(logits, tokens)[:, i]` is
log pi(tokens[:, i] | tokens[:, :i]) and a turn mask over the sampled tokens
selects exactly their log-probs.

Everything is float32. With a large vocabulary (Gemma: 262k) the logits
[B, L, V] of a long sequence do not fit next to the activations; the chunked
variant `token_stats_from_hidden` gets the same numbers from the final hidden
states [B, L, D] by materialising logits for `chunk_size` positions at a time
(and recomputing them in the backward pass instead of storing them).

Shapes: B batch, L length, V vocab, D model width, C chunk length.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

Array = jax.Array
LogitsFn = Callable[[Array], Array]

KL_ESTIMATORS = ("k1", "k3", "full")


def _next_token_stats(logits: Array, targets: Array,
                      ref_logits: Optional[Array] = None,
                      entropy: bool = False) -> dict[str, Array]:
  """Stats of next-token distributions (no shift).

  logits float[..., V], targets int32[...], ref_logits float[..., V] ->
  {'logprobs', 'entropy'?, 'ref_logprobs'?, 'full_kl'?}, each float32[...].
  """
  logits = logits.astype(jnp.float32)
  logp = jax.nn.log_softmax(logits, axis=-1)
  out = {"logprobs": jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]}
  if entropy:
    out["entropy"] = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
  if ref_logits is not None:
    ref_logp = jax.nn.log_softmax(ref_logits.astype(jnp.float32), axis=-1)
    out["ref_logprobs"] = jnp.take_along_axis(ref_logp, targets[..., None],
                                              -1)[..., 0]
    out["full_kl"] = jnp.sum(jnp.exp(logp) * (logp - ref_logp), axis=-1)
  return out


def _shift_right(x: Array) -> Array:
  """float[B, L-1] stats of positions 1..L-1 -> float32[B, L], 0 at i = 0."""
  return jnp.pad(x, ((0, 0), (1, 0)))


def _check_tokens(tokens: Array, batch_shape: tuple[int, ...], what: str):
  if tokens.ndim != 2 or tuple(tokens.shape) != tuple(batch_shape):
    raise ValueError(f"tokens must be int[B, L] matching {what} "
                     f"{tuple(batch_shape)}, got shape {tokens.shape}")
  if not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise ValueError(f"tokens must be integer, got {tokens.dtype}")


def token_logprobs(logits: Array, tokens: Array) -> Array:
  """logits float[B, L, V], tokens int[B, L] -> float32[B, L].

  lp[:, i] = log_softmax(logits[:, i - 1])[tokens[:, i]]; lp[:, 0] = 0.
  """
  return token_stats(logits, tokens)["logprobs"]


def token_entropy(logits: Array) -> Array:
  """logits float[B, L, V] -> float32[B, L]: entropy (nats) of the
  distribution that produced token i (from logits[:, i - 1]); 0 at i = 0."""
  logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
  return _shift_right(-jnp.sum(jnp.exp(logp) * logp, axis=-1))


def token_stats(logits: Array, tokens: Array,
                ref_logits: Optional[Array] = None,
                entropy: bool = False) -> dict[str, Array]:
  """All per-token stats from dense logits, in one pass over the vocabulary.

  logits, ref_logits float[B, L, V]; tokens int[B, L] -> dict of float32[B, L]:
  'logprobs', plus 'entropy' if `entropy`, plus 'ref_logprobs' and 'full_kl'
  (exact KL(pi || pi_ref) over the vocabulary) if `ref_logits` is given.
  """
  if logits.ndim != 3:
    raise ValueError(f"logits must be float[B, L, V], got shape {logits.shape}")
  _check_tokens(tokens, logits.shape[:2], "logits")
  if ref_logits is not None and ref_logits.shape != logits.shape:
    raise ValueError(f"ref_logits shape {ref_logits.shape} != logits shape "
                     f"{logits.shape}")
  stats = _next_token_stats(
      logits[:, :-1], tokens[:, 1:],
      None if ref_logits is None else ref_logits[:, :-1], entropy)
  return {k: _shift_right(v) for k, v in stats.items()}


def token_stats_from_hidden(hidden: Array, tokens: Array, logits_fn: LogitsFn,
                            *, chunk_size: int,
                            ref_hidden: Optional[Array] = None,
                            ref_logits_fn: Optional[LogitsFn] = None,
                            entropy: bool = False) -> dict[str, Array]:
  """`token_stats` computed chunk by chunk from final hidden states.

  hidden float[B, L, D] (policy), tokens int[B, L], logits_fn: float[B, C, D]
  -> float[B, C, V] (e.g. `lambda h: model.apply(v, h,
  method=Transformer.logits)`); ref_hidden float[B, L, D] and ref_logits_fn
  likewise for the reference (both or neither). Returns the same dict as
  `token_stats`. Peak memory holds logits of B x chunk_size positions (twice
  with a reference), in the forward and, via rematerialisation, the backward.
  """
  if hidden.ndim != 3:
    raise ValueError(f"hidden must be float[B, L, D], got shape {hidden.shape}")
  _check_tokens(tokens, hidden.shape[:2], "hidden")
  if (ref_hidden is None) != (ref_logits_fn is None):
    raise ValueError("ref_hidden and ref_logits_fn must be given together")
  if ref_hidden is not None and ref_hidden.shape[:2] != hidden.shape[:2]:
    raise ValueError(f"ref_hidden shape {ref_hidden.shape} does not match "
                     f"hidden shape {hidden.shape} in [B, L]")
  if not isinstance(chunk_size, int) or chunk_size < 1:
    raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")

  b, length = tokens.shape
  n = length - 1  # positions 0..L-2 predict tokens 1..L-1
  if n == 0:  # a single token: nothing is predicted
    names = (["logprobs"] + ["entropy"] * entropy +
             ["ref_logprobs", "full_kl"] * (ref_hidden is not None))
    return {k: jnp.zeros((b, 1), jnp.float32) for k in names}
  num_chunks = -(-n // chunk_size)
  pad = num_chunks * chunk_size - n

  def chunks(x: Array) -> Array:  # [B, L-1, ...] -> [N, B, C, ...]
    x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    x = x.reshape((b, num_chunks, chunk_size) + x.shape[2:])
    return jnp.swapaxes(x, 0, 1)

  xs = {"h": chunks(hidden[:, :-1]), "t": chunks(tokens[:, 1:])}
  if ref_hidden is not None:
    xs["rh"] = chunks(ref_hidden[:, :-1])

  # Rematerialised: the backward recomputes one chunk's logits rather than
  # keeping all [B, L, V] of them alive as scan residuals.
  @jax.checkpoint
  def body(x: dict[str, Array]) -> dict[str, Array]:
    ref_logits = ref_logits_fn(x["rh"]) if "rh" in x else None
    return _next_token_stats(logits_fn(x["h"]), x["t"], ref_logits, entropy)

  out = jax.lax.map(body, xs)  # each [N, B, C]
  return {k: _shift_right(jnp.swapaxes(v, 0, 1).reshape(b, -1)[:, :n])
          for k, v in out.items()}


def kl_estimate(logprobs: Array, ref_logprobs: Array, estimator: str,
                full_kl: Optional[Array] = None) -> Array:
  """Per-token estimate of KL(pi || pi_ref), float32[B, L].

  logprobs, ref_logprobs float[B, L]: log-probs of the sampled tokens under
  the policy and the frozen reference. With log-ratio d = ref_logp - logp and
  tokens sampled from pi:
    k1   = -d                   unbiased, can be negative, high variance;
    k3   = exp(d) - d - 1       unbiased, >= 0, low variance (Schulman 2020);
    full = sum_v pi (log pi - log pi_ref), exact; pass it as `full_kl`
           (from `token_stats` / `token_stats_from_hidden` with a reference).
  """
  if estimator not in KL_ESTIMATORS:
    raise ValueError(f"unknown KL estimator {estimator!r}; known: "
                     f"{', '.join(KL_ESTIMATORS)}")
  if logprobs.shape != ref_logprobs.shape:
    raise ValueError(f"logprobs shape {logprobs.shape} != ref_logprobs shape "
                     f"{ref_logprobs.shape}")
  d = ref_logprobs.astype(jnp.float32) - logprobs.astype(jnp.float32)
  if estimator == "k1":
    return -d
  if estimator == "k3":
    return jnp.exp(d) - d - 1.0
  if full_kl is None:
    raise ValueError("kl estimator 'full' needs full_kl [B, L] (exact KL over "
                     "the vocabulary from token_stats(..., ref_logits=...))")
  if full_kl.shape != logprobs.shape:
    raise ValueError(f"full_kl shape {full_kl.shape} != logprobs shape "
                     f"{logprobs.shape}")
  return full_kl.astype(jnp.float32)
