"""Evaluation reports: one JSON per run under `<workdir>/eval/`, and Markdown
tables comparing runs like Table 2 of the SCoRe paper.

A report JSON holds
  {"schema": "score_jax.eval/1", "name": str,
   "metrics": {key: number}, "intervals": {key: [low, high]},
   "config": {...},  # evaluation settings, checkpoint, task, ...
   "files": {"problems": "<name>.problems.jsonl", ...}}
Metric keys are those of `metrics.py` (fractions); tables show percentages.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from score_jax.evaluation import bootstrap
from score_jax.evaluation import files
from score_jax.evaluation import metrics as metrics_lib

SCHEMA = "score_jax.eval/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

Run = Union[str, os.PathLike, Mapping[str, Any]]


def summarize(rewards, *, threshold: float = metrics_lib.DEFAULT_THRESHOLD,
              num_resamples: int = bootstrap.DEFAULT_RESAMPLES,
              confidence: float = bootstrap.DEFAULT_CONFIDENCE,
              seed: int = bootstrap.DEFAULT_SEED,
              extra_values: Optional[Mapping[str, np.ndarray]] = None
              ) -> dict[str, Any]:
  """Metrics and paired bootstrap intervals of one evaluation run.

  Args:
    rewards: [N_turns, P] rewards of each turn (see metrics.py).
    threshold: a reward >= threshold is correct.
    num_resamples, confidence, seed: bootstrap settings.
    extra_values: more per-problem values float[P] over the SAME problems, e.g.
      `pass_at_k_values(...)`, reported and resampled together with the rest.

  Returns:
    {"metrics", "intervals", "config"}: keyword arguments for `write_report`
    (add the caller's own settings to "config").
  """
  values = metrics_lib.self_correction_values(rewards, threshold)
  num_turns, num_problems = np.shape(rewards)
  for key, v in (extra_values or {}).items():
    if key in values:
      raise ValueError(f"summarize: extra value {key!r} clashes with a "
                       f"self-correction metric")
    values[key] = np.asarray(v, dtype=np.float64)
  intervals = bootstrap.bootstrap_intervals(
      values, num_resamples=num_resamples, confidence=confidence, seed=seed)
  return {
      "metrics": {k: float(v.mean()) for k, v in values.items()},
      "intervals": intervals,
      "config": {
          "num_problems": int(num_problems),
          "num_turns": int(num_turns),
          "threshold": float(threshold),
          "bootstrap": {"method": "percentile, problems resampled with "
                                  "replacement, paired across metrics",
                        "num_resamples": int(num_resamples),
                        "confidence": float(confidence), "seed": int(seed)},
      },
  }


def _rows(per_problem, what: str) -> list:
  """A list of row dicts from rows or from {column: [P] values}."""
  if isinstance(per_problem, Mapping):
    lengths = {k: len(v) for k, v in per_problem.items()}
    if len(set(lengths.values())) > 1:
      raise ValueError(f"{what}: columns have different lengths {lengths}")
    count = next(iter(lengths.values()), 0)
    return [{k: v[i] for k, v in per_problem.items()} for i in range(count)]
  return list(per_problem)


def write_report(workdir, name: str, metrics: Mapping[str, float],
                 per_problem=None, transcripts=None, *,
                 intervals: Optional[Mapping[str, Sequence[float]]] = None,
                 config: Optional[Mapping[str, Any]] = None
                 ) -> dict[str, pathlib.Path]:
  """Writes `<workdir>/eval/<name>.{json,md}` (+ per-problem/transcript JSONL).

  Args:
    workdir: the run's workdir; files go to `<workdir>/eval/`.
    name: report name, [A-Za-z0-9._-] (e.g. "step_3000", "base").
    metrics: {key: number}, e.g. `summarize(...)["metrics"]`.
    per_problem: optional rows (list of dicts) or columns ({key: [P]}), e.g.
      problem ids, rewards per turn, edit-distance ratio; -> .problems.jsonl.
    transcripts: optional list of dicts (prompts, attempts, rewards);
      -> .transcripts.jsonl.
    intervals: optional {key: (low, high)} for keys of `metrics`.
    config: optional JSON-able summary of how the numbers were made.

  Every file is written atomically; the JSON last, so a JSON that exists
  always has its companion files. Returns {"json", "markdown", ...: path}.
  """
  if not _NAME.match(name):
    raise ValueError(f"write_report: name {name!r} must match {_NAME.pattern}")
  for key, value in metrics.items():
    if not isinstance(value, (int, float, np.integer, np.floating)):
      raise ValueError(f"write_report: metric {key!r} is not a number: "
                       f"{value!r:.80}")
  intervals = {k: [float(lo), float(hi)]
               for k, (lo, hi) in (intervals or {}).items()}
  unknown = sorted(set(intervals) - set(metrics))
  if unknown:
    raise ValueError(f"write_report: intervals for unknown metrics {unknown}")
  out = pathlib.Path(workdir) / "eval"
  # Every text is made (and checked: JSON refuses NaN) before anything is
  # written, so a bad report leaves an earlier one of its name whole.
  texts = {}
  for kind, rows in (("problems", per_problem), ("transcripts", transcripts)):
    if rows is not None:
      texts[kind] = (out / f"{name}.{kind}.jsonl", files.to_jsonl(
          _rows(rows, f"{name} {kind}"), f"{name} {kind}"))
  report = {"schema": SCHEMA, "name": name, "metrics": dict(metrics),
            "intervals": intervals, "config": dict(config or {}),
            "files": {kind: path.name for kind, (path, _) in texts.items()}}
  texts["markdown"] = (out / f"{name}.md", report_markdown(report))
  texts["json"] = (out / f"{name}.json",
                   files.to_json(report, f"report {name}", indent=2) + "\n")
  return {kind: files.atomic_write_text(path, text)  # the JSON last
          for kind, (path, text) in texts.items()}


def load_report(run: Run) -> dict[str, Any]:
  """A report dict from a path to a report JSON, or a dict (checked)."""
  if isinstance(run, Mapping):
    report, where = dict(run), "report dict"
  else:
    where = str(run)
    try:
      report = json.loads(pathlib.Path(run).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
      raise ValueError(f"{where}: not a JSON report: {e}") from e
  if not isinstance(report.get("metrics"), Mapping):
    raise ValueError(f"{where}: a report needs a 'metrics' mapping")
  report.setdefault("intervals", {})
  return report


def _format(value: float, scale: float, digits: int, signed: bool) -> str:
  # + 0.0: a value that rounds to zero reads "+0.0", not "-0.0".
  value = round(value * scale, digits) + 0.0
  return f"{value:{'+' if signed else ''}.{digits}f}"


def _cell(report: Mapping[str, Any], key: str, label: str, percent: bool,
          digits: int) -> str:
  if key not in report["metrics"]:
    raise KeyError(f"compare_runs: run {label!r} has no metric {key!r} "
                   f"(has {sorted(report['metrics'])})")
  scale = 100.0 if percent else 1.0
  signed = key.startswith("delta(")
  text = _format(report["metrics"][key], scale, digits, signed)
  if key in report["intervals"]:
    lo, hi = report["intervals"][key]
    text += (f" [{_format(lo, scale, digits, signed)}, "
             f"{_format(hi, scale, digits, signed)}]")
  return text


def paper_columns(first: int = 1, second: int = 2) -> list[tuple[str, str]]:
  """(header, metric key) of the paper's Table 2 for turns (first, second)."""
  a, b = f"t{first}", f"t{second}"
  return [(f"Acc@{a}", metrics_lib.acc_key(first)),
          (f"Acc@{b}", metrics_lib.acc_key(second)),
          (f"Δ({a}, {b})", metrics_lib.delta_key(first, second)),
          (f"Δi→c({a}, {b})", metrics_lib.i2c_key(first, second)),
          (f"Δc→i({a}, {b})", metrics_lib.c2i_key(first, second))]


def _escape(text: str) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


def compare_runs(runs: Sequence[Run], labels: Optional[Sequence[str]] = None,
                 *, turns: tuple[int, int] = (1, 2),
                 columns: Optional[Sequence[tuple[str, str]]] = None,
                 percent: bool = True, digits: int = 1) -> str:
  """A Markdown table, one row per run, like Table 2 of the paper.

  Args:
    runs: report JSON paths or report dicts (needs "metrics"; "intervals"
      optional: a value without an interval is shown alone).
    labels: row labels; default each report's "name" (or its file stem).
    turns: the pair of turns of the default columns.
    columns: (header, metric key) pairs; default `paper_columns(*turns)`.
    percent: show fractions as percentages (the paper's units).
    digits: decimals shown.

  Returns:
    The table text: a header row, a separator row and one row per run; cells
    read "value [low, high]" (the 95% interval when the report has one).
  """
  if not runs:
    raise ValueError("compare_runs: no runs given")
  if labels is not None and len(labels) != len(runs):
    raise ValueError(f"compare_runs: {len(labels)} labels for {len(runs)} runs")
  columns = list(columns or paper_columns(*turns))
  header = ["Method"] + [h for h, _ in columns]
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join([" --- "] + [" ---: "] * len(columns)) + "|"]
  for i, run in enumerate(runs):
    report = load_report(run)
    if labels is not None:
      label = labels[i]
    elif "name" in report:
      label = report["name"]
    else:
      label = pathlib.Path(run).stem if not isinstance(run, Mapping) else str(i)
    cells = [_escape(label)] + [_cell(report, key, label, percent, digits)
                                for _, key in columns]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def report_markdown(report: Mapping[str, Any]) -> str:
  """One run's Markdown: the paper-style row (two or more turns) and every
  metric with its interval."""
  report = load_report(report)
  name = report.get("name", "run")
  config = report.get("config", {})
  lines = [f"# Evaluation: {name}", ""]
  if "num_problems" in config:
    lines += [f"{config['num_problems']} problems, "
              f"{config.get('num_turns', '?')} turns.", ""]
  if all(k in report["metrics"] for _, k in paper_columns()):
    lines += [compare_runs([report], [name]).rstrip("\n"), ""]
  lines += ["| Metric | Value | Interval |", "| --- | ---: | ---: |"]
  for key, value in report["metrics"].items():
    interval = report["intervals"].get(key)
    shown = ("" if interval is None
             else f"[{interval[0]:.4f}, {interval[1]:.4f}]")
    lines.append(f"| {_escape(key)} | {float(value):.4f} | {shown} |")
  bootstrap_config = config.get("bootstrap")
  if bootstrap_config:
    lines += ["", f"Intervals: {bootstrap_config.get('confidence', '?')} "
                  f"bootstrap, {bootstrap_config.get('num_resamples', '?')} "
                  f"resamples, seed {bootstrap_config.get('seed', '?')}."]
  return "\n".join(lines) + "\n"
