"""The training loop end to end on configs/smoke.py: outputs, exact resume
after SIGKILL, and clear errors on bad input."""

import copy
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from score_jax import configs as configs_lib
from score_jax import run_state
from score_jax import train as train_lib
from score_jax.evaluation import files

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.py"


def smoke_config():
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("smoke", SMOKE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.mesh.shape = (1, 1, 1)  # one device: same numbers as the CLI runs
  config.log.progress = False
  return config


def comparable(rows):
  """Metrics rows without the wall-time fields."""
  return [{k: v for k, v in row.items() if k not in train_lib.TIMING_KEYS}
          for row in rows]


def assert_same_metrics(got, want):
  """Metrics rows equal step for step: floats to 1e-5, the rest exactly."""
  assert len(got) == len(want)
  for g, w in zip(got, want):
    assert g.keys() == w.keys()
    for key in g:
      if isinstance(g[key], float):
        np.testing.assert_allclose(g[key], w[key], rtol=1e-5, atol=1e-6,
                                   err_msg=f"step {g['step']} {key}")
      else:
        assert g[key] == w[key], (g["step"], key)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("smoke")
  results = train_lib.train(smoke_config(), str(workdir))
  return workdir, results


def test_smoke_writes_everything(smoke_run):
  workdir, results = smoke_run
  rows = files.read_jsonl(workdir / "metrics.jsonl")
  stages = [r["stage"] for r in rows]
  assert stages.count("sft") == 4 and stages.count("stage1") == 3
  assert stages.count("stage2") == 3 and stages.count("eval") == 3
  assert [r["step"] for r in rows if r["stage"] != "eval"] == list(range(10))
  rl = [r for r in rows if r["stage"] in ("stage1", "stage2")]
  for key in ("reward_t1", "reward_t2", "delta", "delta_i2c", "delta_c2i",
              "kl/t1", "kl/t2", "entropy/t1", "length_t1", "edit_ratio",
              "tokens_per_s", "time/rollout", "time/update", "loss"):
    assert all(key in r for r in rl), key
  sft = [r for r in rows if r["stage"] == "sft"]
  assert sft[-1]["loss"] < sft[0]["loss"]  # the warm start learns
  assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "8"]
  [best] = os.listdir(workdir / "checkpoints_best")
  # Where find_checkpoint reads the reward a best step was kept for.
  reward = run_state._train_reward(str(workdir / "checkpoints_best"),  # pylint: disable=protected-access
                                   int(best))
  assert 0.0 <= reward <= 1.0
  assert (workdir / "config.json").exists()
  # Transcripts of sampled steps (the warm start samples nothing).
  assert sorted(os.listdir(workdir / "samples")) == [
      "step_000004.jsonl", "step_000006.jsonl", "step_000008.jsonl"]
  sample = files.read_jsonl(workdir / "samples" / "step_000004.jsonl")[0]
  assert len(sample["turns"]) == 2 and "reward" in sample["turns"][1]
  report = json.loads((workdir / "eval" / "after_stage2_step10.json")
                      .read_text())
  assert set(report["metrics"]) >= {"acc@t1", "acc@t2", "delta(t1,t2)"}
  assert (workdir / "eval" / "training_curves.png").exists()
  assert set(results) == {"after_sft_step4", "after_stage1_step7",
                          "after_stage2_step10"}


def test_restart_of_finished_run_changes_nothing(smoke_run):
  workdir, _ = smoke_run
  before = (workdir / "metrics.jsonl").read_text()
  train_lib.train(smoke_config(), str(workdir))
  assert (workdir / "metrics.jsonl").read_text() == before


