"""One config-driven decoder: Gemma 1/2/3 and the Llama family.

The layers are one `nn.scan` (compile time does not grow with depth); what
differs between layers (sliding window, RoPE base and scale) is a scanned
input. The same module runs a full forward (training, reference log-probs)
and cached decoding (prefill a block, then one token at a time).

Shapes: B batch, T block length, S cache length, D embed, F hidden, H heads,
K kv heads, G = H // K, Dh head dim, V vocab, L layers.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from score_jax import sharding as sharding_lib
from score_jax.models.config import ModelConfig
from score_jax.sharding import ShardingCtx, constrain

Array = jax.Array
Cache = dict[str, Array]

_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _param(module: nn.Module, name: str, init, shape, names):
  dtype = jnp.dtype(module.config.param_dtype)
  return module.param(name, nn.with_logical_partitioning(init, names), shape,
                      dtype)


def _dense_init(in_axis, out_axis):
  return nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal",
                                          in_axis=in_axis, out_axis=out_axis)


@jax.custom_vjp
def _dense(x: Array, w: Array) -> Array:
  """x [..., I] @ w [I, O], with the weight gradient taken as x^T g.

  Autodiff of `x @ w` gives the weight gradient as (g^T x)^T, and XLA's CPU
  backend then writes g (the larger [N, O] operand) out transposed, fused
  with the elementwise work that produced it: over a third of a training
  step of the demo's model went to those copies (docs/PERFORMANCE.md).
  Same values; remat policies see the forward's dot as before.
  """
  return x @ w


def _dense_fwd(x: Array, w: Array) -> tuple[Array, tuple[Array, Array]]:
  return x @ w, (x, w)


def _dense_bwd(res: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
  x, w = res
  dw = jnp.einsum("ni,no->io", x.reshape(-1, x.shape[-1]),
                  g.reshape(-1, g.shape[-1]))
  return (g @ w.T).astype(x.dtype), dw.astype(w.dtype)


_dense.defvjp(_dense_fwd, _dense_bwd)


def positions_from_mask(mask: Array) -> Array:
  """Positions of a left-padded batch: bool[B, T] -> int32[B, T], pads at 0."""
  return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


class RMSNorm(nn.Module):
  config: ModelConfig
  dim: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = self.config
    init = nn.initializers.zeros if c.norm_plus_one else nn.initializers.ones
    scale = _param(self, "scale", init, (self.dim,), ("norm",))
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) + c.norm_eps)
    scale = scale.astype(jnp.float32)
    y = y * (1.0 + scale if c.norm_plus_one else scale)
    return y.astype(x.dtype)


def _rope_inv_freq(config: ModelConfig, base: Array, scale: Array) -> Array:
  """Inverse frequencies float32[Dh/2] for one layer (traced base/scale)."""
  dh = config.head_dim
  exponent = jnp.arange(0, dh, 2, dtype=jnp.float32) / dh
  inv_freq = 1.0 / (base**exponent)
  if config.llama3_rope is not None:
    factor, low, high, original = config.llama3_rope
    wavelen = 2 * jnp.pi / inv_freq
    low_wavelen, high_wavelen = original / low, original / high
    scaled = jnp.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    inv_freq = jnp.where(medium, smoothed, scaled)
  return inv_freq / scale


def apply_rope(x: Array, positions: Array, inv_freq: Array) -> Array:
  """Rotary embedding, half-split layout: x [B, T, N, Dh], positions [B, T]."""
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, Dh/2]
  cos = jnp.cos(angles)[:, :, None, :]
  sin = jnp.sin(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


# The logit of an id past config.output_vocab: exp underflows to exactly 0
# against any real logit, and log-softmax stays finite (no 0 * -inf).
_MASKED_LOGIT = -1e9


def _softcap(x: Array, cap: Optional[float]) -> Array:
  return x if cap is None else jnp.tanh(x / cap) * cap


def _mask(q_pos: Array, k_pos: Array, k_valid: Array, window: Array) -> Array:
  """bool[B, T, S]: key is valid, not in the future, and inside the window."""
  diff = q_pos[:, :, None] - k_pos[:, None, :]
  return k_valid[:, None, :] & (diff >= 0) & (diff < window)


class Attention(nn.Module):
  config: ModelConfig
  sharding: Optional[ShardingCtx] = None

  @nn.compact
  def __call__(self, x: Array, layer: dict[str, Array],
               ctx: dict[str, Any]) -> tuple[Array, tuple[Array, Array]]:
    c = self.config
    dt = jnp.dtype(c.dtype)
    D, H, K, Dh = c.embed_dim, c.num_heads, c.num_kv_heads, c.head_dim
    G = H // K
    wq = _param(self, "q", _dense_init(0, (1, 2)), (D, H, Dh),
                ("embed", "heads", "head_dim"))
    wk = _param(self, "k", _dense_init(0, (1, 2)), (D, K, Dh),
                ("embed", "kv_heads", "head_dim"))
    wv = _param(self, "v", _dense_init(0, (1, 2)), (D, K, Dh),
                ("embed", "kv_heads", "head_dim"))
    wo = _param(self, "o", _dense_init((0, 1), 2), (H, Dh, D),
                ("heads", "head_dim", "embed"))
    B, T = x.shape[:2]
    q = _dense(x, wq.astype(dt).reshape(D, H * Dh)).reshape(B, T, H, Dh)
    k = _dense(x, wk.astype(dt).reshape(D, K * Dh)).reshape(B, T, K, Dh)
    v = _dense(x, wv.astype(dt).reshape(D, K * Dh)).reshape(B, T, K, Dh)
    q = constrain(q, ("batch", "length", "act_heads", None), self.sharding)
    k = constrain(k, ("batch", "length", "act_kv_heads", None), self.sharding)
    v = constrain(v, ("batch", "length", "act_kv_heads", None), self.sharding)
    if c.qk_norm:
      q = RMSNorm(c, Dh, name="q_norm")(q)
      k = RMSNorm(c, Dh, name="k_norm")(k)
    inv_freq = _rope_inv_freq(c, layer["rope_base"], layer["rope_scale"])
    q = apply_rope(q, ctx["q_pos"], inv_freq) * jnp.asarray(c.query_scale, dt)
    k = apply_rope(k, ctx["q_pos"], inv_freq)
    q = q.reshape(B, T, K, G, Dh)
    if "k" in layer:
      return self._attend_cache(q, k, v, wo, layer, ctx)
    s = jnp.einsum("btkgd,bskd->bkgts", q, k.astype(dt),
                   preferred_element_type=jnp.float32)
    s = _softcap(s, c.attn_logit_softcap)
    m = _mask(ctx["q_pos"], ctx["q_pos"], ctx["q_valid"], layer["window"])
    s = jnp.where(m[:, None, None], s, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(s, axis=-1).astype(dt)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v.astype(dt))
    return self._project_out(out, wo), (k, v)

  def _attend_cache(self, q: Array, k: Array, v: Array, wo: Array,
                    layer: dict[str, Array],
                    ctx: dict[str, Any]) -> tuple[Array, tuple[Array, Array]]:
    """Writes this block's k/v [B, T, K, Dh] into the layer's cache
    (k [B, K, Dh, S], v [B, K, S, Dh]) at slot ctx['index'], then attends
    over the whole cache.

    The queries of a kv head are merged into one [G * T] axis, so both
    attention matmuls are plain (b, k)-batched matmuls [G*T, Dh] @ [Dh, S]
    and [G*T, S] @ [S, Dh] that read the cache as stored. (On XLA's CPU
    backend, separate g and t axes made them ~2.7x slower, at T = 1 and 64,
    and keys stored [S, Dh] made the decode-step score matmul ~3x slower.)
    The cache is written in place.
    """
    c = self.config
    dt = jnp.dtype(c.dtype)
    B, T, K, G, Dh = q.shape
    i = ctx["index"]
    kc = jax.lax.dynamic_update_slice(
        layer["k"], k.transpose(0, 2, 3, 1).astype(layer["k"].dtype),
        (0, 0, 0, i))
    vc = jax.lax.dynamic_update_slice(
        layer["v"], v.transpose(0, 2, 1, 3).astype(layer["v"].dtype),
        (0, 0, i, 0))
    S = kc.shape[3]
    q = q.transpose(0, 2, 3, 1, 4).reshape(B, K, G * T, Dh)
    s = jnp.einsum("bkqd,bkds->bkqs", q, kc.astype(dt),
                   preferred_element_type=jnp.float32).reshape(B, K, G, T, S)
    s = _softcap(s, c.attn_logit_softcap)
    m = _mask(ctx["q_pos"], ctx["cache_pos"], ctx["cache_valid"],
              layer["window"])
    s = jnp.where(m[:, None, None], s, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(s, axis=-1).astype(dt).reshape(B, K, G * T, S)
    out = jnp.einsum("bkqs,bksd->bkqd", probs, vc.astype(dt))
    out = out.reshape(B, K, G, T, Dh).transpose(0, 3, 1, 2, 4)
    return self._project_out(out, wo), (kc, vc)

  def _project_out(self, out: Array, wo: Array) -> Array:
    """Attention output [B, T, K, G, Dh] -> [B, T, D]."""
    B, T = out.shape[:2]
    c = self.config
    out = out.reshape(B, T, c.num_heads, c.head_dim)
    out = constrain(out, ("batch", "length", "act_heads", None), self.sharding)
    wo = wo.astype(jnp.dtype(c.dtype)).reshape(c.num_heads * c.head_dim,
                                               c.embed_dim)
    return _dense(out.reshape(B, T, -1), wo)


class MLP(nn.Module):
  config: ModelConfig
  sharding: Optional[ShardingCtx] = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = self.config
    dt = jnp.dtype(c.dtype)
    D, F = c.embed_dim, c.hidden_dim
    gate = _param(self, "gate", _dense_init(0, 1), (D, F), ("embed", "mlp"))
    up = _param(self, "up", _dense_init(0, 1), (D, F), ("embed", "mlp"))
    down = _param(self, "down", _dense_init(0, 1), (F, D), ("mlp", "embed"))
    act = (jax.nn.silu if c.activation == "silu" else
           lambda z: jax.nn.gelu(z, approximate=True))
    h = act(_dense(x, gate.astype(dt))) * _dense(x, up.astype(dt))
    h = constrain(h, ("batch", "length", "act_mlp"), self.sharding)
    return _dense(h, down.astype(dt))


class Block(nn.Module):
  """One decoder layer; scanned over depth. Carry: x [B, T, D]."""

  config: ModelConfig
  sharding: Optional[ShardingCtx] = None

  @nn.compact
  def __call__(self, x: Array, layer: dict[str, Array],
               ctx: dict[str, Any]) -> tuple[Array, tuple[Array, Array]]:
    c = self.config
    D = c.embed_dim
    h = RMSNorm(c, D, name="pre_attn_norm")(x)
    h, kv = Attention(c, self.sharding, name="attn")(h, layer, ctx)
    if c.post_norms:
      h = RMSNorm(c, D, name="post_attn_norm")(h)
    x = x + h
    h = RMSNorm(c, D, name="pre_mlp_norm")(x)
    h = MLP(c, self.sharding, name="mlp")(h)
    if c.post_norms:
      h = RMSNorm(c, D, name="post_mlp_norm")(h)
    x = x + h
    x = constrain(x, ("batch", "length", "act_embed"), self.sharding)
    return x, kv


class Transformer(nn.Module):
  """Decoder-only LM. Params are plain pytrees; policy and reference share it.

  `__call__(tokens, positions, mask, cache=None)` returns
  (float32 logits [B, T, V] or hidden [B, T, D] if return_hidden, new cache).
  """

  config: ModelConfig
  sharding: Optional[ShardingCtx] = None

  def setup(self):
    c = self.config
    self.embedding = _param(self, "embedding",
                            nn.initializers.normal(c.embed_dim**-0.5),
                            (c.vocab_size, c.embed_dim),
                            ("vocab", "vocab_embed"))
    if not c.tie_embeddings:
      self.lm_head = _param(self, "lm_head", _dense_init(0, 1),
                            (c.embed_dim, c.vocab_size),
                            ("vocab_embed", "vocab"))
    block = Block
    if c.remat_policy != "none":
      block = nn.remat(Block, policy=_REMAT_POLICIES[c.remat_policy],
                       prevent_cse=False)
    self.layers = nn.scan(
        block,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=(0, nn.broadcast),
        length=c.num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )(c, self.sharding)
    self.final_norm = RMSNorm(c, c.embed_dim)

  def __call__(self, tokens: Array, positions: Array, mask: Array,
               cache: Optional[Cache] = None,
               return_hidden: bool = False,
               layers: Optional[tuple[Any, ...]] = None
               ) -> tuple[Array, Optional[Cache]]:
    """tokens int32[B, T], positions int32[B, T], mask bool[B, T] (False on
    padding). With a cache, the block is written at slot cache['index'] and
    attends to every valid earlier slot.

    Without a cache (training, reference log-probs) the layers run as one
    scan over the stacked params. With a cache (prefill, decode) they run
    unrolled, layer i on its own params and its own cache buffers, so a
    decode step slices nothing out of a stacked array; `layers`
    (`unstack_layers(params)`) passes the per-layer params ready-made, so a
    decode loop slices the stacked weights once, outside the loop.
    """
    c = self.config
    dt = jnp.dtype(c.dtype)
    # Vocabulary-parallel lookup (sharding.DEFAULT_RULES): every device sees
    # the tokens of its 'data' shard and looks them up in its own rows of
    # the table; XLA's partitioner masks the others and sums over the
    # vocabulary's shards: a [B, T, D] reduction, never a V x D copy.
    tokens = constrain(tokens, (self._vocab_rows(), "length"), self.sharding)
    x = jnp.take(self.embedding.astype(dt), tokens, axis=0)
    x = x * jnp.asarray(c.embed_scale, dt)
    x = constrain(x, ("batch", "length", "act_embed"), self.sharding)
    ctx = {"q_pos": positions.astype(jnp.int32), "q_valid": mask.astype(bool)}
    new_cache = None
    if cache is None:
      if layers is not None:
        raise ValueError("Transformer: `layers` is for cached calls only "
                         "(the uncached forward scans the stacked params)")
      layer = {k: jnp.asarray(v) for k, v in c.layer_arrays().items()}
      x, _ = self.layers(x, layer, ctx)
    else:
      x, new_cache = self._cached_layers(x, ctx, cache, layers)
    x = self.final_norm(x)
    if return_hidden:
      return x, new_cache
    return self.logits(x), new_cache

  def _cached_layers(self, x: Array, ctx: dict[str, Any], cache: Cache,
                     layers: Optional[tuple[Any, ...]]) -> tuple[Array, Cache]:
    """The layers unrolled over a cache: x [B, T, D] -> x, new cache."""
    c = self.config
    if layers is None:
      if self.is_initializing():
        raise ValueError("Transformer: initialise without a cache "
                         "(models.init_params)")
      layers = unstack_layers(self.variables["params"])
    if len(layers) != c.num_layers:
      raise ValueError(f"Transformer: got params for {len(layers)} layers, "
                       f"the config has {c.num_layers}")
    if len(cache["k"]) != c.num_layers:
      raise ValueError(f"Transformer: the cache holds {len(cache['k'])} "
                       f"layers, the config has {c.num_layers} "
                       "(models.init_cache makes one)")
    i = cache["index"]
    pos = jax.lax.dynamic_update_slice(cache["pos"], ctx["q_pos"], (0, i))
    valid = jax.lax.dynamic_update_slice(cache["valid"], ctx["q_valid"],
                                         (0, i))
    ctx = dict(ctx, cache_pos=pos, cache_valid=valid, index=i)
    # The same (unbound) layer module applied to each layer's params; the
    # per-layer settings are constants of the unrolled program.
    block = Block(c, self.sharding, parent=None)
    settings = c.layer_arrays()
    ks, vs = [], []
    for l, params in enumerate(layers):
      layer = {k: jnp.asarray(a[l]) for k, a in settings.items()}
      layer["k"], layer["v"] = cache["k"][l], cache["v"][l]
      x, (k, v) = block.apply({"params": params}, x, layer, ctx)
      ks.append(k)
      vs.append(v)
    return x, {"k": tuple(ks), "v": tuple(vs), "pos": pos, "valid": valid,
               "index": i + x.shape[1]}

  def _vocab_rows(self) -> str:
    if self.sharding is None:
      return "batch"
    return sharding_lib.vocab_rows(self.config.vocab_size, self.sharding.mesh,
                                   self.sharding.rules)

  def logits(self, hidden: Array, vocab_parallel: bool = False) -> Array:
    """Final-normed hidden [B, T, D] -> float32 logits [B, T, V].

    Computed vocabulary-parallel: each device makes the logits of its own
    rows of the table ('act_vocab': 'tensor' x 'fsdp') for all the batch
    rows of its 'data' shard, so no device gathers the V x D table (or, in
    training, holds a whole gradient of it). vocab_parallel: return them so
    split (the training loss; its softmax sums run across devices).
    Otherwise (sampling) they are resplit over the batch, as the sampler's
    other rows are: an exchange of logits, far smaller than the table.
    """
    c = self.config
    dt = jnp.dtype(c.dtype)
    rows = self._vocab_rows()
    hidden = constrain(hidden, (rows, "length", "act_embed"), self.sharding)
    if c.tie_embeddings:
      logits = jnp.einsum("btd,vd->btv", hidden, self.embedding.astype(dt))
    else:
      logits = _dense(hidden, self.lm_head.astype(dt))
    logits = constrain(logits, (rows, "length", "act_vocab"), self.sharding)
    if not vocab_parallel:
      logits = constrain(logits, ("batch", "length", "act_vocab"),
                         self.sharding)
    logits = _softcap(logits.astype(jnp.float32), c.final_logit_softcap)
    if c.output_vocab is not None and c.output_vocab < c.vocab_size:
      # Finite, so a masked id's probability is 0 and p log p stays 0.
      ids = jnp.arange(c.vocab_size)
      logits = jnp.where(ids < c.output_vocab, logits, _MASKED_LOGIT)
    return logits


# --------------------------------------------------------------------------
# KV cache: one buffer per layer, k a tuple of L arrays [B, K, Dh, S] and v
# of L arrays [B, K, S, Dh]; pos int32[B, S], valid bool[B, S], index int32[]
# (next slot to write; every row advances together). Per-layer buffers let
# the unrolled cached layers read and write each layer's K/V in place (a
# stacked [L, ...] cache would be sliced per layer); the layouts are the ones
# the attention matmuls read without a transpose (Attention._attend_cache).

CACHE_AXES = {
    "k": ("batch", "kv_heads", "head_dim", "cache_length"),  # each layer's
    "v": ("batch", "kv_heads", "cache_length", "head_dim"),
    "pos": ("batch", "cache_length"),
    "valid": ("batch", "cache_length"),
    "index": (),
}


def cache_shapes(config: ModelConfig, batch: int,
                 length: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Shapes of one layer's k and v buffers in a cache of `length` slots."""
  K, Dh = config.num_kv_heads, config.head_dim
  return (batch, K, Dh, length), (batch, K, length, Dh)


