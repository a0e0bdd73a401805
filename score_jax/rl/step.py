"""The train step: one policy forward over both turns, the stage objective,
gradient accumulation over micro-batches, a guarded optimizer update.

A batch is a dict of arrays, rows prompt-major (row p * k + j is sample j of
prompt p): tokens int32[B, L], valid bool[B, L], positions int32[B, L],
turn_masks bool[2, B, L], rewards float32[2, B] (RL stages only).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

from score_jax import models
from score_jax import sharding as sharding_lib
from score_jax.rl import advantages
from score_jax.rl import kl as kl_lib
from score_jax.rl import losses
from score_jax.rl.state import TrainState, hyperparams, set_hyperparams

Batch = dict[str, jax.Array]
# Arrays whose batch dimension is axis 1 (turn-major); all others: axis 0.
_TURN_MAJOR = ("turn_masks", "rewards")


def batch_axis(name: str) -> int:
  """The axis of a batch array (by its key) that holds the rows."""
  return 1 if name in _TURN_MAJOR else 0


def batch_shardings(batch: Batch, ctx: sharding_lib.ShardingCtx) -> Batch:
  """Each array's batch dimension over the data axes, the rest whole."""
  def one(name, x):
    names = [None] * x.ndim
    names[batch_axis(name)] = "batch"
    return ctx.sharding(names, x.shape)
  return {k: one(k, v) for k, v in batch.items()}


