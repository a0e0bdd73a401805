"""The memory planner: per-device sizes equal the shards JAX really makes,
and agree with what XLA allocates for the compiled train step."""

import functools
import os
import subprocess
import sys

import jax
import pytest

from score_jax import models, plan, sharding
from score_jax.rl import state as state_lib
from score_jax.sampling import decode

RULES = sharding.DEFAULT_RULES
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spec(shape):
  return plan.MeshSpec("test", shape, plan.CHIPS["h100"])


def device0_bytes(tree) -> int:
  """Bytes of the shards of `tree` that live on the first device."""
  first = jax.devices()[0]
  return sum(s.data.nbytes for x in jax.tree.leaves(tree)
             for s in x.addressable_shards if s.device == first)


# tiny-gemma has one kv head and 4 heads: with tensor = 8 neither divides and
# both stay whole, which the planner must see as the mesh does.
@pytest.mark.parametrize("shape", [(1, 8, 1), (2, 2, 2), (1, 1, 8)])
def test_params_and_adam_state_equal_real_shards(shape):
  config = models.get_preset("tiny-gemma")
  ctx = sharding.ShardingCtx(sharding.make_mesh(shape))
  params = models.init_params(config, jax.random.key(0), ctx)
  optimizer = state_lib.make_optimizer(state_lib.OptimizerConfig())
  abstract = jax.eval_shape(lambda p: state_lib.init_state(p, optimizer),
                            params)
  shardings = state_lib.state_shardings(
      abstract, models.param_shardings(config, ctx), optimizer, ctx)
  state = jax.jit(lambda p: state_lib.init_state(p, optimizer),
                  out_shardings=shardings)(params)
  assert plan.param_bytes(config, spec(shape), RULES) == device0_bytes(params)
  assert (plan.opt_state_bytes(config, spec(shape), RULES, optimizer) ==
          device0_bytes(state.opt_state))


@pytest.mark.parametrize("shape", [(2, 4, 1), (1, 2, 4)])
def test_rollout_cache_equals_the_samplers_shards(shape):
  config = models.get_preset("tiny-gemma2")
  ctx = sharding.ShardingCtx(sharding.make_mesh(shape))
  rows, seq = 8, 40
  state = jax.jit(lambda: decode.init_state(config, rows, seq, 0, ctx))()
  assert (plan.kv_cache_bytes(config, rows, seq, spec(shape), RULES) ==
          device0_bytes(state["cache"]))
  rest = {k: v for k, v in state.items() if k != "cache"}
  assert (plan.decode_state_bytes(config, rows, seq, spec(shape), RULES) ==
          device0_bytes(rest))


def test_a_dimension_the_mesh_does_not_divide_stays_whole():
  mesh = spec((1, 3, 4))
  # embed 2048 is not a multiple of 3; 8 heads split 4 ways; 1 kv head whole.
  assert plan.shard_shape(("embed", "heads", "head_dim"), (2048, 8, 256),
                          mesh, RULES) == (2048, 2, 256)
  assert plan.shard_shape(("embed", "kv_heads", "head_dim"), (2048, 1, 256),
                          mesh, RULES) == (2048, 1, 256)
  gemma = models.get_preset("gemma-2b")
  whole = models.count_params(gemma) * 4
  # Not total / 12: the replicated dimensions make each device hold more.
  assert plan.param_bytes(gemma, mesh, RULES) > whole / 12


def test_big_presets_fit_where_expected():
  """gemma2-27b with float32 params, Adam and a reference (~400 GiB) cannot
  fit on 8 x 80 GiB; gemma-2b fits a v5p-128 with room to spare."""
  config = dict(dtype="bfloat16", remat_policy="full")
  work = plan.Workload(rows=64, seq=1024, decode_steps=512, micro_batches=4,
                       logits_chunk=128)
  big = models.get_preset("gemma2-27b").replace(**config)
  small = models.get_preset("gemma-2b").replace(**config)
  big_plan = plan.make_plan(big, plan.MESHES["8xh100"], work)
  assert big_plan.resident > 45 * plan.GIB and big_plan.fits is False
  assert plan.make_plan(small, plan.MESHES["v5p-128"], work).fits is True


def test_bad_mesh_names_what_was_wrong():
  assert plan.parse_mesh("2,4,1").shape == (2, 4, 1)
  assert plan.parse_mesh("2,4,1").chip.hbm_gib is None
  assert plan.parse_mesh("v5e-256", hbm_gib=32).chip.hbm_gib == 32
  with pytest.raises(ValueError, match="v4-32.*data,fsdp,tensor"):
    plan.parse_mesh("v9-1024")
  with pytest.raises(ValueError, match="data,fsdp,tensor"):
    plan.parse_mesh("2,0,1")
  with pytest.raises(ValueError, match="micro_batches=3 does not divide"):
    plan.Workload(rows=8, seq=16, decode_steps=8, micro_batches=3)


def test_time_model_is_the_stated_formula():
  config = models.get_preset("gemma-7b").replace(dtype="bfloat16",
                                                 remat_policy="full")
  mesh = plan.MESHES["v5p-128"]
  work = plan.Workload(rows=128, seq=2048, decode_steps=1024)
  t = plan.step_time(config, mesh, work, mfu=0.5)
  n = models.count_params(config)
  flops = 64 * mesh.chip.peak_flops * 0.5
  # 6N policy forward + backward, 2N remat recompute, 2N reference.
  assert t.update == pytest.approx(10 * n * 128 * 2048 / flops)
  no_remat = plan.step_time(config.replace(remat_policy="none"), mesh, work,
                            mfu=0.5)
  assert no_remat.update == pytest.approx(8 * n * 128 * 2048 / flops)
  assert t.prefill == pytest.approx(2 * n * 128 * 1024 / flops)
  weights = n * 2  # bf16, fully gathered (no tensor axis)
  cache = plan.kv_cache_bytes(config, 128, 2048, mesh, RULES)
  assert t.decode == pytest.approx(1024 * (weights + cache) /
                                   mesh.chip.hbm_bandwidth, rel=1e-3)


