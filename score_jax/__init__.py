"""score_jax: SCoRe (Kumar et al. 2024) self-correction RL in JAX/Flax."""

__version__ = "0.1.0"


def __getattr__(name):
  # `score_jax.load_model` without importing JAX/checkpoint code on
  # `import score_jax` (worker processes import the package too).
  if name == "load_model":
    from score_jax.checkpoints import load_model  # pylint: disable=g-import-not-at-top
    return load_model
  raise AttributeError(f"module 'score_jax' has no attribute {name!r}")
