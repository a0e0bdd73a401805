"""score_jax.distributed: the start-up decision, and 2 processes on loopback.

The loopback test starts two Python processes (4 forced CPU devices each),
joins them through `initialize`, and checks a jitted reduction over a (2, 4)
mesh spanning all 8 devices, the cross-process metric mean, and the pieces
the trainer uses under several processes (row blocks, sums, gathers). This file is
also the worker script: `python test_distributed.py PORT PROCESS_ID`.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from score_jax import distributed

_NO_TPU = lambda: False  # pylint: disable=unnecessary-lambda-assignment
_SLURM = {"SLURM_JOB_ID": "17", "SLURM_STEP_NODELIST": "node[1-2]",
          "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}
_OMPI = {"OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://10.0.0.1:34911",
         "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "2"}


def _plan(*args, environ=None, tpu=False, **kwargs):
  return distributed.plan(*args, environ=environ or {},
                          has_tpu_chips=lambda: tpu, **kwargs)


# ---------------------------------------------------------------- decisions


def test_single_process_does_nothing():
  assert _plan() == distributed.Plan("single")
  assert not _plan().multi_process
  # One process named explicitly is still single: nothing to connect to.
  assert _plan("localhost:1234", 1, 0).source == "single"


def test_explicit_flags():
  p = _plan("10.0.0.2:8476", 4, 3)
  assert p == distributed.Plan("flags", "10.0.0.2:8476", 4, 3)
  assert p.multi_process
  assert _plan("[::1]:8476", 2, 0).source == "flags"


def test_coordinator_address_from_jax_environment_variable():
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.2:8476"}
  assert _plan(num_processes=2, process_id=1, environ=env) == (
      distributed.Plan("flags", "10.0.0.2:8476", 2, 1))
  with pytest.raises(ValueError, match="'10.0.0.2' must be 'host:port'"):
    _plan(num_processes=2, process_id=1,
          environ={"JAX_COORDINATOR_ADDRESS": "10.0.0.2"})


def test_cluster_environments_are_detected():
  assert _plan(environ=_SLURM) == distributed.Plan("slurm")
  assert _plan(environ=_OMPI) == distributed.Plan("ompi")
  assert _plan(tpu=True) == distributed.Plan("tpu")
  assert _plan(environ={"TPU_WORKER_HOSTNAMES": "w0,w1"}).source == "tpu"
  # A flag overrides what JAX would read from the cluster, the rest is read.
  assert _plan(coordinator_address="node1:9999", environ=_SLURM) == (
      distributed.Plan("slurm", "node1:9999"))


def test_flags_that_contradict_the_cluster_are_named():
  """In a 2-task SLURM job (this task is 1), another process count or index
  would leave processes waiting, or each training alone."""
  for flags, message in (
      (dict(num_processes=4), "--num_processes=4 contradicts SLURM_NTASKS=2"),
      (dict(num_processes=1), "--num_processes=1 contradicts SLURM_NTASKS=2"),
      (dict(num_processes=2, process_id=0),
       "--process_id=0 contradicts SLURM_PROCID=1"),
      (dict(coordinator_address="node1:9999", num_processes=2, process_id=0),
       "--process_id=0 contradicts SLURM_PROCID=1")):
    with pytest.raises(ValueError, match=message):
      _plan(environ=_SLURM, **flags)
  assert _plan(num_processes=2, process_id=1, environ=_SLURM) == (
      distributed.Plan("slurm", None, 2, 1))
  with pytest.raises(ValueError, match="OMPI_COMM_WORLD_SIZE"):
    _plan(num_processes=3, environ=_OMPI)


def test_single_task_clusters_are_single():
  assert _plan(environ={**_SLURM, "SLURM_NTASKS": "1"}).source == "single"
  assert _plan(environ={**_OMPI, "OMPI_COMM_WORLD_SIZE": "1"}).source == (
      "single")
  # Partial SLURM variables (e.g. inside `sbatch` without `srun`): JAX cannot
  # bootstrap from them, so neither do we.
  partial = {k: v for k, v in _SLURM.items() if k != "SLURM_STEP_NODELIST"}
  assert _plan(environ=partial).source == "single"


def test_tpu_probe_reads_vendor_and_device(tmp_path):
  def device(name, vendor, ident):
    (tmp_path / name).mkdir()
    (tmp_path / name / "vendor").write_text(vendor + "\n")
    (tmp_path / name / "device").write_text(ident + "\n")

  device("0000:00:04.0", "0x1ae0", "0x0042")  # gVNIC: Google, but no TPU.
  device("0000:00:05.0", "0x10de", "0x2330")  # An NVIDIA H100.
  assert distributed._pci_tpu_chips(str(tmp_path)) == 0
  device("0000:00:06.0", "0x1ae0", "0x005e")  # TPU v4.
  device("0000:00:07.0", "0x1ae0", "0x005e")
  assert distributed._pci_tpu_chips(str(tmp_path)) == 2
  # This machine has no TPU, and both probes agree.
  assert not distributed._has_tpu_chips()
  assert distributed._pci_tpu_chips() == 0


@pytest.mark.parametrize("address", ["10.0.0.2", "host:", ":8476", "host:port",
                                     "a b:1", "host:1:2", "::1:8476", ""])
def test_address_without_port_is_rejected(address):
  with pytest.raises(ValueError, match="must be 'host:port'"):
    _plan(address, 2, 0)


def test_port_out_of_range():
  with pytest.raises(ValueError, match="port 70000 is not in 1..65535"):
    _plan("host:70000", 2, 0)
  assert distributed.parse_address("[::1]:8476") == ("[::1]", 8476)
  assert distributed.parse_address("tpu-w-0:1234") == ("tpu-w-0", 1234)


def test_process_id_out_of_range():
  with pytest.raises(ValueError, match=r"process_id 2 is out of range for "
                     r"num_processes=2 \(valid: 0..1\)"):
    _plan("host:1234", 2, 2)
  with pytest.raises(ValueError, match="process_id must be an integer >= 0"):
    _plan("host:1234", 2, -1)
  with pytest.raises(ValueError, match="num_processes must be an integer >= 1"):
    _plan("host:1234", 0, 0)


def test_partial_flags_name_what_is_missing():
  with pytest.raises(ValueError, match="needs --num_processes, --process_id"):
    _plan("host:1234")
  with pytest.raises(ValueError, match="needs --coordinator_address"):
    _plan(num_processes=2, process_id=0)


def test_bad_cluster_variable_is_named():
  with pytest.raises(ValueError, match="SLURM_NTASKS='two' is not an integer"):
    _plan(environ={**_SLURM, "SLURM_NTASKS": "two"})


def test_initialize_single_process_starts_nothing():
  assert distributed.initialize() == distributed.Plan("single")
  import jax  # pylint: disable=g-import-not-at-top
  assert not jax.distributed.is_initialized()
  assert distributed.is_main_process()
  assert distributed.mean_metrics({"b": 2, "a": 1.5}) == {"a": 1.5, "b": 2.0}
  assert distributed.mean_metrics({"a": 3.0}, weight=5) == {"a": 3.0}
  with pytest.raises(ValueError, match="weights sum to 0.0"):
    distributed.mean_metrics({"a": 3.0}, weight=0)
  gathered = distributed.gather_metrics({"n": 7})
  assert list(gathered) == ["n"] and gathered["n"].tolist() == [7.0]
  # One process: values as given (not through float32), one JSON value.
  assert distributed.sum_metrics({"third": 1 / 3}) == {"third": 1 / 3}
  assert distributed.gather_json({"a": [1, "b"]}) == [{"a": [1, "b"]}]


def test_initialize_after_jax_started_says_how_to_fix():
  code = ("import jax; jax.devices(); from score_jax import distributed; "
          "distributed.initialize('127.0.0.1:1', 2, 1)")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, timeout=60, check=False,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode != 0
  assert "must run before any JAX computation" in proc.stderr


# ---------------------------------------------------------------- loopback


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _worker(port: int, process_id: int) -> None:
  """One of the two loopback processes; prints its results as JSON."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from score_jax import sharding  # pylint: disable=g-import-not-at-top

  address = f"127.0.0.1:{port}"
  p = distributed.initialize(address, 2, process_id, initialization_timeout=60)
  again = distributed.initialize(address, 2, process_id)  # idempotent
  try:
    distributed.initialize(address, 2, 1 - process_id)
    conflict = None
  except ValueError as e:
    conflict = str(e)

  mesh = sharding.make_mesh((2, 4, 1))  # data=2 over hosts, fsdp=4 within
  spec = NamedSharding(mesh, P(("data", "fsdp"), None))
  full = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
  # Each process builds only its own rows: the sum needs both hosts' data.
  x = jax.make_array_from_callback(full.shape, spec, lambda idx: full[idx])
  total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(x)
  col = jax.jit(lambda a: (a * a).sum(0),
                out_shardings=NamedSharding(mesh, P()))(x)

  metrics = {"loss": process_id + 1.0, "acc": 0.5 * process_id}
  mismatch = []
  # Other names, then another number of names (rows of unequal length).
  for names in ({"loss": 1.0, f"only_{process_id}": 1.0},
                {"loss": 1.0, **({"extra": 2.0} if process_id else {})}):
    try:
      distributed.mean_metrics(names)
      mismatch.append(None)
    except ValueError as e:
      mismatch.append(str(e))
  print(json.dumps({
      "multihost": _multihost_helpers(process_id, mesh, spec, x),
      "plan": [p.source, p.num_processes, p.process_id],
      "again": [again.source, again.num_processes, again.process_id],
      "conflict": conflict,
      "devices": [jax.device_count(), jax.local_device_count()],
      "local_rows": sorted({int(s.index[0].start) for s in
                            x.addressable_shards}),
      "total": float(total),
      "col": np.asarray(col).tolist(),
      "main": distributed.is_main_process(),
      "mean": distributed.mean_metrics(metrics),
      "weighted": distributed.mean_metrics(metrics, weight=process_id + 1),
      "mismatch": mismatch,
      "gathered": {k: v.tolist() for k, v in
                   distributed.gather_metrics({"solved": 3 + process_id,
                                               "rows": 10}).items()},
  }), flush=True)


