"""`score-jax eval --config=configs/<x>.py --checkpoint=<where> [--task=...]`.

Greedy N-turn self-correction evaluation of a trained policy (or any model
`load_model` reads) on the config's eval split; writes the report (JSON,
Markdown, edit-distance PNG, transcripts) under `<workdir>/eval/` and prints
Acc@t1, Acc@t2, Δ, Δi→c, Δc→i with bootstrap 95% intervals.

--checkpoint is one of
  <workdir>                  a training run: its latest checkpoint
  <workdir>/checkpoints_best the best checkpoint by training reward
  <workdir>/checkpoints/<N>  one step of a run
  <dir> with config.json     our Orbax params checkpoint (= orbax:<dir>)
  a model spec               preset:, orbax:, gguf:, hf:, gemma-flax:, or a
                             packaged name such as smollm2-135m-instruct

Protocols: 'score' asks the task's correction instruction before every later
turn; 'self_refine' (the paper's Self-Refine baseline) alternates a
self-feedback turn and a refinement turn and grades the first and the final
answer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from typing import Any, Optional, Sequence

from absl import flags
import ml_collections
from ml_collections import config_flags

from score_jax import commands
from score_jax import configs as configs_lib

# score: the paper's correction instruction after each attempt; self_refine:
# feedback, then a refined answer (evaluation only).
PROTOCOLS = ("score", "self_refine")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/*.py): model, tokenizer, task and "
    "eval settings.", lock_config=True)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Training workdir, its checkpoints_best, a step "
    "directory, an Orbax params directory, or a model spec.")
_TASK = flags.DEFINE_string(
    "task", None, "Evaluate on this task instead of config.task.name (the "
    "config's task options apply only to its own task).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where eval/ goes; default: the checkpoint's training "
    "workdir (required for a model spec).")
_NUM_TURNS = flags.DEFINE_integer(
    "num_turns", None, "Turns per episode (default config.eval.num_turns).")
_PROTOCOL = flags.DEFINE_enum(
    "protocol", None, list(PROTOCOLS), "Prompting protocol "
    "(default config.eval.protocol if the config has one, else score).")
_NAME = flags.DEFINE_string(
    "name", None, "Report name (default from protocol, task, checkpoint).")
_COMPARE = flags.DEFINE_list(
    "compare", [], "Report JSONs of other runs to put in a table with this one.")
_LABELS = flags.DEFINE_list(
    "labels", [], "Row labels: one per --compare report, optionally one more "
    "for this run (default: each report's name).")

# Self-Refine (Madaan et al. 2023) as the SCoRe paper runs it: the model
# critiques its own answer, then rewrites it in the task's answer format
# ({format}: the format demand that closes the task's correction instruction).
SELF_REFINE_FEEDBACK = (
    "Review your previous answer and find problems with it. Do not give a new "
    "answer yet: only list the problems you find.")
SELF_REFINE_REFINE = (
    "Based on the problems you found, improve your answer. {format}")
# Every correction instruction of score_jax.tasks.prompts ends with this
# sentence and then the task's answer-format demand.
_FORMAT_AFTER = "rewrite the solution."


class EvalInputError(ValueError):
  """Bad input to `score-jax eval`: the message says what and where."""


# -- protocols --------------------------------------------------------------


def self_refine_instructions(task, num_turns: int) -> list[str]:
  """[feedback, refine] * k for an odd num_turns >= 3 (the user message
  before each turn after the first)."""
  if num_turns < 3 or num_turns % 2 == 0:
    raise EvalInputError(
        f"--protocol=self_refine needs an odd number of turns >= 3 (answer, "
        f"then feedback and refinement pairs), got {num_turns}")
  head, sep, fmt = task.correction_instruction.partition(_FORMAT_AFTER)
  if not sep:
    raise EvalInputError(
        f"task {task.name!r}: cannot find the answer-format demand in its "
        f"correction instruction (expected it after {_FORMAT_AFTER!r}): "
        f"{task.correction_instruction[:200]!r}")
  refine = SELF_REFINE_REFINE.format(format=fmt.strip()).strip()
  return [SELF_REFINE_FEEDBACK, refine] * ((num_turns - 1) // 2)


def graded(eps, protocol: str):
  """The episodes the report grades: every turn ('score'), or the first and
  the final answer ('self_refine': feedback turns are not answers)."""
  if protocol == "score":
    return eps
  last = eps.rewards.shape[0] - 1
  return dataclasses.replace(
      eps, rewards=eps.rewards[[0, last]], texts=(eps.texts[0], eps.texts[last]),
      lengths=eps.lengths[[0, last]], rollout=None)


# -- checkpoints ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Source:
  """Where params come from. kind: 'run' (a training checkpoint step
  directory) or 'spec' (a load_model spec); workdir: the training run's
  workdir, if any; tag: a short name for reports."""
  kind: str
  where: str
  workdir: Optional[str]
  tag: str
  step: Optional[int] = None


def resolve_checkpoint(checkpoint: str) -> Source:
  """Parses --checkpoint (see module docstring); clear errors otherwise."""
  path = pathlib.Path(checkpoint)
  if path.is_dir():
    from score_jax import run_state  # pylint: disable=g-import-not-at-top
    try:
      found = run_state.find_checkpoint(checkpoint)
    except ValueError as e:
      raise EvalInputError(str(e)) from None
    if found is not None:
      directory, step = found
      best = os.path.basename(directory) == "checkpoints_best"
      return Source("run", os.path.join(directory, str(step)),
                    os.path.dirname(directory),
                    f"{'best-' if best else ''}step{step}", step)
    path = path.resolve()
    if (path / "config.json").is_file() and (path / "params").is_dir():
      return Source("spec", f"orbax:{path}", None, path.name)
    raise EvalInputError(
        f"{checkpoint}: not a training workdir (no checkpoints/), a "
        "checkpoint step directory (no state/) or an Orbax params "
        "directory (no config.json + params/)")
  from score_jax import checkpoints  # pylint: disable=g-import-not-at-top
  try:
    kind, where = checkpoints.parse_spec(checkpoint)
  except ValueError as e:
    raise EvalInputError(
        f"checkpoint not found: {checkpoint!r} is neither a directory nor a "
        f"model spec ({e})") from None
  if kind != "preset" and not os.path.exists(where):
    raise EvalInputError(f"checkpoint not found: {where} (from {checkpoint})")
  # Report names: a packaged model's short name, else the last path part.
  short = checkpoint.partition(":")[2] if ":" in checkpoint else checkpoint
  short = os.path.basename(os.path.normpath(short)) or short
  return Source("spec", checkpoint, None,
                re.sub(r"[^A-Za-z0-9._-]+", "_", short).strip("_.-")[-60:])


def _structure(model_config: dict[str, Any]) -> dict[str, Any]:
  """ModelConfig fields that define the model (not how it computes)."""
  return {k: v for k, v in model_config.items()
          if k not in ("dtype", "param_dtype", "remat_policy", "output_vocab")}


def restore_run_params(step_dir: str, params_like: Any,
                       model_config: Any) -> Any:
  """The `state` item's params of a training checkpoint, restored into the
  shapes, dtypes and shardings of `params_like`. A checkpoint of another
  model is refused, naming the first param whose shape differs."""
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  state_dir = os.path.join(step_dir, "state")
  with ocp.PyTreeCheckpointer() as ckptr:
    # The handler reads the tree metadata (the checkpointer would also look
    # for a step-level metadata file that an item directory does not have).
    stored = ocp.PyTreeCheckpointHandler().metadata(
        pathlib.Path(state_dir)).tree["params"]
    have = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in
            jax.tree_util.tree_flatten_with_path(stored)[0]}
    for key, want in jax.tree_util.tree_flatten_with_path(params_like)[0]:
      name = jax.tree_util.keystr(key)
      if name not in have:
        raise EvalInputError(f"{step_dir}: checkpoint of another model: it "
                             f"has no param {name} (the config's model needs "
                             f"shape {tuple(want.shape)})")
      if have[name] != tuple(want.shape):
        raise EvalInputError(
            f"{step_dir}: checkpoint of another model: param {name} has "
            f"shape {have[name]}, the config's model needs "
            f"{tuple(want.shape)}")
    meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(
        os.path.join(step_dir, "meta"))
    stored_config = meta.get("model_config") or {}
    ours = json.loads(json.dumps(model_config.to_dict()))  # tuples -> lists
    diff = {k: (stored_config.get(k), v) for k, v in _structure(ours).items()
            if stored_config and stored_config.get(k) != v}
    if diff:
      raise EvalInputError(
          f"{step_dir}: checkpoint of another model (trained from "
          f"{meta.get('model_spec')!r}); differing fields (checkpoint, "
          f"config): {diff}")
    target = {"params": jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        params_like)}
    out = ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(
        item=target, partial_restore=True,
        restore_args=ocp.checkpoint_utils.construct_restore_args(target)))
  return out["params"]


# -- the command --------------------------------------------------------------


def eval_config(config: ml_collections.ConfigDict, source: Source,
                task: Optional[str]) -> ml_collections.ConfigDict:
  """The config with --task and a spec checkpoint applied, required fields
  checked."""
  config = ml_collections.ConfigDict(config.to_dict())  # unlocked copy
  if source.kind == "spec":
    config.model.spec = source.where
  if task and task != config.task.name:
    config.task.name = task
    config.task.options = ml_collections.ConfigDict()
  missing = configs_lib.missing_required(config)
  if missing:
    raise EvalInputError(
        "required config fields are unset: " + ", ".join(missing) + "; give "
        "them as " + " ".join(f"--config.{m}=..." for m in missing))
  return config


def load_model(config: ml_collections.ConfigDict, source: Source):
  """(model, params, tokenizer, sharding ctx) of `source` under the config's
  mesh: a training checkpoint's params, or the model spec's."""
  from score_jax import models  # pylint: disable=g-import-not-at-top
  from score_jax import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  from score_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  ctx = sharding_lib.ShardingCtx(
      sharding_lib.make_mesh(tuple(config.mesh.shape)),
      tuple(tuple(r) for r in config.mesh.rules))
  model_config, params, tokenizer = train_lib.load_policy(config, ctx)
  if source.kind == "run":
    params = restore_run_params(source.where, params, model_config)
  return models.Transformer(model_config, sharding=ctx), params, tokenizer, ctx


def run_eval(config: ml_collections.ConfigDict, checkpoint: str, *,
             workdir: Optional[str] = None, task: Optional[str] = None,
             num_turns: Optional[int] = None, protocol: Optional[str] = None,
             name: Optional[str] = None, progress: bool = True
             ) -> dict[str, Any]:
  """Evaluates `checkpoint` per `config`; returns {'summary', 'paths',
  'name', 'workdir'} (paths from `reports.write_report`)."""
  import tqdm  # pylint: disable=g-import-not-at-top
  from score_jax import episodes as episodes_lib  # pylint: disable=g-import-not-at-top
  from score_jax import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  from score_jax import train as train_lib  # pylint: disable=g-import-not-at-top

  source = resolve_checkpoint(checkpoint)
  config = eval_config(config, source, task)
  protocol = protocol or config.eval.get("protocol", "score")
  if protocol not in PROTOCOLS:
    raise EvalInputError(f"protocol {protocol!r} (config.eval.protocol or "
                         f"--protocol): expected one of {', '.join(PROTOCOLS)}")
  if num_turns is None:
    num_turns = config.eval.num_turns
    if protocol == "self_refine" and num_turns < 3:
      num_turns = 3  # answer, feedback, refined answer
  workdir = workdir or source.workdir
  if workdir is None:
    raise EvalInputError(f"--workdir is required to evaluate a model spec "
                         f"({checkpoint}): it is where eval/ is written")
  from score_jax.evaluation import files  # pylint: disable=g-import-not-at-top
  try:
    files.local_path(workdir, "--workdir")
  except ValueError as e:
    raise EvalInputError(str(e)) from None
  try:
    task_obj = tasks_lib.get_task(config.task.name,
                                  **config.task.options.to_dict())
  except (TypeError, ValueError) as e:
    raise EvalInputError(f"task {config.task.name!r}: {e}") from None
  instructions = None
  if protocol == "self_refine":
    instructions = self_refine_instructions(task_obj, num_turns)
  elif num_turns < 2:
    raise EvalInputError(f"--num_turns={num_turns}: self-correction needs "
                         "at least 2 turns")
  try:
    configs_lib.check_eval(config.eval)
  except ValueError as e:
    raise EvalInputError(str(e)) from None
  try:
    problems = task_obj.problems(config.task.eval_split)
  except ValueError as e:
    raise EvalInputError(f"task {task_obj.name!r}: {e}") from None
  problems = problems[:config.eval.num_problems]
  if not problems:
    raise EvalInputError(f"task {task_obj.name!r}: split "
                         f"{config.task.eval_split!r} has no problems")

  given = name
  name = name or f"{protocol}_{task_obj.name}_{source.tag}".replace(":", "-")
  name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip("._-")
  if not name:
    raise EvalInputError(f"--name={given!r}: a report name needs a letter "
                         "or digit")
  # What the evaluation is: a report of this name with other values is
  # another evaluation, not replaced (check_report_name).
  evaluation = {"checkpoint": _normalized(checkpoint), "task": task_obj.name,
                "split": config.task.eval_split, "protocol": protocol,
                "num_turns": num_turns,
                "task_options": config.task.options.to_dict(),
                "max_new_tokens": config.eval.max_new_tokens}
  check_report_name(workdir, name,
                    {**evaluation, "num_problems": len(problems)})

  try:
    model, params, tokenizer, ctx = load_model(config, source)
  except commands.INPUT_ERRORS as e:
    raise EvalInputError(f"{checkpoint}: {commands.message(e)}") from None

  bar = tqdm.tqdm(total=len(problems), desc=f"eval {protocol}",
                  unit="problem", disable=not progress, dynamic_ncols=True)
  with bar:
    eps = episodes_lib.evaluate(
        model, params, tokenizer, task_obj, problems, num_turns=num_turns,
        max_new_tokens=config.eval.max_new_tokens,
        batch_size=min(config.eval.batch_size, len(problems)), ctx=ctx,
        instructions=instructions, progress=bar)

  # Keys in the report's order: checkpoint, step, model_spec, task, ...
  info = {"checkpoint": checkpoint, "step": source.step,
          "model_spec": config.model.spec, **evaluation}
  if protocol == "self_refine":
    info["graded_turns"] = [1, num_turns]  # t1 = first, t2 = final answer
    info["instructions"] = instructions
  summary = train_lib.write_eval_report(workdir, name,
                                        graded(eps, protocol), info)
  paths = {k: pathlib.Path(workdir) / "eval" / f"{name}{suffix}" for k, suffix
           in (("json", ".json"), ("markdown", ".md"),
               ("edit_distance", "_edit_distance.png"))}
  if protocol == "self_refine":
    # The report holds the graded answers; keep the feedback turns too.
    paths["all_turns"] = files.atomic_write_text(
        pathlib.Path(workdir) / "eval" / f"{name}.all_turns.jsonl",
        "".join(json.dumps(r) + "\n" for r in
                episodes_lib.transcripts(eps, len(eps.rows))))
  return {"summary": summary, "paths": paths, "name": name,
          "workdir": workdir}


def _normalized(checkpoint: str) -> str:
  """A local path without a trailing or doubled slash (`run/` is `run`); a
  model spec as given."""
  return os.path.normpath(checkpoint) if os.path.exists(checkpoint) else \
      checkpoint


def comparison(report_json: str, name: str, compare: Sequence[str],
               labels: Sequence[str]) -> str:
  """The Table-2-style Markdown table of the --compare runs and this one."""
  from score_jax.evaluation import reports  # pylint: disable=g-import-not-at-top
  runs = list(compare) + [report_json]
  if not labels:  # each run by its report's name
    labels = [pathlib.Path(p).stem for p in compare]
  check_labels(labels, compare)
  if len(labels) == len(compare):
    labels = list(labels) + [name]
  return reports.compare_runs(runs, labels)


def check_labels(labels: Sequence[str], compare: Sequence[str]) -> None:
  """One --labels entry per --compare report, optionally one more for this
  run: checked before the evaluation runs, not after it."""
  if labels and len(labels) not in (len(compare), len(compare) + 1):
    raise EvalInputError(f"--labels: {len(labels)} labels for "
                         f"{len(compare)} --compare reports (give one per "
                         "report, optionally one more for this run)")


def check_report_name(workdir: str, name: str, settings: dict[str, Any]
                      ) -> None:
  """A report of another evaluation under the same name is not replaced:
  names default to protocol, task and the checkpoint's last path part, which
  two models or two splits can share. The same evaluation again may."""
  path = pathlib.Path(workdir) / "eval" / f"{name}.json"
  if not path.is_file():
    return
  try:
    held = json.loads(path.read_text(encoding="utf-8"))["config"]
  except (OSError, ValueError, KeyError, TypeError):
    held = {}
  differs = [f"{key} {held.get(key)!r} there, {value!r} now"
             for key, value in settings.items() if held.get(key) != value]
  if differs:
    raise EvalInputError(
        f"{path} holds another evaluation ({'; '.join(differs)}): pass "
        "--name=<another name> to keep both, or remove it")


def check_compare(compare: Sequence[str]) -> None:
  """Each --compare path is a report holding the table's metrics: checked
  before the evaluation runs, not after it."""
  from score_jax.evaluation import reports  # pylint: disable=g-import-not-at-top
  for path in compare:
    if not os.path.isfile(path):
      raise EvalInputError(f"--compare: report not found: {path}")
    try:
      report = reports.load_report(path)
    except ValueError as e:
      raise EvalInputError(f"--compare: {e}") from None
    missing = [key for _, key in reports.paper_columns()
               if key not in report["metrics"]]
    if missing:
      raise EvalInputError(f"--compare: {path} has no {', '.join(missing)}: "
                           "not a two-turn evaluation report")


def main(argv):
  # Checked here, not with flags.mark_flags_as_required: absl flags are
  # process-global (see commands/train.py).
  if len(argv) > 1:
    commands.fail("eval", f"unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None or not _CHECKPOINT.value:
    commands.fail("eval", "needs --config=configs/<x>.py and "
                  "--checkpoint=<workdir, checkpoint dir or model spec>")
  from score_jax.evaluation import files, reports  # pylint: disable=g-import-not-at-top
  try:
    if _LABELS.value and not _COMPARE.value:
      raise EvalInputError("--labels needs --compare")
    check_compare(_COMPARE.value or [])
    check_labels(_LABELS.value, _COMPARE.value or [])
    out = run_eval(_CONFIG.value, _CHECKPOINT.value, workdir=_WORKDIR.value,
                   task=_TASK.value, num_turns=_NUM_TURNS.value,
                   protocol=_PROTOCOL.value, name=_NAME.value)
    json_path = str(out["paths"]["json"])
    print(reports.compare_runs([json_path], [out["name"]]), end="")
    print("(percent; 95% bootstrap intervals in brackets"
          + ("; t2 is the final answer of the Self-Refine protocol)"
             if out["summary"]["config"].get("protocol") == "self_refine"
             else ")"))
    if _COMPARE.value:
      table = comparison(json_path, out["name"], _COMPARE.value,
                         _LABELS.value)
      path = files.atomic_write_text(
          pathlib.Path(out["workdir"]) / "eval" / f"{out['name']}.compare.md",
          table)
      print("\n" + table, end="")
      out["paths"]["compare"] = path
  except EvalInputError as e:
    commands.fail("eval", str(e))
  for kind, path in out["paths"].items():
    print(f"{kind}: {path}")
