"""Checkpoint formats on tiny random models of every family.

Each layout is checked against an implementation that is not ours wherever
one exists here: transformers reads our HF export and our GGUF files; the
Gemma Flax layout is checked with a numpy forward written from the equations
of google-deepmind/gemma's modules, reading that layout directly.
"""

import functools
import json
import os
import shutil

import jax
import numpy as np
import pytest

from score_jax import checkpoints, models
from score_jax.checkpoints import gemma_flax, gguf as gguf_io, safetensors_io
from score_jax.checkpoints._atomic import atomic_dir
from score_jax.checkpoints.hf import ConversionError

FAMILIES = ["tiny-llama", "tiny-gemma", "tiny-gemma2", "tiny-gemma3"]
GEMMAS = ["tiny-gemma", "tiny-gemma2", "tiny-gemma3"]
# Longer than tiny-gemma2/3's sliding window (4): local attention matters.
IDS = np.random.RandomState(0).randint(0, 256, (2, 11)).astype(np.int32)


def _params(config, seed=1):
  """Random params with non-trivial norms (init leaves them 0 or 1)."""
  return jax.tree.map(np.copy, _cached_params(config, seed))


@functools.lru_cache(maxsize=None)
def _cached_params(config, seed):
  params = jax.tree.map(np.asarray, models.init_params(config,
                                                       jax.random.key(seed)))
  rng = np.random.RandomState(seed)

  def jitter(path, x):
    if "norm" in jax.tree_util.keystr(path):
      return (x + 0.2 * rng.randn(*x.shape)).astype(x.dtype)
    return x

  return jax.tree_util.tree_map_with_path(jitter, params)


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request):
  config = models.get_preset(request.param)
  params = _params(config)
  ref = checkpoints.LoadedModel(config, params)
  return config, params, ref.logits(IDS)


def _torch_logits(directory, **kw):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  model = transformers.AutoModelForCausalLM.from_pretrained(
      directory, dtype=torch.float32, attn_implementation="eager", **kw)
  with torch.no_grad():
    return model(torch.tensor(IDS, dtype=torch.long)).logits.numpy()


# ---------------------------------------------------------------- HF


def test_hf_export_loads_in_transformers_with_our_logits(tiny, tmp_path):
  config, params, want = tiny
  out = checkpoints.save_model(f"hf:{tmp_path / 'm'}", config, params)
  np.testing.assert_allclose(_torch_logits(out), want, atol=2e-5)
  back = checkpoints.load_model(f"hf:{out}")
  assert back.config == config and back.tokenizer is None
  np.testing.assert_array_equal(back.logits(IDS), want)


def test_hf_sharded_index_round_trip(tmp_path):
  config = models.get_preset("tiny-gemma3")
  params = _params(config)
  out = safetensors_io.write_hf(tmp_path / "m", config, params,
                                max_shard_bytes=60_000)
  with open(os.path.join(out, safetensors_io.INDEX)) as f:
    shards = set(json.load(f)["weight_map"].values())
  assert len(shards) > 3 and not os.path.exists(
      os.path.join(out, safetensors_io.SINGLE))
  got_config, got = safetensors_io.read_hf(out)
  assert got_config == config
  jax.tree.map(np.testing.assert_array_equal, got, params)


def test_hf_reads_bfloat16(tmp_path):
  config = models.get_preset("tiny-llama")
  params = _params(config)
  out = safetensors_io.write_hf(tmp_path / "m", config, params,
                                dtype=np.dtype("bfloat16"))
  with open(os.path.join(out, "config.json")) as f:
    assert json.load(f)["torch_dtype"] == "bfloat16"
  _, got = safetensors_io.read_hf(out)
  np.testing.assert_allclose(got["embedding"], params["embedding"],
                             rtol=1e-2, atol=1e-3)


# ---------------------------------------------------------------- GGUF