def _multihost_helpers(process_id, mesh, spec, x) -> dict:
  """What the trainer's multi-process pieces give in one of the two
  processes: row blocks, host copies, sums, JSON gathers, episodes."""
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from score_jax import configs, episodes, sharding, train  # pylint: disable=g-import-not-at-top
  from score_jax.tasks import Problem  # pylint: disable=g-import-not-at-top

  out = {"rows": sharding.process_rows(spec, x.shape),
         "other_rows": sharding.process_rows(spec, x.shape,
                                             process=1 - process_id),
         "host": sharding.host_rows(x).tolist()}
  # Hosts interleaved along the batch: no contiguous block to own.
  devices = np.asarray(jax.devices()).reshape(2, 4).T.reshape(1, 8, 1)
  try:
    sharding.process_rows(NamedSharding(Mesh(devices, sharding.MESH_AXES),
                                        P(("data", "fsdp"))), (8,))
  except ValueError as e:
    out["interleaved"] = str(e)
  out["sums"] = distributed.sum_metrics({"n": process_id + 1,
                                         "third": 1 / 3})
  out["json"] = distributed.gather_json({"p": process_id,
                                         "s": "é\n" * process_id})
  # Unequal blocks (1 row and 3 rows of 4): the means are of the sums.
  problems = [Problem(id=str(i), prompt=f"q{i}", reference=str(i))
              for i in range(4)]
  at = slice(0, 1) if process_id == 0 else slice(1, 4)
  rewards = np.asarray([[0, 1, 1, 1], [1, 1, 1, 0]], np.float32)[:, at]
  texts = (("a", "b", "c", "d")[at], ("a", "bb", "x", "d")[at])
  lengths = np.asarray([[1, 2, 3, 4], [5, 6, 7, 8]])[:, at]
  eps = episodes.Episodes(problems[at], rewards, texts, lengths,
                          start=at.start, total=4)
  out["turn_metrics"] = episodes.turn_metrics(eps)
  whole = episodes.gather(eps, problems)
  out["gathered"] = {"ids": [p.id for p in whole.rows],
                     "rewards": whole.rewards.tolist(),
                     "texts": [list(t) for t in whole.texts],
                     "lengths": whole.lengths.tolist()}
  # The trainer's start-up check of how the rollout splits over the hosts.
  ctx = sharding.ShardingCtx(mesh)
  errors = {}
  for prompts, k in ((4, 2), (3, 1), (3, 2)):
    config = configs.base_config()
    config.rollout = ml_collections.ConfigDict(
        {"prompts_per_step": prompts, "samples_per_prompt": k})
    config.sft.batch_size = 8
    try:
      train.check_process_split(config, configs.parse_schedule("stage1:1"),
                                ctx)
      errors[f"{prompts}x{k}"] = None
    except ValueError as e:
      errors[f"{prompts}x{k}"] = str(e)
  out["split_errors"] = errors
  return out


