"""Jitted prefill and `lax.while_loop` decode over one donated sampler state.

The sampler state holds the KV cache and, slot for slot, the sequence being
built (cache slot s is column s of the rollout's tokens):

  cache        the model cache (k/v: L buffers [B, K, S, Dh], pos/valid
               [B, S], index; models.init_cache)
  tokens       int32[B, S]   ids (pad_id on slots that hold nothing)
  turn         int32[B, S]   turn that sampled the slot, -1 if not sampled
  logprobs     float32[B, S] sampling log-prob of sampled slots, 0 elsewhere
  next_pos     int32[B]      position of the row's next token
  last_logits  float32[B, V] distribution of the row's next token
  done         bool[B]       the row stopped in the current turn
  last_token   int32[B]      the row's last sampled token in the current
                             turn (pad_id before its first)

The cache's `valid` is the rollout's valid mask, its `pos` the positions.
Each function takes the state donated and returns the new one, so XLA updates
the cache in place: a decode step writes one K/V slot per layer, never copies
the cache.

The model runs its cached layers unrolled, each on its own weights. Those
come from `unstack_params` (one program, once per rollout): slicing the
stacked [L, ...] weights inside the decode loop copies every layer's weights
every step, and slicing them inside the decode program, before its loop,
puts them in that program's one large temporary buffer, which the CPU
backend maps and faults in afresh on every call.

Every jitted function counts its traces (one trace = one compiled program) in
`TRACE_COUNTS`, so a run can report how many programs it compiled.
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp

from score_jax import models
from score_jax.models import ModelConfig
from score_jax.sampling.rules import SamplingConfig, sample_logits
from score_jax.sharding import ShardingCtx, constrain

Array = jax.Array
State = dict[str, Any]
Layers = tuple[Any, ...]  # per-layer param trees (unstack_params)

# Traces (= compiled programs) per jitted sampler function, since import.
TRACE_COUNTS: collections.Counter = collections.Counter()

_ROW_AXES = {
    "tokens": ("batch", "cache_length"),
    "turn": ("batch", "cache_length"),
    "logprobs": ("batch", "cache_length"),
    "next_pos": ("batch",),
    "last_logits": ("batch", None),
    "done": ("batch",),
    "last_token": ("batch",),
}


def _constrain_state(state: State, ctx: Optional[ShardingCtx]) -> State:
  if ctx is None:
    return state
  out = {k: constrain(state[k], names, ctx) for k, names in _ROW_AXES.items()}
  out["cache"] = {
      k: (tuple(constrain(x, models.CACHE_AXES[k], ctx) for x in v)
          if isinstance(v, tuple) else constrain(v, models.CACHE_AXES[k], ctx))
      for k, v in state["cache"].items()}
  return out


def _model(config: ModelConfig, ctx: Optional[ShardingCtx]):
  return models.Transformer(config, sharding=ctx)


def _counted(fn):
  """Counts each trace of fn in TRACE_COUNTS under fn's name."""

  @functools.wraps(fn)
  def traced(*args, **kwargs):
    TRACE_COUNTS[fn.__name__] += 1
    return fn(*args, **kwargs)

  return traced


@functools.partial(jax.jit, static_argnames=("config", "batch", "length",
                                             "pad_id", "ctx"))
@_counted
def init_state(config: ModelConfig, batch: int, length: int, pad_id: int,
               ctx: Optional[ShardingCtx] = None) -> State:
  """An empty state for `batch` rows of `length` slots (created sharded)."""
  state = {
      "cache": models.init_cache(config, batch, length),
      "tokens": jnp.full((batch, length), pad_id, jnp.int32),
      "turn": jnp.full((batch, length), -1, jnp.int32),
      "logprobs": jnp.zeros((batch, length), jnp.float32),
      "next_pos": jnp.zeros((batch,), jnp.int32),
      "last_logits": jnp.zeros((batch, config.vocab_size), jnp.float32),
      "done": jnp.zeros((batch,), bool),
      "last_token": jnp.full((batch,), pad_id, jnp.int32),
  }
  return _constrain_state(state, ctx)


@jax.jit
@_counted
def unstack_params(params: Any) -> Layers:
  """The per-layer weights the sampler runs on: one tree per layer
  (models.unstack_layers), copied out of the stacked params once."""
  return models.unstack_layers(params)


def _prefill(params: Any, layers: Layers, state: State, tokens: Array,
             mask: Array, config: ModelConfig, pad_id: int,
             ctx: Optional[ShardingCtx]) -> State:
  """Appends a block (tokens int32[B, T], mask bool[B, T]) at the cache index.

  Positions continue each row's sequence over the block's valid slots. The
  block's last column must be valid (it gives the next-token distribution).
  """
  model = _model(config, ctx)
  mask = mask.astype(bool)
  positions = state["next_pos"][:, None] + models.positions_from_mask(mask)
  hidden, cache = model.apply({"params": params}, tokens, positions, mask,
                              cache=state["cache"], return_hidden=True,
                              layers=layers)
  last = model.apply({"params": params}, hidden[:, -1:],
                     method=models.Transformer.logits)[:, 0]
  slot = state["cache"]["index"]
  state = dict(state, cache=cache, last_logits=last)
  state["tokens"] = jax.lax.dynamic_update_slice(
      state["tokens"], jnp.where(mask, tokens, pad_id).astype(jnp.int32),
      (0, slot))
  state["next_pos"] = state["next_pos"] + mask.sum(-1, dtype=jnp.int32)
  return _constrain_state(state, ctx)