def test_gguf_matches_transformers_reading_the_same_file(tiny, tmp_path):
  config, params, want = tiny
  path = tmp_path / "m.gguf"
  gguf_io.write_gguf(path, config, params)
  got = checkpoints.load_model(f"gguf:{path}", use_cache=False,
                               tokenizer=False)
  assert got.config == config
  np.testing.assert_allclose(got.logits(IDS), want, atol=1e-5)
  if config.family == "gemma":
    return  # transformers reads no Gemma 1 GGUF
  # GGUF has no field for Gemma 2's query scaling; transformers assumes 256.
  kw = ({"query_pre_attn_scalar": config.query_pre_attn_scalar}
        if config.family == "gemma2" else {})
  theirs = _torch_logits(str(tmp_path), gguf_file="m.gguf", **kw)
  np.testing.assert_allclose(got.logits(IDS), theirs, atol=2e-5)


@pytest.mark.parametrize("qtype", ["F16", "BF16", "Q8_0", "Q5_0", "Q5_1",
                                   "Q4_0", "Q4_1"])
def test_gguf_quantised_types(qtype, tmp_path):
  gguf = pytest.importorskip("gguf")
  q = gguf.GGMLQuantizationType[qtype]
  config = models.get_preset("tiny-llama")
  params = _params(config)
  gguf_io.write_gguf(tmp_path / "m.gguf", config, params, q)
  _, got = gguf_io.read_gguf(tmp_path / "m.gguf")
  # Each weight equals the gguf package's own round trip of it.
  want = gguf.quants.dequantize(gguf.quants.quantize(
      params["embedding"], q), q)
  np.testing.assert_array_equal(got["embedding"], want)
  # The Q/K un-permutation acts on the dequantised rows.
  wq = params["layers"]["attn"]["q"][0]  # [D, H, Dh]
  hf_q = wq.reshape(wq.shape[0], -1).T
  stored = gguf_io.permute_qk(hf_q, config.num_heads)
  back = gguf_io.unpermute_qk(
      gguf.quants.dequantize(gguf.quants.quantize(stored, q), q),
      config.num_heads)
  np.testing.assert_array_equal(
      got["layers"]["attn"]["q"][0], back.T.reshape(wq.shape))


