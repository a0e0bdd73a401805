"""google-deepmind/gemma Flax checkpoints (Orbax) <-> our params.

On disk (as `gemma.gm.ckpts` reads and writes it) the params are a semi-flat
dict: 'transformer/layer_N/attn/q_einsum' -> {'w': [H, D, Dh]},
'.../attn/kv_einsum' -> {'w': [2, K, D, Dh]} (or 'qkv_einsum' [3, H, D, Dh]
when K == H), '.../attn/attn_vec_einsum' [H, Dh, D], '.../attn/_query_norm'
and '_key_norm' {'scale': [Dh]} (Gemma 3), '.../mlp/gating_einsum' {'w':
[2, F, D]} (Gemma 2/3; Gemma 1 stores [2, D, F]), '.../mlp/linear' [F, D],
'.../pre_attention_norm', 'post_attention_norm', 'pre_ffw_norm',
'post_ffw_norm' {'scale': [D]}, 'transformer/embedder' {'input_embedding':
[V, D]}, 'transformer/final_norm' {'scale'}. Gemma's RMSNorm multiplies by
(1 + scale), as ours does, so norms copy unchanged. The checkpoint carries no
config: family and sizes are read off the tree.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

import numpy as np

from score_jax.checkpoints._atomic import atomic_dir, destination
from score_jax.checkpoints._families import family_config
from score_jax.checkpoints.hf import ConversionError
from score_jax.models.config import ModelConfig

_NORMS = {"pre_attn_norm": "pre_attention_norm",
          "post_attn_norm": "post_attention_norm",
          "pre_mlp_norm": "pre_ffw_norm", "post_mlp_norm": "post_ffw_norm"}


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    name = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, dict):
      out.update(_flatten(v, name))
    else:
      out[name] = v
  return out


def normalize(tree: Any) -> dict[str, Any]:
  """Flat 'layer_N/attn/q_einsum/w'-style names from either the on-disk
  semi-flat tree or gemma's nested in-memory tree (no 'transformer/' prefix,
  MLP weights without '/w')."""
  flat = {}
  for name, v in _flatten(tree).items():
    name = name.removeprefix("transformer/")
    if re.search(r"/mlp/(gating_einsum|linear)$", name):
      name += "/w"
    flat[name] = v
  return flat


def config_from_tree(flat: dict[str, Any], source: str) -> ModelConfig:
  """Family and sizes read off a normalized tree."""
  layers = sorted({int(m.group(1)) for n in flat
                   if (m := re.match(r"layer_(\d+)/", n))})
  if not layers or "embedder/input_embedding" not in flat:
    raise ConversionError(f"{source}: not a Gemma Flax checkpoint (expected "
                          "'transformer/embedder' and 'transformer/layer_N')")
  if layers != list(range(len(layers))):
    raise ConversionError(f"{source}: layer numbers are not 0..N-1: {layers}")
  V, D = np.shape(flat["embedder/input_embedding"])
  F = np.shape(_need(flat, "layer_0/mlp/linear/w", source))[0]
  if "layer_0/attn/qkv_einsum/w" in flat:
    _, H, _, Dh = np.shape(flat["layer_0/attn/qkv_einsum/w"])
    K = H
  else:
    H, _, Dh = np.shape(_need(flat, "layer_0/attn/q_einsum/w", source))
    K = np.shape(_need(flat, "layer_0/attn/kv_einsum/w", source))[1]
  if "layer_0/attn/_query_norm/scale" in flat:
    family = "gemma3"
  elif "layer_0/post_ffw_norm/scale" in flat:
    family = "gemma2"
  else:
    family = "gemma"
  return family_config(family, vocab_size=int(V), num_layers=len(layers),
                       embed_dim=int(D), hidden_dim=int(F), num_heads=int(H),
                       num_kv_heads=int(K), head_dim=int(Dh))


def _need(flat, name, source, shape=None) -> np.ndarray:
  if name not in flat:
    raise ConversionError(f"{source}: missing tensor 'transformer/{name}'"
                          + (f" (expected shape {shape})" if shape else ""))
  x = np.asarray(flat[name])
  if shape is not None and x.shape != tuple(shape):
    raise ConversionError(f"{source}: tensor 'transformer/{name}' has shape "
                          f"{x.shape}, expected {tuple(shape)}")
  return x


def params_from_gemma(flat: dict[str, Any], config: ModelConfig,
                      source: str = "Gemma checkpoint") -> dict[str, Any]:
  """Our params (numpy) from a normalized Gemma Flax tree."""
  c = config
  D, F, H, K, Dh, V = (c.embed_dim, c.hidden_dim, c.num_heads,
                       c.num_kv_heads, c.head_dim, c.vocab_size)
  dtype = np.dtype(c.param_dtype)

  def stack(fn):
    return np.stack([fn(f"layer_{i}/") for i in range(c.num_layers)]
                    ).astype(dtype)

  def get(name, shape):
    return _need(flat, name, source, shape)

  if K == H and "layer_0/attn/qkv_einsum/w" in flat:
    qkv = stack(lambda p: get(p + "attn/qkv_einsum/w", (3, H, D, Dh)))
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
  else:
    q = stack(lambda p: get(p + "attn/q_einsum/w", (H, D, Dh)))
    kv = stack(lambda p: get(p + "attn/kv_einsum/w", (2, K, D, Dh)))
    k, v = kv[:, 0], kv[:, 1]
  attn = {"q": q.transpose(0, 2, 1, 3), "k": k.transpose(0, 2, 1, 3),
          "v": v.transpose(0, 2, 1, 3),
          "o": stack(lambda p: get(p + "attn/attn_vec_einsum/w", (H, Dh, D)))}
  if c.qk_norm:
    attn["q_norm"] = {"scale": stack(
        lambda p: get(p + "attn/_query_norm/scale", (Dh,)))}
    attn["k_norm"] = {"scale": stack(
        lambda p: get(p + "attn/_key_norm/scale", (Dh,)))}

  def gating(p):
    w = _need(flat, p + "mlp/gating_einsum/w", source)
    if w.shape == (2, F, D):
      return w.transpose(0, 2, 1)
    if w.shape == (2, D, F):
      return w
    raise ConversionError(f"{source}: tensor 'transformer/{p}mlp/gating_"
                          f"einsum/w' has shape {w.shape}, expected "
                          f"{(2, F, D)} or {(2, D, F)}")

  gate_up = stack(gating)  # [L, 2, D, F]
  layers = {"attn": attn,
            "mlp": {"gate": gate_up[:, 0], "up": gate_up[:, 1],
                    "down": stack(lambda p: get(p + "mlp/linear/w", (F, D)))}}
  for ours, theirs in _NORMS.items():
    if c.post_norms or ours.startswith("pre"):
      layers[ours] = {"scale": stack(
          lambda p, t=theirs: get(p + f"{t}/scale", (D,)))}
  return {"embedding": get("embedder/input_embedding", (V, D)).astype(dtype),
          "final_norm": {"scale": get("final_norm/scale", (D,)).astype(dtype)},
          "layers": layers}


def params_to_gemma(params: Any, config: ModelConfig) -> dict[str, Any]:
  """The on-disk semi-flat Gemma tree of our params (numpy)."""
  c = config
  if c.family == "llama" or not c.tie_embeddings:
    raise ConversionError(f"the Gemma Flax layout holds Gemma models with "
                          f"tied embeddings, not family={c.family!r}, "
                          f"tie_embeddings={c.tie_embeddings}")
  lay = params["layers"]
  a = {k: np.asarray(v) for k, v in lay["attn"].items()
       if not isinstance(v, dict)}
  out = {"transformer/embedder": {
             "input_embedding": np.asarray(params["embedding"])},
         "transformer/final_norm": {
             "scale": np.asarray(params["final_norm"]["scale"])}}
  for i in range(c.num_layers):
    p = f"transformer/layer_{i}/"
    q, k, v = (a[n][i].transpose(1, 0, 2) for n in ("q", "k", "v"))
    if c.num_kv_heads == c.num_heads:
      out[p + "attn/qkv_einsum"] = {"w": np.stack([q, k, v])}
    else:
      out[p + "attn/q_einsum"] = {"w": q}
      out[p + "attn/kv_einsum"] = {"w": np.stack([k, v])}
    out[p + "attn/attn_vec_einsum"] = {"w": a["o"][i]}
    if c.qk_norm:
      out[p + "attn/_query_norm"] = {
          "scale": np.asarray(lay["attn"]["q_norm"]["scale"][i])}
      out[p + "attn/_key_norm"] = {
          "scale": np.asarray(lay["attn"]["k_norm"]["scale"][i])}
    gate_up = np.stack([np.asarray(lay["mlp"]["gate"][i]),
                        np.asarray(lay["mlp"]["up"][i])])  # [2, D, F]
    if c.family != "gemma":  # Gemma 2/3 checkpoints store it transposed
      gate_up = gate_up.transpose(0, 2, 1)
    out[p + "mlp/gating_einsum"] = {"w": gate_up}
    out[p + "mlp/linear"] = {"w": np.asarray(lay["mlp"]["down"][i])}
    for ours, theirs in _NORMS.items():
      if ours in lay:
        out[p + theirs] = {"scale": np.asarray(lay[ours]["scale"][i])}
  return out


def read_gemma_flax(directory: str, config: Optional[ModelConfig] = None
                    ) -> tuple[ModelConfig, dict[str, Any]]:
  """(config, numpy params) of a Gemma Flax/Orbax checkpoint directory."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = os.path.abspath(os.fspath(directory))
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"Gemma checkpoint directory not found: "
                            f"{directory}")
  try:
    tree = ocp.PyTreeCheckpointer().restore(directory)
  except Exception as e:  # orbax raises many kinds on a bad directory
    raise ConversionError(f"{directory}: not a readable Orbax checkpoint "
                          f"({type(e).__name__}: {e})") from e
  flat = normalize(tree)
  config = config or config_from_tree(flat, directory)
  return config, params_from_gemma(flat, config, directory)


def write_gemma_flax(directory: str, config: ModelConfig, params: Any,
                     overwrite: bool = False) -> str:
  """Writes the Gemma Flax layout with Orbax (temp folder, then rename)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = destination(directory)
  tree = params_to_gemma(params, config)
  with atomic_dir(directory, overwrite) as tmp:
    # Orbax wants to create its own folder: save into one inside tmp.
    ocp.PyTreeCheckpointer().save(os.path.join(tmp, "ckpt"), tree)
    for name in os.listdir(os.path.join(tmp, "ckpt")):
      os.rename(os.path.join(tmp, "ckpt", name), os.path.join(tmp, name))
    os.rmdir(os.path.join(tmp, "ckpt"))
  return directory