def test_two_processes_on_loopback():
  port = _free_port()
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  procs = [subprocess.Popen([sys.executable, __file__, str(port), str(i)],
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = []
  try:
    for proc in procs:
      # A hang (e.g. a process waiting for a peer that died) fails the test.
      out, err = proc.communicate(timeout=90)
      assert proc.returncode == 0, f"worker failed:\n{err[-3000:]}"
      outs.append(json.loads(out.strip().splitlines()[-1]))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()

  full = [[3.0 * r + c for c in range(3)] for r in range(8)]
  for i, out in enumerate(outs):
    assert out["plan"] == ["flags", 2, i]
    assert out["again"] == ["running", 2, i]
    assert out["conflict"] == (f"jax.distributed is already initialised as "
                               f"process {i}, not process_id={1 - i}")
    assert out["devices"] == [8, 4]
    assert out["local_rows"] == ([0, 1, 2, 3] if i == 0 else [4, 5, 6, 7])
    assert out["total"] == sum(map(sum, full)) == 276.0
    assert out["col"] == [sum(row[c] ** 2 for row in full) for c in range(3)]
    assert out["main"] == (i == 0)
    assert out["mean"] == {"acc": 0.25, "loss": 1.5}
    assert out["weighted"] == pytest.approx({"acc": 1 / 3, "loss": 5 / 3})
    for message in out["mismatch"]:
      assert "processes passed different metric names" in message
    assert out["gathered"] == {"rows": [10.0, 10.0], "solved": [3.0, 4.0]}
    _check_multihost_helpers(i, out["multihost"], full)


def _check_multihost_helpers(i, out, full):
  assert out["rows"] == ([0, 4] if i == 0 else [4, 8])
  assert out["other_rows"] == ([4, 8] if i == 0 else [0, 4])
  assert out["host"] == full[4 * i:4 * i + 4]
  assert "not one contiguous block" in out["interleaved"]
  assert out["sums"]["n"] == 3.0
  # Carried as float32 value + residual: not rounded to float32.
  assert abs(out["sums"]["third"] - 2 / 3) < 1e-13
  assert out["json"] == [{"p": 0, "s": ""}, {"p": 1, "s": "é\n"}]
  # Rewards >= 0.5 of 4 rows: t1 3/4, t2 3/4; a mean of the two blocks'
  # means would give t1 (0 + 1) / 2 = 1/2.
  metrics = out["turn_metrics"]
  assert metrics["reward_t1"] == 0.75 and metrics["reward_t2"] == 0.75
  assert metrics["delta"] == 0.0
  assert metrics["delta_i2c"] == 0.25 and metrics["delta_c2i"] == 0.25
  assert metrics["length_t1"] == 2.5 and metrics["length_t2"] == 6.5
  # edit ratios: a/a 0, b/bb 1/2, c/x 1, d/d 0.
  assert metrics["edit_ratio"] == pytest.approx(0.375, abs=1e-12)
  assert out["gathered"] == {
      "ids": ["0", "1", "2", "3"],
      "rewards": [[0, 1, 1, 1], [1, 1, 1, 0]],
      "texts": [["a", "b", "c", "d"], ["a", "bb", "x", "d"]],
      "lengths": [[1, 2, 3, 4], [5, 6, 7, 8]]}
  errors = out["split_errors"]
  assert errors["4x2"] is None
  # 3 rows do not split over data=2: every host would hold all of them.
  assert "must split over the 8 data-parallel devices" in errors["3x1"]
  assert "make the rows a multiple of 8" in errors["3x1"]
  # 6 rows split 3 + 3: a group of 2 samples would straddle the hosts.
  assert "own rows [(0, 3), (3, 6)]" in errors["3x2"]
  assert "whole groups of samples_per_prompt=2" in errors["3x2"]


if __name__ == "__main__":
  _worker(int(sys.argv[1]), int(sys.argv[2]))