@pytest.mark.parametrize("qtype", ["Q4_K", "Q5_K", "Q6_K"])
def test_gguf_k_quants_match_transformers(qtype, tmp_path, monkeypatch):
  gguf = pytest.importorskip("gguf")
  q = gguf.GGMLQuantizationType[qtype]
  block, size = gguf.GGML_QUANT_SIZES[q]
  rng = np.random.RandomState(0)

  def random_blocks(x, _):
    # The gguf package cannot quantise K-quants: random blocks with a small
    # f16 super-block scale (Q6_K keeps it last, Q4_K/Q5_K first with dmin).
    rows, cols = x.shape
    b = rng.randint(0, 256, (rows, cols // block, size)).astype(np.uint8)
    d = np.full((rows, cols // block, 1), 2e-4, np.float16).view(np.uint8)
    if q == gguf.GGMLQuantizationType.Q6_K:
      b[..., -2:] = d
    else:
      b[..., 0:2], b[..., 2:4] = d, d
    return b.reshape(rows, -1)

  monkeypatch.setattr(gguf.quants, "quantize", random_blocks)
  # Every matrix's inner size a multiple of the 256-value super-block.
  config = models.get_preset("tiny-llama").replace(
      embed_dim=256, hidden_dim=256, num_heads=4, num_kv_heads=2,
      head_dim=64, tie_embeddings=True)
  params = jax.tree.map(np.asarray, models.init_params(config,
                                                       jax.random.key(0)))
  gguf_io.write_gguf(tmp_path / "m.gguf", config, params, q)
  got = checkpoints.load_model(f"gguf:{tmp_path / 'm.gguf'}",
                               use_cache=False, tokenizer=False)
  theirs = _torch_logits(str(tmp_path), gguf_file="m.gguf")
  np.testing.assert_allclose(got.logits(IDS), theirs, atol=1e-4, rtol=1e-4)
  assert np.abs(theirs).max() > 1e-3  # not a model of zeros


def test_gguf_permutation_is_llama_cpps():
  # llama.cpp permutes rows [h, 2, Dh/2] -> [h, Dh/2, 2]: within each head,
  # the first and second halves are interleaved.
  w = np.arange(8)[:, None] * np.ones((1, 3))
  np.testing.assert_array_equal(gguf_io.permute_qk(w, 1)[:, 0],
                                [0, 4, 1, 5, 2, 6, 3, 7])
  np.testing.assert_array_equal(
      gguf_io.unpermute_qk(gguf_io.permute_qk(w, 2), 2), w)


# ---------------------------------------------------------- Gemma Flax


def _gemma_reference_logits(flat, c, ids):
  """Forward pass written from google-deepmind/gemma's `gm.nn` modules,
  reading the Gemma layout (not ours). flat: normalized names -> arrays."""
  def rms(x, scale):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + c.norm_eps) * (
        1 + scale)

  def rope(x, base, scale):  # gemma's apply_rope, positions 0..T-1
    half = x.shape[-1] // 2
    timescale = base**(2 * np.arange(half) / x.shape[-1])
    angle = (np.arange(x.shape[1])[None, :, None] / timescale)[:, :, None]
    angle = angle / scale
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * np.cos(angle) - b * np.sin(angle),
                           b * np.cos(angle) + a * np.sin(angle)], -1)

  def gelu(x):  # flax nn.gelu default: tanh approximation
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

  cap = lambda x, v: x if v is None else np.tanh(x / v) * v
  emb = flat["embedder/input_embedding"]
  x = emb[ids] * np.sqrt(c.embed_dim)
  T = ids.shape[1]
  qpos, kpos = np.arange(T)[:, None], np.arange(T)[None, :]
  for i, kind in enumerate(c.layer_types()):
    p = lambda n, i=i: flat[f"layer_{i}/{n}"]
    h = rms(x, p("pre_attention_norm/scale"))
    if c.num_kv_heads == c.num_heads:
      q, k, v = np.einsum("BTD,SNDH->SBTNH", h, p("attn/qkv_einsum/w"))
    else:
      q = np.einsum("BTD,NDH->BTNH", h, p("attn/q_einsum/w"))
      k, v = np.einsum("BSD,CKDH->CBSKH", h, p("attn/kv_einsum/w"))
    if c.qk_norm:
      q = rms(q, p("attn/_query_norm/scale"))
      k = rms(k, p("attn/_key_norm/scale"))
    local = kind == "local"
    base = (c.rope_local_base or c.rope_base) if local else c.rope_base
    scale = 1.0 if local else c.rope_scale
    q = rope(q, base, scale) * c.query_scale
    k = rope(k, base, scale)
    G = c.num_heads // c.num_kv_heads
    q = q.reshape(*q.shape[:2], c.num_kv_heads, G, c.head_dim)
    s = cap(np.einsum("BTKGH,BSKH->BTKGS", q, k), c.attn_logit_softcap)
    mask = kpos <= qpos
    if local:
      mask &= kpos > qpos - c.sliding_window
    s = np.where(mask[None, :, None, None], s, -2.3819763e38)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    o = np.einsum("BTKGS,BSKH->BTKGH", s, v).reshape(*q.shape[:2], -1,
                                                      c.head_dim)
    a = np.einsum("BTNH,NHD->BTD", o, p("attn/attn_vec_einsum/w"))
    if c.post_norms:
      a = rms(a, p("post_attention_norm/scale"))
    x = x + a
    h = rms(x, p("pre_ffw_norm/scale"))
    w = p("mlp/gating_einsum/w")
    eq = "...F,NFH->...NH" if c.family == "gemma" else "...F,NHF->...NH"
    g = np.einsum(eq, h, w)
    h = np.einsum("...H,HF->...F", gelu(g[..., 0, :]) * g[..., 1, :],
                  p("mlp/linear/w"))
    if c.post_norms:
      h = rms(h, p("post_ffw_norm/scale"))
    x = x + h
  x = rms(x, flat["final_norm/scale"])
  return cap(x @ emb.T, c.final_logit_softcap)


@pytest.mark.parametrize("name", GEMMAS + ["gemma-7b-shaped"])
def test_gemma_flax_layout_matches_gemma_equations(name, tmp_path):
  if name == "gemma-7b-shaped":  # K == H: the fused qkv_einsum layout
    config = models.get_preset("tiny-gemma").replace(num_kv_heads=4)
  else:
    config = models.get_preset(name)
  params = _params(config)
  out = checkpoints.save_model(f"gemma-flax:{tmp_path / 'ckpt'}", config,
                               params)
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  raw = ocp.PyTreeCheckpointer().restore(out)
  layer0 = {k for k in raw if k.startswith("transformer/layer_0/")}
  fused = config.num_kv_heads == config.num_heads
  assert ("transformer/layer_0/attn/qkv_einsum" in layer0) == fused
  gating = raw["transformer/layer_0/mlp/gating_einsum"]["w"].shape
  D, F = config.embed_dim, config.hidden_dim
  assert gating == ((2, D, F) if config.family == "gemma" else (2, F, D))
  got = checkpoints.load_model(f"gemma-flax:{out}")
  if name != "gemma-7b-shaped":
    assert got.config == config
  want = _gemma_reference_logits(gemma_flax.normalize(raw), got.config, IDS)
  np.testing.assert_allclose(got.logits(IDS), want, atol=2e-4, rtol=1e-4)
  ours = checkpoints.LoadedModel(config, params).logits(IDS)
  np.testing.assert_array_equal(got.logits(IDS), ours)


def test_gemma_flax_reads_nested_in_memory_layout():
  config = models.get_preset("tiny-gemma2")
  params = _params(config)
  disk = gemma_flax.params_to_gemma(params, config)
  # gemma's in-memory form: nested, no 'transformer', MLP without '/w'.
  nested = {}
  for name, leaf in disk.items():
    *path, last = name.removeprefix("transformer/").split("/")
    node = nested
    for k in path:
      node = node.setdefault(k, {})
    node[last] = leaf["w"] if last in ("gating_einsum", "linear") else leaf
  flat = gemma_flax.normalize(nested)
  got = gemma_flax.params_from_gemma(flat, gemma_flax.config_from_tree(
      flat, "nested"))
  jax.tree.map(np.testing.assert_array_equal, got, params)


# ---------------------------------------------------------------- Orbax


def test_orbax_round_trip_keeps_config_and_tokenizer_spec(tmp_path):
  # The byte tokenizer has 264 ids.
  config = models.get_preset("tiny-gemma3").replace(rope_scale=8.0,
                                                    vocab_size=264)
  params = _params(config)
  d = str(tmp_path / "ck")
  checkpoints.save_model(f"orbax:{d}", config, params,
                         tokenizer_spec="byte")
  got = checkpoints.load_model(f"orbax:{d}")
  assert got.config == config and got.tokenizer_spec == "byte"
  assert got.tokenizer is not None
  jax.tree.map(np.testing.assert_array_equal,
               jax.tree.map(np.asarray, got.params), params)
  with pytest.raises(FileExistsError, match="overwrite"):
    checkpoints.save_model(f"orbax:{d}", config, params)
  other = _params(config, seed=2)
  checkpoints.save_model(f"orbax:{d}", config, other, overwrite=True)
  again = checkpoints.load_model(f"orbax:{d}", tokenizer=False)
  np.testing.assert_array_equal(np.asarray(again.params["embedding"]),
                                other["embedding"])
  leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".")]
  assert not leftovers, leftovers


