"""Reward throughput: sandboxed MBPP programs/s and math grades/s.

  python bench/rewards.py [--data_dir=../shared/data] [--programs=1024]
      [--workers=0] [--grades=500]

Sandbox: `--programs` MBPP reference programs with their tests (cycled over
the 974 tasks; one paper-sized two-turn batch is 2 x 512 = 1,024), run with
`rewards.code.run_many`. Math: MATH500 responses graded against their own
answer (matching pairs) and against another record's non-equivalent answer
(mismatched pairs), in this process and in the worker pool.
"""

import json
import os
import time

from absl import app
from absl import flags

from score_jax.rewards import code
from score_jax.rewards import math as math_reward
from score_jax.tasks import get_task

_DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                             "..", "shared", "data")
_DATA_DIR = flags.DEFINE_string("data_dir", _DEFAULT_DATA,
                                "Directory with mbpp.jsonl, math500_test.jsonl.")
_PROGRAMS = flags.DEFINE_integer("programs", 1024, "Sandbox runs to time.")
_WORKERS = flags.DEFINE_multi_integer(
    "workers", [0], "Sandbox pool sizes to time (0: the default, 4 x CPUs).")
_GRADES = flags.DEFINE_integer("grades", 500, "Math pairs of each kind.")


def bench_sandbox():
  task = get_task("mbpp", path=os.path.join(_DATA_DIR.value, "mbpp.jsonl"),
                  seed=0)
  problems = [p for split in task.splits for p in task.problems(split)]
  chosen = [problems[i % len(problems)] for i in range(_PROGRAMS.value)]
  programs = [p.meta["solution"] for p in chosen]
  tests = [p.reference["tests"] for p in chosen]
  for workers in _WORKERS.value:
    start = time.perf_counter()
    results = code.run_many(programs, tests, workers=workers or None)
    wall = time.perf_counter() - start
    passed = sum(r.passed for r in results)
    print(f"sandbox  workers={workers or 4 * os.cpu_count()}  "
          f"{len(programs)} MBPP programs in {wall:.1f} s = "
          f"{len(programs) / wall:.1f} programs/s  ({passed} passed; "
          f"isolation {'+'.join(results[0].isolation) or 'none'})")
    for problem, result in zip(chosen, results):
      if not result.passed:
        print(f"  not passed: {problem.id} {result.reason} {result.detail}")


def bench_math():
  with open(os.path.join(_DATA_DIR.value, "math500_test.jsonl")) as f:
    records = [json.loads(line) for line in f][:_GRADES.value]
  n = len(records)
  matching = [(r["solution"], r["answer"]) for r in records]
  mismatched = []
  for i, r in enumerate(records):
    own, k = math_reward.normalize_answer(r["answer"]), 1
    while k < n and math_reward.normalize_answer(
        records[(i + k) % n]["answer"]) == own:
      k += 1
    if k == n:
      raise app.UsageError(f"--grades={n}: mismatched pairs need records "
                           "with different answers; take more")
    mismatched.append((r["solution"], records[(i + k) % n]["answer"]))
  math_reward.grade_many(["\\boxed{1}"] * 64, ["1"] * 64)  # Start the pool.
  for label, pairs in (("matching", matching), ("mismatched", mismatched)):
    for mode, workers in (("in-process", 1), ("pool", None)):
      math_reward.answers_equivalent.cache_clear()
      math_reward._parse.cache_clear()  # pylint: disable=protected-access
      start = time.perf_counter()
      grades = math_reward.grade_many([p[0] for p in pairs],
                                      [p[1] for p in pairs], workers=workers)
      wall = time.perf_counter() - start
      print(f"math  {label:10s} {mode:10s} {n} grades in {wall:.2f} s = "
            f"{n / wall:.0f} grades/s  (graded correct: {sum(grades):.0f})")


def main(argv):
  del argv
  print(f"cpus={os.cpu_count()}  load average={os.getloadavg()}")
  bench_sandbox()
  bench_math()


if __name__ == "__main__":
  app.run(main)
