"""Collects the demo-model rows of docs/RESULTS.md and prints their table.

  python bench/results_table.py RUNS_DIR [--copy_to docs/results]

RUNS_DIR is what `bash bench/results_demo.sh RUNS_DIR` wrote. Each row is
the final greedy evaluation of one run (report JSON with bootstrap 95%
intervals); with --copy_to the JSONs are copied there as demo_<row>.json
(small files: metrics, intervals, config). Rows not finished yet are listed
as missing, never filled in.
"""

import argparse
import os
import runpy
import shutil
import sys

from score_jax.evaluation import reports

# (label, run directory under RUNS_DIR, stage its final report is named
# after: eval/after_<stage>_step<N>.json)
ROWS = [
    ("Base (warm start, two-turn prompt)", "base", "sft"),
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


def final_steps() -> tuple[int, int]:
  """The base row's last step and every trained row's, from configs/demo.py
  (WARM_START = "sft:N", then RL_STEPS of each method)."""
  demo = runpy.run_path(os.path.join(os.path.dirname(__file__), os.pardir,
                                     "configs", "demo.py"))
  warm = int(demo["WARM_START"].split(":")[1])
  return warm, warm + demo["RL_STEPS"]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs_dir")
  parser.add_argument("--copy_to", default="")
  args = parser.parse_args(argv)
  warm, last = final_steps()
  found, labels, missing = [], [], []
  for label, run, stage in ROWS:
    step = warm if run == "base" else last
    path = os.path.join(args.runs_dir, run, "eval",
                        f"after_{stage}_step{step}.json")
    if not os.path.exists(path):
      missing.append(f"{label} ({path})")
      continue
    if args.copy_to:
      os.makedirs(args.copy_to, exist_ok=True)
      path = shutil.copyfile(path, os.path.join(args.copy_to,
                                                f"demo_{run}.json"))
    found.append(path)
    labels.append(label)
  if found:
    print(reports.compare_runs(found, labels), end="")
  for row in missing:
    print(f"missing: {row}", file=sys.stderr)
  return 0 if found else 1


if __name__ == "__main__":
  sys.exit(main())
