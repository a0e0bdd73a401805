"""Train-step throughput and MFU: the jitted SCoRe step, one device.

Times `rl.step.make_train_step` under `jit_train_step` (the trainer's path:
explicit shardings, donated state) on a two-turn batch shaped like a rollout
([pad | x | y1 | p2 | y2], left-padded, per-row positions), random weights,
AdamW with clipping. The Stage II step runs ONE policy forward + backward over
both turns and ONE forward of the frozen reference over the same sequence.

  python bench/train_step.py --quick   # tiny model on CPU, < 1 minute
  python bench/train_step.py --gpu     # Gemma-2B size, batch 8 x 1024 tokens,
                                       # bf16 compute; several settings

Each setting runs in its own process, so a setting that runs out of device
memory (or crashes) costs only itself, and the allocator's peak-memory counter
belongs to that setting alone. One JSON line per setting, then one summary
line `train_step_summary: {...}`.

FLOPs, stated explicitly (N = every parameter, the tied embedding once, as
the HF yardstick counts; tokens = batch x length per step):
  mfu_6n     = 6 N tokens / step_s / peak   the issue's MFU: a policy forward
               and backward; the reference forward counts for nothing.
  mfu_useful = (6 N + 2 N [reference forward, RL stages]) tokens / step_s /
               peak: all model FLOPs the step must do (remat recomputation and
               attention score FLOPs are not counted in either).
peak defaults to 989e12 (H100/H200 SXM dense bf16).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
import types
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
# pylint: disable=g-import-not-at-top,wrong-import-position
from score_jax import models, sharding
from score_jax.rl import losses
from score_jax.rl import state as state_lib
from score_jax.rl import step as step_lib
# pylint: enable=g-import-not-at-top,wrong-import-position

PEAK_FLOPS = 989e12
_LR = np.float32(1e-6)
_RESULT = "TRAIN_STEP_RESULT "


@dataclasses.dataclass(frozen=True)
class Setting:
  """One measured configuration. param_dtype is the master-param (and Adam
  moment) dtype; ref_dtype None keeps the reference in param_dtype as the
  trainer does; remat is ModelConfig.remat_policy; logits_chunk positions of
  logits at a time (0: all); stage 'sft' has no reference forward."""
  name: str
  preset: str = "gemma-2b"
  batch: int = 8
  length: int = 1024
  dtype: str = "bfloat16"
  param_dtype: str = "float32"
  ref_dtype: Optional[str] = None
  remat: str = "dots_no_batch"
  logits_chunk: int = 256
  stage: str = "stage2"
  micro_batches: int = 1
  k: int = 4
  steps: int = 5
  warmup: int = 2
  xla_flags: str = ""


# XLA flags for the GPU settings, as bench/sampler.py found for the decode
# loop on an H200 (docs/PERFORMANCE.md, Sampler): with XLA's Triton GEMMs each
# layer's weight slice is copied out of the scanned stack before its matmul;
# cuBLAS with dynamic-slice fusion reads it in place. One setting runs
# without them, to see whether the same holds for the train step.
GPU_XLA_FLAGS = ("--xla_gpu_enable_triton_gemm=false "
                 "--xla_gpu_enable_dynamic_slice_fusion=true")


def _gpu(name: str, **kw) -> Setting:
  kw.setdefault("xla_flags", GPU_XLA_FLAGS)
  return Setting(name, **kw)


# In order of priority: the parent stops starting settings when its time
# budget runs low. The frozen reference is kept in bfloat16 on the GPU: its
# matmuls see bf16 weights either way (the model casts to the compute dtype),
# and it saves 5 GB next to 40 GB of f32 params and Adam moments.
GPU = [
    _gpu("f32master_dotsnb", ref_dtype="bfloat16"),
    _gpu("f32master_dotsnb_xladefault", ref_dtype="bfloat16", xla_flags=""),
    _gpu("bf16params_noremat", param_dtype="bfloat16", remat="none"),
    # Same work as the HF yardstick (no reference forward): apples to apples.
    _gpu("f32master_dotsnb_sft", ref_dtype="bfloat16", stage="sft"),
    _gpu("f32master_full", ref_dtype="bfloat16", remat="full"),
    _gpu("f32master_dots_chunk512", ref_dtype="bfloat16", remat="dots",
         logits_chunk=512),
    # The naive step of the issue (no remat, f32 master and reference): it
    # needed 88 GB on an H200.
    _gpu("f32master_noremat", remat="none"),
]
# Two settings that between them take every path: reference forward, chunked
# logits, full remat; no reference, bf16 params, dots_no_batch remat, dense
# logits.
QUICK = [
    Setting("quick_stage2_full_remat", preset="tiny-gemma", length=128,
            dtype="float32", remat="full", logits_chunk=32, steps=3,
            warmup=1),
    Setting("quick_sft_bf16params", preset="tiny-gemma", length=128,
            dtype="float32", param_dtype="bfloat16", remat="dots_no_batch",
            logits_chunk=0, stage="sft", steps=3, warmup=1),
]


# --------------------------------------------------------------------------
# Child: one setting, in this process.

def make_batch(batch: int, length: int, vocab: int, seed: int = 0
               ) -> dict[str, Any]:
  """A two-turn rollout-shaped batch (numpy): rows left-padded by 0..31
  tokens; x fills to 1/4 of the length, y1 to 5/8 (a few rows stopped early,
  the rest of their slots padding), p2 to 11/16, y2 to the end.

  Returns tokens int32[B, L], valid bool[B, L], positions int32[B, L],
  turn_masks bool[2, B, L], rewards float32[2, B].
  """
  rng = np.random.default_rng(seed)
  cols = np.arange(length)[None]
  pad = rng.integers(0, min(32, length // 8) + 1, batch)[:, None]
  y1_start, p2_start, y2_start = length // 4, 5 * length // 8, 11 * length // 16
  y1_stop = p2_start - rng.integers(0, length // 16 + 1, batch)[:, None]
  valid = (cols >= pad) & ((cols < y1_stop) | (cols >= p2_start))
  turn = np.stack([(cols >= y1_start) & (cols < p2_start),
                   cols >= y2_start]) & valid[None]
  tokens = np.where(valid, rng.integers(1, vocab, (batch, length)), 0)
  positions = np.maximum(np.cumsum(valid, 1) - 1, 0)
  rewards = rng.integers(0, 2, (2, batch)).astype(np.float32)
  return {"tokens": tokens.astype(np.int32), "valid": valid,
          "positions": positions.astype(np.int32), "turn_masks": turn,
          "rewards": rewards}


def model_flops(num_params: int, tokens: int, with_reference: bool
                ) -> dict[str, float]:
  """FLOPs per step: '6n' (policy forward + backward) and 'useful' (plus a
  2 N forward of the reference when the stage has one)."""
  six_n = 6.0 * num_params * tokens
  return {"6n": six_n,
          "useful": six_n + (2.0 * num_params * tokens if with_reference
                             else 0.0)}


def _memory(compiled) -> dict[str, Any]:
  """Device allocator stats (GPU/TPU; None on CPU) and XLA's static plan."""
  out = {}
  stats = jax.devices()[0].memory_stats() or {}
  for key in ("peak_bytes_in_use", "bytes_limit"):
    if key in stats:
      out[key.replace("bytes", "gb")] = round(stats[key] / 1e9, 2)
  try:
    m = compiled.memory_analysis()
    out["xla_argument_gb"] = round(m.argument_size_in_bytes / 1e9, 2)
    out["xla_temp_gb"] = round(m.temp_size_in_bytes / 1e9, 2)
  except Exception:  # pylint: disable=broad-except
    pass  # not every backend reports it; the allocator stats still stand
  return out


