"""Problem and Task: what every benchmark provides to the trainer."""

import dataclasses
import random
import string
from typing import Any, Optional, Sequence

from absl import logging


@dataclasses.dataclass(frozen=True)
class Problem:
  """One question.

  id: stable id, unique within a task (e.g. 'mbpp/11', 'math/test/algebra/1').
  prompt: the turn-1 user message text (the chat template comes later).
  reference: the answer string (math) or test code / entry point (code).
  meta: anything else a task keeps (dataset solution, subject, level, ...).
  """
  id: str
  prompt: str
  reference: Any
  meta: dict = dataclasses.field(default_factory=dict)


def _is_count(value: Any, minimum: int) -> bool:
  return (isinstance(value, int) and not isinstance(value, bool)
          and value >= minimum)


def split_sizes(task: str, sizes: dict) -> dict:
  """{split: count}, each count an int >= 0 (0: an empty split)."""
  bad = {k: v for k, v in sizes.items() if not _is_count(v, 0)}
  if bad:
    raise ValueError(f"{task}: split_sizes must be ints >= 0, got {bad}")
  return dict(sizes)


def _fields(template: str) -> set:
  return {f for _, f, _, _ in string.Formatter().parse(template)
          if f is not None}


def _check_template(task: str, template: str, default: str) -> None:
  """A prompt_template names only the fields the task fills (those of its
  default template), at least one of them: else every problem would get the
  same prompt, or format() would fail on the first problem."""
  known = _fields(default)
  try:
    fields = _fields(template)
  except ValueError as e:
    raise ValueError(f"{task}: prompt_template: {e} (a literal brace is "
                     "written {{ or }})") from None
  unknown = sorted(fields - known)
  if unknown or not fields & known:
    what = (f"has fields {unknown} this task does not fill" if unknown else
            "has no field for the problem")
    raise ValueError(
        f"{task}: prompt_template {what}; its fields: "
        f"{', '.join('{' + f + '}' for f in sorted(known))} (a literal "
        "brace is written {{ or }})")


class Task:
  """One benchmark: problems per split, the turn-2 instruction, the reward.

  Subclasses set `name`, `correction_instruction` and implement `_load(split)`
  and `reward`. Options common to all tasks (plain kwargs, so configs can pass
  them): seed (shuffle; None keeps file order), num_problems (first N after
  the shuffle), prompt_template, correction_instruction.
  """
  name: str = ""
  correction_instruction: str = ""
  default_prompt: str = ""

  def __init__(self, *, seed: Optional[int] = 0,
               num_problems: Optional[int] = None,
               prompt_template: Optional[str] = None,
               correction_instruction: Optional[str] = None):
    if num_problems is not None and not _is_count(num_problems, 1):
      raise ValueError(f"{self.name}: num_problems must be an int >= 1 or "
                       f"None, got {num_problems!r}")
    self.seed = seed
    self.num_problems = num_problems
    if prompt_template:
      _check_template(self.name, prompt_template, self.default_prompt)
    self.prompt_template = prompt_template or self.default_prompt
    if correction_instruction is not None:
      self.correction_instruction = correction_instruction

  def problems(self, split: str) -> list:
    """Problems of `split`, shuffled by `seed`, cut to `num_problems`."""
    problems = list(self._load(split))
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
      raise ValueError(f"{self.name}/{split}: duplicate problem ids")
    if self.seed is not None:
      random.Random(f"{self.name}/{split}/{self.seed}").shuffle(problems)
    return problems[:self.num_problems] if self.num_problems else problems

  def _load(self, split: str) -> Sequence[Problem]:
    raise NotImplementedError

  def reward(self, problem: Problem, response: str) -> float:
    """1.0 when `response` solves `problem`, else 0.0."""
    raise NotImplementedError

  def rewards(self, problems: Sequence[Problem],
              responses: Sequence[str]) -> list:
    """reward() over a batch; tasks override this to run in parallel."""
    _check_batch(self.name, problems, responses)
    return [self.reward(p, r) for p, r in zip(problems, responses)]

  def solution(self, problem: Problem) -> Optional[str]:
    """A correct worked response in the prompt's format, when one is known."""
    return None

  def second_solution(self, problem: Problem) -> Optional[str]:
    """The correct response a warm start trains as turn 2, after the
    correction instruction (`sft.rewrite_turn2`); by default `solution`."""
    return self.solution(problem)

  def __repr__(self):
    return f"{type(self).__name__}(name={self.name!r}, seed={self.seed})"


def _check_batch(name, problems, responses):
  if len(problems) != len(responses):
    raise ValueError(f"{name}: {len(problems)} problems but {len(responses)} "
                     "responses")


class SkipLog:
  """Counts rows a loader drops, by reason, and logs the summary."""

  def __init__(self, source: str):
    self.source = source
    self.counts = {}
    self.examples = {}

  def skip(self, where, reason: str):
    self.counts[reason] = self.counts.get(reason, 0) + 1
    self.examples.setdefault(reason, where)

  @property
  def total(self) -> int:
    return sum(self.counts.values())

  def details(self) -> str:
    """`N reason (first: where)` of each reason, or '' when none."""
    return "; ".join(f"{n} {reason} (first: {self.examples[reason]})"
                     for reason, n in sorted(self.counts.items()))

  def report(self, kept: int):
    """Logs the count kept and the rows skipped. No problem kept while rows
    were skipped is an error naming why (a misnamed field drops them all)."""
    if not self.counts:
      logging.info("%s: %d problems", self.source, kept)
      return
    if not kept:
      raise ValueError(f"{self.source}: no problem kept; skipped "
                       f"{self.total} rows: {self.details()}")
    logging.warning("%s: kept %d problems, skipped %d rows: %s", self.source,
                    kept, self.total, self.details())