def test_failed_write_leaves_no_checkpoint(tmp_path):
  config = models.get_preset("tiny-llama")
  bad = {"embedding": np.zeros((3, 3), np.float32)}  # no layers: write fails
  with pytest.raises(KeyError):
    checkpoints.save_model(f"hf:{tmp_path / 'm'}", config, bad)
  assert os.listdir(tmp_path) == []


def _write_dir(directory, text):
  with atomic_dir(str(directory), overwrite=True) as tmp:
    with open(os.path.join(tmp, "f"), "w") as f:
      f.write(text)


def test_replacing_a_directory_never_loses_the_old_one(tmp_path,
                                                       monkeypatch):
  dest = tmp_path / "ckpt"
  _write_dir(dest, "v1")
  # A crash between the two renames of a replacement: the old version sits
  # in a hidden sibling and the destination is gone. The next write puts it
  # back first, so a write that then fails leaves v1 in place.
  hidden = tmp_path / ".ckpt.old-crash"
  hidden.mkdir()
  os.rename(dest, hidden / "ckpt")
  with pytest.raises(RuntimeError):
    with atomic_dir(str(dest), overwrite=True):
      raise RuntimeError("the write failed")
  assert (dest / "f").read_text() == "v1"
  assert os.listdir(tmp_path) == ["ckpt"]
  # The second rename fails (here: a full disk): v1 is put back.
  real_rename = os.rename

  def rename(src, dst):
    if ".ckpt.tmp-" in str(src):
      raise OSError(28, "No space left on device")
    real_rename(src, dst)
  monkeypatch.setattr(os, "rename", rename)
  with pytest.raises(OSError, match="No space"):
    _write_dir(dest, "v2")
  monkeypatch.setattr(os, "rename", real_rename)
  assert (dest / "f").read_text() == "v1"
  assert os.listdir(tmp_path) == ["ckpt"]
  _write_dir(dest, "v2")
  assert (dest / "f").read_text() == "v2"
  assert os.listdir(tmp_path) == ["ckpt"]
  # A crash while the replaced version is deleted leaves a part of it
  # hidden; it is never put back in place of a destination removed later,
  # and the next write deletes it.
  real_rmtree = shutil.rmtree

  def crash(path, **kwargs):
    if ".ckpt.old-" not in str(path):
      return real_rmtree(path, **kwargs)
    os.remove(os.path.join(path, os.listdir(path)[0], "f"))  # a part
    raise KeyboardInterrupt(f"killed while deleting {path}")
  monkeypatch.setattr(shutil, "rmtree", crash)
  with pytest.raises(KeyboardInterrupt, match=r"\.ckpt\.old-"):
    _write_dir(dest, "v3")
  monkeypatch.setattr(shutil, "rmtree", real_rmtree)
  assert (dest / "f").read_text() == "v3"
  real_rmtree(dest)
  with pytest.raises(RuntimeError):
    with atomic_dir(str(dest)):
      raise RuntimeError("the write failed")
  assert not dest.exists()  # not the part of v2
  _write_dir(dest, "v4")
  assert (dest / "f").read_text() == "v4"
  assert os.listdir(tmp_path) == ["ckpt"]
  with pytest.raises(ValueError, match="gs://bucket/ckpt: a URL"):
    _write_dir("gs://bucket/ckpt", "v3")
  for kind in ("orbax", "hf", "gemma-flax"):
    with pytest.raises(ValueError, match="checkpoint directory=gs://b/m: a "
                       "URL"):
      checkpoints.save_model(f"{kind}:gs://b/m", models.get_preset(
          "tiny-llama"), {})
  assert os.listdir(tmp_path) == ["ckpt"]


