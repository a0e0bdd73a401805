"""Collects the rows of docs/RESULTS.md for one setting and prints their table.

  python bench/results_table.py SETTING RUNS_DIR [--copy_to docs/results]
                                [--committed docs/results]
  python bench/results_table.py SETTING --steps
  python bench/results_table.py SETTING --rows

SETTING is `demo` or `smollm2`, RUNS_DIR what `bash bench/results.sh SETTING
RUNS_DIR` wrote. Each row is the final greedy evaluation of one run (report
JSON with bootstrap 95% intervals); with --copy_to the JSONs are copied there
as <setting>_<row>.json (small files: metrics, intervals, config). With
--committed DIR, a row whose run is not under RUNS_DIR is read from
DIR/<setting>_<row>.json, a row committed by an earlier session (runs/ does
not outlive a machine; the warm start is deterministic, so rows from
different sessions share one base), and named on stderr. Rows found in
neither are listed as missing, never filled in. --steps prints the
setting's warm-start steps and RL steps per method, --rows the run names of
the setting's rows after the warm start (both for bench/results.sh).
"""

import argparse
import glob
import json
import os
import runpy
import shutil
import sys

from score_jax.evaluation import reports

# (label, run directory under RUNS_DIR, stage its final report is named
# after: eval/after_<stage>_step<N>.json; None: the Self-Refine protocol's
# report, eval/self_refine_<task>_step<warm>.json)
ROWS = [
    ("Base (warm start, two-turn prompt)", "base", "sft"),
    ("Self-Refine (prompting, on the base)", "self_refine", None),
    ("STaR", "star", "star"),
    ("Pair-SFT", "pair_sft", "pair_sft"),
    ("Single-turn RL", "single_turn_rl", "single_turn"),
    ("Naive multi-turn RL (α = 0, no Stage I)", "naive_multiturn_rl",
     "stage2"),
    ("SCoRe w/o Stage I", "score_no_stage1", "stage2"),
    ("SCoRe w/o reward shaping (α = 0)", "score_no_shaping", "stage2"),
    ("SCoRe, seed 0", "score", "stage2"),
    ("SCoRe, seed 1", "score_seed1", "stage2"),
]
SETTINGS = ("demo", "smollm2")


def rows_of(setting: str) -> list[tuple[str, str, str]]:
  """The ROWS of `setting`: no Self-Refine on the demo (configs/demo.py)."""
  return [row for row in ROWS if row[2] is not None or setting != "demo"]


def steps(setting: str) -> tuple[int, int]:
  """The setting's warm-start steps and every method's RL steps after it:
  configs/demo.py (WARM_START = "sft:N", RL_STEPS) or configs/common.py
  (WARM_START_STEPS, RL_STEPS)."""
  configs = os.path.join(os.path.dirname(__file__), os.pardir, "configs")
  if setting == "demo":
    demo = runpy.run_path(os.path.join(configs, "demo.py"))
    return int(demo["WARM_START"].split(":")[1]), demo["RL_STEPS"]
  common = runpy.run_path(os.path.join(configs, "common.py"))
  return common["WARM_START_STEPS"], common["RL_STEPS"]


def report_path(runs_dir: str, run: str, stage, warm: int, last: int) -> str:
  """Where a row's final report is ('' if a Self-Refine report is absent)."""
  if stage is None:
    found = glob.glob(os.path.join(runs_dir, run, "eval",
                                   f"self_refine_*_step{warm}.json"))
    return found[0] if len(found) == 1 else ""
  step = warm if run == "base" else last
  return os.path.join(runs_dir, run, "eval", f"after_{stage}_step{step}.json")


def check_committed(path: str, step: int) -> None:
  """A committed report is the row's final evaluation at the setting's
  current schedule (not one of an older warm start or RL length)."""
  with open(path) as f:
    got = json.load(f)["config"].get("step")
  if got != step:
    raise SystemExit(f"{path}: evaluated at step {got}, but this setting's "
                     f"row ends at step {step} (a report of an older "
                     "schedule? run the row again)")


def check_same_evaluation(paths: list[str]) -> None:
  """Every row was evaluated on the same problems: task, split, count."""
  seen = {}
  for path in paths:
    with open(path) as f:
      config = json.load(f)["config"]
    key = tuple(config.get(k) for k in ("task", "split", "num_problems"))
    seen.setdefault(key, []).append(path)
  if len(seen) > 1:
    groups = "; ".join(f"task {t!r}, split {s!r}, {n} problems: "
                       + ", ".join(ps) for (t, s, n), ps in seen.items())
    raise SystemExit(f"the rows were evaluated on different problems "
                     f"({groups})")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("setting", choices=SETTINGS)
  parser.add_argument("runs_dir", nargs="?", default="")
  parser.add_argument("--copy_to", default="")
  parser.add_argument("--committed", default="")
  parser.add_argument("--steps", action="store_true")
  parser.add_argument("--rows", action="store_true")
  args = parser.parse_args(argv)
  warm, rl_steps = steps(args.setting)
  if args.steps:
    print(warm, rl_steps)
    return 0
  if args.rows:
    print(" ".join(run for _, run, _ in rows_of(args.setting)
                   if run != "base"))
    return 0
  if not args.runs_dir:
    parser.error("RUNS_DIR is required without --steps")
  found, labels, missing = [], [], []
  for label, run, stage in rows_of(args.setting):
    path = report_path(args.runs_dir, run, stage, warm, warm + rl_steps)
    if not path or not os.path.exists(path):
      committed = os.path.join(args.committed, f"{args.setting}_{run}.json")
      if args.committed and os.path.exists(committed):
        print(f"committed: {label} ({committed})", file=sys.stderr)
        check_committed(committed, warm if run == "base" or stage is None
                        else warm + rl_steps)
        found.append(committed)
        labels.append(label)
      else:
        missing.append(f"{label} ({path or os.path.join(args.runs_dir, run)})")
      continue
    if args.copy_to:
      os.makedirs(args.copy_to, exist_ok=True)
      path = shutil.copyfile(path, os.path.join(
          args.copy_to, f"{args.setting}_{run}.json"))
    found.append(path)
    labels.append(label)
  if found:
    check_same_evaluation(found)
    print(reports.compare_runs(found, labels), end="")
  for row in missing:
    print(f"missing: {row}", file=sys.stderr)
  return 0 if found else 1


if __name__ == "__main__":
  sys.exit(main())
