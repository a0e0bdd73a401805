"""Multi-turn rollout: x -> y1 -> followup -> y2 -> ... in one fixed layout.

Each row of a rollout is one sequence laid out slot for slot as

  [left pad | x | y1 (budget_1 slots) | eot? followup_1 | y2 (budget_2) | ...]

where a turn's slots after its stop token stay invalid (gaps) and the `eot?`
slot holds end_of_turn_id only on rows whose turn did not end with it (it hit
the budget, or stopped on another stop id). The KV cache
uses the same slots, so turn t+1 is prefilled by appending its followup block
to the turn-t cache: the input of turn t+1 is exactly x ⊕ y1 ⊕ ... ⊕ y_t ⊕
followup as token ids, never re-tokenised text. Attention follows positions
(cumsum(valid) - 1), so gaps cost nothing but slots.

Shapes are fixed by the prompt-length bucket, the per-turn budgets and the
followup lengths, so a training run compiles a handful of programs
(`compile_count()`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from score_jax import models
from score_jax.models import ModelConfig
from score_jax.sampling import decode as _decode
from score_jax.sampling.rules import SamplingConfig
from score_jax.sharding import (ShardingCtx, batch_sharding, host_rows,
                                process_rows)

Array = jax.Array
MIN_BUCKET = 16


@dataclasses.dataclass(frozen=True)
class Rollout:
  """N turns of B rows (row p * k + j is sample j of prompt p).

  tokens: int32[B, L] the whole sequence of each row, pad_id on invalid slots.
  valid: bool[B, L] False on padding and on unused slots after a stop.
  positions: int32[B, L] cumsum(valid) - 1 (0 before the first valid slot).
  turn_masks: bool[N, B, L] tokens sampled in turn t, stop token included.
  logprobs: float32[B, L] sampling log-probs of sampled tokens, 0 elsewhere
    (log_softmax(logits / temperature), see SamplingConfig).
  lengths: int32[N, B] sampled tokens per turn, stop token included.
  stopped: bool[N, B] the turn ended on a stop id (else it hit its budget).
  texts: [N][b] decoded response of each turn without its stop token, for
    the rows `rows` only; host only: not a pytree leaf (a Rollout passed
    through jit arrives with texts=()), empty when no decode_fn was given.
  rows: (start, stop), the rows of the batch this process holds (all B in
    one process; under several JAX processes, this host's block of the
    globally sharded batch). Host only, like texts.
  """

  tokens: Array
  valid: Array
  positions: Array
  turn_masks: Array
  logprobs: Array
  lengths: Array
  stopped: Array
  texts: tuple = ()
  rows: tuple[int, int] = (0, 0)

  @property
  def num_turns(self) -> int:
    return self.turn_masks.shape[0]

  def on_host(self) -> "Rollout":
    """This process's rows (`rows`) of every array, as numpy."""
    return Rollout(
        **{k: host_rows(getattr(self, k), 1 if k in _TURN_MAJOR else 0)
           for k in _LEAVES}, texts=self.texts, rows=self.rows)


_LEAVES = ("tokens", "valid", "positions", "turn_masks", "logprobs",
           "lengths", "stopped")
_TURN_MAJOR = ("turn_masks", "lengths", "stopped")  # batch on axis 1
jax.tree_util.register_pytree_node(
    Rollout,
    lambda r: (tuple(getattr(r, k) for k in _LEAVES), None),
    lambda _, leaves: Rollout(*leaves))


def bucket_length(n: int, buckets: Optional[Sequence[int]] = None) -> int:
  """The padded length for a prompt of n tokens.

  Default buckets are powers of two from MIN_BUCKET: at most log2(max) prompt
  shapes per run. With explicit buckets, the smallest one that fits.
  """
  if buckets is None:
    return max(MIN_BUCKET, 1 << math.ceil(math.log2(max(n, 1))))
  fitting = [b for b in sorted(buckets) if b >= n]
  if not fitting:
    raise ValueError(f"prompt of {n} tokens is longer than the largest "
                     f"bucket {max(buckets)}")
  return fitting[0]