def test_load_sharded_over_a_mesh(tmp_path):
  from score_jax import sharding  # pylint: disable=g-import-not-at-top
  ctx = sharding.ShardingCtx(sharding.make_mesh((1, 4, 2)))
  config = models.get_preset("tiny-gemma3")
  params = _params(config)
  d = tmp_path / "ck"
  checkpoints.save_model(f"orbax:{d}", config, params)
  for spec in (f"orbax:{d}", "preset:tiny-gemma3@1"):
    m = checkpoints.load_model(spec, sharding=ctx)
    emb = m.params["embedding"]
    assert emb.sharding.spec == jax.sharding.PartitionSpec(
        ("tensor", "fsdp"), None)
    assert len(emb.sharding.device_set) == 8
  got = checkpoints.load_model(f"orbax:{d}", sharding=ctx)
  np.testing.assert_allclose(
      got.logits(IDS), checkpoints.LoadedModel(config, params).logits(IDS),
      atol=1e-5)


# ---------------------------------------------------------------- cache


def test_gguf_cache_hit_and_invalidation(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  config = models.get_preset("tiny-gemma3")
  params = _params(config)
  path = tmp_path / "m.gguf"
  gguf_io.write_gguf(path, config, params)
  first = checkpoints.load_model(f"gguf:{path}", tokenizer=False)
  second = checkpoints.load_model(f"gguf:{path}", tokenizer=False)
  assert (first.from_cache, second.from_cache) == (False, True)
  assert second.config == first.config
  jax.tree.map(np.testing.assert_array_equal, first.params, second.params)
  # A changed file (new mtime and content) is converted again.
  gguf_io.write_gguf(path, config, _params(config, seed=3))
  os.utime(path, ns=(1, 1))
  third = checkpoints.load_model(f"gguf:{path}", tokenizer=False)
  assert not third.from_cache
  assert not np.array_equal(third.params["embedding"],
                            first.params["embedding"])


# ---------------------------------------------------------- bad input


@pytest.fixture
def llama_gguf(tmp_path):
  config = models.get_preset("tiny-llama")
  params = _params(config)
  path = tmp_path / "m.gguf"
  gguf_io.write_gguf(path, config, params)
  return str(path), config, params


def test_gguf_truncated(llama_gguf):
  path, _, _ = llama_gguf
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) * 3 // 4)
  with pytest.raises(ConversionError, match=r"m\.gguf: truncated file: "
                     r"tensor '.*' needs bytes up to \d+, file has \d+"):
    checkpoints.load_model(f"gguf:{path}", use_cache=False)


