"""score_jax: SCoRe (Kumar et al. 2024) self-correction RL in JAX/Flax."""

__version__ = "0.1.0"