def build(s: Setting) -> types.SimpleNamespace:
  """What one setting runs, nothing allocated on the device yet: config,
  jitted step, shardings, abstract state and the (numpy) batch."""
  config = models.get_preset(s.preset).replace(
      dtype=s.dtype, param_dtype=s.param_dtype, remat_policy=s.remat)
  # One device: the bench measures a chip, not a mesh (the tests' 8 forced
  # host devices are ignored).
  ctx = sharding.ShardingCtx(sharding.make_mesh((1, 1, 1),
                                                devices=jax.devices()[:1]))
  model = models.Transformer(config, sharding=ctx)
  optimizer = state_lib.make_optimizer(state_lib.OptimizerConfig())
  loss_config = losses.LossConfig(stage=s.stage, k=s.k)
  param_sh = models.param_shardings(config, ctx)
  abstract_params = nn.unbox(models.abstract_params(config))
  abstract_state = jax.eval_shape(
      lambda p: state_lib.init_state(p, optimizer), abstract_params)
  state_sh = state_lib.state_shardings(abstract_state, param_sh, optimizer,
                                       ctx)
  ref_dtype = jnp.dtype(s.ref_dtype or s.param_dtype)
  abstract_ref = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, ref_dtype), abstract_params)
  batch = make_batch(s.batch, s.length, config.vocab_size)
  batch_sh = step_lib.batch_shardings(batch, ctx)
  fn = step_lib.jit_train_step(
      step_lib.make_train_step(model, loss_config, optimizer,
                               step_lib.StepConfig(s.micro_batches,
                                                   s.logits_chunk)),
      state_sh, param_sh, batch_sh, ctx)
  return types.SimpleNamespace(
      config=config, ctx=ctx, optimizer=optimizer, param_sh=param_sh,
      state_sh=state_sh, batch_sh=batch_sh, ref_dtype=ref_dtype, fn=fn,
      abstract_state=abstract_state, abstract_ref=abstract_ref, batch=batch)