def test_single_turn_rl_runs_to_the_end(tmp_path):
  """A single-turn stage logs turn 1 only; the run still ends with its
  report and training curves."""
  config = smoke_config()
  config.schedule = "sft:1,single_turn:2"
  results = train_lib.train(config, str(tmp_path))
  assert set(results) == {"after_sft_step1", "after_single_turn_step3"}
  rows = [r for r in files.read_jsonl(tmp_path / "metrics.jsonl")
          if r["stage"] == "single_turn"]
  assert len(rows) == 2 and all("reward_t2" not in r for r in rows)
  assert (tmp_path / "eval" / "training_curves.png").exists()
  # The best checkpoint is picked by the turn-1 reward here.
  assert os.listdir(tmp_path / "checkpoints_best")


def _tensorboard_scalars(logdir):
  """{tag: [(step, value)]} as TensorBoard shows the event files of logdir:
  read in the order written; a session START event at step s hides every
  earlier event at step >= s (an attempt that crashed and was resumed)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  scalars = {}
  for name in sorted(os.listdir(logdir)):
    data = (logdir / name).read_bytes()
    at = 0
    while at < len(data):
      size = int.from_bytes(data[at:at + 8], "little")
      event = event_pb2.Event.FromString(data[at + 12:at + 12 + size])
      at += 12 + size + 4  # length, its crc, the record, its crc
      if event.session_log.status == event_pb2.SessionLog.START:
        scalars = {tag: [(s, v) for s, v in points if s < event.step]
                   for tag, points in scalars.items()}
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step,
                                                  value.simple_value))
  return scalars


def test_restarts_log_each_step_once(tmp_path):
  """A run started again after a crash, before its first checkpoint or
  after one, logs every step and evaluation once, in metrics.jsonl and in
  TensorBoard, with the uninterrupted run's numbers."""
  config = smoke_config()
  config.schedule = "sft:2,stage1:2"
  config.checkpoint.every = 2
  config.eval.at_start = True
  config.log.samples_every = 0
  whole = tmp_path / "whole"
  train_lib.train(config, str(whole))
  want = comparable(files.read_jsonl(whole / "metrics.jsonl"))
  assert [(r["stage"], r["step"]) for r in want] == [
      ("eval", 0), ("sft", 0), ("sft", 1), ("eval", 2), ("stage1", 2),
      ("stage1", 3), ("eval", 4)]
  # Crashed before its first checkpoint: a fresh start. Crashed after the
  # checkpoint of step 2: resumed there (its evaluation at 2 kept).
  for case, kept in (("fresh", []), ("resumed", ["2"])):
    workdir = tmp_path / case
    shutil.copytree(whole, workdir)
    for step in os.listdir(workdir / "checkpoints"):
      if step not in kept:
        shutil.rmtree(workdir / "checkpoints" / step)
    shutil.rmtree(workdir / "checkpoints_best")
    time.sleep(1.1)  # TensorBoard event files are named by the second
    train_lib.train(config, str(workdir))
    got = comparable(files.read_jsonl(workdir / "metrics.jsonl"))
    assert_same_metrics(got, want)
    shown = _tensorboard_scalars(workdir / "tb")
    # (tensorboardX writes '@' in a tag as '_')
    for key, tag in (("eval/acc@t1", "eval/acc_t1"), ("loss", "loss")):
      steps = [r["step"] for r in want if key in r]
      assert [s for s, _ in shown[tag]] == steps, (case, tag)
      np.testing.assert_allclose([v for _, v in shown[tag]],
                                 [r[key] for r in want if key in r],
                                 rtol=1e-5, atol=1e-6)


def _tree_snapshot(root):
  return {str(p.relative_to(root)): p.stat().st_mtime_ns
          for p in pathlib.Path(root).rglob("*")}


