"""`score-jax eval` end to end on a tiny model trained for 2 steps: it
reproduces the training run's own evaluation from the checkpoint, writes the
report files, runs the 3-turn Self-Refine protocol, prints the comparison
table; bad input gets a message naming what was wrong."""

import copy
import json
import os
import pathlib
import runpy
import subprocess
import sys

import numpy as np
import pytest

from score_jax import tasks as tasks_lib
from score_jax import train as train_lib
from score_jax.commands import eval as eval_cmd
from score_jax.evaluation import files

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_PROBLEMS = 3


def tiny_config():
  """configs/smoke.py cut to a 2-step warm start and 3 eval problems."""
  config = runpy.run_path(str(REPO / "configs" / "smoke.py"))["get_config"]()
  config.schedule = "sft:2"
  config.mesh.shape = (1, 1, 1)
  config.eval.num_problems = NUM_PROBLEMS
  config.checkpoint.every = 1
  config.log.progress = False
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  train_lib.train(tiny_config(), str(workdir))
  return workdir


@pytest.mark.slow
def test_eval_of_a_workdir_reproduces_the_training_eval(run, tmp_path):
  out = eval_cmd.run_eval(tiny_config(), str(run), workdir=str(tmp_path),
                          progress=False)
  assert out["name"] == "score_arithmetic_step2"
  for kind in ("json", "markdown", "edit_distance"):
    assert out["paths"][kind].exists(), kind
  ours = json.loads(out["paths"]["json"].read_text())
  theirs = json.loads((run / "eval" / "after_sft_step2.json").read_text())
  assert ours["metrics"] == theirs["metrics"]
  assert ours["config"]["step"] == 2 and ours["config"]["num_turns"] == 2
  # Greedy episodes from the restored params are the trainer's, word for word.
  mine = files.read_jsonl(tmp_path / "eval" /
                          "score_arithmetic_step2.transcripts.jsonl")
  train = files.read_jsonl(run / "eval" / "after_sft_step2.transcripts.jsonl")
  assert len(mine) == NUM_PROBLEMS
  assert [[t["response"] for t in r["turns"]] for r in mine] == \
         [[t["response"] for t in r["turns"]] for r in train]
  assert "| score_arithmetic_step2 |" in out["paths"]["markdown"].read_text()


@pytest.mark.slow
def test_self_refine_protocol_runs_three_turns(run):
  step_dir = run / "checkpoints" / "1"
  out = eval_cmd.run_eval(tiny_config(), str(step_dir), protocol="self_refine",
                          progress=False)
  assert out["workdir"] == str(run) and out["name"] == \
      "self_refine_arithmetic_step1"
  report = json.loads(out["paths"]["json"].read_text())
  config = report["config"]
  assert config["protocol"] == "self_refine" and config["num_turns"] == 3
  assert config["graded_turns"] == [1, 3]
  feedback, refine = config["instructions"]
  assert feedback == eval_cmd.SELF_REFINE_FEEDBACK
  assert refine.startswith("Based on the problems you found") and \
      'End with a last line of the form "Answer: <answer>".' in refine
  rows = files.read_jsonl(out["paths"]["all_turns"])
  assert len(rows) == NUM_PROBLEMS and all(len(r["turns"]) == 3 for r in rows)
  first = np.mean([r["turns"][0]["reward"] >= 0.5 for r in rows])
  final = np.mean([r["turns"][2]["reward"] >= 0.5 for r in rows])
  assert report["metrics"]["acc@t1"] == pytest.approx(first)
  assert report["metrics"]["acc@t2"] == pytest.approx(final)


