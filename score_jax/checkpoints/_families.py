"""A full ModelConfig from a family name and sizes read off a checkpoint.

GGUF metadata and Gemma Flax checkpoints give the sizes but not every
per-model setting (Gemma 2/3's query scaling, local RoPE base, window,
layer pattern). Those come from the published preset of the same sizes, or
from the family's defaults when no preset matches.
"""

from __future__ import annotations

from score_jax.models.config import ModelConfig
from score_jax.models.presets import PRESETS

FAMILIES = ("gemma", "gemma2", "gemma3", "llama")
_SIZE_FIELDS = ("num_layers", "embed_dim", "hidden_dim", "num_heads",
                "num_kv_heads", "head_dim")
# A preset whose settings are the family's defaults (sizes get replaced).
_TEMPLATES = {"gemma": "gemma-2b", "gemma2": "gemma2-9b",
              "gemma3": "gemma3-1b", "llama": "smollm2-135m"}


def family_config(family: str, vocab_size: int, num_layers: int,
                  embed_dim: int, hidden_dim: int, num_heads: int,
                  num_kv_heads: int, head_dim: int, **overrides) -> ModelConfig:
  """Config of a `family` model of these sizes; `overrides` win over all."""
  if family not in FAMILIES:
    raise ValueError(f"unknown model family {family!r}; known: {FAMILIES}")
  sizes = dict(num_layers=num_layers, embed_dim=embed_dim,
               hidden_dim=hidden_dim, num_heads=num_heads,
               num_kv_heads=num_kv_heads, head_dim=head_dim)
  key = tuple(sizes[f] for f in _SIZE_FIELDS)
  match = [p for p in PRESETS.values() if p.family == family and
           tuple(getattr(p, f) for f in _SIZE_FIELDS) == key]
  if match:
    base = match[0]
  else:
    base = PRESETS[_TEMPLATES[family]]
    # The template's query scaling belongs to its own head size.
    if family in ("gemma2", "gemma3"):
      overrides.setdefault("query_pre_attn_scalar", head_dim)
  return base.replace(vocab_size=vocab_size, **sizes, **overrides)