def test_start_from_another_runs_checkpoint_continues_it_exactly(
    smoke_run, tmp_path):
  """A fresh workdir with start_from=<run>/checkpoints/8 writes the same
  metrics from step 8 on as the run itself, and leaves that run untouched."""
  source, _ = smoke_run
  before = _tree_snapshot(source)
  config = smoke_config()
  config.start_from = str(source / "checkpoints" / "8")
  results = train_lib.train(config, str(tmp_path))
  assert set(results) == {"after_stage2_step10"}
  assert _tree_snapshot(source) == before
  got = comparable(files.read_jsonl(tmp_path / "metrics.jsonl"))
  want = [r for r in comparable(files.read_jsonl(source / "metrics.jsonl"))
          if r["step"] >= 8]
  assert [r["step"] for r in got] == [8, 9, 10]
  assert_same_metrics(got, want)
  assert json.loads((tmp_path / "config.json").read_text())["start_from"] == \
      config.start_from
  # A second start resumes this workdir's own checkpoint, not the source's.
  train_lib.train(config, str(tmp_path))
  assert len(files.read_jsonl(tmp_path / "metrics.jsonl")) == 3


def test_start_from_a_workdir_keeps_the_step_it_first_resolved(smoke_run,
                                                               tmp_path):
  """start_from=<a run's workdir> names that run's latest checkpoint, which
  moves while it goes on. An attempt killed before its first save starts
  again from the step its first attempt took, not the source's new latest;
  if that step is gone, the error names it."""
  source, _ = smoke_run
  other = tmp_path / "other"
  (other / "checkpoints").mkdir(parents=True)
  shutil.copytree(source / "checkpoints" / "8", other / "checkpoints" / "8")
  config = smoke_config()
  config.start_from = str(other)
  run = tmp_path / "run"

  def start():
    trainer = train_lib.Trainer(config, str(run))
    try:
      return trainer.restore()
    finally:
      trainer.close()
  # The first attempt resolves and records step 8, then is killed.
  assert start() == (8, True)
  shutil.copytree(source / "checkpoints" / "10", other / "checkpoints" / "10")
  assert start() == (8, True)
  # Another start_from is resolved afresh.
  config.start_from = str(other / "checkpoints")
  assert start() == (10, True)
  shutil.rmtree(other / "checkpoints" / "10")
  with pytest.raises(ValueError, match="first attempt started from"):
    start()


def test_start_from_past_the_rl_start_needs_a_taken_reference(smoke_run,
                                                              tmp_path):
  """The reference is the policy where the first RL stage starts after the
  warm start. A fresh run from a warm-start-only checkpoint at step 2 whose
  schedule starts RL at step 1 would keep the initial model as reference:
  refused. From an RL checkpoint (smoke: RL from step 4) at step 8 it is
  the run's own."""
  source = tmp_path / "warm"
  config = smoke_config()
  config.schedule, config.checkpoint.every = "sft:2", 2
  config.log.samples_every = 0
  train_lib.train(config, str(source))
  config = smoke_config()
  config.schedule = "sft:1,stage1:3"
  config.start_from = str(source / "checkpoints" / "2")
  with pytest.raises(ValueError, match=r"its step 2 lies past the start of "
                     r"this schedule's first RL stage \(step 1\).*sft:2"):
    train_lib.train(config, str(tmp_path / "fork"))
  config.schedule = "sft:2,stage1:2"  # RL starts at the checkpoint: fine
  trainer = train_lib.Trainer(config, str(tmp_path / "ok"))
  assert trainer.restore() == (2, True)
  trainer.close()
  meta = json.loads((smoke_run[0] / "checkpoints" / "8" / "meta" /
                     "metadata").read_text())
  assert meta["reference_step"] == 4


def test_two_runs_never_train_in_one_workdir(tmp_path):
  """A second run on a workdir in use (a job restarted while its first
  instance still runs) is refused; the lock goes with the first run."""
  config = smoke_config()
  config.schedule = "sft:1"
  first = train_lib.Trainer(config, str(tmp_path))
  first.restore()
  second = train_lib.Trainer(config, str(tmp_path))
  with pytest.raises(ValueError, match="is in use: another training run "
                     "holds"):
    second.restore()
  first.close()
  assert second.restore() == (0, True)
  second.close()


