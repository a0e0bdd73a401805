"""Sampler throughput: ours vs HF transformers `generate`, side by side.

Same model config and the same random weights (an HF model built from the
config, its state_dict converted with `checkpoints.hf.params_from_hf`), same
batch, prompt length and number of new tokens, temperature-1 sampling with a
forced length (no early stop). tokens/s counts new tokens of the whole call
(prefill included) for both.

  python bench/sampler.py            # CPU: SmolLM2-135M, batch 16 and 64,
                                     # prompt 64, 128 new tokens, float32
  python bench/sampler.py --quick    # < 1 minute on 2 CPU cores
  python bench/sampler.py --gpu      # GPU: Gemma-2B-size bf16 batch 64,
                                     # prompt 256, 256 new + SmolLM2-135M;
                                     # roofline fraction; one JSON summary

The last line is `speedup_vs_transformers: <ratio>` (the smallest speedup
over the settings run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import traceback

# On GPU, XLA's Triton GEMMs copy every layer's weight slice out of the
# stacked (scanned) params each decode step; cuBLAS with dynamic-slice fusion
# reads them in place (H200: 6.2 -> 3.8 ms per Gemma-2B step). Set before
# JAX starts its backend; an XLA_FLAGS already in the environment wins.
GPU_XLA_FLAGS = ("--xla_gpu_enable_triton_gemm=false "
                 "--xla_gpu_enable_dynamic_slice_fusion=true")
if "--gpu" in sys.argv:
  os.environ.setdefault("XLA_FLAGS", GPU_XLA_FLAGS)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from score_jax import models, sampling  # pylint: disable=g-import-not-at-top
from score_jax.sampling import decode as decode_lib  # pylint: disable=g-import-not-at-top


@dataclasses.dataclass
class Setting:
  preset: str
  batch: int
  prompt: int
  new_tokens: int
  dtype: str


CPU = [Setting("smollm2-135m", 16, 64, 128, "float32"),
       Setting("smollm2-135m", 64, 64, 128, "float32")]
QUICK = [Setting("smollm2-135m", 16, 64, 24, "float32")]
GPU = [Setting("gemma-2b", 64, 256, 256, "bfloat16"),
       Setting("smollm2-135m", 64, 64, 128, "bfloat16")]


def _config(s: Setting) -> models.ModelConfig:
  return models.get_preset(s.preset).replace(dtype=s.dtype,
                                             param_dtype=s.dtype)


def hf_model(config: models.ModelConfig, device: str):
  """A transformers model of `config` with random weights, in eval mode."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from score_jax.checkpoints import hf  # pylint: disable=g-import-not-at-top
  d = hf.config_to_hf(config)
  hf_config = transformers.CONFIG_MAPPING[d["model_type"]](**d)
  dtype = getattr(torch, config.dtype)
  torch.manual_seed(0)
  with torch.device(device):
    model = transformers.AutoModelForCausalLM.from_config(hf_config,
                                                          dtype=dtype)
  model.eval()
  model.generation_config.eos_token_id = None
  model.generation_config.pad_token_id = 0
  return model


def params_from(model, config: models.ModelConfig):
  """Our params holding the HF model's weights."""
  from score_jax.checkpoints import hf  # pylint: disable=g-import-not-at-top
  tensors = {k: v.detach().float().cpu().numpy()
             for k, v in model.state_dict().items()}
  return jax.tree.map(jnp.asarray, hf.params_from_hf(tensors, config))


def time_hf(model, prompts: np.ndarray, new_tokens: int) -> float:
  """Seconds of one sampled `generate` with a forced length (after warm-up)."""
  import torch  # pylint: disable=g-import-not-at-top
  device = next(model.parameters()).device
  ids = torch.as_tensor(prompts, device=device)
  kw = dict(attention_mask=torch.ones_like(ids), do_sample=True,
            temperature=1.0, top_k=0, top_p=1.0)

  def run(n):
    with torch.inference_mode():
      out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)
    if device.type == "cuda":
      torch.cuda.synchronize()
    assert out.shape == (ids.shape[0], ids.shape[1] + n), out.shape

  if device.type == "cpu":
    # On a loaded CPU, torch's OpenMP barriers can make more threads far
    # slower (seen: 5 tok/s with 2 threads, 81 with 1): give HF its best.
    best = None
    for threads in sorted({1, os.cpu_count() or 1}):
      torch.set_num_threads(threads)
      start = time.perf_counter()
      run(4)
      took = time.perf_counter() - start
      if best is None or took < best[0]:
        best = (took, threads)
    torch.set_num_threads(best[1])
  run(2)
  start = time.perf_counter()
  run(new_tokens)
  return time.perf_counter() - start


