"""RL for self-correction: SCoRe objectives, advantages, per-token KL.

Pure functions of arrays; the train state and step build on them.
"""

from score_jax.rl.advantages import (advantage_names, check_micro_batches,
                                     compute_advantages, get_advantage,
                                     register_advantage)
from score_jax.rl.kl import (KL_ESTIMATORS, kl_estimate, token_entropy,
                             token_logprobs, token_stats,
                             token_stats_from_hidden)
from score_jax.rl.losses import (AGGREGATIONS, KL_GRADIENTS, STAGES,
                                 LossConfig, TurnCredit, kl_still_to_come,
                                 kl_surrogate, loss_denominator, score_loss,
                                 sft_loss, turn_credits)

__all__ = [
    "AGGREGATIONS", "KL_ESTIMATORS", "KL_GRADIENTS", "LossConfig", "STAGES",
    "TurnCredit", "advantage_names", "check_micro_batches",
    "compute_advantages", "get_advantage", "kl_estimate", "kl_still_to_come",
    "kl_surrogate", "loss_denominator",
    "register_advantage", "score_loss", "sft_loss", "token_entropy",
    "token_logprobs", "token_stats", "token_stats_from_hidden",
    "turn_credits",
]