def test_start_from_bad_paths_are_named(smoke_run, tmp_path):
  source, _ = smoke_run
  config = smoke_config()
  for path, message in [
      (tmp_path / "nowhere", "neither a training workdir"),
      (source / "checkpoints" / "5", "neither a training workdir"),
      (source / "eval", "neither a training workdir")]:
    config.start_from = str(path)
    with pytest.raises(ValueError, match=message):
      train_lib.train(config, str(tmp_path / "run"))


def _cli(workdir, *extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="",
             PYTHONUNBUFFERED="1")
  return [sys.executable, "-m", "score_jax.cli", "train",
          f"--config={SMOKE}", f"--workdir={workdir}",
          "--config.mesh.shape=(1,1,1)", "--config.log.progress=False",
          *extra], env


@pytest.mark.slow
def test_sigkill_and_resume_gives_the_same_metrics(smoke_run, tmp_path):
  """Kill the CLI run with SIGKILL mid-training (after step 6's metrics,
  between checkpoints), start it again with the same command: the metrics
  equal the uninterrupted run's, step for step, in metrics.jsonl and in
  TensorBoard (whose writer buffers what it has not flushed), and in the
  closing summary."""
  reference, results = smoke_run
  cmd, env = _cli(tmp_path)
  proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  metrics = tmp_path / "metrics.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline:
    if metrics.exists() and sum(
        1 for r in files.read_jsonl(metrics) if r["stage"] != "eval") >= 7:
      break
    if proc.poll() is not None:
      pytest.fail("the run ended before it could be killed")
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert len(files.read_jsonl(metrics)) < len(files.read_jsonl(
      reference / "metrics.jsonl")), "killed too late to test anything"
  resumed = subprocess.run(cmd, env=env, cwd=REPO, check=True, timeout=600,
                           capture_output=True, text=True)
  got = comparable(files.read_jsonl(metrics))
  want = comparable(files.read_jsonl(reference / "metrics.jsonl"))
  assert_same_metrics(got, want)
  shown = _tensorboard_scalars(tmp_path / "tb")
  assert [s for s, _ in shown["loss"]] == [r["step"] for r in want
                                          if "loss" in r]
  np.testing.assert_allclose([v for _, v in shown["loss"]],
                             [r["loss"] for r in want if "loss" in r],
                             rtol=1e-5, atol=1e-6)
  # The closing summary lists the whole run's evaluations, those before the
  # kill too, and compares the first (the base) with the last.
  evals = {line.split(":")[0][len("eval "):]: line.split(":", 1)[1]
           for line in resumed.stdout.splitlines() if line.startswith("eval ")}
  assert list(evals) == list(results)
  for name, metrics in results.items():
    assert f"acc@t1 {metrics['acc@t1']:.3f}" in evals[name], name
  first, last = list(results)[0], list(results)[-1]
  assert f"| {first} |" in resumed.stdout and f"| {last} |" in resumed.stdout


@pytest.mark.parametrize("workdir, flag, message", [
    (None, "--config.rollout.temprature=0.5",
     "score-jax train: bad flags: 'temprature'\nDid you mean "
     "\"temperature\""),
    (None, "--config.schedule=sft:2,stage3:1",
     "score-jax train: config.schedule: unknown stage 'stage3'"),
    ("gs://bucket/run", "--config.seed=0",
     "score-jax train: --workdir=gs://bucket/run: a URL, not a directory"),
    (None, "--config.seed=abc",
     "score-jax train: bad flags: flag --config.seed=abc: invalid literal"),
    (None, "--bogus=1",
     "score-jax train: bad flags: Unknown command line flag 'bogus'"),
    (None, "--num_processes=2",
     "score-jax train: multi-process start needs --coordinator_address"),
])
def test_bad_input_is_one_line_not_a_traceback(tmp_path, workdir, flag,
                                                message):
  cmd, env = _cli(workdir or tmp_path, flag)
  out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 2
  assert message in out.stderr
  assert "Traceback" not in out.stderr and "FATAL" not in out.stderr
  assert not os.listdir(tmp_path)  # nothing written, no local 'gs:' folder