@functools.lru_cache(maxsize=None)
def _compiled(remat, shape, rows, length, num_layers=2):
  config = models.get_preset("tiny-llama").replace(remat_policy=remat,
                                                   num_layers=num_layers)
  work = plan.Workload(rows, length, 0)
  memory, batch_bytes = plan.compiled_memory(config, shape, work)
  return plan.make_plan(config, spec(shape), work), memory, batch_bytes


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1, 8, 1), (2, 2, 2)])
def test_state_and_reference_match_compiled_arguments(shape):
  """Policy params + Adam state + reference = the step's argument bytes on
  one device (the batch and the learning rate are the rest)."""
  p, memory, batch_bytes = _compiled("none", shape, 16, 32)
  predicted = p.params + p.opt_state + p.reference + batch_bytes + 4
  assert abs(predicted / memory.argument_size_in_bytes - 1) < 0.01


@pytest.mark.slow
def test_per_layer_activations_match_the_compiled_step():
  """What one more layer costs: XLA's temp size grows by the residuals the
  planner counts per layer (the stacked scan outputs)."""
  p2, m2, _ = _compiled("none", (1, 8, 1), 16, 256)
  p4, m4, _ = _compiled("none", (1, 8, 1), 16, 256, num_layers=4)
  planned = p4.activations["saved"] - p2.activations["saved"]
  compiled = m4.temp_size_in_bytes - m2.temp_size_in_bytes
  print(f"2 -> 4 layers: planned +{planned} bytes, XLA +{compiled} bytes")
  assert abs(planned / compiled - 1) < 0.05, (planned, compiled)


# The whole temporary size (gradients + activations) of a small step;
# docs/SCALING.md gives the measured ratios at other lengths and meshes.
@pytest.mark.slow
@pytest.mark.parametrize("remat", ["none", "full"])
def test_activations_against_compiled_temp(remat):
  p, memory, _ = _compiled(remat, (1, 8, 1), 16, 256)
  predicted = p.grads + plan.activation_total(p.activations)
  ratio = predicted / memory.temp_size_in_bytes
  print(f"remat {remat}: planned {predicted}, XLA {memory.temp_size_in_bytes}")
  assert abs(ratio - 1) < 0.1, (remat, predicted, memory.temp_size_in_bytes)


@pytest.mark.slow
@pytest.mark.parametrize("shape,tied", [((1, 8, 1), False),
                                        ((2, 2, 2), True)])
def test_no_device_holds_a_whole_vocabulary_table(shape, tied):
  """The vocabulary-parallel lookup and loss: a step over a vocabulary
  table much larger than the batch's activations holds less than two whole
  V x D tables of temporaries per device (gathering the tables for the
  lookup and the output layer made five, whatever the mesh), and the plan
  counts what it holds."""
  config = models.get_preset("tiny-llama").replace(
      vocab_size=16384, embed_dim=256, head_dim=64, tie_embeddings=tied)
  work = plan.Workload(8, 32, 0, logits_chunk=4)
  memory, _ = plan.compiled_memory(config, shape, work)
  p = plan.make_plan(config, spec(shape), work)
  predicted = p.grads + plan.activation_total(p.activations)
  table = 16384 * 256 * 4
  print(f"{shape}: XLA {memory.temp_size_in_bytes}, planned {predicted}, "
        f"one table {table}")
  assert memory.temp_size_in_bytes < 2 * table
  assert abs(predicted / memory.temp_size_in_bytes - 1) < 0.1


def test_cli_prints_a_plan_and_a_clear_error():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "score_jax.cli", "plan",
         "--config=" + os.path.join(ROOT, "configs", "smoke.py")]
  out = subprocess.run(cmd + ["--mesh=2,4,1", "--hbm_gib=1"], env=env,
                       capture_output=True, text=True, check=True).stdout
  for item in ("policy params", "Adam moments", "reference params",
               "rollout KV cache", "activations", "fits in 1 GiB"):
    assert item in out, out
  bad = subprocess.run(cmd + ["--mesh=v9-1024"], env=env, capture_output=True,
                       text=True)
  assert bad.returncode != 0 and "v9-1024" in bad.stderr + bad.stdout
  # A paper config's model is a required override: named, no traceback.
  unset = subprocess.run(
      [*cmd[:-1], "--config=" + os.path.join(ROOT, "configs", "score_math.py"),
       "--mesh=v5p-128"], env=env, capture_output=True, text=True)
  assert unset.returncode == 2, unset.stderr[-2000:]
  assert "config.model.spec is unset" in unset.stderr
  assert "Traceback" not in unset.stderr


def test_cpu_devices_share_the_hosts_available_memory():
  if not os.path.exists("/proc/meminfo"):
    pytest.skip("needs Linux /proc/meminfo")
  with open("/proc/meminfo") as f:
    total = int(next(l for l in f if l.startswith("MemTotal:")).split()[1])
  limit = plan.device_memory_limit()
  assert limit is not None
  assert 0 < limit * jax.local_device_count() <= total * 1024
