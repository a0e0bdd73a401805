"""The sampler: jitted prefill + while_loop decode over a KV cache, sampling
rules, and the multi-turn rollout that the trainer consumes."""

from score_jax.sampling.rollout import (Rollout, bucket_length, compile_count,
                                        layout_length, rollout)
from score_jax.sampling.rules import SamplingConfig, sample_logits, truncate

__all__ = [
    "Rollout", "SamplingConfig", "bucket_length", "compile_count",
    "layout_length", "rollout", "sample_logits", "truncate",
]