def test_misspelt_stage_is_named():
  config = smoke_config()
  config.schedule = "sft:2,stage_1:3"
  with pytest.raises(ValueError, match="unknown stage 'stage_1'"):
    configs_lib.validate(config)
  config.schedule = "stage1:0"
  with pytest.raises(ValueError, match="positive step count"):
    configs_lib.validate(config)


def test_workdir_of_another_model_is_refused(smoke_run, tmp_path):
  workdir, _ = smoke_run
  config = smoke_config()
  config.model.preset_overrides.embed_dim = 32
  with pytest.raises(ValueError, match="another model"):
    train_lib.train(config, str(workdir))


def test_a_best_checkpoint_missed_by_a_kill_is_offered_on_resume(
    smoke_run, tmp_path):
  """Killed after saving its latest checkpoint, before checkpoints_best/
  took it: started again, the run offers that step to checkpoints_best/,
  with the training reward it was saved with (the last turn's mean sampled
  reward since the previous save)."""
  source, _ = smoke_run
  workdir = tmp_path / "run"
  shutil.copytree(source, workdir)
  shutil.rmtree(workdir / "checkpoints_best")
  train_lib.train(smoke_config(), str(workdir))  # finished: restores 10
  assert os.listdir(workdir / "checkpoints_best") == ["10"]
  rows = files.read_jsonl(workdir / "metrics.jsonl")
  want = np.mean([r["reward_t2"] for r in rows if r["step"] in (8, 9)
                  and r["stage"] != "eval"])
  np.testing.assert_allclose(
      run_state._train_reward(str(workdir / "checkpoints_best"), 10),  # pylint: disable=protected-access
      want, rtol=1e-6)


def test_a_resumed_run_keeps_what_it_trains_on_and_with(tmp_path):
  """Resumed with another seed (or schedule, task, objective, optimizer) a
  run would be neither: refused, naming the field and both values, before
  anything is written. Where and how often it evaluates, saves and logs may
  change."""
  config = smoke_config()
  config.schedule = "sft:2"
  config.checkpoint.every = 2
  config.log.samples_every = 0
  train_lib.train(config, str(tmp_path))
  before = _tree_snapshot(tmp_path)
  changed = copy.deepcopy(config)
  changed.seed, changed.optimizer.lr = 1, 0.5
  with pytest.raises(ValueError, match=r"holds a run started with another "
                     r"config.*optimizer\.lr: 0\.0001 -> 0\.5; seed: 0 -> 1"):
    train_lib.train(changed, str(tmp_path))
  assert _tree_snapshot(tmp_path) == before
  allowed = copy.deepcopy(config)
  allowed.checkpoint.keep, allowed.eval.num_problems = 5, 4
  train_lib.train(allowed, str(tmp_path))  # finished: nothing left to do
  # The schedule may gain stages after its last, not change a stage's steps.
  saved = json.loads((tmp_path / "config.json").read_text())
  allowed.schedule = "sft:2,stage1:1"
  assert configs_lib.resume_changes(saved, allowed) == []
  allowed.schedule = "sft:3,stage1:1"
  assert configs_lib.resume_changes(saved, allowed) == [
      "schedule: 'sft:2' -> 'sft:3,stage1:1'"]
  # A run from before task.positions existed ran with 'step'.
  allowed.schedule = "sft:2"
  del saved["task"]["positions"]
  assert configs_lib.resume_changes(saved, allowed) == [
      "task.positions: 'step' -> 'continued'"]
  allowed.task.positions = "step"
  assert configs_lib.resume_changes(saved, allowed) == []
  # A key of a dict whose keys are the user's (an lr for one stage, a task
  # option), added or dropped, is a change too.
  with allowed.unlocked():
    allowed.lr_by_stage.stage2 = 1.0
  option, value = next(iter(saved["task"]["options"].items()))
  del saved["task"]["options"][option]
  assert configs_lib.resume_changes(saved, allowed) == [
      "lr_by_stage.stage2: (absent) -> 1.0",
      f"task.options.{option}: (absent) -> {value!r}"]
  saved["task"]["options"][option] = value
  saved["lr_by_stage"] = {"stage2": 1.0, "stage1": 2.0}
  assert configs_lib.resume_changes(saved, allowed) == [
      "lr_by_stage.stage1: 2.0 -> (absent)"]


