"""One module per `score-jax` command (flags are defined on import)."""