@functools.partial(jax.jit, static_argnames=("config", "pad_id", "ctx"),
                   donate_argnames=("state",))
@_counted
def prefill(params: Any, layers: Layers, state: State, tokens: Array,
            mask: Array, *, config: ModelConfig, pad_id: int,
            ctx: Optional[ShardingCtx] = None) -> State:
  """Prefills a block of int32[B, T] (mask bool[B, T]) at the cache index.

  layers: unstack_params(params)."""
  return _prefill(params, layers, state, tokens, mask, config, pad_id, ctx)


@functools.partial(jax.jit,
                   static_argnames=("config", "pad_id", "end_of_turn_id",
                                    "ctx"),
                   donate_argnames=("state",))
@_counted
def append_followup(params: Any, layers: Layers, state: State,
                    followup: Array, *,
                    config: ModelConfig, pad_id: int,
                    end_of_turn_id: Optional[int],
                    ctx: Optional[ShardingCtx] = None) -> State:
  """Prefills the between-turns block after a turn: followup int32[F].

  With end_of_turn_id, the block is [end_of_turn_id, followup...] and its
  first slot is valid only on rows whose turn did not end with
  end_of_turn_id (cut by the budget, or stopped on another stop id such as
  Gemma's <eos>), so every model turn is closed by exactly one
  end_of_turn_id; rows whose turn ended with it leave a gap there.
  """
  batch = state["tokens"].shape[0]
  block = jnp.broadcast_to(followup.astype(jnp.int32), (batch,) +
                           followup.shape)
  mask = jnp.ones(block.shape, bool)
  if end_of_turn_id is not None:
    eot = jnp.full((batch, 1), end_of_turn_id, jnp.int32)
    block = jnp.concatenate([eot, block], axis=1)
    open_turn = state["last_token"] != end_of_turn_id
    mask = jnp.concatenate([open_turn[:, None], mask], axis=1)
  return _prefill(params, layers, state, block, mask, config, pad_id, ctx)


@functools.partial(jax.jit,
                   static_argnames=("config", "sampling", "stop_ids",
                                    "pad_id", "ctx"),
                   donate_argnames=("state",))
@_counted
def decode(params: Any, layers: Layers, state: State, turn: Array,
           budget: Array, rng: Array, *, config: ModelConfig, sampling: SamplingConfig,
           stop_ids: tuple[int, ...], pad_id: int,
           ctx: Optional[ShardingCtx] = None) -> State:
  """Samples one turn: up to `budget` tokens per row from the cache index.

  layers: unstack_params(params), the per-layer weights the loop reads.

  turn and budget are int32 scalars (dynamic: one program serves every turn
  and budget). A row is done after sampling any of stop_ids; its later slots
  stay invalid. The loop ends when every row is done or the budget is spent;
  the cache index then moves to the end of the turn's `budget` slots, so the
  layout does not depend on when rows stopped. state['done'] says which rows
  stopped.
  """
  model = _model(config, ctx)
  stops = jnp.asarray(stop_ids, jnp.int32)
  start = state["cache"]["index"]
  state = dict(state, done=jnp.zeros_like(state["done"]),
               last_token=jnp.full_like(state["last_token"], pad_id))

  def cond(carry):
    state, step = carry
    return (step < budget) & ~jnp.all(state["done"])

  def body(carry):
    state, step = carry
    live = ~state["done"]
    token, logp = sample_logits(state["last_logits"],
                                jax.random.fold_in(rng, step), sampling)
    token = jnp.where(live, token, pad_id)
    slot = state["cache"]["index"]
    logits, cache = model.apply({"params": params}, token[:, None],
                                state["next_pos"][:, None], live[:, None],
                                cache=state["cache"], layers=layers)

    def put(buf, column):
      return jax.lax.dynamic_update_slice(buf, column[:, None], (0, slot))

    stopped = live & jnp.any(token[:, None] == stops, axis=-1)
    state = {
        "cache": cache,
        "tokens": put(state["tokens"], token),
        "turn": put(state["turn"], jnp.where(live, turn, -1)),
        "logprobs": put(state["logprobs"], jnp.where(live, logp, 0.0)),
        "next_pos": state["next_pos"] + live.astype(jnp.int32),
        "last_logits": logits[:, 0],
        "done": state["done"] | stopped,
        "last_token": jnp.where(live, token, state["last_token"]),
    }
    return _constrain_state(state, ctx), step + 1

  state, _ = jax.lax.while_loop(cond, body, (state, jnp.zeros((), jnp.int32)))
  state["cache"] = dict(state["cache"], index=start + budget)
  return state


@functools.partial(jax.jit, static_argnames=("config", "length", "pad_id",
                                             "ctx"),
                   donate_argnames=("state",))
@_counted
def refill(params: Any, layers: Layers, state: State, *, config: ModelConfig, length: int,
           pad_id: int, ctx: Optional[ShardingCtx] = None) -> State:
  """Rebuilds the cache by prefilling slots [0, length) again from scratch.

  The alternative to reusing the cache across turns, kept to measure it: the
  result equals the state it was given (up to float rounding).
  """
  batch, slots = state["tokens"].shape
  fresh = models.init_cache(config, batch, slots,
                            state["cache"]["k"][0].dtype)
  tokens = state["tokens"][:, :length]
  mask = state["cache"]["valid"][:, :length]
  out = dict(state, cache=fresh, next_pos=jnp.zeros_like(state["next_pos"]))
  out = _prefill(params, layers, out, tokens, mask, config, pad_id, ctx)
  out["cache"] = dict(out["cache"], index=state["cache"]["index"])
  return out