def layout_length(prompt_len: int, budgets: Sequence[int],
                  followup_lens: Sequence[int], end_of_turn: bool) -> int:
  """Cache slots of a multi-turn layout: the (bucketed) prompt, every
  turn's budget, and each follow-up between turns with, when the template
  has one, the end-of-turn token that closes the turn before it."""
  return (prompt_len + sum(budgets) +
          sum(n + int(end_of_turn) for n in followup_lens))


def compile_count() -> int:
  """Programs the sampler has compiled in this process (one per trace)."""
  return sum(_decode.TRACE_COUNTS.values())


def _per_turn(value, num_turns: int, name: str,
              single=(int, np.integer)) -> list:
  """`value` for every turn when it is one `single`, else its one entry per
  turn."""
  if isinstance(value, single):
    return [value] * num_turns
  value = list(value)
  if len(value) != num_turns:
    raise ValueError(f"{name} has {len(value)} entries, expected one per "
                     f"turn ({num_turns})")
  return value


def _followups(followup_ids, num_turns: int) -> list[list[int]]:
  """One followup per turn transition (num_turns - 1 of them)."""
  followup_ids = list(followup_ids)
  if followup_ids and not isinstance(followup_ids[0], (int, np.integer)):
    out = [list(map(int, f)) for f in followup_ids]
    if len(out) != num_turns - 1:
      raise ValueError(f"followup_ids has {len(out)} lists, expected one per "
                       f"turn transition ({num_turns - 1})")
  else:
    out = [list(map(int, followup_ids))] * (num_turns - 1)
  if any(not f for f in out):
    raise ValueError("followup_ids must not be empty: turn t+1 needs a "
                     "followup block after y_t")
  return out


