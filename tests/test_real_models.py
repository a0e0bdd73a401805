"""The two real models that ship on PyPI, against transformers reading the
same GGUF file: last-position logits and 32-token greedy continuations.

Slow (transformers needs ~30 s and ~60 s to load them on 2 cores); skipped
when the model packages or torch/transformers are not installed. Run with -s
to see the continuations.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax import checkpoints, models, packaged

pytestmark = pytest.mark.slow

# SmolLM2 is instruction-tuned: chat prompts. Gemma 3 270M is pretrained:
# plain completions.
PROMPTS = {
    "smollm2-135m-instruct": [
        "What is 17 + 25?",
        "What is the capital of France?",
        "Write a Python function that returns the square of a number.",
        "Solve for x: 2x + 3 = 11.",
    ],
    "gemma3-270m": [
        "Question: What is 17 + 25?\nAnswer:",
        "The capital of France is",
        "def fibonacci(n):\n",
        "Once upon a time, in a small village,",
    ],
}
NEW_TOKENS = 32


def _prompt_ids(name, tokenizer, text):
  if name == "smollm2-135m-instruct":
    return list(tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True))
  return tokenizer.encode(text, add_bos=True)


@pytest.fixture(scope="module", params=list(PROMPTS))
def pair(request):
  """(name, our LoadedModel, transformers model) for one packaged model."""
  name = request.param
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  try:
    path = packaged.packaged_gguf_path(name)
  except FileNotFoundError as e:
    pytest.skip(str(e))
  ours = checkpoints.load_model(name)
  theirs = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path),
      dtype=torch.float32)
  theirs.eval()
  return name, ours, theirs


def _greedy_ours(m, prompt, n):
  """Prefill, then one token at a time through the KV cache."""
  model = models.Transformer(m.config)
  step = jax.jit(lambda p, t, pos, c: model.apply(
      {"params": p}, t, pos, jnp.ones(t.shape, bool), cache=c))
  L = len(prompt)
  cache = models.init_cache(m.config, 1, L + n)
  logits, cache = step(m.params, jnp.asarray([prompt], jnp.int32),
                       jnp.arange(L, dtype=jnp.int32)[None], cache)
  out = []
  for i in range(n):
    out.append(int(jnp.argmax(logits[0, -1])))
    logits, cache = step(m.params, jnp.asarray([[out[-1]]], jnp.int32),
                         jnp.asarray([[L + i]], jnp.int32), cache)
  return out


def _greedy_theirs(model, prompt, n):
  import torch  # pylint: disable=g-import-not-at-top
  out = []
  with torch.no_grad():
    res = model(torch.tensor([prompt]), use_cache=True)
    for _ in range(n):
      out.append(int(res.logits[0, -1].argmax()))
      # transformers 5 renamed past_key_values to cache.
      kw = ({"cache": res.cache} if hasattr(res, "cache") else
            {"past_key_values": res.past_key_values})
      res = model(torch.tensor([[out[-1]]]), use_cache=True, **kw)
  return out


def test_last_position_logits_match_transformers(pair):
  import torch  # pylint: disable=g-import-not-at-top
  name, ours, theirs = pair
  diffs = []
  for text in PROMPTS[name]:
    ids = _prompt_ids(name, ours.tokenizer, text)
    got = ours.logits([ids])[0, -1]
    with torch.no_grad():
      want = theirs(torch.tensor([ids])).logits[0, -1].float().numpy()
    assert got.dtype == np.float32
    diff = float(np.abs(got - want).max())
    assert diff <= 2e-3, (name, text, diff)
    assert int(got.argmax()) == int(want.argmax()), (name, text)
    diffs.append(diff)
  print(f"\n{name}: max |last-position logits - transformers'| per prompt: "
        + ", ".join(f"{d:.2g}" for d in diffs))


def test_greedy_continuations_match_transformers(pair):
  name, ours, theirs = pair
  record = {}
  for text in PROMPTS[name]:
    ids = _prompt_ids(name, ours.tokenizer, text)
    got = _greedy_ours(ours, ids, NEW_TOKENS)
    want = _greedy_theirs(theirs, ids, NEW_TOKENS)
    record[text] = ours.tokenizer.decode(got)
    assert got == want, (name, text, ours.tokenizer.decode(got),
                         ours.tokenizer.decode(want))
  print(f"\n{name} greedy continuations ({NEW_TOKENS} tokens):\n"
        + json.dumps(record, indent=1, ensure_ascii=False))


def test_hf_export_of_a_real_model_loads_in_transformers(pair, tmp_path):
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  name, ours, _ = pair
  if name != "smollm2-135m-instruct":
    pytest.skip("one real export is enough; the Gemma path is covered on "
                "tiny models")
  out = checkpoints.save_model(f"hf:{tmp_path / 'hf'}", ours.config,
                               ours.params)
  exported = transformers.AutoModelForCausalLM.from_pretrained(
      out, dtype=torch.float32)
  ids = _prompt_ids(name, ours.tokenizer, PROMPTS[name][0])
  with torch.no_grad():
    want = exported(torch.tensor([ids])).logits.numpy()
  np.testing.assert_allclose(ours.logits([ids]), want, atol=2e-4)
