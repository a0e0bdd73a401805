"""Parity of our decoder with HF transformers (torch, CPU) on tiny configs.

Every family with every feature on: GQA/MQA, soft-capping, sliding windows
shorter than the sequence, QK-norm, local/global RoPE bases, linear and
Llama-3 RoPE scaling, tied and untied output.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax import models
from score_jax.checkpoints import hf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CONFIGS = {
    "llama": models.get_preset("tiny-llama").replace(
        llama3_rope=(8.0, 1.0, 4.0, 16), rope_base=500_000.0),
    "gemma": models.get_preset("tiny-gemma"),
    "gemma2": models.get_preset("tiny-gemma2"),
    "gemma3": models.get_preset("tiny-gemma3").replace(
        # HF's Gemma 3 ignores attn_logit_softcapping (as does the real model,
        # which sets it to None); attention soft-capping is tested on Gemma 2.
        rope_scale=8.0, final_logit_softcap=15.0, query_pre_attn_scalar=20),
}


def hf_model(config, seed=0):
  d = hf.config_to_hf(config)
  hf_config = transformers.AutoConfig.for_model(**d)
  hf_config._attn_implementation = "eager"  # soft-capping needs eager
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(
      hf_config, dtype=torch.float32)
  with torch.no_grad():  # random norms too, so (1 + w) vs w is tested
    for p in model.parameters():
      p.normal_(0.0, 0.2)
  return model.eval()


def our_params(model, config):
  tensors = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  return hf.params_from_hf(tensors, config)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_logits_match_transformers(family):
  config = CONFIGS[family]
  model = hf_model(config)
  params = our_params(model, config)
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, config.vocab_size, (2, 12))
  with torch.no_grad():
    want = model(torch.tensor(tokens)).logits.numpy()
  mask = jnp.ones(tokens.shape, bool)
  got, _ = models.Transformer(config).apply(
      {"params": params}, jnp.asarray(tokens), models.positions_from_mask(mask),
      mask)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_hf_round_trip(family):
  config = CONFIGS[family]
  params = models.init_params(config, jax.random.key(1))
  back = hf.params_from_hf(hf.params_to_hf(params, config), config)
  jax.tree.map(np.testing.assert_array_equal, params, back)
  assert hf.config_from_hf(hf.config_to_hf(config)) == config


def test_missing_and_misshapen_tensors_are_named():
  config = CONFIGS["llama"]
  tensors = hf.params_to_hf(models.init_params(config, jax.random.key(0)),
                            config)
  name = "model.layers.1.mlp.up_proj.weight"
  broken = dict(tensors)
  del broken[name]
  with pytest.raises(hf.ConversionError, match=name):
    hf.params_from_hf(broken, config, source="ckpt.safetensors")
  broken[name] = tensors[name][:, :3]
  with pytest.raises(hf.ConversionError, match=r"up_proj.*\(128, 3\).*\(128, 64\)"):
    hf.params_from_hf(broken, config)


def test_unknown_architecture_is_named():
  with pytest.raises(hf.ConversionError, match="'bert'"):
    hf.config_from_hf({"model_type": "bert"})


def test_multimodal_gemma3_checkpoint_loads_its_language_model(tmp_path):
  """A Gemma3ForConditionalGeneration directory (gemma-3-4b-it's layout):
  the text weights under the language model's prefix beside a vision tower,
  and a `text_config` saved, as the Hub's are, as a diff from transformers'
  defaults (no heads, RoPE bases or query scale)."""
  from score_jax.checkpoints import safetensors_io
  text = dict(vocab_size=300, hidden_size=64, intermediate_size=128,
              num_hidden_layers=7, head_dim=16, sliding_window=4,
              rope_scaling={"rope_type": "linear", "factor": 8.0})
  vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, image_size=28, patch_size=14)
  hf_config = transformers.Gemma3Config(text_config=text,
                                        vision_config=vision,
                                        mm_tokens_per_image=4)
  torch.manual_seed(0)
  model = transformers.Gemma3ForConditionalGeneration._from_config(
      hf_config, attn_implementation="eager", dtype=torch.float32)
  with torch.no_grad():
    for p in model.parameters():
      p.normal_(0.0, 0.2)
  model.eval().save_pretrained(tmp_path)
  with open(tmp_path / "config.json") as f:
    saved = json.load(f)
  saved["text_config"] = dict(text, model_type="gemma3_text")
  with open(tmp_path / "config.json", "w") as f:
    json.dump(saved, f)

  config, params = safetensors_io.read_hf(str(tmp_path))
  pattern = tuple(config.layer_types())
  assert (config.num_heads, config.num_kv_heads, pattern) == (
      8, 4, ("local",) * 5 + ("global", "local"))
  assert (config.rope_base, config.rope_local_base, config.rope_scale) == (
      1e6, 1e4, 8.0)
  live = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  jax.tree.map(np.testing.assert_array_equal, params,
               hf.params_from_hf(live, config))  # model.language_model.*
  tokens = np.random.default_rng(0).integers(0, 262, (2, 12))
  with torch.no_grad():
    want = model(input_ids=torch.tensor(tokens)).logits.numpy()
  mask = jnp.ones(tokens.shape, bool)
  got, _ = models.Transformer(config).apply(
      {"params": params}, jnp.asarray(tokens),
      models.positions_from_mask(mask), mask)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=0)
