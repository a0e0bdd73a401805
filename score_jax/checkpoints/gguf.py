"""GGUF (llama.cpp) files: metadata -> ModelConfig, tensors -> our params.

llama.cpp's converter changes the HF weights in two ways that we undo on
import (and redo on export): Llama-family Q/K projections are permuted from
HF's half-split RoPE layout to the interleaved one ggml uses, and every Gemma
RMSNorm weight is stored as (1 + w). Tensors are dequantised with the `gguf`
package. Numpy shapes of GGUF tensors are [out, in], like HF's, so we map
GGUF names to HF names and reuse `hf.params_from_hf`.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from score_jax.checkpoints import hf
from score_jax.checkpoints._families import family_config
from score_jax.checkpoints.hf import ConversionError
from score_jax.models.config import ModelConfig

MAGIC = b"GGUF"
ARCHITECTURES = ("gemma", "gemma2", "gemma3", "llama")


def _quant_types():
  import gguf  # pylint: disable=g-import-not-at-top
  Q = gguf.GGMLQuantizationType
  return (Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0,
          Q.Q4_K, Q.Q5_K, Q.Q6_K)


class _BadTensorInfo(Exception):
  """A tensor entry of the header that the data cannot match."""


def _checked_reader(path: str):
  """A GGUFReader that checks every tensor's extent before mapping it (the
  plain reader fails on a cut-off file with an anonymous reshape error)."""
  import gguf  # pylint: disable=g-import-not-at-top

  class Reader(gguf.GGUFReader):

    def _build_tensors(self, start_offs, fields):
      size = int(self.data.shape[0])
      for field in fields:
        _, name, _, dims, raw_type, offset = field.parts
        name = bytes(name).decode("utf-8", "replace")
        try:
          qtype = gguf.GGMLQuantizationType(int(raw_type[0]))
        except ValueError:
          raise _BadTensorInfo(f"tensor {name!r} has unknown ggml type id "
                               f"{int(raw_type[0])}") from None
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        end = (int(start_offs) + int(offset[0]) +
               int(np.prod(dims)) * type_size // block)
        if end > size:
          raise _BadTensorInfo(f"truncated file: tensor {name!r} needs bytes "
                               f"up to {end}, file has {size}")
      super()._build_tensors(start_offs, fields)

  return Reader(path)


def open_gguf(path: str):
  """A `gguf.GGUFReader` over `path`, after checking magic and size."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"GGUF file not found: {path}")
  with open(path, "rb") as f:
    magic = f.read(4)
  if magic != MAGIC:
    raise ConversionError(f"{path}: not a GGUF file (starts with {magic!r}, "
                          f"expected {MAGIC!r})")
  try:
    return _checked_reader(path)
  except _BadTensorInfo as e:
    raise ConversionError(f"{path}: {e}") from None
  except Exception as e:  # the reader raises many kinds on a cut-off header
    raise ConversionError(f"{path}: truncated or corrupt GGUF header "
                          f"({type(e).__name__}: {e})") from e


def metadata(reader) -> dict[str, Any]:
  """Scalar and string metadata fields (arrays such as the vocab skipped)."""
  import gguf  # pylint: disable=g-import-not-at-top
  out = {}
  for key, field in reader.fields.items():
    if field.types and field.types[0] == gguf.GGUFValueType.ARRAY:
      continue
    out[key] = field.contents()
  return out


