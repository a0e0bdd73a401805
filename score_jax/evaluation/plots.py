"""PNG plots of evaluation and training runs.

matplotlib is imported inside the functions (the package loads fast) and used
through its object API with the Agg canvas: no pyplot, no global backend
switch, so plotting never disturbs a caller's own matplotlib set-up. Each PNG
is rendered in memory and written atomically.
"""

from __future__ import annotations

import io
import pathlib
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from score_jax.evaluation import edit_distance
from score_jax.evaluation import files


def _figure(width: float, height: float):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  figure = Figure(figsize=(width, height), dpi=100)
  FigureCanvasAgg(figure)
  return figure


def _save(figure, path) -> pathlib.Path:
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", bbox_inches="tight")
  return files.atomic_write_bytes(path, buffer.getvalue())


def plot_edit_distance_histogram(
    ratios: Union[np.ndarray, Sequence[float], Mapping[str, Any]], path, *,
    bins: int = 20, title: str = "Edit distance between attempts"
) -> pathlib.Path:
  """Histogram of edit-distance ratios, several runs overlaid.

  Args:
    ratios: float[P] ratios in [0, 1] of one run, or {label: float[P]} of
      several runs (overlaid as outlines).
    path: the PNG to write.
    bins: equal bins over [0, 1].

  The y axis is the fraction of problems, so runs of different sizes compare.
  """
  runs = dict(ratios) if isinstance(ratios, Mapping) else {None: ratios}
  if not runs:
    raise ValueError("plot_edit_distance_histogram: no runs given")
  figure = _figure(6, 4)
  axes = figure.add_subplot()
  for label, values in runs.items():
    counts, edges = edit_distance.edit_distance_histogram(values, bins)
    fractions = counts / max(counts.sum(), 1)
    axes.stairs(fractions, edges, label=label, linewidth=2,
                fill=len(runs) == 1, alpha=0.8 if len(runs) == 1 else 1.0)
  axes.set_xlim(0, 1)
  axes.set_xlabel("edit distance ratio (Levenshtein / max length)")
  axes.set_ylabel("fraction of problems")
  axes.set_title(title)
  if len(runs) > 1 or None not in runs:
    axes.legend()
  return _save(figure, path)


def _curve(rows: list, where: str, step_key: str, key: str) -> np.ndarray:
  """float64[2, S] (steps, values) sorted by step; a step written twice (a
  run resumed from a checkpoint repeats the steps after it) keeps its last
  value."""
  points = {}
  for row in rows:
    if step_key in row and row.get(key) is not None:
      points[row[step_key]] = row[key]
  if not points:
    raise ValueError(f"plot_training_curves: {where} has no row with both "
                     f"{step_key!r} and {key!r}")
  try:
    curve = np.array(list(points.items()), dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"plot_training_curves: {where}: {step_key!r} and "
                     f"{key!r} must be numbers ({e})") from e
  return curve[np.argsort(curve[:, 0], kind="stable")].T


def _load_rows(source, where: str) -> tuple[list, str]:
  if isinstance(source, (str, pathlib.PurePath)):
    return files.read_jsonl(source), str(source)
  return list(source), where


def plot_training_curves(metrics_source, path, *, step_key: str = "step",
                         reward_keys: Sequence[str] = ("reward_t1",
                                                       "reward_t2"),
                         delta_key: Optional[str] = "delta",
                         title: str = "Training") -> pathlib.Path:
  """Reward per turn and Δ over training steps, from metrics.jsonl files.

  Args:
    metrics_source: a path to a JSON-lines file (one object per line), a list
      of such row dicts, or {label: either} for several runs overlaid (one
      colour per run, one line style per reward key).
    path: the PNG to write.
    step_key: the x axis.
    reward_keys: one curve per key on the left panel.
    delta_key: the curve of the right panel (None: no right panel).

  Rows without `step_key` (or a curve's key) are not points of that curve, so
  eval rows and train rows may share one file. A key that no row of a run has
  is an error naming the run and the key.
  """
  if isinstance(metrics_source, Mapping):
    sources = dict(metrics_source)
    if not sources:
      raise ValueError("plot_training_curves: no runs given")
  else:
    sources = {None: metrics_source}
  panels = [("reward", list(reward_keys))]
  if delta_key is not None:
    panels.append((delta_key, [delta_key]))
  curves = {}  # (label, key) -> [2, S]
  for label, source in sources.items():
    rows, where = _load_rows(source, f"run {label!r}" if label else "rows")
    for _, keys in panels:
      for key in keys:
        curves[label, key] = _curve(rows, where, step_key, key)
  figure = _figure(5 * len(panels), 4)
  styles = ("--", "-", ":", "-.")
  for i, (ylabel, keys) in enumerate(panels):
    axes = figure.add_subplot(1, len(panels), i + 1)
    for run, label in enumerate(sources):
      for k, key in enumerate(keys):
        steps, values = curves[label, key]
        name = key if label is None else f"{label}: {key}"
        axes.plot(steps, values, label=name, linewidth=1.5, color=f"C{run}",
                  linestyle=styles[k % len(styles)] if len(keys) > 1 else "-")
    if keys == [delta_key]:
      axes.axhline(0.0, color="gray", linewidth=0.8, linestyle="--")
    axes.set_xlabel(step_key)
    axes.set_ylabel(ylabel)
    axes.legend(fontsize="small")
  figure.suptitle(title)
  return _save(figure, path)
