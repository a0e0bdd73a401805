"""The one model config: every supported family is a setting of these fields."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax.numpy as jnp
import numpy as np

# Window value meaning "no sliding window" (global attention). Large enough to
# exceed any sequence length, small enough to stay an int32.
GLOBAL_WINDOW = 2**30

ACTIVATIONS = ("gelu_tanh", "silu")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyperparameters of one decoder-only transformer.

  Shapes use V vocab, D embed_dim, F hidden_dim, H num_heads, K num_kv_heads,
  Dh head_dim, L num_layers.
  """

  vocab_size: int
  num_layers: int
  embed_dim: int
  hidden_dim: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  family: str = "llama"  # informational: gemma | gemma2 | gemma3 | llama
  activation: str = "silu"  # gelu_tanh (GeGLU) | silu (SwiGLU)
  norm_eps: float = 1e-6
  norm_plus_one: bool = False  # Gemma RMSNorm multiplies by (1 + scale)
  scale_embeddings: bool = False  # Gemma multiplies embeddings by sqrt(D)
  tie_embeddings: bool = True
  post_norms: bool = False  # Gemma 2/3: norms after attention and MLP too
  qk_norm: bool = False  # Gemma 3: RMSNorm on queries and keys per head
  attn_logit_softcap: Optional[float] = None
  final_logit_softcap: Optional[float] = None
  query_pre_attn_scalar: Optional[float] = None  # None: head_dim
  # Layer i is local (sliding window) if layer_pattern[i % len] == "local".
  layer_pattern: tuple[str, ...] = ("global",)
  sliding_window: Optional[int] = None
  rope_base: float = 10_000.0  # global layers
  rope_local_base: Optional[float] = None  # local layers; None: rope_base
  rope_scale: float = 1.0  # linear position scaling on global layers
  # Llama 3 frequency scaling: (factor, low_freq_factor, high_freq_factor,
  # original_max_position); applies to every layer.
  llama3_rope: Optional[tuple[float, float, float, int]] = None
  dtype: str = "float32"  # compute dtype
  param_dtype: str = "float32"
  remat_policy: str = "none"
  # Ids the model may emit: the tokenizer's vocabulary where the tables have
  # rows past it (Gemma 3 4B-27B: 262,208 rows, 262,144 pieces; padded
  # checkpoints). Logits of ids >= output_vocab are masked out of sampling
  # and of every log-prob. None: all vocab_size ids.
  output_vocab: Optional[int] = None

  def __post_init__(self):
    def bad(msg):
      raise ValueError(f"ModelConfig: {msg}")

    for name in ("vocab_size", "num_layers", "embed_dim", "hidden_dim",
                 "num_heads", "num_kv_heads", "head_dim"):
      if getattr(self, name) <= 0:
        bad(f"{name} must be positive, got {getattr(self, name)}")
    if self.num_heads % self.num_kv_heads:
      bad(f"num_heads={self.num_heads} is not a multiple of "
          f"num_kv_heads={self.num_kv_heads}")
    if self.activation not in ACTIVATIONS:
      bad(f"activation {self.activation!r} is not one of {ACTIVATIONS}")
    if self.output_vocab is not None and not (
        0 < self.output_vocab <= self.vocab_size):
      bad(f"output_vocab={self.output_vocab} must be in [1, vocab_size="
          f"{self.vocab_size}]")
    if self.remat_policy not in REMAT_POLICIES:
      bad(f"remat_policy {self.remat_policy!r} is not one of {REMAT_POLICIES}")
    if not self.layer_pattern or set(self.layer_pattern) - {"local", "global"}:
      bad(f"layer_pattern must hold 'local'/'global', got {self.layer_pattern}")
    if "local" in self.layer_pattern and not self.sliding_window:
      bad("layer_pattern has local layers but sliding_window is not set")
    for name in ("dtype", "param_dtype"):
      try:
        jnp.dtype(getattr(self, name))
      except TypeError:
        bad(f"{name}={getattr(self, name)!r} is not a dtype")

  def replace(self, **changes) -> "ModelConfig":
    return dataclasses.replace(self, **changes)

  @property
  def query_scale(self) -> float:
    scalar = self.query_pre_attn_scalar or self.head_dim
    return scalar**-0.5

  @property
  def embed_scale(self) -> float:
    return math.sqrt(self.embed_dim) if self.scale_embeddings else 1.0

  def layer_types(self) -> list[str]:
    pattern = self.layer_pattern
    return [pattern[i % len(pattern)] for i in range(self.num_layers)]

  def layer_arrays(self) -> dict[str, np.ndarray]:
    """Per-layer attention settings, fed to the scanned layers as inputs.

    Returns window int32[L] (GLOBAL_WINDOW for global layers), rope_base
    float32[L] and rope_scale float32[L].
    """
    local = np.array([t == "local" for t in self.layer_types()])
    local_base = self.rope_local_base or self.rope_base
    return {
        "window": np.where(local, self.sliding_window or GLOBAL_WINDOW,
                           GLOBAL_WINDOW).astype(np.int32),
        "rope_base": np.where(local, local_base, self.rope_base).astype(
            np.float32),
        "rope_scale": np.where(local, 1.0, self.rope_scale).astype(np.float32),
    }

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "ModelConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"ModelConfig: unknown fields {sorted(unknown)}")
    d = dict(d)
    for key in ("layer_pattern", "llama3_rope"):
      if d.get(key) is not None:
        d[key] = tuple(d[key])
    return cls(**d)