def test_gguf_truncated_header(llama_gguf):
  path, _, _ = llama_gguf
  with open(path, "r+b") as f:
    f.truncate(100)
  with pytest.raises(ConversionError, match=r"m\.gguf: truncated or corrupt"):
    checkpoints.load_model(f"gguf:{path}", use_cache=False)


def test_gguf_wrong_magic(llama_gguf):
  path, _, _ = llama_gguf
  with open(path, "r+b") as f:
    f.write(b"GGML")
  with pytest.raises(ConversionError, match=r"m\.gguf: not a GGUF file "
                     r"\(starts with b'GGML', expected b'GGUF'\)"):
    checkpoints.load_model(f"gguf:{path}", use_cache=False)


def test_gguf_missing_tensor(tmp_path):
  # A Gemma 3 file without the per-head query/key norms.
  config = models.get_preset("tiny-gemma3")
  params = _params(config)
  del params["layers"]["attn"]["q_norm"], params["layers"]["attn"]["k_norm"]
  gguf_io.write_gguf(tmp_path / "m.gguf", config.replace(qk_norm=False),
                     params)
  with pytest.raises(ConversionError, match=r"m\.gguf: missing tensor "
                     r"'blk\.0\.attn_q_norm\.weight' \(expected shape \(16,\)"
                     r" for a gemma3 model\)"):
    gguf_io.read_gguf(tmp_path / "m.gguf")


