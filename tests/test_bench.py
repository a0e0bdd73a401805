"""bench/train_step.py: its batch, its FLOP count, its quick mode end to end,
and that a failing or unaffordable setting is reported, not fatal; the
results table (bench/results_table.py) from runs and committed rows, and
bench/results.sh's row selection; the shell scripts pass shellcheck."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPT = os.path.join(_ROOT, "bench", "train_step.py")


def _load():
  spec = importlib.util.spec_from_file_location("bench_train_step", _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


ts = _load()


def test_batch_is_a_two_turn_rollout():
  b = ts.make_batch(8, 256, vocab=100, seed=3)
  valid, turns = b["valid"], b["turn_masks"]
  assert b["tokens"].shape == (8, 256) and b["tokens"].dtype == np.int32
  assert turns.shape == (2, 8, 256) and b["rewards"].shape == (2, 8)
  # Sampled tokens are real tokens; turns are disjoint, turn 1 comes first.
  assert not (turns & ~valid[None]).any()
  assert not (turns[0] & turns[1]).any()
  assert turns[0].sum(1).min() > 0 and turns[1].sum(1).min() > 0
  last_t1 = np.where(turns[0], np.arange(256), -1).max(1)
  first_t2 = np.where(turns[1], np.arange(256), 256).min(1)
  assert (last_t1 < first_t2).all()
  # Padding holds token 0 and does not advance positions.
  assert (b["tokens"][~valid] == 0).all() and (b["tokens"][valid] > 0).all()
  np.testing.assert_array_equal(
      b["positions"], np.maximum(np.cumsum(valid, 1) - 1, 0))
  # Left padding differs between rows, and some rows stopped turn 1 early.
  assert len(set(np.argmax(valid, 1))) > 1
  assert len(set(turns[0].sum(1))) > 1


def test_model_flops_counts_the_reference_only_in_useful():
  rl = ts.model_flops(1000, 10, with_reference=True)
  sft = ts.model_flops(1000, 10, with_reference=False)
  assert rl == {"6n": 60_000.0, "useful": 80_000.0}
  assert sft == {"6n": 60_000.0, "useful": 60_000.0}


def test_gpu_setting_lowers_on_abstract_arrays():
  # The Gemma-2B step traced and lowered without allocating its 40 GB.
  result = ts.check_setting(ts.GPU[0])
  assert result["lowered"] and result["preset"] == "gemma-2b"
  assert 2.4e9 < result["params"] < 2.6e9


def test_override_parses_by_field_type_and_names_bad_input():
  s = ts.override(ts.GPU[0], ["preset=tiny-gemma", "length=128",
                              "ref_dtype=none"])
  assert (s.preset, s.length, s.ref_dtype) == ("tiny-gemma", 128, None)
  assert s.remat == ts.GPU[0].remat
  with pytest.raises(ValueError, match="length takes an integer"):
    ts.override(s, ["length=long"])
  with pytest.raises(ValueError, match="FIELD one of"):
    ts.override(s, ["lenght=128"])


def test_failed_setting_is_reported_not_fatal():
  bad = ts.Setting("bad", preset="no-such-model")
  result = ts.run_child(bad, ts.PEAK_FLOPS, timeout=120, gpu=False)
  assert result["error"] == "failed"
  assert "no-such-model" in result["detail"]


def test_budget_skips_settings_that_cannot_fit(capsys):
  rc = ts.main(["--quick", "--budget_s", "1", "--min_setting_s", "30"])
  assert rc == 1
  lines = capsys.readouterr().out.strip().splitlines()
  results = [json.loads(line) for line in lines[:-1]]
  assert [r["error"] for r in results] == ["skipped"] * len(ts.QUICK)
  summary = json.loads(lines[-1].split(": ", 1)[1])
  assert summary["ok"] == 0 and summary["best_rl_step"] is None
  assert summary["settings"] == {s.name: {"error": "skipped"}
                                 for s in ts.QUICK}


@pytest.mark.slow
def test_quick_mode_end_to_end(tmp_path):
  out = tmp_path / "ts.jsonl"
  proc = subprocess.run(
      [sys.executable, _SCRIPT, "--quick", "--only",
       "quick_stage2_full_remat", "--json", str(out)],
      capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines()[-1].startswith("train_step_summary")
  result, summary = [json.loads(line) for line in out.read_text().splitlines()]
  assert "error" not in result, result
  assert np.isfinite(result["loss"])
  assert result["step_s"] > 0 and result["tokens_per_step"] == 8 * 128
  assert result["tokens_per_s"] == pytest.approx(1024 / result["step_s"],
                                                 rel=1e-3)
  # The Stage II step also runs the reference forward: useful = 8/6 of 6N.
  assert result["mfu_useful"] == pytest.approx(result["mfu_6n"] * 8 / 6,
                                               rel=1e-3)
  summary = summary["summary"]
  assert summary["ok"] == 1 and summary["device"] == "cpu"
  assert summary["best_rl_step"] == "quick_stage2_full_remat"
  assert summary["settings"]["quick_stage2_full_remat"]["mfu_6n"] == (
      result["mfu_6n"])


@pytest.mark.parametrize("script", ["gpu_all.sh", "results.sh"])
def test_bench_script_passes_shellcheck(script):
  if shutil.which("shellcheck") is None:
    pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
  proc = subprocess.run(["shellcheck", os.path.join(_ROOT, "bench", script)],
                        capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stdout


def _results_table(*args):
  return subprocess.run(
      [sys.executable, os.path.join(_ROOT, "bench", "results_table.py"),
       *map(str, args)], capture_output=True, text=True, check=False)


def test_results_table_takes_missing_rows_from_committed_reports(tmp_path):
  """A row run in this session comes from RUNS_DIR; the rows an earlier
  session committed under docs/results fill in the rest, named on stderr;
  a row in neither is missing, never made up."""
  results = os.path.join(_ROOT, "docs", "results")
  committed = tmp_path / "committed"  # three real committed reports
  committed.mkdir()
  for row in ("base", "star", "score"):
    shutil.copy(os.path.join(results, f"smollm2_{row}.json"), committed)
  runs = tmp_path / "runs"
  (runs / "single_turn_rl" / "eval").mkdir(parents=True)
  # A real report standing in for a new single-turn RL run's final one.
  shutil.copyfile(os.path.join(results, "smollm2_pair_sft.json"),
                  runs / "single_turn_rl" / "eval" /
                  "after_single_turn_step200.json")
  out = tmp_path / "out"
  proc = _results_table("smollm2", runs, "--committed", committed,
                        "--copy_to", out)
  assert proc.returncode == 0, proc.stderr
  table = proc.stdout.splitlines()
  rows = [line.split(" | ")[0].lstrip("| ") for line in table[2:]]
  assert rows == ["Base (warm start, two-turn prompt)", "STaR",
                  "Single-turn RL", "SCoRe, seed 0"]
  for i, name in ((1, "star"), (2, "pair_sft")):
    report = json.load(open(os.path.join(results, f"smollm2_{name}.json")))
    t1 = 100 * report["metrics"]["acc@t1"]
    assert table[2 + i].split(" | ")[1].startswith(f"{t1:.1f} [")
  assert "committed: STaR" in proc.stderr
  assert "committed: Single-turn RL" not in proc.stderr
  assert "missing: Pair-SFT" in proc.stderr
  assert "missing: SCoRe, seed 1" in proc.stderr
  # Only what this session ran is copied; committed rows are already there.
  assert sorted(os.listdir(out)) == ["smollm2_single_turn_rl.json"]
  # Without --committed, only the run's row.
  proc = _results_table("smollm2", runs)
  assert proc.returncode == 0
  assert len(proc.stdout.splitlines()) == 3
  assert "missing: STaR" in proc.stderr


def test_results_table_refuses_rows_of_another_schedule_or_problem_set(
    tmp_path):
  """A committed report evaluated at another step (an older schedule), or
  rows evaluated on different problems, stop the table instead of mixing."""
  results = os.path.join(_ROOT, "docs", "results")
  committed = tmp_path / "committed"
  committed.mkdir()
  for row in ("base", "score"):
    shutil.copy(os.path.join(results, f"smollm2_{row}.json"), committed)
  assert _results_table("smollm2", tmp_path / "runs", "--committed",
                        committed).returncode == 0
  score = committed / "smollm2_score.json"
  report = json.loads(score.read_text())
  report["config"]["step"] = 160  # a 60-step RL schedule's last step
  score.write_text(json.dumps(report))
  proc = _results_table("smollm2", tmp_path / "runs", "--committed",
                        committed)
  assert proc.returncode != 0
  assert "smollm2_score.json: evaluated at step 160" in proc.stderr
  assert "ends at step 200" in proc.stderr
  report["config"]["step"] = 200
  report["config"]["num_problems"] = 64
  score.write_text(json.dumps(report))
  proc = _results_table("smollm2", tmp_path / "runs", "--committed",
                        committed)
  assert proc.returncode != 0
  assert "evaluated on different problems" in proc.stderr
  assert "64 problems" in proc.stderr and "128 problems" in proc.stderr


def test_results_script_rejects_an_unknown_row_before_running_anything(
    tmp_path):
  proc = subprocess.run(
      ["bash", os.path.join(_ROOT, "bench", "results.sh"), "smollm2",
       str(tmp_path / "runs")],
      env={**os.environ, "ROWS": "single_turn_rl singel_turn_rl"},
      capture_output=True, text=True, check=False, cwd=_ROOT)
  assert proc.returncode == 2
  assert "unknown row 'singel_turn_rl'" in proc.stderr
  assert "single_turn_rl" in proc.stderr.split("known rows:")[1]
  assert not (tmp_path / "runs").exists()