@pytest.mark.parametrize("positions, rl_first", [("continued", 32),
                                                 ("step", 16)])
def test_each_stage_goes_on_where_the_last_stopped(tmp_path, positions,
                                                   rl_first):
  """Smoke: 4 sft steps x 8 problems, then RL steps of 4 prompts. Continued,
  RL's first prompt is the 33rd problem of the order, none of the warm
  start's; by step (the committed rows' order), RL step 4 takes positions
  16-19, which the warm start trained on."""
  config = smoke_config()
  config.task.positions = positions
  trainer = train_lib.Trainer(config, str(tmp_path))
  warm = {p.id for step in range(4) for p in trainer.problems_for_step(step)}
  rl = [p.id for step in range(4, 10) for p in trainer.problems_for_step(step)]
  assert trainer.first_position(4) == rl_first
  assert trainer.first_position(9) == rl_first + 20
  assert len(warm) == 32 and len(set(rl)) == 24
  assert bool(warm & set(rl)) == (positions == "step")
  # The same positions, one order: step 4's prompts continue the warm start's.
  order = trainer.training_order(0, rl_first + 4)
  assert trainer.problems_for_step(4) == order[rl_first:]


def test_start_from_under_another_remat_policy_is_the_same_run(
    smoke_run, tmp_path):
  """Remat and compute dtype are not part of a checkpoint: starting from one
  with remat 'full' (e.g. to fit a smaller machine) continues it exactly."""
  source, _ = smoke_run
  config = smoke_config()
  config.start_from = str(source / "checkpoints" / "8")
  config.model.remat_policy = "full"
  train_lib.train(config, str(tmp_path))
  got = comparable(files.read_jsonl(tmp_path / "metrics.jsonl"))
  want = [r for r in comparable(files.read_jsonl(source / "metrics.jsonl"))
          if r["step"] >= 8]
  assert [r["step"] for r in got] == [8, 9, 10]
  assert_same_metrics(got, want)


def test_a_run_too_big_for_the_device_is_warned_of_before_it_starts(
    tmp_path, monkeypatch, caplog):
  """The plan of an RL step over the device's memory is logged with what
  would shrink it (an out-of-memory kill says nothing); a run that fits, or
  one of supervised steps only, is not warned about."""
  from score_jax import plan as plan_lib  # pylint: disable=g-import-not-at-top
  config = smoke_config()
  limit = {"bytes": 2**20}  # 1 MiB: less than the smoke model's params
  monkeypatch.setattr(plan_lib, "device_memory_limit",
                      lambda device=None: limit["bytes"])
  with caplog.at_level("WARNING"):
    train_lib.Trainer(config, str(tmp_path / "small"))
  warned = [r.getMessage() for r in caplog.records
            if "may run out of memory" in r.getMessage()]
  assert len(warned) == 1
  assert "--config.model.remat_policy=full (now 'none')" in warned[0]
  assert "--config.step.logits_chunk=64 (now 0)" in warned[0]
  caplog.clear()
  limit["bytes"] = 2**40
  with caplog.at_level("WARNING"):
    train_lib.Trainer(config, str(tmp_path / "big"))
    limit["bytes"] = 2**20
    config.schedule = "sft:2"
    train_lib.Trainer(config, str(tmp_path / "sft_only"))
  assert not [r for r in caplog.records
              if "may run out of memory" in r.getMessage()]


