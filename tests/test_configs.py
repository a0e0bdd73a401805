"""Every config in configs/ loads the way `score-jax train` loads it (absl
config_flags, by path, locked), validates, and says what it claims: the
paper's numbers, and baselines that differ from SCoRe only in their method."""

import pathlib
import runpy

from absl import flags
from ml_collections import config_flags
import pytest

from score_jax import configs as configs_lib
from score_jax.commands import eval as eval_cmd

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
# Configs that take the task as their config string argument.
SMALL = ("base", "score", "single_turn_rl", "naive_multiturn_rl",
         "score_no_stage1", "score_no_shaping", "star", "pair_sft",
         "self_refine")
REQUIRED = {  # overrides a paper config cannot run without
    "score_math": ["--config.model.spec=gemma-flax:/ckpt/gemma-2b",
                   "--config.task.options.train_path=/d/train.jsonl",
                   "--config.task.options.test_path=/d/test.jsonl"],
    "score_mbpp": ["--config.model.spec=hf:/ckpt/gemma-2b",
                   "--config.task.options.path=/d/mbpp.jsonl"],
}


def load(spec: str, *overrides: str):
  """The config as `score-jax <cmd> --config=configs/<spec> <overrides>`."""
  argv = ["prog", f"--config={CONFIGS / spec}", *overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values,
                                  lock_config=True, sys_argv=argv)
  values(argv)
  return values.config


def all_config_specs():
  names = sorted(p.stem for p in CONFIGS.glob("*.py") if p.stem != "common")
  return [f"{n}.py" for n in names]


@pytest.mark.parametrize("spec", all_config_specs())
def test_every_config_loads_and_validates(spec):
  name = spec[:-3]
  config = load(spec, *REQUIRED.get(name, []))
  stages = configs_lib.validate(config)
  assert stages and config.is_locked
  assert configs_lib.missing_required(config) == []


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("task", ["arithmetic", "procedural:chain_sum"])
def test_small_configs_take_the_task_argument(name, task):
  config = load(f"{name}.py:{task}")
  configs_lib.validate(config)
  assert config.task.name == task


def test_unknown_task_argument_is_named():
  with pytest.raises(Exception, match="unknown task 'arithmatic'"):
    load("score.py:arithmatic")


def test_file_tasks_need_their_paths():
  config = load("score.py:mbpp")
  assert configs_lib.missing_required(config) == ["task.options.path"]
  config = load("score.py:math", "--config.task.options.train_path=/a",
                "--config.task.options.test_path=/b")
  assert configs_lib.missing_required(config) == []


def test_unknown_override_key_is_an_error():
  with pytest.raises(Exception, match="trian"):
    load("score.py:arithmetic", "--config.optimizer.trian=1")
  with pytest.raises(Exception, match="alpah"):
    load("score_math.py", "--config.loss.alpah=1.0")


def test_overrides_reach_the_config():
  config = load("score.py:arithmetic", "--config.loss.alpha=3.5",
                "--config.schedule=stage2:7")
  assert config.loss.alpha == 3.5 and config.schedule == "stage2:7"


@pytest.mark.parametrize("name,lr,steps,batch,beta2", [
    ("score_math", 5e-6, 3000, 512, 0.1),
    ("score_mbpp", 1e-5, 1500, 128, 0.25)])
def test_paper_settings(name, lr, steps, batch, beta2):
  config = load(f"{name}.py", *REQUIRED[name])
  stages = configs_lib.validate(config)
  assert [s.name for s in stages] == ["stage1", "stage2"]
  assert sum(s.steps for s in stages) == steps
  r = config.rollout
  assert r.prompts_per_step * r.samples_per_prompt == batch
  assert r.temperature == 1.0
  assert config.optimizer.lr == lr and config.optimizer.weight_decay == 0.0
  assert (config.loss.alpha, config.loss.beta1, config.loss.beta2) == (
      10.0, 0.01, beta2)
  assert config.model.dtype == "bfloat16"
  assert config.model.param_dtype == "float32"
  assert batch % config.step.micro_batches == 0


@pytest.mark.parametrize("name", ["score_math", "score_mbpp"])
def test_paper_configs_name_their_required_overrides(name):
  config = load(f"{name}.py")
  missing = configs_lib.missing_required(config)
  assert "model.spec" in missing
  with pytest.raises(ValueError, match="--config.model.spec="):
    eval_cmd.eval_config(config, eval_cmd.Source("run", "/x", "/w", "t"),
                         None)


def _flat(config):
  out = {}

  def walk(node, prefix):
    for key in node.keys():
      value = node[key]
      if hasattr(value, "keys"):
        walk(value, f"{prefix}{key}.")
      else:
        out[prefix + key] = value
  walk(config, "")
  return out