def time_ours(config, params, prompts: np.ndarray, new_tokens: int) -> dict:
  """Seconds of one rollout (after a compiling warm-up), and its parts."""
  kw = dict(num_turns=1, max_new_tokens=new_tokens, stop_ids=[],
            sampling=sampling.SamplingConfig(temperature=1.0))
  prompt_list = prompts.tolist()
  r = sampling.rollout(config, params, prompt_list, rng=jax.random.key(0),
                       **kw)
  assert int(r.lengths.min()) == new_tokens
  start = time.perf_counter()
  r = sampling.rollout(config, params, prompt_list, rng=jax.random.key(1),
                       **kw)
  r.tokens.block_until_ready()
  total = time.perf_counter() - start
  decode_s = _time_decode(config, params, prompts, new_tokens)
  return {"seconds": total, "decode_step_ms": 1e3 * decode_s / new_tokens}


def _time_decode(config, params, prompts: np.ndarray, new_tokens: int,
                 slots: int | None = None) -> float:
  """Seconds of the decode loop alone, from a prefilled cache of `slots`."""
  batch, plen = prompts.shape
  slots = slots or plen + new_tokens
  statics = dict(config=config, pad_id=0, ctx=None)
  tokens = jnp.asarray(prompts, jnp.int32)
  mask = jnp.ones(tokens.shape, bool)
  layers = decode_lib.unstack_params(params)
  times = []
  for _ in range(2):  # first: compile
    state = decode_lib.init_state(config, batch, slots, 0, None)
    state = decode_lib.prefill(params, layers, state, tokens, mask, **statics)
    jax.block_until_ready(state)
    start = time.perf_counter()
    state = decode_lib.decode(params, layers, state, jnp.int32(0),
                              jnp.int32(new_tokens), jax.random.key(2),
                              sampling=sampling.SamplingConfig(1.0),
                              stop_ids=(), **statics)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
  return times[-1]


