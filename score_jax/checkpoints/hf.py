"""HF transformers layout <-> ours: config.json fields and state_dict names.

Only name and shape mapping lives here (numpy in, numpy out); reading and
writing safetensors files is elsewhere.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from score_jax.models.config import ModelConfig

_MODEL_TYPES = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": None,  # listed to give a precise error: biases are not supported
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",
}
_ARCHITECTURES = {
    "llama": ("llama", "LlamaForCausalLM"),
    "gemma": ("gemma", "GemmaForCausalLM"),
    "gemma2": ("gemma2", "Gemma2ForCausalLM"),
    "gemma3": ("gemma3_text", "Gemma3ForCausalLM"),
}


# What transformers' Gemma3TextConfig assumes for a field config.json leaves
# out. Gemma 3's multimodal checkpoints (Gemma3ForConditionalGeneration,
# e.g. gemma-3-4b-it) save their `text_config` as a diff from these
# defaults, without heads, head_dim, vocab_size or RoPE bases.
_GEMMA3_TEXT_DEFAULTS = {
    "vocab_size": 262_208,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-6,
    "rope_theta": 1_000_000.0,
    "rope_local_base_freq": 10_000.0,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "final_logit_softcapping": None,
    "attn_logit_softcapping": None,
    "tie_word_embeddings": True,
}
# The text model's tensors inside a multimodal Gemma 3 checkpoint, under
# the names a causal LM gives them: saved files (the Hub's, and what
# transformers writes) use the first two prefixes; a live state_dict of
# transformers >= 4.52 the third, beside a top-level lm_head.
_TEXT_PREFIXES = (("language_model.model.", "model."),
                  ("language_model.lm_head.", "lm_head."),
                  ("model.language_model.", "model."))


class ConversionError(ValueError):
  """A checkpoint does not match the layout or config it is read with."""


def _rope_params(d: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
  """Per layer type ('full_attention', 'sliding_attention') RoPE parameters,
  from transformers v5 `rope_parameters` or v4 `rope_theta`/`rope_scaling`."""
  rp = d.get("rope_parameters")
  if rp is None:
    full = dict(d.get("rope_scaling") or {})
    full["rope_theta"] = d.get("rope_theta", 10_000.0)
    local = {"rope_theta": d.get("rope_local_base_freq", full["rope_theta"])}
    return {"full_attention": full, "sliding_attention": local}
  if "full_attention" in rp or "sliding_attention" in rp:
    full = dict(rp.get("full_attention") or {})
    local = dict(rp.get("sliding_attention") or full)
    return {"full_attention": full, "sliding_attention": local}
  return {"full_attention": dict(rp), "sliding_attention": dict(rp)}


def config_from_hf(d: Mapping[str, Any], **overrides) -> ModelConfig:
  """ModelConfig from an HF `config.json` dict (Llama, Gemma 1/2/3 text)."""
  if "text_config" in d and d.get("model_type") == "gemma3":
    d = dict(d["text_config"], model_type="gemma3_text")
  model_type = d.get("model_type")
  if model_type == "gemma3_text":
    d = {**_GEMMA3_TEXT_DEFAULTS, **d}
  family = _MODEL_TYPES.get(model_type)
  if family is None:
    raise ConversionError(
        f"unsupported HF model_type {model_type!r}; supported: "
        f"{sorted(k for k, v in _MODEL_TYPES.items() if v)}")
  if d.get("attention_bias") or d.get("mlp_bias"):
    raise ConversionError(f"{model_type}: attention/MLP biases are not "
                          "supported")
  heads = d["num_attention_heads"]
  head_dim = d.get("head_dim") or d["hidden_size"] // heads
  rope = _rope_params(d)
  full = rope["full_attention"]
  rope_type = full.get("rope_type", full.get("type", "default"))
  rope_scale, llama3 = 1.0, None
  if rope_type == "linear":
    rope_scale = float(full["factor"])
  elif rope_type == "llama3":
    llama3 = (float(full["factor"]), float(full["low_freq_factor"]),
              float(full["high_freq_factor"]),
              int(full["original_max_position_embeddings"]))
  elif rope_type != "default":
    raise ConversionError(f"{model_type}: unsupported rope_type {rope_type!r}")
  act = d.get("hidden_activation") or d.get("hidden_act") or "silu"
  if act not in ("silu", "gelu_pytorch_tanh", "gelu_tanh"):
    raise ConversionError(f"{model_type}: unsupported activation {act!r}")
  layer_types = d.get("layer_types")
  if layer_types:
    pattern = tuple("local" if t == "sliding_attention" else "global"
                    for t in layer_types)
  elif family == "gemma2":
    pattern = ("local", "global")
  elif family == "gemma3":
    every = d.get("sliding_window_pattern") or d.get("_sliding_window_pattern")
    pattern = ("local",) * ((every or 6) - 1) + ("global",)
  else:
    pattern = ("global",)
  gemma = family != "llama"
  kw = dict(
      family=family,
      vocab_size=d["vocab_size"],
      num_layers=d["num_hidden_layers"],
      embed_dim=d["hidden_size"],
      hidden_dim=d["intermediate_size"],
      num_heads=heads,
      num_kv_heads=d.get("num_key_value_heads") or heads,
      head_dim=head_dim,
      activation="silu" if act == "silu" else "gelu_tanh",
      norm_eps=d.get("rms_norm_eps", 1e-6),
      norm_plus_one=gemma,
      scale_embeddings=gemma,
      tie_embeddings=d.get("tie_word_embeddings", gemma),
      post_norms=family in ("gemma2", "gemma3"),
      qk_norm=family == "gemma3",
      attn_logit_softcap=d.get("attn_logit_softcapping"),
      final_logit_softcap=d.get("final_logit_softcapping"),
      query_pre_attn_scalar=d.get("query_pre_attn_scalar"),
      layer_pattern=pattern,
      sliding_window=d.get("sliding_window") if "local" in pattern else None,
      rope_base=float(full.get("rope_theta", 10_000.0)),
      rope_local_base=(float(rope["sliding_attention"]["rope_theta"])
                       if family == "gemma3" else None),
      rope_scale=rope_scale,
      llama3_rope=llama3,
  )
  kw.update(overrides)
  return ModelConfig(**kw)


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
  """An HF `config.json` dict that transformers loads as the same model."""
  c = config
  model_type, arch = _ARCHITECTURES[c.family]
  full: dict[str, Any] = {"rope_type": "default", "rope_theta": c.rope_base}
  if c.llama3_rope is not None:
    factor, low, high, original = c.llama3_rope
    full = {"rope_type": "llama3", "rope_theta": c.rope_base,
            "factor": factor, "low_freq_factor": low,
            "high_freq_factor": high,
            "original_max_position_embeddings": original}
  elif c.rope_scale != 1.0:
    full = {"rope_type": "linear", "rope_theta": c.rope_base,
            "factor": c.rope_scale}
  d: dict[str, Any] = {
      "model_type": model_type,
      "architectures": [arch],
      "vocab_size": c.vocab_size,
      "num_hidden_layers": c.num_layers,
      "hidden_size": c.embed_dim,
      "intermediate_size": c.hidden_dim,
      "num_attention_heads": c.num_heads,
      "num_key_value_heads": c.num_kv_heads,
      "head_dim": c.head_dim,
      "rms_norm_eps": c.norm_eps,
      "tie_word_embeddings": c.tie_embeddings,
      "max_position_embeddings": 131072,
      "torch_dtype": "float32",
  }
  act = "silu" if c.activation == "silu" else "gelu_pytorch_tanh"
  if c.family == "llama":
    d["hidden_act"] = act
    d["rope_parameters"] = full
    d["rope_theta"] = c.rope_base
    if full["rope_type"] != "default":
      d["rope_scaling"] = {k: v for k, v in full.items() if k != "rope_theta"}
    return d
  d["hidden_activation"] = act
  d["hidden_act"] = act
  if c.family in ("gemma2", "gemma3"):
    d["attn_logit_softcapping"] = c.attn_logit_softcap
    d["final_logit_softcapping"] = c.final_logit_softcap
    d["query_pre_attn_scalar"] = c.query_pre_attn_scalar or c.head_dim
    d["sliding_window"] = c.sliding_window
    d["layer_types"] = ["sliding_attention" if t == "local" else
                        "full_attention" for t in c.layer_types()]
  if c.family == "gemma3":
    local = {"rope_type": "default",
             "rope_theta": c.rope_local_base or c.rope_base}
    d["rope_parameters"] = {"full_attention": full, "sliding_attention": local}
    d["rope_theta"] = c.rope_base
    d["rope_local_base_freq"] = local["rope_theta"]
    if full["rope_type"] != "default":
      d["rope_scaling"] = {k: v for k, v in full.items() if k != "rope_theta"}
  else:
    d["rope_parameters"] = full
    d["rope_theta"] = c.rope_base
  return d


def _norm_names(c: ModelConfig) -> dict[str, str]:
  """Our per-layer norm name -> HF module name (the two families differ)."""
  if c.post_norms:
    return {"pre_attn_norm": "input_layernorm",
            "post_attn_norm": "post_attention_layernorm",
            "pre_mlp_norm": "pre_feedforward_layernorm",
            "post_mlp_norm": "post_feedforward_layernorm"}
  return {"pre_attn_norm": "input_layernorm",
          "pre_mlp_norm": "post_attention_layernorm"}


def _take(tensors: Mapping[str, Any], name: str, shape: tuple[int, ...],
          source: str) -> np.ndarray:
  if name not in tensors:
    raise ConversionError(f"{source}: missing tensor {name!r} "
                          f"(expected shape {shape})")
  x = np.asarray(tensors[name])
  if x.shape != shape:
    raise ConversionError(f"{source}: tensor {name!r} has shape {x.shape}, "
                          f"expected {shape}")
  return x


def text_tensors(tensors: Mapping[str, Any]) -> Mapping[str, Any]:
  """The causal LM's tensors: a multimodal Gemma 3 checkpoint's language
  model under the names Gemma3ForCausalLM gives them (its vision tower and
  projector left out); any other checkpoint as it is."""
  prefixes = tuple(old for old, _ in _TEXT_PREFIXES)
  if not any(name.startswith(prefixes) for name in tensors):
    return tensors
  out = {}
  for name, x in tensors.items():
    if name.startswith("lm_head."):
      out[name] = x
    for old, new in _TEXT_PREFIXES:
      if name.startswith(old):
        out[new + name[len(old):]] = x
  return out


def params_from_hf(tensors: Mapping[str, Any], config: ModelConfig,
                   source: str = "HF state_dict",
                   dtype: Optional[Any] = None) -> dict[str, Any]:
  """Our param tree from HF tensors (numpy-convertible), checking shapes.
  A multimodal Gemma 3 checkpoint gives its language model
  (`text_tensors`)."""
  c = config
  tensors = text_tensors(tensors)
  D, F, H, K, Dh, V = (c.embed_dim, c.hidden_dim, c.num_heads,
                       c.num_kv_heads, c.head_dim, c.vocab_size)
  dtype = np.dtype(dtype or c.param_dtype)

  def get(name, shape):
    return _take(tensors, name, shape, source)

  def layer_stack(fn):
    return np.stack([fn(i) for i in range(c.num_layers)]).astype(dtype)

  pre = "model.layers.{}."
  attn = {
      "q": layer_stack(lambda i: get(pre.format(i) + "self_attn.q_proj.weight",
                                     (H * Dh, D)).T.reshape(D, H, Dh)),
      "k": layer_stack(lambda i: get(pre.format(i) + "self_attn.k_proj.weight",
                                     (K * Dh, D)).T.reshape(D, K, Dh)),
      "v": layer_stack(lambda i: get(pre.format(i) + "self_attn.v_proj.weight",
                                     (K * Dh, D)).T.reshape(D, K, Dh)),
      "o": layer_stack(lambda i: get(pre.format(i) + "self_attn.o_proj.weight",
                                     (D, H * Dh)).T.reshape(H, Dh, D)),
  }
  if c.qk_norm:
    for ours, theirs in (("q_norm", "q_norm"), ("k_norm", "k_norm")):
      attn[ours] = {"scale": layer_stack(lambda i, t=theirs: get(
          pre.format(i) + f"self_attn.{t}.weight", (Dh,)))}
  layers: dict[str, Any] = {
      "attn": attn,
      "mlp": {
          "gate": layer_stack(lambda i: get(
              pre.format(i) + "mlp.gate_proj.weight", (F, D)).T),
          "up": layer_stack(lambda i: get(
              pre.format(i) + "mlp.up_proj.weight", (F, D)).T),
          "down": layer_stack(lambda i: get(
              pre.format(i) + "mlp.down_proj.weight", (D, F)).T),
      },
  }
  for ours, theirs in _norm_names(c).items():
    layers[ours] = {"scale": layer_stack(lambda i, t=theirs: get(
        pre.format(i) + f"{t}.weight", (D,)))}
  params = {
      "embedding": get("model.embed_tokens.weight", (V, D)).astype(dtype),
      "final_norm": {"scale": get("model.norm.weight", (D,)).astype(dtype)},
      "layers": layers,
  }
  if not c.tie_embeddings:
    params["lm_head"] = get("lm_head.weight", (V, D)).T.astype(dtype)
  return params


def params_to_hf(params: Mapping[str, Any],
                 config: ModelConfig) -> dict[str, np.ndarray]:
  """HF state_dict (numpy) from our params; inverse of params_from_hf."""
  c = config
  D, H, K, Dh = c.embed_dim, c.num_heads, c.num_kv_heads, c.head_dim
  layers = params["layers"]
  attn = layers["attn"]
  out = {
      "model.embed_tokens.weight": np.asarray(params["embedding"]),
      "model.norm.weight": np.asarray(params["final_norm"]["scale"]),
  }
  if not c.tie_embeddings:
    out["lm_head.weight"] = np.asarray(params["lm_head"]).T
  for i in range(c.num_layers):
    pre = f"model.layers.{i}."
    a = {k: np.asarray(v[i]) for k, v in attn.items() if not isinstance(v, dict)}
    out[pre + "self_attn.q_proj.weight"] = a["q"].reshape(D, H * Dh).T
    out[pre + "self_attn.k_proj.weight"] = a["k"].reshape(D, K * Dh).T
    out[pre + "self_attn.v_proj.weight"] = a["v"].reshape(D, K * Dh).T
    out[pre + "self_attn.o_proj.weight"] = a["o"].reshape(H * Dh, D).T
    if c.qk_norm:
      out[pre + "self_attn.q_norm.weight"] = np.asarray(
          attn["q_norm"]["scale"][i])
      out[pre + "self_attn.k_norm.weight"] = np.asarray(
          attn["k_norm"]["scale"][i])
    mlp = layers["mlp"]
    out[pre + "mlp.gate_proj.weight"] = np.asarray(mlp["gate"][i]).T
    out[pre + "mlp.up_proj.weight"] = np.asarray(mlp["up"][i]).T
    out[pre + "mlp.down_proj.weight"] = np.asarray(mlp["down"][i]).T
    for ours, theirs in _norm_names(c).items():
      out[pre + f"{theirs}.weight"] = np.asarray(layers[ours]["scale"][i])
  return {k: np.ascontiguousarray(v) for k, v in out.items()}