def check_setting(s: Setting) -> dict[str, Any]:
  """Traces and lowers the setting's step on abstract arrays: catches a bad
  setting (shapes, dtypes, config) here, before any device time is spent."""
  b = build(s)
  t0 = time.perf_counter()
  b.fn.lower(b.abstract_state, b.abstract_ref, b.batch, _LR)
  return dict(dataclasses.asdict(s), lowered=True,
              params=models.count_params(b.config),
              lower_s=round(time.perf_counter() - t0, 2))


def run_setting(s: Setting, peak: float) -> dict[str, Any]:
  """Builds, compiles and times one setting in this process."""
  out: dict[str, Any] = {"device": jax.devices()[0].device_kind}
  t0 = time.perf_counter()
  b = build(s)
  params = models.init_params(b.config, jax.random.key(0), b.ctx)
  state = jax.jit(lambda p: state_lib.init_state(p, b.optimizer),
                  out_shardings=b.state_sh)(params)
  del params
  # A copy: the state (params included) is donated to every step.
  ref_params = jax.jit(
      lambda p: jax.tree.map(lambda x: x.astype(b.ref_dtype), p),
      out_shardings=b.param_sh)(state.params)
  batch = jax.device_put(b.batch, b.batch_sh)
  fn, lr = b.fn, _LR
  jax.block_until_ready((state, ref_params, batch))
  out["init_s"] = round(time.perf_counter() - t0, 2)

  t0 = time.perf_counter()
  compiled = fn.lower(state, ref_params, batch, lr).compile()
  out["compile_s"] = round(time.perf_counter() - t0, 2)

  times = []
  for i in range(s.warmup + s.steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, ref_params, batch, lr)
    jax.block_until_ready((state, metrics))
    if i >= s.warmup:
      times.append(time.perf_counter() - t0)
  metrics = jax.device_get(metrics)
  if not np.isfinite(metrics["loss"]) or int(metrics["skipped_step"]):
    raise FloatingPointError(f"setting {s.name}: the step was not finite "
                             f"(loss {metrics['loss']})")

  num_params = models.count_params(b.config)
  tokens = s.batch * s.length
  flops = model_flops(num_params, tokens, with_reference=s.stage != "sft")
  step_s = statistics.median(times)
  sig = lambda x: float(f"{x:.4g}")
  out.update(
      params=num_params, tokens_per_step=tokens,
      step_s=sig(step_s), step_s_min=sig(min(times)),
      tokens_per_s=sig(tokens / step_s),
      mfu_6n=sig(flops["6n"] / step_s / peak),
      mfu_useful=sig(flops["useful"] / step_s / peak),
      model_tflops_per_s=sig(flops["useful"] / step_s / 1e12),
      loss=float(metrics["loss"]), **_memory(compiled))
  return out