def _left_pad(prompts: list[list[int]], length: int,
              pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  tokens = np.full((len(prompts), length), pad_id, np.int32)
  mask = np.zeros((len(prompts), length), bool)
  for i, p in enumerate(prompts):
    tokens[i, length - len(p):] = p
    mask[i, length - len(p):] = True
  return tokens, mask


def _texts(tokens: np.ndarray, turn: np.ndarray, stopped: np.ndarray,
           decode_fn: Callable[[list[int]], str]) -> tuple:
  out = []
  for t in range(stopped.shape[0]):
    row_texts = []
    for b in range(tokens.shape[0]):
      ids = tokens[b][turn[b] == t].tolist()
      if stopped[t, b]:
        ids = ids[:-1]
      row_texts.append(decode_fn(ids))
    out.append(tuple(row_texts))
  return tuple(out)


def rollout(model_or_config: Union[ModelConfig, models.Transformer],
            params,
            prompt_ids: Sequence[Sequence[int]],
            *,
            followup_ids: Union[Sequence[int], Sequence[Sequence[int]]] = (),
            num_turns: int = 2,
            samples_per_prompt: int = 1,
            max_new_tokens: Union[int, Sequence[int]],
            stop_ids: Sequence[int],
            rng: Array,
            sampling: Union[SamplingConfig,
                            Sequence[SamplingConfig]] = SamplingConfig(),
            decode_fn: Optional[Callable[[list[int]], str]] = None,
            pad_id: int = 0,
            end_of_turn_id: Optional[int] = None,
            ctx: Optional[ShardingCtx] = None,
            prompt_buckets: Optional[Sequence[int]] = None,
            reuse_cache: bool = True) -> Rollout:
  """Samples num_turns turns for every prompt, samples_per_prompt times.

  prompt_ids: P token-id lists (unpadded). followup_ids: the ids appended
  after each turn but the last (one list for every transition, or a list per
  transition). max_new_tokens: budget of every turn, or one per turn.
  sampling: the rule of every turn, or one per turn (e.g. a hotter turn 2).
  stop_ids: a turn ends on any of them (empty: every turn runs to its
  budget, as benchmarks with forced length want). Rows are
  prompt-major: row p * k + j is sample j of prompt p. rng: a jax key; the
  same key gives the same rollout. ctx: run under this mesh (params sharded
  by models.init_params(config, rng, ctx); the batch goes over the data
  axes).

  Several JAX processes (multi-host) each call this with the same prompts
  and key: the rollout is one globally sharded computation, each host's
  devices sampling their block of rows. Row b's draw at a decode step is
  keyed by fold_in(step key, b) with b its index in the global batch
  (`rules.sample_logits`), so which process (or device) holds a row never
  changes what is sampled for it: 2 hosts x 4 devices sample exactly what
  1 host x 8 devices does. Texts are decoded only for this host's rows
  (`Rollout.rows`), where its rewards are computed.

  reuse_cache=False re-prefills the whole sequence before each turn
  instead of appending to the cache (same result; kept to measure).
  """
  if isinstance(model_or_config, models.Transformer):
    config = model_or_config.config
    ctx = ctx if ctx is not None else model_or_config.sharding
  else:
    config = model_or_config
  if num_turns < 1:
    raise ValueError(f"num_turns must be >= 1, got {num_turns}")
  if samples_per_prompt < 1:
    raise ValueError(f"samples_per_prompt must be >= 1, got "
                     f"{samples_per_prompt}")
  prompts = [list(map(int, p)) for p in prompt_ids]
  if not prompts:
    raise ValueError("prompt_ids is empty")
  for i, p in enumerate(prompts):
    if not p:
      raise ValueError(f"prompt {i} has no tokens")
    bad = [t for t in p if not 0 <= t < config.vocab_size]
    if bad:
      raise ValueError(f"prompt {i} has ids outside the vocab "
                       f"[0, {config.vocab_size}): {bad[:5]}")
  budgets = [int(b) for b in
             _per_turn(max_new_tokens, num_turns, "max_new_tokens")]
  if min(budgets) < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {budgets}")
  followups = _followups(followup_ids, num_turns) if num_turns > 1 else []
  stops = tuple(sorted(set(int(s) for s in stop_ids)))
  rules = _per_turn(sampling, num_turns, "sampling", SamplingConfig)

  rows = [p for p in prompts for _ in range(samples_per_prompt)]
  batch = len(rows)
  prompt_len = bucket_length(max(map(len, rows)), prompt_buckets)
  length = layout_length(prompt_len, budgets, [len(f) for f in followups],
                         end_of_turn=end_of_turn_id is not None)
  statics = dict(config=config, pad_id=pad_id, ctx=ctx)

  tokens, mask = _left_pad(rows, prompt_len, pad_id)
  tokens, mask = jnp.asarray(tokens), jnp.asarray(mask)
  if ctx is not None:
    tokens = jax.device_put(tokens, batch_sharding(ctx, tokens.shape))
    mask = jax.device_put(mask, batch_sharding(ctx, mask.shape))
  state = _decode.init_state(config, batch, length, pad_id, ctx)
  layers = _decode.unstack_params(params)
  state = _decode.prefill(params, layers, state, tokens, mask, **statics)
  stopped = []
  for t in range(num_turns):
    if t > 0:
      state = _decode.append_followup(
          params, layers, state, jnp.asarray(followups[t - 1], jnp.int32),
          end_of_turn_id=end_of_turn_id, **statics)
      if not reuse_cache:
        state = _decode.refill(params, layers, state,
                               length=int(state["cache"]["index"]), **statics)
    state = _decode.decode(params, layers, state, jnp.int32(t),
                           jnp.int32(budgets[t]),
                           jax.random.fold_in(rng, t), sampling=rules[t],
                           stop_ids=stops, **statics)
    # Copied: the next call donates (deletes) the state's buffers.
    stopped.append(jnp.copy(state["done"]))

  valid = state["cache"]["valid"]
  turn_masks = state["turn"][None] == jnp.arange(num_turns)[:, None, None]
  stopped = jnp.stack(stopped)
  rows = process_rows(state["tokens"].sharding, state["tokens"].shape)
  texts = ()
  if decode_fn is not None:
    texts = _texts(host_rows(state["tokens"]), host_rows(state["turn"]),
                   host_rows(stopped, axis=1), decode_fn)
  return Rollout(tokens=state["tokens"], valid=valid,
                 positions=models.positions_from_mask(valid),
                 turn_masks=turn_masks, logprobs=state["logprobs"],
                 lengths=turn_masks.sum(-1, dtype=jnp.int32),
                 stopped=stopped, texts=texts, rows=rows)