def config_from_gguf(reader, path: str = "GGUF") -> ModelConfig:
  """ModelConfig from the file's metadata and tensor shapes."""
  meta = metadata(reader)
  arch = meta.get("general.architecture")
  if arch not in ARCHITECTURES:
    raise ConversionError(f"{path}: unsupported architecture {arch!r} "
                          f"(general.architecture); supported: {ARCHITECTURES}")
  shapes = {t.name: tuple(int(d) for d in reversed(t.shape))
            for t in reader.tensors}
  if "rope_freqs.weight" in shapes:
    raise ConversionError(f"{path}: tensor 'rope_freqs.weight' (Llama 3 "
                          "frequency factors) is not supported")

  def get(key, default=None, required=True):
    full = f"{arch}.{key}"
    if full in meta:
      v = meta[full]
      # float32 fields: 1e-6 comes back as 9.99999997e-07; keep the shortest
      # decimal that rounds to the same float32 so configs compare equal.
      return float(str(np.float32(v))) if isinstance(v, float) else v
    if required and default is None:
      raise ConversionError(f"{path}: missing metadata field {full!r}")
    return default

  if "token_embd.weight" not in shapes:
    raise ConversionError(f"{path}: missing tensor 'token_embd.weight'")
  vocab = shapes["token_embd.weight"][0]
  D = int(get("embedding_length"))
  H = int(get("attention.head_count"))
  overrides = dict(
      norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-6)),
      tie_embeddings="output.weight" not in shapes,
  )
  if get("rope.freq_base", required=False) is not None:
    overrides["rope_base"] = float(get("rope.freq_base"))
  if get("rope.scaling.type", required=False) == "linear":
    overrides["rope_scale"] = float(get("rope.scaling.factor"))
  if arch in ("gemma2", "gemma3"):
    overrides["sliding_window"] = int(get("attention.sliding_window"))
  if arch == "gemma2":
    overrides["attn_logit_softcap"] = get("attn_logit_softcapping",
                                          required=False)
    overrides["final_logit_softcap"] = get("final_logit_softcapping",
                                           required=False)
  return family_config(
      arch, vocab_size=vocab, num_layers=int(get("block_count")),
      embed_dim=D, hidden_dim=int(get("feed_forward_length")), num_heads=H,
      num_kv_heads=int(get("attention.head_count_kv", H)),
      head_dim=int(get("attention.key_length", D // H)), **overrides)


def _names(config: ModelConfig) -> dict[str, str]:
  """GGUF tensor name -> HF tensor name for every tensor of `config`."""
  names = {"token_embd.weight": "model.embed_tokens.weight",
           "output_norm.weight": "model.norm.weight"}
  if not config.tie_embeddings:
    names["output.weight"] = "lm_head.weight"
  per_layer = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
               "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
               "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
               "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm"}
  if config.post_norms:
    per_layer.update(post_attention_norm="post_attention_layernorm",
                     ffn_norm="pre_feedforward_layernorm",
                     post_ffw_norm="post_feedforward_layernorm")
  else:
    per_layer["ffn_norm"] = "post_attention_layernorm"
  if config.qk_norm:
    per_layer.update(attn_q_norm="self_attn.q_norm",
                     attn_k_norm="self_attn.k_norm")
  for i in range(config.num_layers):
    for g, h in per_layer.items():
      names[f"blk.{i}.{g}.weight"] = f"model.layers.{i}.{h}.weight"
  return names


def _hf_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
  c = config
  D, F, V = c.embed_dim, c.hidden_dim, c.vocab_size
  q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
  shapes = {"q_proj": (q, D), "k_proj": (kv, D), "v_proj": (kv, D),
            "o_proj": (D, q), "gate_proj": (F, D), "up_proj": (F, D),
            "down_proj": (D, F), "q_norm": (c.head_dim,),
            "k_norm": (c.head_dim,), "embed_tokens": (V, D),
            "lm_head": (V, D)}
  out = {}
  for g, h in _names(config).items():
    module = h.rsplit(".", 2)[-2]
    out[g] = shapes.get(module, (D,))
  return out


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
  """HF half-split RoPE rows -> ggml interleaved rows (llama.cpp's permute)."""
  return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
  """Inverse of `permute_qk`."""
  return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def _dequantize(t, path: str) -> np.ndarray:
  import gguf  # pylint: disable=g-import-not-at-top
  if t.tensor_type not in _quant_types():
    raise ConversionError(
        f"{path}: tensor {t.name!r} has unsupported quantisation "
        f"{t.tensor_type.name}; supported: "
        f"{[q.name for q in _quant_types()]}")
  shape = tuple(int(d) for d in reversed(t.shape))
  x = gguf.quants.dequantize(t.data, t.tensor_type)
  return np.asarray(x, np.float32).reshape(shape)


def hf_tensors_from_gguf(reader, config: ModelConfig,
                         path: str = "GGUF") -> dict[str, np.ndarray]:
  """HF-named float32 tensors, checked against `config`, GGUF edits undone."""
  tensors = {t.name: t for t in reader.tensors}
  expected = _hf_shapes(config)
  for name, shape in expected.items():
    if name not in tensors:
      raise ConversionError(f"{path}: missing tensor {name!r} (expected "
                            f"shape {shape} for a {config.family} model)")
    got = tuple(int(d) for d in reversed(tensors[name].shape))
    if got != shape:
      raise ConversionError(f"{path}: tensor {name!r} has shape {got}, "
                            f"expected {shape}")
  out = {}
  gemma = config.family != "llama"
  for g, h in _names(config).items():
    w = _dequantize(tensors[g], path)
    if gemma and g.endswith("norm.weight"):
      w = w - 1.0
    elif not gemma and ".attn_q." in g:
      w = unpermute_qk(w, config.num_heads)
    elif not gemma and ".attn_k." in g:
      w = unpermute_qk(w, config.num_kv_heads)
    out[h] = w
  return out


def read_gguf(path: str, dtype: Optional[Any] = None
              ) -> tuple[ModelConfig, dict[str, Any]]:
  """(config, params as numpy arrays) of a GGUF file."""
  path = os.fspath(path)
  reader = open_gguf(path)
  config = config_from_gguf(reader, path)
  tensors = hf_tensors_from_gguf(reader, config, path)
  return config, hf.params_from_hf(tensors, config, source=path, dtype=dtype)


def write_gguf(path: str, config: ModelConfig, params: Any,
               qtype: Optional[Any] = None) -> None:
  """Writes `params` as a GGUF file llama.cpp and transformers read.

  qtype: a `gguf.GGMLQuantizationType` for the 2-D weights (F32 default;
  the `gguf` package can quantise F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0);
  norms stay F32. No tokenizer is written.
  """
  import gguf  # pylint: disable=g-import-not-at-top
  c = config
  qtype = qtype or gguf.GGMLQuantizationType.F32
  arch = c.family
  w = gguf.GGUFWriter(os.fspath(path), arch)
  w.add_block_count(c.num_layers)
  w.add_context_length(8192)
  w.add_embedding_length(c.embed_dim)
  w.add_feed_forward_length(c.hidden_dim)
  w.add_head_count(c.num_heads)
  w.add_head_count_kv(c.num_kv_heads)
  w.add_key_length(c.head_dim)
  w.add_value_length(c.head_dim)
  w.add_rope_dimension_count(c.head_dim)
  w.add_layer_norm_rms_eps(c.norm_eps)
  w.add_rope_freq_base(c.rope_base)
  w.add_vocab_size(c.vocab_size)
  if c.rope_scale != 1.0:
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(c.rope_scale)
  if c.sliding_window and arch in ("gemma2", "gemma3"):
    w.add_sliding_window(c.sliding_window)
  if arch == "gemma2":
    if c.attn_logit_softcap:
      w.add_attn_logit_softcapping(c.attn_logit_softcap)
    if c.final_logit_softcap:
      w.add_final_logit_softcapping(c.final_logit_softcap)
  hf_tensors = hf.params_to_hf(params, config)
  gemma = c.family != "llama"
  for g, h in _names(config).items():
    x = np.asarray(hf_tensors[h], np.float32)
    if gemma and g.endswith("norm.weight"):
      x = x + 1.0
    elif not gemma and ".attn_q." in g:
      x = permute_qk(x, c.num_heads)
    elif not gemma and ".attn_k." in g:
      x = permute_qk(x, c.num_kv_heads)
    if x.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
      w.add_tensor(g, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
    else:
      w.add_tensor(g, np.ascontiguousarray(x))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