def split_micro_batches(batch: Batch, num: int, k: int) -> Batch:
  """[.., B, ..] -> [num, .., B / num, ..]; groups of k samples stay whole."""
  rows = batch["tokens"].shape[0]
  if rows % num or (rows // num) % k:
    raise ValueError(f"batch of {rows} rows cannot be split into {num} "
                     f"micro-batches of whole groups of {k} samples")

  def split(name, x):
    axis = batch_axis(name)
    shape = x.shape[:axis] + (num, rows // num) + x.shape[axis + 1:]
    return jnp.moveaxis(x.reshape(shape), axis, 0)
  return {name: split(name, x) for name, x in batch.items()}


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """micro_batches: gradient accumulation steps per update. logits_chunk:
  sequence positions whose logits are materialised at once (0: all).
  temperature: the rollouts' sampling temperature T. Log-probs, KL and
  entropy are those of the policy that sampled, softmax(logits / T), so the
  policy gradient stays on-policy (greedy decoding does not depend on T)."""
  micro_batches: int = 1
  logits_chunk: int = 0
  temperature: float = 1.0

  def __post_init__(self):
    if not self.temperature > 0:
      raise ValueError(f"StepConfig.temperature must be > 0, got "
                       f"{self.temperature} (greedy rollouts train as T=1)")


def token_stats(model: models.Transformer, params: Any,
                ref_params: Optional[Any], batch: Batch,
                logits_chunk: int = 0,
                temperature: float = 1.0) -> dict[str, jax.Array]:
  """Per-token float32[B, L] stats from ONE forward over the whole two-turn
  sequence: 'logprobs', 'entropy', and with ref_params 'ref_logprobs' and
  'full_kl' (the reference is never differentiated), all of the policies
  softmax(logits / temperature)."""
  def hidden(p):
    h, _ = model.apply({"params": p}, batch["tokens"], batch["positions"],
                       batch["valid"], return_hidden=True)
    return h

  def logits_fn(p):
    def logits(h):
      out = model.apply({"params": p}, h, vocab_parallel=True,
                        method=models.Transformer.logits)
      return out if temperature == 1.0 else out / temperature
    return logits

  ref = {}
  if ref_params is not None:
    ref_params = jax.lax.stop_gradient(ref_params)
    ref = {"ref_hidden": hidden(ref_params),
           "ref_logits_fn": logits_fn(ref_params)}
  length = batch["tokens"].shape[1]
  return kl_lib.token_stats_from_hidden(
      hidden(params), batch["tokens"], logits_fn(params),
      chunk_size=logits_chunk or max(length - 1, 1), entropy=True, **ref)


def combine_micro_metrics(metrics: dict[str, jax.Array]
                          ) -> dict[str, jax.Array]:
  """The batch's metrics from its micro-batches' (leading axis: micro-batch).

  Losses add up (each is normalised by the whole batch's denominator). A
  per-token mean `m` is weighted by its token count `m + losses.TOKENS`. A
  `.../std` beside its `.../mean` is the whole batch's, from the
  micro-batches' means and stds (they hold equal numbers of rows). Other
  metrics are per-row means: averaged.
  """
  out = {}
  for key, v in metrics.items():
    if key.endswith(losses.TOKENS):
      continue
    if key in ("loss", "pg_loss", "kl_loss"):
      out[key] = jnp.sum(v)
    elif key + losses.TOKENS in metrics:
      count = metrics[key + losses.TOKENS]
      out[key] = jnp.sum(v * count) / jnp.maximum(jnp.sum(count), 1)
    elif key.endswith("/std") and key[:-len("std")] + "mean" in metrics:
      mean = metrics[key[:-len("std")] + "mean"]
      square = jnp.mean(v * v + mean * mean)  # E[x^2] over the whole batch
      out[key] = jnp.sqrt(jnp.maximum(square - jnp.mean(mean) ** 2, 0.0))
    else:
      out[key] = jnp.mean(v)
  return out


def make_train_step(model: models.Transformer,
                    loss_config: losses.LossConfig,
                    optimizer: optax.GradientTransformation,
                    step_config: StepConfig = StepConfig()
                    ) -> Callable[[TrainState, Any, Batch, jax.Array],
                                  tuple[TrainState, dict[str, jax.Array]]]:
  """Returns train_step(state, ref_params, batch, lr) -> (state, metrics).

  Gradients are summed over micro-batches, each loss normalised by the whole
  batch's denominator, so the update equals the one-shot update. A step whose
  loss, gradients or new params are not finite changes nothing but the step
  counter and `skipped` (consecutive such steps); metrics['skipped_step']
  says so. A batch with no token to train on (a STaR or Pair-SFT step that
  kept nothing) changes nothing either, or Adam's momentum would go on
  moving the params on a zero gradient; metrics['empty_step'] says so. The
  update uses `optimizer`'s settings (b1, b2, eps, weight decay) and `lr`,
  also on a state restored from a run made with other settings.
  """
  needs_ref = loss_config.stage != "sft"
  num_micro = step_config.micro_batches
  if needs_ref:
    advantages.check_micro_batches(loss_config.advantage, num_micro)

  def micro_loss(params, ref_params, micro, denominator):
    stats = token_stats(model, params, ref_params if needs_ref else None,
                        micro, step_config.logits_chunk,
                        step_config.temperature)
    return losses.score_loss(
        stats["logprobs"], stats.get("ref_logprobs"), micro, loss_config,
        full_kl=stats.get("full_kl"), entropy=stats["entropy"],
        denominator=denominator)

  grad_fn = jax.grad(micro_loss, has_aux=True)
  settings = hyperparams(optimizer)  # this config's, not a checkpoint's

  def train_step(state: TrainState, ref_params: Any, batch: Batch,
                 lr: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    denominator = losses.loss_denominator(batch, loss_config)
    if num_micro == 1:  # no accumulator: one params-sized tree less
      grads, metrics = grad_fn(state.params, ref_params, batch, denominator)
      metrics = {k: v for k, v in metrics.items()
                 if not k.endswith(losses.TOKENS)}
    else:
      micro = split_micro_batches(batch, num_micro, loss_config.k)

      def accumulate(grads, mb):
        g, metrics = grad_fn(state.params, ref_params, mb, denominator)
        return jax.tree.map(jnp.add, grads, g), metrics

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      grads, metrics = jax.lax.scan(accumulate, zeros, micro)
      metrics = combine_micro_metrics(metrics)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
    empty = losses.trained_tokens(batch, loss_config) == 0
    opt_state = set_hyperparams(state.opt_state, lr, settings)
    updates, new_opt_state = optimizer.update(grads, opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    # Finite gradients can still overflow the params (a huge learning rate).
    finite &= jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                                 for x in jax.tree.leaves(new_params)]))
    keep = lambda new, old: jax.tree.map(
        lambda n, o: jnp.where(finite & ~empty, n, o), new, old)
    new_state = TrainState(
        step=state.step + 1,
        params=keep(new_params, state.params),
        opt_state=keep(new_opt_state, opt_state),
        skipped=jnp.where(finite, 0, state.skipped + 1))
    metrics.update(grad_norm=grad_norm, lr=jnp.asarray(lr, jnp.float32),
                   skipped_step=(~finite).astype(jnp.int32),
                   empty_step=empty.astype(jnp.int32))
    return new_state, metrics

  return train_step


def jit_train_step(train_step, state_shardings: TrainState,
                   ref_shardings: Any, batch_shardings_: Batch,
                   ctx: sharding_lib.ShardingCtx):
  """train_step under jax.jit with explicit shardings; the state is donated."""
  replicated = sharding_lib.replicated(ctx)
  return jax.jit(
      train_step,
      in_shardings=(state_shardings, ref_shardings, batch_shardings_,
                    replicated),
      out_shardings=(state_shardings, replicated),
      donate_argnums=(0,))
