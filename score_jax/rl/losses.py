"""The SCoRe objectives (Kumar et al. 2024), and the baselines', as losses.

One two-turn sample is the sequence [pad | x | y1 | p2 | y2 | pad]; turn t's
tokens (y_t, the actions) are `turn_masks[t]`. With rewards r1 = r(y1),
r2 = r(y2), the objectives to *maximise* are

  stage1       E[r2]        - beta2 KL(turn-1 tokens) - beta1 KL(turn-2 tokens)
  stage2       E[r1 + r̂2]  - beta1 (KL(turn 1) + KL(turn 2)),
               r̂2 = r2 + alpha (r2 - r1), discount gamma = 0
  single_turn  E[r1]        - beta1 KL(turn 1)          (turn 2 not trained)
  sft          E[log pi(selected turns' tokens)]        (warm start, STaR,
                                                          Pair-SFT)

Naive multi-turn RL is stage2 with alpha = 0. gamma = 0 means each turn's
tokens are credited with that turn's own return only: turn 1 with r1, turn 2
with r̂2; in stage1 turn 1 gets no reward gradient at all, only its KL.

Estimator: REINFORCE on the policy's own samples. Per counted token i of turn t

  loss_i = -sg(A_t) log pi(a_i) + beta_t KL_i,   A_t = advantage(return_t)

(sg = stop_gradient). KL_i is a surrogate whose value is the per-token
estimate (k1, k3 or the exact full-vocabulary KL, see kl.py). What its
gradient estimates is `kl_gradient`:
  'token'     grad KL(pi || pi_ref) at each position with its prefix held
              fixed: for the sampled estimators the score-function part
              sg(KL_i) grad log pi(a_i) is added, since the estimate depends
              on which token was sampled. The KL-in-the-loss of GRPO-style
              trainers; it leaves out that an earlier token of the turn also
              changes which prefixes the later positions' KL is taken at.
  'sequence'  grad of the turn's whole KL, KL(pi(y_t | context) ||
              pi_ref(y_t | context)) = E[sum_i KL_i], as the objectives above
              write it: token j's surrogate also carries
              sg(sum_{i > j} KL_i) grad log pi(a_j), the KL still to come in
              its turn (within the turn only: turn 1 is not charged for turn
              2's KL, as it is not credited with r2, gamma = 0).
Both have the same value; only the gradient differs.

Aggregation: 'sequence_sum' sums token terms per sequence and averages over
sequences (the paper's per-sample objective); 'token_mean' averages over all
counted tokens. Pass `denominator` (from `loss_denominator`, summed over the
micro-batches) to accumulate gradients exactly.

Shapes: B batch (prompt-major, k samples per prompt), L length.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from score_jax.rl.advantages import advantage_names, compute_advantages
from score_jax.rl.kl import KL_ESTIMATORS, kl_estimate

Array = jax.Array
Batch = dict[str, Array]
sg = jax.lax.stop_gradient

STAGES = ("stage1", "stage2", "single_turn", "sft")
# Metric `m + TOKENS` is the token count of metric `m`, a per-token mean:
# micro-batches combine `m` weighted by it (`rl.step.combine_micro_metrics`).
TOKENS = "#tokens"
AGGREGATIONS = ("sequence_sum", "token_mean")
KL_GRADIENTS = ("token", "sequence")


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Which objective and how it is estimated; hashable (a static jit arg).

  Defaults are the paper's MATH settings (Table 5): alpha 10, beta1 0.01,
  beta2 0.1. k is the number of samples per prompt (rows are prompt-major).
  sft_turns: which turns' tokens the 'sft' stage trains on (Pair-SFT: only
  the correction, (False, True)).
  """
  stage: str = "stage2"
  alpha: float = 10.0
  beta1: float = 0.01
  beta2: float = 0.1
  kl_estimator: str = "k3"
  kl_gradient: str = "token"
  advantage: str = "rloo"
  aggregation: str = "sequence_sum"
  k: int = 4
  sft_turns: tuple[bool, bool] = (True, True)

  def __post_init__(self):
    def check(field, value, known):
      if value not in known:
        raise ValueError(f"LossConfig.{field}={value!r} is unknown; expected "
                         f"one of: {', '.join(known)}")
    check("stage", self.stage, STAGES)
    check("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
    check("kl_gradient", self.kl_gradient, KL_GRADIENTS)
    check("advantage", self.advantage, advantage_names())
    check("aggregation", self.aggregation, AGGREGATIONS)
    if not isinstance(self.k, int) or self.k < 1:
      raise ValueError(f"LossConfig.k must be a positive int, got {self.k!r}")
    if self.beta1 < 0 or self.beta2 < 0:
      raise ValueError(f"LossConfig KL coefficients must be >= 0, got "
                       f"beta1={self.beta1}, beta2={self.beta2}")
    if len(self.sft_turns) != 2 or not any(self.sft_turns):
      raise ValueError(f"LossConfig.sft_turns must select at least one of the "
                       f"two turns, got {self.sft_turns!r}")


class TurnCredit(NamedTuple):
  """What one turn's tokens are trained with.

  ret: float32[B] return credited to the turn's tokens, or None (no reward
  gradient); kl_coef: weight of its KL to the reference; active: whether its
  tokens count at all (loss and token_mean normalisation).
  """
  ret: Optional[Array]
  kl_coef: float
  active: bool


def turn_credits(config: LossConfig,
                 rewards: Array) -> tuple[TurnCredit, TurnCredit]:
  """The objective of each stage, per turn. rewards float[2, B] = (r1, r2)."""
  r1, r2 = rewards[0].astype(jnp.float32), rewards[1].astype(jnp.float32)
  c = config
  if c.stage == "stage1":
    # max E[r2] - beta2 KL_1 - beta1 KL_2: turn 1 is only held near the base.
    return TurnCredit(None, c.beta2, True), TurnCredit(r2, c.beta1, True)
  if c.stage == "stage2":
    # max E[r1 + r̂2] - beta1 (KL_1 + KL_2) with r̂2 = r2 + alpha (r2 - r1).
    shaped_r2 = r2 + c.alpha * (r2 - r1)
    return TurnCredit(r1, c.beta1, True), TurnCredit(shaped_r2, c.beta1, True)
  if c.stage == "single_turn":
    # max E[r1] - beta1 KL_1: a standard single-turn RL baseline.
    return TurnCredit(r1, c.beta1, True), TurnCredit(None, 0.0, False)
  raise ValueError(f"stage {c.stage!r} has no reward credits")


def _turn_masks(batch: Batch, shape: tuple[int, ...]) -> Array:
  """bool[2, B, L]: the sampled tokens of each turn, restricted to valid."""
  if "turn_masks" not in batch or "valid" not in batch:
    raise ValueError(f"batch needs 'turn_masks' bool[2, B, L] and 'valid' "
                     f"bool[B, L]; it has keys {sorted(batch)}")
  masks, valid = batch["turn_masks"], batch["valid"]
  if tuple(masks.shape) != (2,) + tuple(shape):
    raise ValueError(f"batch['turn_masks'] must be bool[2, B, L] = "
                     f"{(2,) + tuple(shape)} to match the log-probs, got "
                     f"{masks.shape}")
  if tuple(valid.shape) != tuple(shape):
    raise ValueError(f"batch['valid'] must be bool[B, L] = {tuple(shape)}, "
                     f"got {valid.shape}")
  return masks.astype(bool) & valid.astype(bool)[None]


def _aggregate(token_terms: Array, counted: Array, aggregation: str,
               denominator: Optional[Array]) -> Array:
  """float[B, L] terms (0 where not counted) -> scalar."""
  if denominator is None:
    denominator = default_denominator(counted, aggregation)
  return jnp.sum(token_terms) / denominator


def default_denominator(counted: Array, aggregation: str) -> Array:
  """counted bool[B, L] -> float32[]: B for 'sequence_sum', the number of
  counted tokens (at least 1) for 'token_mean'."""
  if aggregation == "sequence_sum":
    return jnp.asarray(counted.shape[0], jnp.float32)
  return jnp.maximum(jnp.sum(counted, dtype=jnp.float32), 1.0)


def _active_mask(config: LossConfig, masks: Array) -> Array:
  if config.stage == "sft":
    turns = config.sft_turns
  else:
    turns = (True, config.stage != "single_turn")
  return (masks[0] & turns[0]) | (masks[1] & turns[1])


def _counted(batch: Batch, config: LossConfig) -> Array:
  """bool[B, L]: the tokens of the batch that the loss trains on."""
  if "valid" not in batch:
    raise ValueError(f"batch needs 'valid' bool[B, L]; it has keys "
                     f"{sorted(batch)}")
  return _active_mask(config, _turn_masks(batch, batch["valid"].shape))


def loss_denominator(batch: Batch, config: LossConfig) -> Array:
  """float32[]: what `score_loss` divides by for this batch. With gradient
  accumulation, sum it over the micro-batches and pass the total to every
  micro-batch's `score_loss(..., denominator=)`."""
  return default_denominator(_counted(batch, config), config.aggregation)


def trained_tokens(batch: Batch, config: LossConfig) -> Array:
  """float32[]: the tokens of this batch that the loss trains on (e.g. zero
  for a STaR batch that kept no correction)."""
  return jnp.sum(_counted(batch, config), dtype=jnp.float32)


def sft_loss(logprobs: Array, mask: Array, aggregation: str = "token_mean",
             denominator: Optional[Array] = None) -> Array:
  """Negative log-likelihood of the tokens in mask.

  logprobs float[B, L] (from `token_logprobs`), mask bool[B, L] -> scalar.
  """
  if aggregation not in AGGREGATIONS:
    raise ValueError(f"unknown aggregation {aggregation!r}; expected one of: "
                     f"{', '.join(AGGREGATIONS)}")
  if mask.shape != logprobs.shape:
    raise ValueError(f"mask shape {mask.shape} != logprobs shape "
                     f"{logprobs.shape}")
  mask = mask.astype(bool)
  nll = jnp.where(mask, -logprobs.astype(jnp.float32), 0.0)
  return _aggregate(nll, mask, aggregation, denominator)


def kl_surrogate(logprobs: Array, ref_logprobs: Array, estimator: str,
                 full_kl: Optional[Array] = None) -> Array:
  """float32[B, L] whose value is `kl_estimate` and whose gradient w.r.t. the
  policy is, in expectation over sampled tokens, grad KL(pi || pi_ref) at each
  position. For k1/k3 the estimate depends on the sampled token, so the
  score-function term sg(kl) * grad log pi is added (its value is 0)."""
  kl = kl_estimate(logprobs, sg(ref_logprobs), estimator, full_kl)
  if estimator == "full":
    return kl
  return kl + sg(kl) * (logprobs - sg(logprobs))


def kl_still_to_come(kl: Array, mask: Array) -> Array:
  """float32[B, L]: at each token of `mask`, the sum of `kl` over the later
  tokens of `mask` in its row (0 elsewhere): what the choice of that token
  changes of its turn's KL beyond its own position (`kl_gradient`
  'sequence')."""
  kl = jnp.where(mask, sg(kl), 0.0)
  later = jnp.flip(jnp.cumsum(jnp.flip(kl, -1), -1), -1) - kl
  return jnp.where(mask, later, 0.0)


def _token_mean(name: str, x: Array, mask: Array) -> dict[str, Array]:
  """{name: mean of x over mask's tokens, name + TOKENS: their count}."""
  count = jnp.sum(mask, dtype=jnp.float32)
  return {name: jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(count, 1),
          name + TOKENS: count}


def _reward_metrics(rewards: Array, turns: int) -> dict[str, Array]:
  """Rewards are binary (a verifier's verdict): correct means r > 0.5. With
  one turn, rewards[1] is a stand-in (r1 again) and is not reported."""
  r1, r2 = rewards[0].astype(jnp.float32), rewards[1].astype(jnp.float32)
  if turns == 1:
    return {"reward/t1": jnp.mean(r1)}
  ok1, ok2 = r1 > 0.5, r2 > 0.5
  return {"reward/t1": jnp.mean(r1), "reward/t2": jnp.mean(r2),
          "reward/delta": jnp.mean(r2 - r1),
          "reward/i_to_c": jnp.mean(~ok1 & ok2, dtype=jnp.float32),
          "reward/c_to_i": jnp.mean(ok1 & ~ok2, dtype=jnp.float32)}


def score_loss(logprobs: Array, ref_logprobs: Optional[Array], batch: Batch,
               config: LossConfig, *, full_kl: Optional[Array] = None,
               entropy: Optional[Array] = None,
               denominator: Optional[Array] = None
               ) -> tuple[Array, dict[str, Array]]:
  """The training loss (to minimise) of the configured objective.

  logprobs float[B, L]: policy log-probs of `batch['tokens']` (differentiable,
  from ONE forward over both turns); ref_logprobs float[B, L]: the frozen
  reference's (None only for 'sft'); batch: 'valid' bool[B, L], 'turn_masks'
  bool[2, B, L], 'rewards' float[2, B] (not needed for 'sft'); full_kl
  float[B, L]: exact per-token KL, needed when kl_estimator == 'full';
  entropy float[B, L]: per-token policy entropy, only reported; denominator:
  see `loss_denominator`. Returns (loss float32[], metrics {name: float32[]});
  a per-token mean `m` comes with `m + TOKENS`, its token count.
  """
  if logprobs.ndim != 2:
    raise ValueError(f"logprobs must be float[B, L], got shape "
                     f"{logprobs.shape}")
  masks = _turn_masks(batch, logprobs.shape)
  counted = _active_mask(config, masks)
  lengths = {f"len/t{t + 1}": jnp.mean(jnp.sum(masks[t], -1, dtype=jnp.float32))
             for t in range(2)}

  if config.stage == "sft":
    loss = sft_loss(logprobs, counted, config.aggregation, denominator)
    return loss, {"loss": loss, **_token_mean("nll/token", -logprobs, counted),
                  **lengths}

  if ref_logprobs is None:
    raise ValueError(f"stage {config.stage!r} needs ref_logprobs [B, L]")
  rewards = batch.get("rewards")
  if rewards is None or tuple(rewards.shape) != (2, logprobs.shape[0]):
    raise ValueError(f"batch['rewards'] must be float[2, B] = "
                     f"{(2, logprobs.shape[0])}, got "
                     f"{None if rewards is None else rewards.shape}")

  # Prompt, instruction and padding slots may hold arbitrary log-probs: zero
  # them before any exp so no inf/nan leaks into the gradient through a masked
  # branch. Every sampled token keeps its value: an untrained turn's KL is
  # still reported.
  sampled = masks[0] | masks[1]
  lp = jnp.where(sampled, logprobs.astype(jnp.float32), 0.0)
  ref_lp = jnp.where(sampled, ref_logprobs.astype(jnp.float32), 0.0)
  if full_kl is not None:
    full_kl = jnp.where(sampled, full_kl, 0.0)
  kl = kl_surrogate(lp, ref_lp, config.kl_estimator, full_kl)

  pg_terms = jnp.zeros_like(lp)
  kl_terms = jnp.zeros_like(lp)
  metrics = {**_reward_metrics(rewards,
                              1 if config.stage == "single_turn" else 2),
             **lengths}
  for t, credit in enumerate(turn_credits(config, rewards)):
    name = f"t{t + 1}"
    mask = masks[t] & credit.active
    if credit.ret is not None:
      adv = sg(compute_advantages(credit.ret, config.advantage, config.k))
      pg_terms += jnp.where(mask, -adv[:, None] * lp, 0.0)
      metrics.update({f"return/{name}": jnp.mean(credit.ret),
                      f"advantage/{name}/mean": jnp.mean(adv),
                      f"advantage/{name}/std": jnp.std(adv)})
    kl_t = kl
    if config.kl_gradient == "sequence":
      kl_t = kl + kl_still_to_come(kl, mask) * (lp - sg(lp))
    kl_terms += jnp.where(mask, credit.kl_coef * kl_t, 0.0)
    # Reported KL: the estimate summed over the turn's tokens, per sequence.
    turn_kl = jnp.where(masks[t], sg(kl), 0.0)
    metrics[f"kl/{name}"] = jnp.mean(jnp.sum(turn_kl, -1))
    if entropy is not None:
      metrics.update(_token_mean(f"entropy/{name}", sg(entropy), masks[t]))

  pg_loss = _aggregate(pg_terms, counted, config.aggregation, denominator)
  kl_loss = _aggregate(kl_terms, counted, config.aggregation, denominator)
  loss = pg_loss + kl_loss
  metrics.update({"loss": loss, "pg_loss": pg_loss, "kl_loss": kl_loss})
  return loss, metrics
