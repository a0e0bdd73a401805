"""Math word problems graded on the final answer: MATH (Hendrycks) and GSM8K.

MATH: JSONL with `problem`, `solution` and (MATH500) `answer`; without an
`answer` field the last `\\boxed{}` of the solution is the answer.
GSM8K: JSONL with `question` and `answer` (worked solution ending in
`#### <number>`), or the TFDS `gsm8k` builder read through `tfds.data_source`
(array_record files; no TensorFlow needed; `tfds_data_dir=` for offline use).
"""

import os
import re
from typing import Optional

from score_jax.rewards import math as math_reward
from score_jax.tasks import _files
from score_jax.tasks import prompts
from score_jax.tasks.base import Problem, SkipLog, Task, _check_batch


class _FileTask(Task):
  """A task whose splits are files: path= (every split), <split>_path=."""

  def __init__(self, *, path=None, train_path=None, test_path=None,
               paths: Optional[dict] = None, **common):
    super().__init__(**common)
    self.paths = dict(paths or {})
    for split, p in (("train", train_path), ("test", test_path)):
      if p is not None:
        self.paths[split] = p
    self.default_path = path

  def _path(self, split: str) -> str:
    path = self.paths.get(split, self.default_path)
    if path is None:
      raise ValueError(
          f"task {self.name!r} has no file for split {split!r}: pass "
          f"{split}_path=... or path=... (known splits: "
          f"{sorted(self.paths) or 'none'})")
    return path


def final_answer_line(answer: str) -> str:
  return f"Final Answer: The final answer is ${answer}$. I hope it is correct."


class _AnswerTask(_FileTask):
  """Graded by rewards.math on the final-answer line."""
  correction_instruction = prompts.MATH_CORRECTION
  default_prompt = prompts.MATH_PROMPT

  def reward(self, problem: Problem, response: str) -> float:
    return math_reward.grade(response, problem.reference)

  def rewards(self, problems, responses) -> list:
    _check_batch(self.name, problems, responses)
    return math_reward.grade_many(list(responses),
                                  [p.reference for p in problems])

  def solution(self, problem: Problem) -> Optional[str]:
    worked = problem.meta.get("solution")
    if not worked:
      return None
    return f"{worked.strip()}\n{final_answer_line(problem.reference)}"


class MathTask(_AnswerTask):
  """Hendrycks MATH / MATH500.

  Options: path / train_path / test_path / paths (JSONL files),
  exclude_path (drop problems that also appear there, e.g. MATH500 from the
  full MATH test set when training on it; a split other than 'train' read
  from that file itself is not filtered, so MATH500 can be both the
  exclusion and the held-out split), and the common Task options.
  """
  name = "math"

  def __init__(self, *, exclude_path=None, **options):
    super().__init__(**options)
    self.exclude_path = exclude_path

  def _load(self, split):
    path = self._path(split)
    skips = SkipLog(f"{self.name}/{split} ({path})")
    excluded = set()
    if self.exclude_path and (split == "train" or
                              not _same_file(path, self.exclude_path)):
      ex_skips = SkipLog(f"{self.name} exclude_path ({self.exclude_path})")
      excluded = {_key(r["problem"]) for _, r in
                  _files.read_records(self.exclude_path, ex_skips)
                  if isinstance(r.get("problem"), str)}
    problems = []
    for where, row in _files.read_records(path, skips):
      fields = _files.require_str(row, "problem", "solution")
      if fields is None:
        skips.skip(where, "missing problem/solution text")
        continue
      problem, solution = fields
      answer = row.get("answer")
      if not (isinstance(answer, str) and answer.strip()):
        answer = math_reward.last_boxed(solution)
      if not answer:
        skips.skip(where, "no answer (no `answer` field, no \\boxed{} in "
                   "the solution)")
        continue
      if _key(problem) in excluded:
        skips.skip(where, "listed in exclude_path")
        continue
      meta = {"solution": solution}
      for key in ("subject", "type", "level"):
        if key in row:
          meta[key] = row[key]
      pid = row.get("unique_id") or f"{self.name}/{split}/{where}"
      problems.append(Problem(
          id=str(pid), prompt=self.prompt_template.format(problem=problem),
          reference=answer.strip(), meta=meta))
    skips.report(len(problems))
    return problems


def _same_file(a: str, b: str) -> bool:
  try:
    return os.path.samefile(a, b)
  except OSError:  # one is missing (reading it names it) or not local
    return a == b


def _key(text: str) -> str:
  return " ".join(text.split())


_CALC = re.compile(r"<<[^>]*>>")


class Gsm8kTask(_AnswerTask):
  """GSM8K from JSONL files or from TFDS (`source='tfds'`).

  Options: path / train_path / test_path / paths (JSONL), source ('jsonl' or
  'tfds'), tfds_data_dir (the prepared `gsm8k` array_record data; offline),
  tfds_download (let TFDS download and prepare; needs the internet), and the
  common Task options.
  """
  name = "gsm8k"

  def __init__(self, *, source: str = "jsonl", tfds_data_dir=None,
               tfds_download: bool = False, **options):
    super().__init__(**options)
    if source not in ("jsonl", "tfds"):
      raise ValueError(f"gsm8k: source must be 'jsonl' or 'tfds', got "
                       f"{source!r}")
    self.source = source
    self.tfds_data_dir = tfds_data_dir
    self.tfds_download = tfds_download

  def _records(self, split, skips):
    if self.source == "jsonl":
      return _files.read_records(self._path(split), skips)
    try:
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("gsm8k source='tfds' needs tensorflow-datasets and "
                        "array-record (`pip install tensorflow-datasets "
                        "array-record`)") from e
    source = tfds.data_source("gsm8k", split=split,
                              data_dir=self.tfds_data_dir,
                              download=self.tfds_download)
    return [(i, _decoded(source[i])) for i in range(len(source))]

  def _load(self, split):
    where_from = (self._path(split) if self.source == "jsonl"
                  else f"tfds:{self.tfds_data_dir}")
    skips = SkipLog(f"{self.name}/{split} ({where_from})")
    problems = []
    for where, row in self._records(split, skips):
      fields = _files.require_str(row, "question", "answer")
      if fields is None:
        skips.skip(where, "missing question/answer text")
        continue
      question, worked = fields
      if "####" not in worked:
        skips.skip(where, "answer has no '#### <number>' line")
        continue
      body, answer = worked.rsplit("####", 1)
      answer = answer.strip().replace(",", "")
      if not answer:
        skips.skip(where, "empty final answer after '####'")
        continue
      problems.append(Problem(
          id=f"{self.name}/{split}/{where}",
          prompt=self.prompt_template.format(problem=question),
          reference=answer,
          meta={"solution": _CALC.sub("", body).strip()}))
    skips.report(len(problems))
    return problems


def _decoded(record) -> dict:
  return {k: v.decode("utf-8") if isinstance(v, bytes) else v
          for k, v in dict(record).items()}
