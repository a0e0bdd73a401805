"""`procedural:<name>`: any reasoning-gym dataset, scored by its own scorer.

Problems are generated offline and deterministically from the seed; the train
and test splits use different seeds, and a train (or validation) problem whose
question is also in the test split is dropped (counted in the log). The answer
is read from the strict last `Answer: ...` line; the reward is 1.0 only when
reasoning-gym scores it 1.0.
"""

from score_jax.tasks import answer_line
from score_jax.tasks import base
from score_jax.tasks import prompts
from score_jax.tasks.base import Problem, SkipLog, Task

SPLIT_SIZES = {"train": 10_000, "test": 500}
_SPLIT_SEED_OFFSET = {"train": 0, "test": 1_000_003, "validation": 2_000_003}


class ProceduralTask(Task):
  """Options: dataset (the reasoning-gym name), dataset_options (dict passed
  to reasoning_gym.create_dataset), split_sizes, and the common Task options.
  """
  default_prompt = prompts.ANSWER_LINE_PROMPT
  correction_instruction = prompts.ANSWER_LINE_CORRECTION

  def __init__(self, *, dataset: str, dataset_options=None, split_sizes=None,
               **common):
    super().__init__(**common)
    try:
      import reasoning_gym  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("procedural tasks need reasoning-gym "
                        "(`pip install reasoning-gym`)") from e
    from reasoning_gym.factory import DATASETS  # pylint: disable=g-import-not-at-top
    if dataset not in DATASETS:
      raise ValueError(f"unknown reasoning-gym dataset {dataset!r}; e.g. "
                       f"{sorted(DATASETS)[:8]} ({len(DATASETS)} in all)")
    self._rg = reasoning_gym
    self.dataset = dataset
    self.name = f"procedural:{dataset}"
    self.dataset_options = dict(dataset_options or {})
    self.split_sizes = base.split_sizes(self.name, split_sizes or SPLIT_SIZES)

  def _load(self, split):
    if split not in self.split_sizes or split not in _SPLIT_SEED_OFFSET:
      raise ValueError(f"{self.name}: unknown split {split!r}; known: "
                       f"{sorted(set(self.split_sizes) & set(_SPLIT_SEED_OFFSET))}")
    held_out = set()
    if split != "test" and "test" in self.split_sizes:
      held_out = {entry["question"] for entry in self._generate("test")}
    skips = SkipLog(f"{self.name}/{split}")
    problems = []
    for i, entry in enumerate(self._generate(split)):
      if entry["question"] in held_out:
        skips.skip(i, "question also in the test split")
        continue
      problems.append(Problem(
          id=f"{self.name}/{split}/{i}",
          prompt=self.prompt_template.format(question=entry["question"]),
          reference=entry, meta={"answer": entry.get("answer")}))
    skips.report(len(problems))
    return problems

  def _generate(self, split):
    seed = (self.seed or 0) + _SPLIT_SEED_OFFSET[split]
    return self._rg.create_dataset(self.dataset, size=self.split_sizes[split],
                                   seed=seed, **self.dataset_options)

  def reward(self, problem, response) -> float:
    answer = answer_line.extract(response)
    if answer is None:
      return 0.0
    entry = problem.reference
    source = entry.get("metadata", {}).get("source_dataset", self.dataset)
    score = self._rg.get_score_answer_fn(source)(answer=answer, entry=entry)
    return 1.0 if score >= 1.0 else 0.0

  def solution(self, problem):
    answer = problem.reference.get("answer")
    return None if answer is None else f"Answer: {answer}"