def test_gguf_wrong_shape(tmp_path):
  # Metadata says F=96, the tensors hold F=128.
  config = models.get_preset("tiny-llama")
  gguf_io.write_gguf(tmp_path / "m.gguf", config.replace(hidden_dim=96),
                     _params(config))
  with pytest.raises(ConversionError, match=r"m\.gguf: tensor "
                     r"'blk\.0\.ffn_gate\.weight' has shape \(128, 64\), "
                     r"expected \(96, 64\)"):
    gguf_io.read_gguf(tmp_path / "m.gguf")


def test_gguf_unknown_architecture(tmp_path):
  config = models.get_preset("tiny-llama")
  gguf_io.write_gguf(tmp_path / "m.gguf", config.replace(family="qwen2"),
                     _params(config))
  with pytest.raises(ConversionError, match=r"m\.gguf: unsupported "
                     r"architecture 'qwen2' \(general\.architecture\); "
                     r"supported: \('gemma', 'gemma2', 'gemma3', 'llama'\)"):
    gguf_io.read_gguf(tmp_path / "m.gguf")


def test_gguf_unsupported_quant_type(tmp_path, monkeypatch):
  gguf = pytest.importorskip("gguf")
  iq4 = gguf.GGMLQuantizationType.IQ4_NL  # 32 values in 18 bytes
  # The gguf package cannot quantise IQ4_NL; any bytes of the right size do.
  monkeypatch.setattr(gguf.quants, "quantize", lambda x, q: np.zeros(
      (x.shape[0], x.shape[1] // 32 * 18), np.uint8))
  config = models.get_preset("tiny-llama")
  gguf_io.write_gguf(tmp_path / "m.gguf", config, _params(config), iq4)
  with pytest.raises(ConversionError, match=r"m\.gguf: tensor "
                     r"'token_embd\.weight' has unsupported quantisation "
                     r"IQ4_NL; supported: \['F32', 'F16', 'BF16'"):
    gguf_io.read_gguf(tmp_path / "m.gguf")


def test_safetensors_bad_input(tmp_path):
  config = models.get_preset("tiny-llama")
  out = safetensors_io.write_hf(tmp_path / "m", config, _params(config))
  file = os.path.join(out, safetensors_io.SINGLE)
  # Copies: the reader's arrays map the file we are about to rewrite.
  tensors = {k: np.array(v) for k, v in
             safetensors_io.read_safetensors(file).items()}
  name = "model.layers.1.mlp.up_proj.weight"
  tensors[name] = tensors[name][:, :10].copy()
  safetensors_io.write_safetensors(file, tensors)
  with pytest.raises(ConversionError, match=r"/m: tensor 'model\.layers\.1\."
                     r"mlp\.up_proj\.weight' has shape \(128, 10\), expected "
                     r"\(128, 64\)"):
    checkpoints.load_model(f"hf:{out}")
  del tensors[name]
  safetensors_io.write_safetensors(file, tensors)
  with pytest.raises(ConversionError, match=r"/m: missing tensor 'model\."
                     r"layers\.1\.mlp\.up_proj\.weight' \(expected shape "
                     r"\(128, 64\)\)"):
    checkpoints.load_model(f"hf:{out}")
  with open(file, "r+b") as f:
    f.truncate(os.path.getsize(file) - 100)
  with pytest.raises(ConversionError, match=r"model\.safetensors: truncated "
                     r"file: tensor '.*' needs data bytes up to \d+"):
    checkpoints.load_model(f"hf:{out}")
  with open(file, "wb") as f:
    f.write(b"PK\x03\x04 this is a zip file")
  with pytest.raises(ConversionError, match=r"model\.safetensors: not a "
                     r"safetensors file or truncated"):
    checkpoints.load_model(f"hf:{out}")


def test_gemma_flax_wrong_shape(tmp_path):
  config = models.get_preset("tiny-gemma")
  params = _params(config)
  params["layers"]["mlp"]["down"] = params["layers"]["mlp"]["down"][:, :, :8]
  out = gemma_flax.write_gemma_flax(tmp_path / "ck", config, params)
  with pytest.raises(ConversionError, match=r"/ck: tensor 'transformer/"
                     r"layer_0/mlp/linear/w' has shape \(128, 8\), expected "
                     r"\(128, 64\)"):
    gemma_flax.read_gemma_flax(out, config)


def test_bad_specs(tmp_path):
  with pytest.raises(ValueError, match="unknown model spec 'nonsense'"):
    checkpoints.load_model("nonsense")
  with pytest.raises(FileNotFoundError, match="GGUF file not found"):
    checkpoints.load_model(f"gguf:{tmp_path / 'none.gguf'}")
  with pytest.raises(FileNotFoundError, match="no config.json"):
    checkpoints.load_model(f"hf:{tmp_path}")
  with pytest.raises(KeyError, match="unknown model preset"):
    checkpoints.load_model("preset:tiny-nothing")


# ------------------------------------------------------- entry points


def test_score_jax_load_model_and_preset():
  import score_jax  # pylint: disable=g-import-not-at-top
  m = score_jax.load_model("preset:tiny-gemma2@3")
  assert m.config == models.get_preset("tiny-gemma2")
  assert m.tokenizer is None
  logits = m.logits(IDS[0])
  assert logits.shape == (1, IDS.shape[1], 256) and logits.dtype == np.float32
  with pytest.raises(ValueError, match=r"must lie in \[0, 256\), got "
                     r"\[0, 256\]"):
    m.logits([[0, 256]])


def test_convert_command(tmp_path, capsys, monkeypatch):
  from score_jax import cli  # pylint: disable=g-import-not-at-top
  out = tmp_path / "hf"
  with pytest.raises(SystemExit) as e:
    cli.run(["score-jax", "convert", "--from=preset:tiny-llama",
             f"--to=hf:{out}"])
  assert e.value.code in (None, 0)  # absl exits with main's None
  assert "max |logits difference| on 8 tokens = 0" in capsys.readouterr().out
  assert checkpoints.load_model(f"hf:{out}").config == models.get_preset(
      "tiny-llama")
  # A written copy whose logits differ is not left behind.
  real = checkpoints.load_model

  class Off:
    def __init__(self, model):
      self.model = model

    def logits(self, ids):
      return self.model.logits(ids) + 1.0

  monkeypatch.setattr(checkpoints, "load_model", lambda spec, **kw: (
      Off(real(spec, **kw)) if kw.get("tokenizer") is False else
      real(spec, **kw)))
  bad = tmp_path / "bad"
  with pytest.raises(SystemExit, match="written copy differs .*; removed"):
    cli.run(["score-jax", "convert", "--from=preset:tiny-llama",
             f"--to=hf:{bad}"])
  assert not bad.exists()


def test_a_best_step_left_without_its_metrics_is_not_kept(tmp_path):
  """A run killed while Orbax deleted a worse best step leaves that step
  without its metrics; the next save to checkpoints_best/ removes it
  (Orbax's default keeps such a step for good)."""
  from score_jax import run_state  # pylint: disable=g-import-not-at-top
  state, ref = {"w": jax.numpy.ones(3)}, {"w": jax.numpy.zeros(3)}
  runs = run_state.RunCheckpoints(str(tmp_path), keep=2, async_save=False,
                                  meta={"model_spec": "test"})
  runs.save(2, state, ref, 0.5)
  best = tmp_path / "checkpoints_best"
  shutil.copytree(best / "2", best / "1")
  shutil.rmtree(best / "1" / "metrics")  # what the kill left
  runs.close()
  runs = run_state.RunCheckpoints(str(tmp_path), keep=2, async_save=False,
                                  meta={"model_spec": "test"})
  runs.save(4, state, ref, 0.7)
  runs.wait()
  runs.close()
  assert sorted(os.listdir(best)) == ["4"]