COMMON = runpy.run_path(str(CONFIGS / "common.py"))
_W, _RL = f"sft:{COMMON['WARM_START_STEPS']}", COMMON["RL_STEPS"]
# What each method changes relative to SCoRe, and nothing else.
METHOD_CHANGES = {
    "score": {},
    "score_no_shaping": {"loss.alpha": 0.0},
    "score_no_stage1": {"schedule": f"{_W},stage2:{_RL}"},
    "naive_multiturn_rl": {"schedule": f"{_W},stage2:{_RL}",
                           "loss.alpha": 0.0},
    "single_turn_rl": {"schedule": f"{_W},single_turn:{_RL}"},
    "star": {"schedule": f"{_W},star:{_RL}"},
    "pair_sft": {"schedule": f"{_W},pair_sft:{_RL}"},
    "base": {"schedule": _W},
    "self_refine": {"schedule": _W, "eval.protocol": "self_refine",
                    "eval.num_turns": 3},
}


@pytest.mark.parametrize("name", sorted(METHOD_CHANGES))
def test_methods_differ_from_score_only_in_their_method(name):
  score = _flat(load("score.py:arithmetic"))
  other = _flat(load(f"{name}.py:arithmetic"))
  changed = {k: v for k, v in other.items() if score.get(k, object()) != v}
  assert changed == METHOD_CHANGES[name]
  stage1 = COMMON["STAGE1_STEPS"]
  assert score["schedule"] == f"{_W},stage1:{stage1},stage2:{_RL - stage1}"
  assert (score["loss.alpha"], score["loss.beta1"], score["loss.beta2"]) == (
      10.0, 0.01, 0.1)


def test_learning_rate_warmup_then_cosine_per_stage():
  c = configs_lib.base_config()
  c.schedule = "sft:11,stage1:5"
  c.sft.lr, c.optimizer.lr = 1.0, 0.5
  c.optimizer.warmup_steps = 2
  c.sft.decay, c.optimizer.min_lr_ratio = "cosine", 0.1
  sft, stage1 = configs_lib.validate(c)
  lrs = [configs_lib.learning_rate(c, sft, s) for s in range(11)]
  # Warm-up 0.5, 1.0; then cosine from the peak at step 2 to 0.1 at step 10.
  assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
  assert lrs[6] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway
  assert lrs[10] == pytest.approx(0.1)
  assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
  # The RL stage keeps its own (constant) schedule and restarts its warm-up.
  assert [configs_lib.learning_rate(c, stage1, s) for s in range(11, 16)] == \
      pytest.approx([0.25, 0.5, 0.5, 0.5, 0.5])


def test_unknown_decay_is_named():
  c = configs_lib.base_config()
  c.schedule = "sft:2"
  c.sft.decay = "linear"
  with pytest.raises(ValueError, match=r"config.sft.decay='linear'"):
    configs_lib.validate(c)


@pytest.mark.parametrize("field, value", [("turn2_fraction", 1.5),
                                          ("empty_turn1_fraction", -0.5)])
def test_bad_warm_start_turn2_options_are_named(field, value):
  c = configs_lib.base_config()
  c.schedule = "sft:2"
  c.sft[field] = value
  with pytest.raises(ValueError, match=f"config.sft.{field}="):
    configs_lib.validate(c)


@pytest.mark.parametrize("schedule, overrides, message", [
    # 32 rows in 16 micro-batches of 2: a prompt's 4 samples would split.
    ("sft:2,stage1:2", {"step.micro_batches": 16},
     "micro-batches of 2 rows cannot hold whole groups of "
     "rollout.samples_per_prompt=4"),
    ("sft:2", {"step.micro_batches": 3, "rollout.prompts_per_step": 3},
     r"does not divide sft.batch_size=16"),
    ("stage2:2", {"step.micro_batches": 2, "loss.advantage": "mean"},
     "takes its baseline over the whole batch"),
    ("stage2:2", {"step.micro_batches": 0}, "micro_batches=0: expected >= 1"),
    ("stage2:2", {"checkpoint.every": 0}, r"checkpoint.every=0: expected"),
    ("stage2:2", {"checkpoint.keep": 0}, r"checkpoint.keep=0: expected"),
    # A slice by 0 would evaluate nothing, by -1 leave the last problem out.
    ("stage2:2", {"eval.num_problems": 0}, r"eval.num_problems=0: expected"),
    ("stage2:2", {"eval.num_problems": -1}, r"eval.num_problems=-1: expect"),
    ("stage2:2", {"eval.batch_size": 0}, r"eval.batch_size=0: expected"),
    ("stage1:2", {"loss.kl_gradient": "turn"},
     r"kl_gradient='turn' is unknown; expected one of: token, sequence"),
    # Found at the first RL step, after the warm start, before.
    ("sft:2,stage1:2", {"rollout.samples_per_prompt": 1},
     r"advantage='rloo' needs rollout.samples_per_prompt >= 2"),
    ("sft:2,stage1:2", {"rollout.temperature": 0.0},
     r"temperature=0.0: the RL stages \(stage1\) need sampling"),
])
def test_bad_step_and_checkpoint_settings_are_named_before_the_run(
    schedule, overrides, message):
  c = configs_lib.base_config()
  c.schedule = schedule
  c.rollout.prompts_per_step, c.rollout.samples_per_prompt = 8, 4
  c.sft.batch_size = 16
  for key, value in overrides.items():
    group, field = key.split(".")
    c[group][field] = value
  with pytest.raises(ValueError, match=message):
    configs_lib.validate(c)


