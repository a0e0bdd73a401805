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


def plot_training_curves(metrics_source, path, *, step_key: str = "step",
                         reward_keys: Sequence[str] = ("reward_t1",
                                                       "reward_t2"),
                         delta_key: Optional[str] = "delta",
                         title: str = "Training") -> pathlib.Path:
  """Reward per turn and Δ over training steps, from a run's metrics.jsonl.

  Args:
    metrics_source: path to a JSON-lines file (one object per line) or a list
      of such row dicts.
    path: the PNG to write.
    step_key: the x axis.
    reward_keys: one curve per key on the left panel.
    delta_key: the curve of the right panel (None: no right panel).

  Rows without `step_key` (or a curve's key) are not points of that curve, so
  eval rows and train rows may share one file. A key that no row has is an
  error naming the key.
  """
  if isinstance(metrics_source, (str, pathlib.PurePath)):
    rows, where = files.read_jsonl(metrics_source), str(metrics_source)
  else:
    rows, where = list(metrics_source), "metrics rows"
  panels = [("reward", list(reward_keys))]
  if delta_key is not None:
    panels.append(("Δ", [delta_key]))
  series = {}
  for _, keys in panels:
    for key in keys:
      points = [(r[step_key], r[key]) for r in rows
                if step_key in r and r.get(key) is not None]
      if not points:
        raise ValueError(f"plot_training_curves: {where} has no row with both "
                         f"{step_key!r} and {key!r}")
      try:
        series[key] = np.array(points, dtype=np.float64).T
      except (TypeError, ValueError) as e:
        raise ValueError(f"plot_training_curves: {where}: {step_key!r} and "
                         f"{key!r} must be numbers ({e})") from e
  figure = _figure(5 * len(panels), 4)
  for i, (ylabel, keys) in enumerate(panels):
    axes = figure.add_subplot(1, len(panels), i + 1)
    for key in keys:
      steps, values = series[key]
      axes.plot(steps, values, label=key, linewidth=1.5)
    if keys == [delta_key]:
      axes.axhline(0.0, color="gray", linewidth=0.8, linestyle="--")
    axes.set_xlabel(step_key)
    axes.set_ylabel(ylabel)
    axes.legend()
  figure.suptitle(title)
  return _save(figure, path)
