"""Named model configs with the published sizes, and tiny ones for tests."""

from __future__ import annotations

from score_jax.models.config import ModelConfig


def _gemma1(**kw) -> ModelConfig:
  return ModelConfig(family="gemma", vocab_size=256_000, activation="gelu_tanh",
                     norm_plus_one=True, scale_embeddings=True,
                     tie_embeddings=True, **kw)


def _gemma2(**kw) -> ModelConfig:
  kw.setdefault("query_pre_attn_scalar", 256)
  return ModelConfig(family="gemma2", vocab_size=256_000,
                     activation="gelu_tanh", norm_plus_one=True,
                     scale_embeddings=True, tie_embeddings=True,
                     post_norms=True, attn_logit_softcap=50.0,
                     final_logit_softcap=30.0,
                     layer_pattern=("local", "global"), sliding_window=4096,
                     **kw)


def _gemma3(**kw) -> ModelConfig:
  kw.setdefault("query_pre_attn_scalar", 256)
  kw.setdefault("vocab_size", 262_144)
  kw.setdefault("sliding_window", 1024)
  return ModelConfig(family="gemma3", activation="gelu_tanh",
                     norm_plus_one=True, scale_embeddings=True,
                     tie_embeddings=True, post_norms=True, qk_norm=True,
                     layer_pattern=("local",) * 5 + ("global",),
                     rope_base=1_000_000.0, rope_local_base=10_000.0, **kw)


def _llama(**kw) -> ModelConfig:
  return ModelConfig(family="llama", activation="silu", **kw)


PRESETS: dict[str, ModelConfig] = {
    # Gemma 1
    "gemma-2b": _gemma1(num_layers=18, embed_dim=2048, hidden_dim=16384,
                        num_heads=8, num_kv_heads=1, head_dim=256),
    "gemma-7b": _gemma1(num_layers=28, embed_dim=3072, hidden_dim=24576,
                        num_heads=16, num_kv_heads=16, head_dim=256),
    # Gemma 2
    "gemma2-2b": _gemma2(num_layers=26, embed_dim=2304, hidden_dim=9216,
                         num_heads=8, num_kv_heads=4, head_dim=256),
    "gemma2-9b": _gemma2(num_layers=42, embed_dim=3584, hidden_dim=14336,
                         num_heads=16, num_kv_heads=8, head_dim=256),
    "gemma2-27b": _gemma2(num_layers=46, embed_dim=4608, hidden_dim=36864,
                          num_heads=32, num_kv_heads=16, head_dim=128,
                          query_pre_attn_scalar=4608 // 32),
    # Gemma 3 (text)
    "gemma3-270m": _gemma3(num_layers=18, embed_dim=640, hidden_dim=2048,
                           num_heads=4, num_kv_heads=1, head_dim=256,
                           sliding_window=512),
    "gemma3-1b": _gemma3(num_layers=26, embed_dim=1152, hidden_dim=6912,
                         num_heads=4, num_kv_heads=1, head_dim=256,
                         sliding_window=512),
    "gemma3-4b": _gemma3(num_layers=34, embed_dim=2560, hidden_dim=10240,
                         num_heads=8, num_kv_heads=4, head_dim=256,
                         vocab_size=262_208, rope_scale=8.0),
    "gemma3-12b": _gemma3(num_layers=48, embed_dim=3840, hidden_dim=15360,
                          num_heads=16, num_kv_heads=8, head_dim=256,
                          vocab_size=262_208, rope_scale=8.0),
    "gemma3-27b": _gemma3(num_layers=62, embed_dim=5376, hidden_dim=21504,
                          num_heads=32, num_kv_heads=16, head_dim=128,
                          vocab_size=262_208, rope_scale=8.0,
                          query_pre_attn_scalar=5376 // 32),
    # Llama family
    "smollm2-135m": _llama(vocab_size=49_152, num_layers=30, embed_dim=576,
                           hidden_dim=1536, num_heads=9, num_kv_heads=3,
                           head_dim=64, rope_base=100_000.0, norm_eps=1e-5),
    "smollm2-360m": _llama(vocab_size=49_152, num_layers=32, embed_dim=960,
                           hidden_dim=2560, num_heads=15, num_kv_heads=5,
                           head_dim=64, rope_base=100_000.0, norm_eps=1e-5),
    "smollm2-1.7b": _llama(vocab_size=49_152, num_layers=24, embed_dim=2048,
                           hidden_dim=8192, num_heads=32, num_kv_heads=32,
                           head_dim=64, rope_base=130_000.0, norm_eps=1e-5),
    "llama3.2-1b": _llama(vocab_size=128_256, num_layers=16, embed_dim=2048,
                          hidden_dim=8192, num_heads=32, num_kv_heads=8,
                          head_dim=64, rope_base=500_000.0, norm_eps=1e-5,
                          llama3_rope=(32.0, 1.0, 4.0, 8192)),
    "llama3.1-8b": _llama(vocab_size=128_256, num_layers=32, embed_dim=4096,
                          hidden_dim=14336, num_heads=32, num_kv_heads=8,
                          head_dim=128, rope_base=500_000.0, norm_eps=1e-5,
                          tie_embeddings=False,
                          llama3_rope=(8.0, 1.0, 4.0, 8192)),
    # Tiny configs for tests and smoke runs: every feature of each family on.
    "tiny-llama": _llama(vocab_size=256, num_layers=2, embed_dim=64,
                         hidden_dim=128, num_heads=4, num_kv_heads=2,
                         head_dim=16, tie_embeddings=False),
    "tiny-gemma": _gemma1(num_layers=2, embed_dim=64, hidden_dim=128,
                          num_heads=4, num_kv_heads=1, head_dim=16).replace(
                              vocab_size=256),
    "tiny-gemma2": _gemma2(num_layers=2, embed_dim=64, hidden_dim=128,
                           num_heads=4, num_kv_heads=2, head_dim=16,
                           query_pre_attn_scalar=24).replace(
                               vocab_size=256, sliding_window=4),
    "tiny-gemma3": _gemma3(num_layers=6, embed_dim=64, hidden_dim=128,
                           num_heads=4, num_kv_heads=2, head_dim=16,
                           vocab_size=256, sliding_window=4),
}


def get_preset(name: str) -> ModelConfig:
  try:
    return PRESETS[name]
  except KeyError:
    raise KeyError(f"unknown model preset {name!r}; known: "
                   f"{', '.join(sorted(PRESETS))}") from None