@pytest.mark.slow
def test_cli_prints_and_writes_the_comparison_table(run, tmp_path):
  base = run / "eval" / "after_sft_step2.json"
  env = dict(os.environ, XLA_FLAGS="")
  cmd = [sys.executable, "-m", "score_jax.cli", "eval",
         f"--config={REPO / 'configs' / 'smoke.py'}",
         "--config.mesh.shape=(1, 1, 1)",
         f"--config.eval.num_problems={NUM_PROBLEMS}",
         f"--checkpoint={run}", f"--workdir={tmp_path}", "--name=trained",
         f"--compare={base},{base}", "--labels=Base,Again,Trained"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                        cwd=REPO, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = (tmp_path / "eval" / "trained.compare.md").read_text()
  lines = table.strip().splitlines()
  assert lines[0].startswith("| Method | Acc@t1 | Acc@t2 | Δ(t1, t2)")
  assert [line.split("|")[1].strip() for line in lines[2:]] == [
      "Base", "Again", "Trained"]
  assert table in proc.stdout
  assert "json: " in proc.stdout and "95% bootstrap" in proc.stdout


@pytest.mark.slow
def test_checkpoint_of_another_model_names_the_param(run):
  config = tiny_config()
  config.model.preset_overrides.vocab_size = 300
  with pytest.raises(ValueError, match=r"another model: param "
                     r"\['embedding'\] has shape \(264, 64\), the config's "
                     r"model needs \(300, 64\)"):
    eval_cmd.run_eval(config, str(run), progress=False)


def test_missing_checkpoint_is_named(tmp_path):
  with pytest.raises(ValueError, match="checkpoint not found: .*nowhere"):
    eval_cmd.resolve_checkpoint(str(tmp_path / "nowhere"))
  with pytest.raises(ValueError, match="checkpoint not found: /no/such.gguf"):
    eval_cmd.resolve_checkpoint("gguf:/no/such.gguf")
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(ValueError, match="holds no finished checkpoint"):
    eval_cmd.resolve_checkpoint(str(tmp_path))
  # A warm start alone keeps no best step: no training reward.
  (tmp_path / "checkpoints_best").mkdir()
  with pytest.raises(ValueError, match="holds no best checkpoint .* a warm "
                     "start alone has none"):
    eval_cmd.resolve_checkpoint(str(tmp_path / "checkpoints_best"))
  (tmp_path / "other").mkdir()
  with pytest.raises(ValueError, match="not a training workdir"):
    eval_cmd.resolve_checkpoint(str(tmp_path / "other"))


def test_checkpoint_forms_resolve(tmp_path):
  for sub in ("checkpoints/3/state", "checkpoints/5/state",
              "checkpoints/7.orbax-checkpoint-tmp-1/state",
              "checkpoints_best/3/state"):
    (tmp_path / sub).mkdir(parents=True)
  latest = eval_cmd.resolve_checkpoint(str(tmp_path))
  assert (latest.kind, latest.step, latest.tag) == ("run", 5, "step5")
  assert latest.where == str(tmp_path / "checkpoints" / "5")
  assert latest.workdir == str(tmp_path)
  best = eval_cmd.resolve_checkpoint(str(tmp_path / "checkpoints_best"))
  assert (best.step, best.tag, best.workdir) == (3, "best-step3",
                                                 str(tmp_path))
  # A run stopped between saving a better step and dropping the worse one
  # leaves two best steps: the best is the one of the higher reward.
  for step, reward in ((3, 0.6), (5, 0.4)):
    (tmp_path / f"checkpoints_best/{step}/metrics").mkdir(parents=True,
                                                          exist_ok=True)
    (tmp_path / f"checkpoints_best/{step}/state").mkdir(exist_ok=True)
    (tmp_path / f"checkpoints_best/{step}/metrics/metrics").write_text(
        json.dumps({"train_reward": reward}))
  best = eval_cmd.resolve_checkpoint(str(tmp_path / "checkpoints_best"))
  assert best.step == 3
  step = eval_cmd.resolve_checkpoint(str(tmp_path / "checkpoints" / "3"))
  assert (step.step, step.tag, step.workdir) == (3, "step3", str(tmp_path))
  spec = eval_cmd.resolve_checkpoint("preset:tiny-llama")
  assert (spec.kind, spec.where, spec.workdir, spec.tag) == (
      "spec", "preset:tiny-llama", None, "tiny-llama")


def test_unknown_task_and_missing_workdir_are_named(tmp_path):
  with pytest.raises(ValueError, match="unknown task 'nope'"):
    eval_cmd.run_eval(tiny_config(), "preset:tiny-llama", task="nope",
                      workdir=str(tmp_path), progress=False)
  with pytest.raises(ValueError, match="--workdir is required"):
    eval_cmd.run_eval(tiny_config(), "preset:tiny-llama", progress=False)


def test_self_refine_instructions_follow_the_task_format():
  task = tasks_lib.get_task("arithmetic")
  five = eval_cmd.self_refine_instructions(task, 5)
  assert five[0::2] == [eval_cmd.SELF_REFINE_FEEDBACK] * 2
  assert five[1] == five[3] == (
      "Based on the problems you found, improve your answer. Only output the "
      'final solution! End with a last line of the form "Answer: <answer>".')
  with pytest.raises(ValueError, match="odd number of turns >= 3"):
    eval_cmd.self_refine_instructions(task, 4)
  odd = tasks_lib.get_task("arithmetic", correction_instruction="Fix it.")
  with pytest.raises(ValueError, match="answer-format demand"):
    eval_cmd.self_refine_instructions(odd, 3)


def test_comparison_labels_must_match_the_reports(tmp_path):
  with pytest.raises(ValueError, match="3 labels for 1 --compare reports"):
    eval_cmd.comparison("this.json", "this", ["a.json"], ["A", "B", "C"])


def test_bad_labels_are_refused_before_the_evaluation(tmp_path):
  base = _report(tmp_path / "base.json", _TWO_TURN)
  cmd = [sys.executable, "-m", "score_jax.cli", "eval",
         f"--config={REPO / 'configs' / 'smoke.py'}",
         "--checkpoint=preset:tiny-llama", f"--workdir={tmp_path / 'w'}",
         f"--compare={base}", "--labels=A,B,C"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                        cwd=REPO, env=dict(os.environ, XLA_FLAGS=""))
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip() == ("score-jax eval: --labels: 3 labels for 1 "
                                 "--compare reports (give one per report, "
                                 "optionally one more for this run)")
  assert not (tmp_path / "w").exists()  # nothing was evaluated


_TWO_TURN = {"acc@t1": 0.25, "acc@t2": 0.5, "delta(t1,t2)": 0.25,
             "delta_i2c(t1,t2)": 0.25, "delta_c2i(t1,t2)": 0.0}


def _report(path, metrics):
  path.write_text(json.dumps({"metrics": metrics}))
  return str(path)


def test_compare_reports_are_checked_before_the_eval_and_labels_default(
    tmp_path):
  with pytest.raises(ValueError, match="report not found: a.json"):
    eval_cmd.check_compare(["a.json"])
  (tmp_path / "notes.json").write_text("not json")
  with pytest.raises(ValueError, match="notes.json: not a JSON report"):
    eval_cmd.check_compare([str(tmp_path / "notes.json")])
  passk = _report(tmp_path / "passk.json", {"pass@4(t1)": 0.5})
  with pytest.raises(ValueError, match="passk.json has no acc@t1, acc@t2"):
    eval_cmd.check_compare([passk])
  base = _report(tmp_path / "base.json", _TWO_TURN)
  this = _report(tmp_path / "this.json", _TWO_TURN)
  eval_cmd.check_compare([base])
  table = eval_cmd.comparison(this, "trained", [base], [])
  assert [line.split("|")[1].strip()
          for line in table.strip().splitlines()[2:]] == ["base", "trained"]


def test_a_report_of_another_evaluation_is_not_replaced(tmp_path):
  config = tiny_config()
  settings = {"checkpoint": "preset:tiny-llama", "task": "arithmetic",
              "split": "test", "protocol": "score", "num_turns": 2,
              "task_options": config.task.options.to_dict(),
              "max_new_tokens": config.eval.max_new_tokens,
              "num_problems": NUM_PROBLEMS}
  report = tmp_path / "eval" / "r.json"
  report.parent.mkdir()
  report.write_text(json.dumps({"metrics": {}, "config": {
      **settings, "checkpoint": "hf:/other/tiny-llama"}}))
  with pytest.raises(ValueError, match="r.json holds another evaluation "
                     r"\(checkpoint 'hf:/other/tiny-llama' there, "
                     "'preset:tiny-llama' now\\): pass --name"):
    eval_cmd.run_eval(tiny_config(), "preset:tiny-llama", name="r",
                      workdir=str(tmp_path), progress=False)
  report.write_text(json.dumps({"metrics": {}, "config": settings}))
  eval_cmd.check_report_name(str(tmp_path), "r", settings)  # the same: fine
  eval_cmd.check_report_name(str(tmp_path), "new", settings)
  # Other problems (a task option, e.g. another test file) or another token
  # budget under the same name: another evaluation.
  other = copy.deepcopy(config)
  other.task.options.max_terms = 4
  with pytest.raises(ValueError, match=r"holds another evaluation \("
                     r"task_options .*'max_terms': 2.* there, .*'max_terms': "
                     r"4.* now\)"):
    eval_cmd.run_eval(other, "preset:tiny-llama", name="r",
                      workdir=str(tmp_path), progress=False)
  other = copy.deepcopy(config)
  other.eval.max_new_tokens += 1
  with pytest.raises(ValueError, match=r"\(max_new_tokens \d+ there, \d+ "
                     r"now\)"):
    eval_cmd.run_eval(other, "preset:tiny-llama", name="r",
                      workdir=str(tmp_path), progress=False)


def test_a_misspelt_protocol_is_named(tmp_path):
  config = tiny_config()
  with config.unlocked():
    config.eval.protocol = "selfrefine"
  with pytest.raises(ValueError, match="protocol 'selfrefine' "
                     r"\(config.eval.protocol or --protocol\): expected one "
                     "of score, self_refine"):
    eval_cmd.run_eval(config, "preset:tiny-llama", workdir=str(tmp_path),
                      progress=False)
  assert not os.listdir(tmp_path)


def test_bad_report_name_and_url_workdir_fail_before_the_eval(tmp_path):
  with pytest.raises(ValueError, match="--name='__': a report name needs"):
    eval_cmd.run_eval(tiny_config(), "preset:tiny-llama", name="__",
                      workdir=str(tmp_path), progress=False)
  with pytest.raises(ValueError, match="--workdir=gs://bucket/run: a URL"):
    eval_cmd.run_eval(tiny_config(), "preset:tiny-llama",
                      workdir="gs://bucket/run", progress=False)
  config = tiny_config()
  config.eval.num_problems = 0  # not "none of them", not "all of them"
  with pytest.raises(ValueError, match="config.eval.num_problems=0: expect"):
    eval_cmd.run_eval(config, "preset:tiny-llama", workdir=str(tmp_path),
                      progress=False)
  assert not os.listdir(tmp_path)