def child_main(setting_json: str, peak: float) -> None:
  s = Setting(**json.loads(setting_json))
  result = dataclasses.asdict(s)
  try:
    result.update(run_setting(s, peak))
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()
    text = f"{type(e).__name__}: {e}"
    oom = "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()
    result.update(error="out of memory" if oom else "failed",
                  detail=text[:600])
  print(_RESULT + json.dumps(result), flush=True)


# --------------------------------------------------------------------------
# Parent: every setting in its own process, within a time budget.

def child_env(s: Setting, gpu: bool) -> dict[str, str]:
  env = dict(os.environ)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (root, env.get("PYTHONPATH")) if p)
  if gpu:
    # One process owns the card: take nearly all of it up front (the BFC
    # allocator then reports a true per-setting peak); the default 75% would
    # leave ~20 GB of an H100 unused.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
    # Settings share their init programs, and a rerun on the same machine
    # compiles nothing again (compile_s then reads the cache).
    env.setdefault("JAX_COMPILATION_CACHE_DIR", "/tmp/score_jax_bench_cache")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
  if s.xla_flags:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + s.xla_flags).strip()
  return env


def run_child(s: Setting, peak: float, timeout: float, gpu: bool
              ) -> dict[str, Any]:
  """Runs one setting in a fresh process; its result, or why there is none."""
  cmd = [sys.executable, os.path.abspath(__file__),
         "--child", json.dumps(dataclasses.asdict(s)), "--peak", str(peak)]
  base = dataclasses.asdict(s)
  t0 = time.perf_counter()
  try:
    proc = subprocess.run(cmd, env=child_env(s, gpu), timeout=timeout,
                          stdout=subprocess.PIPE, stderr=None, text=True,
                          check=False)
  except subprocess.TimeoutExpired:
    return dict(base, error="timeout", detail=f"no result within {timeout:.0f} s")
  wall = round(time.perf_counter() - t0, 1)
  for line in proc.stdout.splitlines():
    if line.startswith(_RESULT):
      return dict(json.loads(line[len(_RESULT):]), wall_s=wall)
    print(line, file=sys.stderr)
  return dict(base, error="crashed", wall_s=wall,
              detail=f"exit code {proc.returncode}, no result line")


