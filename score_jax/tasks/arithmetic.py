"""Built-in, dependency-free arithmetic problems (smoke tests, CPU demo).

Problem: an expression of 2-4 small integers joined by +, - and * (usual
precedence). Response format: work, then a last line `Answer: <integer>`
(strict, see `answer_line`). `solution()` writes a correct worked solution,
one reduction per line, for a supervised warm start.
"""

import random
import re

from score_jax.tasks import answer_line
from score_jax.tasks import base
from score_jax.tasks import prompts
from score_jax.tasks.base import Problem, Task

SPLIT_SIZES = {"train": 10_000, "test": 500}


class ArithmeticTask(Task):
  """Options: min_terms, max_terms (2-4), max_operand (operands 0..max),
  operators (subset of '+-*'), split_sizes ({split: count}), first_style
  (the solution a warm start trains as turn 1: 'worked', one reduction per
  line, or 'answer', the answer line alone), second_style (the one it trains
  as turn 2: 'same' as turn 1, or 'steps': each reduction as its own
  equation, see `step_solution`), and the common Task options. Test problems
  never appear in train."""
  name = "arithmetic"
  default_prompt = prompts.ARITHMETIC_PROMPT
  correction_instruction = prompts.ANSWER_LINE_CORRECTION

  def __init__(self, *, min_terms: int = 2, max_terms: int = 4,
               max_operand: int = 9, operators: str = "+-*",
               split_sizes=None, first_style: str = "worked",
               second_style: str = "same", **common):
    super().__init__(**common)
    if first_style not in ("worked", "answer"):
      raise ValueError(f"arithmetic: first_style must be 'worked' or "
                       f"'answer', got {first_style!r}")
    self.first_style = first_style
    if second_style not in ("same", "steps"):
      raise ValueError(f"arithmetic: second_style must be 'same' or 'steps', "
                       f"got {second_style!r}")
    self.second_style = second_style
    if not 2 <= min_terms <= max_terms:
      raise ValueError(f"arithmetic: need 2 <= min_terms <= max_terms, got "
                       f"{min_terms}, {max_terms}")
    if not operators or set(operators) - set("+-*"):
      raise ValueError(f"arithmetic: operators must be a non-empty subset of "
                       f"'+-*', got {operators!r}")
    if max_operand < 1:
      raise ValueError(f"arithmetic: max_operand must be >= 1, got "
                       f"{max_operand}")
    self.min_terms, self.max_terms = min_terms, max_terms
    self.max_operand, self.operators = max_operand, operators
    self.split_sizes = base.split_sizes("arithmetic",
                                        split_sizes or SPLIT_SIZES)

  def _expressions(self, split: str, count: int, exclude=frozenset()) -> list:
    # A str seed hashes with SHA-512: the same problems on every machine.
    rng = random.Random(f"arithmetic/{split}/{self.seed}")
    seen, out = set(exclude), []
    space = (self.max_operand + 1) ** self.max_terms * len(self.operators) ** (
        self.max_terms - 1)
    if count > space // 2:
      raise ValueError(f"arithmetic: {count} distinct problems asked of a "
                       f"space of about {space}; raise max_operand/max_terms")
    while len(out) < count:
      n = rng.randint(self.min_terms, self.max_terms)
      tokens = [str(rng.randint(0, self.max_operand))]
      for _ in range(n - 1):
        tokens += [rng.choice(self.operators),
                   str(rng.randint(0, self.max_operand))]
      expression = " ".join(tokens)
      if expression not in seen:
        seen.add(expression)
        out.append(expression)
    return out

  def _load(self, split):
    if split not in self.split_sizes:
      raise ValueError(f"arithmetic: unknown split {split!r}; known: "
                       f"{sorted(self.split_sizes)}")
    exclude = frozenset()
    if split != "test" and "test" in self.split_sizes:
      exclude = frozenset(self._expressions("test", self.split_sizes["test"]))
    return [Problem(id=f"arithmetic/{split}/{i}",
                    prompt=self.prompt_template.format(expression=e),
                    reference=str(evaluate(e)), meta={"expression": e})
            for i, e in enumerate(self._expressions(
                split, self.split_sizes[split], exclude))]

  def reward(self, problem, response) -> float:
    answer = answer_line.extract(response)
    if answer is None or not re.fullmatch(r"-?\d+", answer):
      return 0.0
    return 1.0 if int(answer) == int(problem.reference) else 0.0

  def solution(self, problem) -> str:
    if self.first_style == "answer":
      return f"Answer: {problem.reference}"
    return worked_solution(problem.meta["expression"])

  def second_solution(self, problem) -> str:
    if self.second_style == "steps":
      return step_solution(problem.meta["expression"])
    return self.solution(problem)


def _next_operator(tokens: list) -> int:
  """Index of the operator reduced next: the first *, else the leftmost + or
  -."""
  ops = tokens[1::2]
  return 2 * ops.index("*") + 1 if "*" in ops else 1


def _reduce_once(tokens: list) -> list:
  """One step of `_next_operator`'s reduction."""
  i = _next_operator(tokens)
  a, op, b = int(tokens[i - 1]), tokens[i], int(tokens[i + 1])
  value = a * b if op == "*" else a + b if op == "+" else a - b
  return tokens[:i - 1] + [str(value)] + tokens[i + 2:]


def evaluate(expression: str) -> int:
  tokens = expression.split()
  while len(tokens) > 1:
    tokens = _reduce_once(tokens)
  return int(tokens[0])


def worked_solution(expression: str) -> str:
  """`3 + 4 * 5` -> '3 + 4 * 5\\n= 3 + 20\\n= 23\\nAnswer: 23'."""
  tokens = expression.split()
  lines = [expression]
  while len(tokens) > 1:
    tokens = _reduce_once(tokens)
    lines.append("= " + " ".join(tokens))
  lines.append(f"Answer: {tokens[0]}")
  return "\n".join(lines)


def step_solution(expression: str) -> str:
  """`3 + 4 * 5` -> '4 * 5 = 20\n3 + 20 = 23\nAnswer: 23': the same
  reductions as `worked_solution`, each written as one equation."""
  tokens = expression.split()
  lines = []
  while len(tokens) > 1:
    i = _next_operator(tokens)
    reduced = _reduce_once(tokens)
    lines.append(f"{' '.join(tokens[i - 1:i + 2])} = {reduced[i - 1]}")
    tokens = reduced
  lines.append(f"Answer: {tokens[0]}")
  return "\n".join(lines)