def test_truncated_sampling_in_rl_stages_is_warned_of(tmp_path, caplog):
  """Top-k / top-p rollouts make REINFORCE off-policy (the trained
  log-probs are the untruncated ones): said once at start, for RL stages
  only."""
  config = smoke_config()
  config.rollout.top_k = 5
  with caplog.at_level("WARNING"):
    train_lib.Trainer(config, str(tmp_path / "rl"))
    config.schedule = "sft:2"
    train_lib.Trainer(config, str(tmp_path / "sft_only"))
  warned = [r.getMessage() for r in caplog.records
            if "off-policy" in r.getMessage()]
  assert len(warned) == 1 and "rollout.top_k=5" in warned[0]


def test_non_finite_steps_stop_the_run_and_are_never_saved(tmp_path):
  config = smoke_config()
  config.schedule = "sft:6"
  config.sft.lr = 1e30  # params blow up; the next losses are not finite
  config.max_nonfinite_steps = 2
  config.checkpoint.every = 1
  with pytest.raises(train_lib.NonFiniteError, match="consecutive steps"):
    train_lib.train(config, str(tmp_path))
  rows = files.read_jsonl(tmp_path / "metrics.jsonl")
  assert [r["skipped_step"] for r in rows][-2:] == [1.0, 1.0]
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  with ocp.CheckpointManager(tmp_path / "checkpoints") as manager:
    for step in manager.all_steps():
      state = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore()))["state"]
      leaves = jax.tree.leaves(state["params"])
      assert all(np.isfinite(np.asarray(x)).all() for x in leaves), step


def test_a_split_without_problems_is_refused(tmp_path):
  """An empty held-out split would train a run that never evaluates."""
  config = smoke_config()
  for split in ("train", "test"):
    config.task.options.split_sizes = {"train": 1000, "test": 100, split: 0}
    with pytest.raises(ValueError, match=f"split '{split}' has no problems"):
      train_lib.Trainer(config, str(tmp_path / split))


def test_evaluation_problems_are_never_trained_on(tmp_path):
  """A validation split of the arithmetic task shares problems with train
  (only test is kept apart): those leave the training set, whatever number
  of them is evaluated. Training on the evaluation split itself is
  refused."""
  config = smoke_config()
  with config.unlocked():
    config.task.options.split_sizes = {"train": 1000, "validation": 200,
                                       "test": 100}
    config.task.eval_split = "validation"
    config.eval.num_problems = 200
  trainer = train_lib.Trainer(config, str(tmp_path / "validation"))
  task = trainer.task
  every = task.problems("train")
  evaluated = {p.prompt for p in trainer.eval_problems}
  shared = [p for p in every if p.prompt in evaluated]
  assert shared, "the arithmetic task's validation split no longer overlaps"
  assert trainer.train_problems == [p for p in every if p not in shared]
  # The whole evaluation split is held out: eval.num_problems, which a
  # resumed run may change, does not change what trains.
  config.eval.num_problems = 50
  fewer = train_lib.Trainer(config, str(tmp_path / "fewer"))
  assert len(fewer.eval_problems) == 50
  assert fewer.train_problems == trainer.train_problems
  with config.unlocked():
    config.task.train_split = "validation"
  with pytest.raises(ValueError, match="every problem of the training split "
                     "'validation' is one of the evaluation's"):
    train_lib.Trainer(config, str(tmp_path / "same"))


def test_an_evaluation_only_protocol_is_not_trained(tmp_path):
  """configs/self_refine.py is `score-jax eval`'s: a run's own evaluations
  would report the SCoRe protocol under its name."""
  config = smoke_config()
  with config.unlocked():
    config.eval.protocol = "self_refine"
  with pytest.raises(ValueError, match="evaluation only: train the warm "
                     "start with configs/base.py"):
    train_lib.Trainer(config, str(tmp_path))