def test_per_prompt_estimators_accept_micro_batches():
  c = configs_lib.base_config()
  c.schedule = "sft:2,stage2:2"
  c.rollout.prompts_per_step, c.rollout.samples_per_prompt = 8, 4
  c.sft.batch_size, c.step.micro_batches = 16, 8
  for advantage in ("rloo", "none"):
    c.loss.advantage = advantage
    configs_lib.validate(c)
  # Supervised stages take no advantage: 'mean' does not matter there.
  c.schedule, c.loss.advantage = "sft:2", "mean"
  configs_lib.validate(c)


def test_negative_repack_multiple_is_named():
  c = configs_lib.base_config()
  c.schedule = "stage1:2"
  c.rollout.repack_multiple = -32
  with pytest.raises(ValueError, match="config.rollout.repack_multiple=-32"):
    configs_lib.validate(c)


@pytest.mark.parametrize("name", sorted(set(METHOD_CHANGES) - {"self_refine"}))
def test_demo_methods_change_what_the_small_setting_methods_change(name):
  """configs/demo.py:<method> changes the same fields, with the demo's own
  step counts, as configs/<method>.py does on the small setting."""
  score = _flat(load("demo.py"))
  other = _flat(load(f"demo.py:{name}"))
  changed = {k: v for k, v in other.items() if score.get(k, object()) != v}
  # STaR and Pair-SFT also train at the RL lr, not the warm start's.
  lr = {f"lr_by_stage.{name}"} if name in ("star", "pair_sft") else set()
  assert set(changed) == set(METHOD_CHANGES[name]) | lr
  assert all(changed[k] == score["optimizer.lr"] for k in lr)
  warm_start = runpy.run_path(str(CONFIGS / "demo.py"))["WARM_START"]
  assert changed.get("schedule", warm_start).startswith(warm_start)
  configs_lib.validate(load(f"demo.py:{name}"))


def test_demo_unknown_method_is_named():
  with pytest.raises(flags.IllegalFlagValueError,
                     match="unknown method 'scor'"):
    load("demo.py:scor")


def test_lr_by_stage_overrides_a_stages_peak():
  c = configs_lib.base_config()
  c.schedule = "sft:3,star:3"
  c.sft.lr = 1e-3
  c.lr_by_stage.star = 2e-5
  sft, star = configs_lib.validate(c)
  assert configs_lib.learning_rate(c, sft, 1) == pytest.approx(1e-3)
  assert configs_lib.learning_rate(c, star, 4) == pytest.approx(2e-5)
  c.lr_by_stage.stage3 = 1.0
  with pytest.raises(ValueError, match=r"unknown stage\(s\) \['stage3'\]"):
    configs_lib.validate(c)


def test_the_small_settings_mbpp_budget_holds_the_reference_solutions():
  """configs/common.py's token budget on MBPP (SmolLM2's tokenizer): a
  right answer cut by the budget earns nothing, so the budget must hold
  nearly every reference solution of the splits it trains and evaluates."""
  from score_jax.tasks import get_task  # pylint: disable=g-import-not-at-top
  from score_jax.tokenizers import load_tokenizer  # pylint: disable=g-import-not-at-top
  data = CONFIGS.parent.parent / "shared" / "data" / "mbpp.jsonl"
  if not data.exists():
    pytest.skip(f"{data} not found")
  config = load("score.py:mbpp")
  budget = config.rollout.max_new_tokens
  assert config.eval.max_new_tokens == budget
  task = get_task("mbpp", path=str(data), seed=None)
  tok = load_tokenizer(config.model.spec)
  problems = task.problems("train") + task.problems("test")
  cut = [p.id for p in problems if len(tok.encode(task.solution(p))) > budget]
  assert len(cut) <= 0.01 * len(problems), (budget, len(cut))