def init_cache(config: ModelConfig, batch: int, length: int,
               dtype: Any = None) -> Cache:
  """An empty cache with `length` slots; dtype defaults to the compute dtype."""
  dtype = jnp.dtype(dtype or config.dtype)
  k_shape, v_shape = cache_shapes(config, batch, length)
  layers = config.num_layers
  return {
      "k": tuple(jnp.zeros(k_shape, dtype) for _ in range(layers)),
      "v": tuple(jnp.zeros(v_shape, dtype) for _ in range(layers)),
      "pos": jnp.zeros((batch, length), jnp.int32),
      "valid": jnp.zeros((batch, length), bool),
      "index": jnp.zeros((), jnp.int32),
  }


def unstack_layers(params: Any) -> tuple[Any, ...]:
  """The scanned layers' params (params['layers'], leaves [L, ...]) as a
  tuple of L per-layer trees (copies: call it once, outside a decode loop)."""
  stacked = nn.unbox(params["layers"])
  num = {a.shape[0] for a in jax.tree.leaves(stacked)}
  if len(num) != 1:
    raise ValueError(f"unstack_layers: params['layers'] leaves disagree on "
                     f"the number of layers: {sorted(num)}")
  return tuple(jax.tree.map(lambda a, l=l: a[l], stacked)
               for l in range(num.pop()))
