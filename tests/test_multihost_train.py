"""Multi-host training (issue 8): 2 processes x 4 CPU devices on loopback
train what 1 process x 8 devices trains, resume, and only process 0 writes.

Both runs are `python -m score_jax.cli train` on configs/smoke.py cut to
three steps, 'stage1:1,sft:1,stage2:1': the random tiny model earns no
reward, so an RL step's gradient comes only from its KL terms, which vanish
while the policy equals its reference. With no warm start before the first
RL stage, the reference stays the initial policy; the 'sft' step moves the
policy away from it, and the stage-2 step then has a real gradient through
the tokens it sampled (the KL estimator's score-function term): sampling
anything other than the 1-process run's tokens changes the params.

The 2-process run stops after two steps and a second launch resumes it from
its checkpoint. This file is also the worker entry point:
`python test_multihost_train.py WRITES_LOG <score-jax argv...>` runs
`score_jax.cli` as `python -m` would, after installing an audit hook that
records every file the process writes (opens to write, or renames onto)
in the workdir outside the checkpoint directories (Orbax's own multi-process
writes).
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.py"
SCHEDULE = "stage1:1,sft:1,stage2:1"
FIRST_LAUNCH = "stage1:1,sft:1"  # the 2-process run stops here, then resumes
TIMEOUT_S = 600


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(workdir: pathlib.Path, schedule: str, processes: int,
            tag: str) -> list[dict]:
  """Runs `score-jax train` as `processes` processes (8 CPU devices in all);
  returns each process's {'stdout', 'stderr', 'writes'}."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
         "XLA_FLAGS": ("--xla_force_host_platform_device_count="
                       f"{8 // processes}")}
  args = ["train", f"--config={SMOKE}", f"--workdir={workdir}",
          f"--config.schedule={schedule}", "--config.log.progress=False"]
  if processes > 1:
    args.append(f"--coordinator_address=127.0.0.1:{_free_port()}")
    args.append(f"--num_processes={processes}")
  logs = [workdir.parent / f"{workdir.name}.{tag}.writes{i}.txt"
          for i in range(processes)]
  procs = [subprocess.Popen(
      [sys.executable, __file__, str(logs[i]), *args,
       *([f"--process_id={i}"] if processes > 1 else [])],
      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(processes)]
  outs = []
  try:
    for i, proc in enumerate(procs):
      # A hang (a process waiting for a peer that died) fails the test.
      out, err = proc.communicate(timeout=TIMEOUT_S)
      assert proc.returncode == 0, (
          f"{tag}: process {i} of {processes} failed:\n{err[-4000:]}")
      writes = logs[i].read_text().split() if logs[i].exists() else []
      outs.append({"stdout": out, "stderr": err, "writes": writes})
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  return outs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("multihost")
  one, two = root / "one", root / "two"
  times = []
  start = time.perf_counter()
  single = _launch(one, SCHEDULE, 1, "single")
  times.append(time.perf_counter())
  first = _launch(two, FIRST_LAUNCH, 2, "first")
  times.append(time.perf_counter())
  resumed = _launch(two, SCHEDULE, 2, "resumed")
  times.append(time.perf_counter())
  print(f"wall times: 1 process x 8 devices {times[0] - start:.1f} s; "
        f"2 processes x 4 devices: steps 0-1 {times[1] - times[0]:.1f} s, "
        f"resumed for step 2 {times[2] - times[1]:.1f} s")
  return {"one": one, "two": two, "single": single, "first": first,
          "resumed": resumed}


def _comparable(path):
  from score_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  from score_jax.evaluation import files  # pylint: disable=g-import-not-at-top
  return [{k: v for k, v in row.items() if k not in train_lib.TIMING_KEYS}
          for row in files.read_jsonl(path)]


def _trainer(workdir):
  """A 1-process trainer (this pytest process: 8 devices) on `workdir`, its
  latest checkpoint restored."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  from score_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("smoke", SMOKE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.schedule = SCHEDULE
  config.log.progress = False
  trainer = train_lib.Trainer(config, str(workdir))
  assert trainer.restore() == (3, False)
  return trainer


def test_two_processes_train_the_same_params(runs):
  import jax  # pylint: disable=g-import-not-at-top
  assert jax.device_count() == 8 and jax.process_count() == 1
  one, two = _trainer(runs["one"]), _trainer(runs["two"])
  try:
    # The 2-process checkpoint restores in one process.
    assert int(two.state.step) == int(one.state.step) == 3
    pairs = {"params": (one.state.params, two.state.params),
             "opt_state": (one.state.opt_state, two.state.opt_state),
             "reference": (one.ref_params, two.ref_params)}
    for name, (a, b) in pairs.items():
      flat_a = jax.tree_util.tree_flatten_with_path(a)[0]
      flat_b = jax.tree.leaves(b)
      assert len(flat_a) == len(flat_b)
      for (path, x), y in zip(flat_a, flat_b):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_allclose(
            y, x, rtol=0, atol=1e-5,
            err_msg=f"{name}{jax.tree_util.keystr(path)}")
    # Not vacuous: the steps moved the params, and stage 2's RL step (whose
    # gradient depends on the sampled tokens) moved them too.
    moved = [float(np.max(np.abs(np.asarray(p) - np.asarray(r)))) for p, r in
             zip(jax.tree.leaves(one.state.params),
                 jax.tree.leaves(one.ref_params))]
    assert max(moved) > 1e-4
  finally:
    one.close()
    two.close()
  rows = [r for r in _comparable(runs["one"] / "metrics.jsonl")
          if r["stage"] == "stage2"]
  assert rows[0]["grad_norm"] > 0 and rows[0]["kl/t1"] != 0


def test_metrics_equal_one_process(runs):
  from test_train_loop import assert_same_metrics  # pylint: disable=g-import-not-at-top
  got = _comparable(runs["two"] / "metrics.jsonl")
  want = _comparable(runs["one"] / "metrics.jsonl")
  # Written once (by process 0), the resumed launch appending after step 1.
  assert [(r["step"], r["stage"]) for r in got] == [
      (r["step"], r["stage"]) for r in want]
  assert [r["stage"] for r in want] == ["stage1", "eval", "sft", "eval",
                                        "stage2", "eval"]
  assert_same_metrics(got, want)


def test_only_process_0_writes_logs_samples_and_reports(runs):
  for launch in ("first", "resumed"):
    main, other = runs[launch]
    assert other["writes"] == [], f"{launch}: process 1 wrote {other['writes']}"
    written = {w.split("/")[0] for w in main["writes"]}
    assert {"metrics.jsonl", "tb", "eval"} <= written, (launch, written)
    # Process 1 prints no report either.
    assert "eval after_" in main["stdout"]
    assert "eval after_" not in other["stdout"]
  assert "config.json" in runs["first"][0]["writes"]
  assert "samples" in {w.split("/")[0] for w in runs["resumed"][0]["writes"]}
  one, two = runs["one"], runs["two"]
  # Two launches of process 0, one TensorBoard file each.
  assert len(os.listdir(two / "tb")) == 2
  assert sorted(os.listdir(two / "samples")) == sorted(
      os.listdir(one / "samples")) == ["step_000000.jsonl",
                                       "step_000002.jsonl"]
  for name in os.listdir(one / "samples"):
    # Transcripts of rows both processes sampled: the same texts.
    assert (two / "samples" / name).read_text() == (
        one / "samples" / name).read_text()
  assert sorted(os.listdir(two / "eval")) == sorted(os.listdir(one / "eval"))
  for name in ("after_stage1_step1", "after_sft_step2", "after_stage2_step3"):
    got = json.loads((two / "eval" / f"{name}.json").read_text())
    want = json.loads((one / "eval" / f"{name}.json").read_text())
    assert got["metrics"] == pytest.approx(want["metrics"], rel=1e-6)
    for kind in ("problems", "transcripts"):  # gathered from both processes
      assert (two / "eval" / f"{name}.{kind}.jsonl").read_text() == (
          one / "eval" / f"{name}.{kind}.jsonl").read_text()


# ---------------------------------------------------------------- the worker


def _record_writes(log: str, workdir: str) -> None:
  """Appends to `log` each path under `workdir` (outside checkpoints*/) that
  this process opens for writing or renames a file to."""
  root = os.path.realpath(workdir) + os.sep
  write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND
  seen = set()

  def hook(event, args):
    if event == "open":  # open(), os.open(): (path, mode, flags)
      path, mode, flags = args
      writing = (any(c in mode for c in "wax+") if isinstance(mode, str)
                 else bool((flags or 0) & write_flags))
    elif event == "os.rename":  # os.rename/os.replace: (src, dst, ...)
      path, writing = args[1], True
    else:
      return
    if not writing or not isinstance(path, (str, bytes, os.PathLike)):
      return
    path = os.path.realpath(os.fsdecode(path))
    if not path.startswith(root):
      return
    relative = path[len(root):]
    if relative.startswith("checkpoints") or relative in seen:
      return
    seen.add(relative)
    with open(log, "a", encoding="utf-8") as f:  # outside the workdir
      f.write(relative + "\n")

  sys.addaudithook(hook)


if __name__ == "__main__":
  import runpy  # pylint: disable=g-import-not-at-top
  _workdir = next(a.partition("=")[2] for a in sys.argv[2:]
                  if a.startswith("--workdir="))
  os.makedirs(_workdir, exist_ok=True)
  _record_writes(sys.argv[1], _workdir)
  sys.argv = ["score-jax", *sys.argv[2:]]
  runpy.run_module("score_jax.cli", run_name="__main__", alter_sys=True)