def summarize(results: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
  """One line for the lead: each setting's headline numbers (or its error),
  and the best RL step (with the reference forward) by mfu_6n."""
  def headline(r):
    if "error" in r:
      return {"error": r["error"]}
    return {k: r.get(k) for k in ("step_s", "tokens_per_s", "mfu_6n",
                                  "mfu_useful", "peak_gb_in_use")}
  ok = [r for r in results if "error" not in r]
  rl = [r for r in ok if r["stage"] != "sft"]
  best = max(rl, key=lambda r: r["mfu_6n"], default=None)
  return {"device": ok[0]["device"] if ok else None,
          "ok": len(ok), "of": len(results),
          "best_rl_step": best["name"] if best else None,
          "settings": {r["name"]: headline(r) for r in results},
          "seconds": round(elapsed, 1)}


def override(s: Setting, assignments: list[str]) -> Setting:
  """s with 'field=value' assignments applied (values parsed by the field's
  type; 'none' clears an optional field)."""
  fields = {f.name: f for f in dataclasses.fields(Setting)}
  changes = {}
  for item in assignments:
    key, sep, value = item.partition("=")
    if not sep or key not in fields or key == "name":
      raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one "
                       f"of {sorted(set(fields) - {'name'})}")
    default = fields[key].default
    if value.lower() == "none" and default is None:
      changes[key] = None
    elif isinstance(default, int):
      try:
        changes[key] = int(value)
      except ValueError:
        raise ValueError(f"--set {item!r}: {key} takes an integer") from None
    else:
      changes[key] = value
  return dataclasses.replace(s, **changes)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--quick", action="store_true",
                    help="tiny model on CPU, < 1 minute")
  mode.add_argument("--gpu", action="store_true",
                    help="Gemma-2B size on one GPU, several settings")
  mode.add_argument("--child", help=argparse.SUPPRESS)
  parser.add_argument("--only", default="",
                      help="comma-separated setting names to run")
  parser.add_argument("--set", action="append", default=[],
                      metavar="FIELD=VALUE",
                      help="override a Setting field in every setting run, "
                      "e.g. --set logits_chunk=128 (repeatable)")
  parser.add_argument("--budget_s", type=float, default=0.0,
                      help="start no setting after this many seconds, and "
                      "cut the running one off there (0: no limit)")
  parser.add_argument("--min_setting_s", type=float, default=45.0,
                      help="do not start a setting with less time left")
  parser.add_argument("--peak", type=float, default=PEAK_FLOPS,
                      help="peak FLOP/s for MFU")
  parser.add_argument("--check", action="store_true",
                      help="only trace and lower each setting on abstract "
                      "arrays, in this process (no device memory, no timing)")
  parser.add_argument("--json", default="",
                      help="also write the result lines here (JSONL)")
  args = parser.parse_args(argv)
  if args.child:
    child_main(args.child, args.peak)
    return 0
  if not (args.quick or args.gpu):
    parser.error("choose --quick (CPU) or --gpu")

  settings = QUICK if args.quick else GPU
  if args.only:
    names = args.only.split(",")
    unknown = set(names) - {s.name for s in settings}
    if unknown:
      parser.error(f"unknown settings {sorted(unknown)}; known: "
                   f"{[s.name for s in settings]}")
    settings = [s for s in settings if s.name in names]
  try:
    settings = [override(s, args.set) for s in settings]
  except ValueError as e:
    parser.error(str(e))
  if args.check:
    failed = []
    for s in settings:
      try:
        print(json.dumps(check_setting(s)), flush=True)
      except Exception:  # pylint: disable=broad-except
        traceback.print_exc()
        failed.append(s.name)
    print(f"train_step_check: {len(settings) - len(failed)}/{len(settings)} "
          f"settings lower; failed: {failed}", flush=True)
    return 1 if failed else 0

  start = time.perf_counter()
  results = []
  sink = open(args.json, "w") if args.json else None  # pylint: disable=consider-using-with
  for s in settings:
    left = (args.budget_s - (time.perf_counter() - start) if args.budget_s
            else 3600.0)
    if left < args.min_setting_s:
      result = dict(dataclasses.asdict(s), error="skipped",
                    detail=f"{left:.0f} s of the budget left")
    else:
      result = run_child(s, args.peak, left, args.gpu)
    results.append(result)
    line = json.dumps(result)
    print(line, flush=True)
    if sink:
      sink.write(line + "\n")
      sink.flush()
  summary = summarize(results, time.perf_counter() - start)
  if sink:
    sink.write(json.dumps({"summary": summary}) + "\n")
    sink.close()
  print("train_step_summary: " + json.dumps(summary), flush=True)
  return 0 if summary["ok"] else 1


if __name__ == "__main__":
  sys.exit(main())