def copy_bandwidth(nbytes: int = 4 << 30, reps: int = 20) -> float:
  """Device copy bandwidth in bytes/s, counting bytes read and written."""
  x = jnp.ones((nbytes // 2,), jnp.bfloat16)
  copy = jax.jit(lambda a: a * 2)
  copy(x).block_until_ready()
  start = time.perf_counter()
  for _ in range(reps):
    y = copy(x)
  y.block_until_ready()
  return 2 * nbytes * reps / (time.perf_counter() - start)


def decode_bytes(config, params, s: Setting) -> dict:
  """Bytes a decode step must read: all weights, plus the KV cache of the
  mean context (prompt + half the new tokens), and the whole cache as ours
  reads it (every slot, valid or not)."""
  weights = sum(x.nbytes for x in jax.tree.leaves(params))
  per_token = (2 * config.num_layers * config.num_kv_heads * config.head_dim *
               jnp.dtype(config.dtype).itemsize)
  mean_context = s.prompt + s.new_tokens / 2
  return {"weight_bytes": weights,
          "kv_bytes_needed": per_token * s.batch * mean_context,
          "kv_bytes_read": per_token * s.batch * (s.prompt + s.new_tokens)}


def run_setting(s: Setting, device: str, roofline: float | None) -> dict:
  config = _config(s)
  rng = np.random.default_rng(0)
  prompts = rng.integers(1, config.vocab_size, (s.batch, s.prompt),
                         dtype=np.int64)
  out = dataclasses.asdict(s)
  model = hf_model(config, device)
  try:
    params = params_from(model, config)
    out["weights"] = "same as HF (params_from_hf)"
  except Exception as e:  # pylint: disable=broad-except
    # Speed does not depend on the values: random weights of the same shapes.
    out["weights"] = f"random, HF conversion failed: {e!r}"
    params = models.init_params(config, jax.random.key(0))
  if device != "cpu":  # HF weights stay on the GPU; ours take their own copy.
    import torch  # pylint: disable=g-import-not-at-top
    torch.cuda.empty_cache()
  ours = time_ours(config, params, prompts, s.new_tokens)
  out["ours_tokens_per_s"] = s.batch * s.new_tokens / ours["seconds"]
  out["ours_decode_step_ms"] = ours["decode_step_ms"]
  if roofline:
    b = decode_bytes(config, params, s)
    ideal = (b["weight_bytes"] + b["kv_bytes_needed"]) / roofline
    out.update(b)
    out["roofline_step_ms"] = 1e3 * ideal
    out["roofline_fraction"] = 1e3 * ideal / ours["decode_step_ms"]
  hf_s = time_hf(model, prompts, s.new_tokens)
  out["hf_tokens_per_s"] = s.batch * s.new_tokens / hf_s
  out["speedup"] = out["ours_tokens_per_s"] / out["hf_tokens_per_s"]
  del model
  return out


def cache_length_check(s: Setting) -> dict:
  """Decode step time with a small and an 8x larger cache (same batch and
  steps): a loop that copied the cache each step would scale with it."""
  config = _config(s)
  params = models.init_params(config, jax.random.key(0))
  prompts = np.ones((s.batch, s.prompt), np.int64)
  out = {}
  for slots in (s.prompt + s.new_tokens, 8 * (s.prompt + s.new_tokens)):
    secs = _time_decode(config, params, prompts, s.new_tokens, slots)
    out[f"decode_step_ms_cache_{slots}"] = 1e3 * secs / s.new_tokens
  return out


def reuse_check(s: Setting, followup: int = 16) -> dict:
  """Two turns: appending turn 2 to the turn-1 cache vs prefilling the whole
  sequence (x, y1, followup) again before turn 2."""
  config = _config(s)
  params = models.init_params(config, jax.random.key(0))
  prompts = np.ones((s.batch, s.prompt), np.int64).tolist()
  out = {}
  for reuse in (True, False):
    kw = dict(followup_ids=list(range(1, followup + 1)), num_turns=2,
              max_new_tokens=s.new_tokens // 2, stop_ids=[],
              sampling=sampling.SamplingConfig(1.0), reuse_cache=reuse)
    times = []
    for seed in range(2):  # first: compile
      start = time.perf_counter()
      r = sampling.rollout(config, params, prompts, rng=jax.random.key(seed),
                           **kw)
      r.tokens.block_until_ready()
      times.append(time.perf_counter() - start)
    out["two_turn_seconds_" + ("reuse_cache" if reuse else "refill")] = (
        times[-1])
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="one small CPU setting (< 1 minute)")
  parser.add_argument("--gpu", action="store_true",
                      help="GPU settings, roofline, one JSON summary")
  args = parser.parse_args()
  if args.gpu:
    import torch  # pylint: disable=g-import-not-at-top
    settings, device = GPU, "cuda"
    summary = {"device": str(jax.devices()[0].device_kind),
               "xla_flags": os.environ.get("XLA_FLAGS", ""),
               "torch_device": torch.cuda.get_device_name(0), "results": []}
    summary["copy_bandwidth_GBps"] = copy_bandwidth() / 1e9
    roofline = summary["copy_bandwidth_GBps"] * 1e9
  else:
    settings, device = (QUICK if args.quick else CPU), "cpu"
    summary = {"device": f"cpu x{os.cpu_count()}", "results": []}
    roofline = None
  start = time.perf_counter()
  for s in settings:
    try:
      result = run_setting(s, device, roofline)
    except Exception as e:  # pylint: disable=broad-except
      traceback.print_exc()
      result = dict(dataclasses.asdict(s), error=repr(e))
    summary["results"].append(result)
    # GPU: the cumulative summary after each part, so a run cut by a timeout
    # still leaves its last complete JSON line.
    print(json.dumps(summary if args.gpu else result), flush=True)
  if not args.quick and not args.gpu:
    summary["cache_length_check"] = cache_length_check(CPU[0])
    print(json.dumps(summary["cache_length_check"]))
    summary["reuse_check"] = reuse_check(CPU[0])
    print(json.dumps(summary["reuse_check"]))
  if args.gpu:
    try:
      summary["reuse_check"] = reuse_check(GPU[0])
    except Exception as e:  # pylint: disable=broad-except
      traceback.print_exc()
      summary["reuse_check"] = {"error": repr(e)}
  summary["programs_compiled"] = sampling.compile_count()
  summary["seconds"] = time.perf_counter() - start
  if args.gpu:
    print(json.dumps(summary), flush=True)
  speedups = [r["speedup"] for r in summary["results"] if "speedup" in r]
  ratio = min(speedups) if speedups else float("nan")
  print(f"speedup_vs_transformers: {ratio:.2f}")


if __name__ == "__main__":
  main()
