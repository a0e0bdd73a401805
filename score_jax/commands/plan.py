"""`score-jax plan --config=configs/<x>.py --mesh=<name or d,f,t>`.

Per-device memory of the config's training run on a mesh, and whether it
fits. `--table` prints the Gemma 2B/7B/9B/27B x v4-32/v5p-128/v5e-256/8xH100
grid (docs/SCALING.md) for the same config. Nothing is allocated: shapes
only, so it runs on a laptop for any model size.
"""

from absl import flags
from ml_collections import config_flags

from score_jax import commands
from score_jax import models
from score_jax import plan as plan_lib
from score_jax import sampling

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config file (configs/*.py).", lock_config=True)
_MESH = flags.DEFINE_string(
    "mesh", None, f"One of {', '.join(plan_lib.MESHES)}, or 'data,fsdp,tensor'"
    " sizes such as 2,4,1.")
_MODEL = flags.DEFINE_string(
    "model", None, "Model preset; default: the config's 'preset:' spec (with "
    "its preset_overrides, which are not applied to --model).")
_BATCH = flags.DEFINE_integer(
    "batch", None, "Rows per step; default prompts_per_step x "
    "samples_per_prompt.")
_SEQ = flags.DEFINE_integer(
    "seq", None, "Tokens of the two-turn transcript (cache slots); default "
    "prompt_len + 2 x max_new_tokens + followup_len.")
_PROMPT_LEN = flags.DEFINE_integer(
    "prompt_len", 512, "Prompt tokens (padded bucket), if --seq is not set.")
_FOLLOWUP_LEN = flags.DEFINE_integer(
    "followup_len", 64, "Tokens of the correction instruction between the "
    "turns, if --seq is not set.")
_HBM = flags.DEFINE_float(
    "hbm_gib", None, "Device memory in GiB (needed for an explicit mesh "
    "shape; overrides a named mesh's chip).")
_MFU = flags.DEFINE_float("mfu", 0.4, "Model FLOP utilisation of the update "
                          "(time model).")
_CHECK = flags.DEFINE_bool(
    "check", False, "Also compile the real train step on the local devices "
    "laid out as --mesh and print XLA's memory analysis next to the plan "
    "(on CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N).")
_TABLE = flags.DEFINE_bool(
    "table", False, f"Print the grid {', '.join(plan_lib.TABLE_PRESETS)} x "
    f"{', '.join(plan_lib.MESHES)} instead of one plan.")


def _model_config(config, preset):
  dtypes = dict(dtype=config.model.dtype, param_dtype=config.model.param_dtype,
                remat_policy=config.model.remat_policy)
  if preset:
    return models.get_preset(preset).replace(**dtypes)
  spec = config.model.spec
  if spec is None:  # a paper config's required override (a real model)
    commands.fail("plan", "config.model.spec is unset; pass --model=<preset> "
                  "to plan for a model's size (e.g. --model=gemma-2b)")
  if not spec.startswith("preset:"):
    commands.fail("plan", f"config.model.spec={spec!r} is not a 'preset:' "
                  "spec; pass --model=<preset> to plan for its size")
  return models.get_preset(spec.partition(":")[2]).replace(
      **dtypes, **config.model.preset_overrides.to_dict())


def _workload(config):
  r = config.rollout
  rows = _BATCH.value or r.prompts_per_step * r.samples_per_prompt
  decode = 2 * r.max_new_tokens
  seq = _SEQ.value or sampling.layout_length(
      _PROMPT_LEN.value, [r.max_new_tokens] * 2, [_FOLLOWUP_LEN.value],
      end_of_turn=False)
  try:
    return plan_lib.Workload(rows=rows, seq=seq, decode_steps=min(decode, seq),
                             micro_batches=config.step.micro_batches,
                             logits_chunk=config.step.logits_chunk)
  except ValueError as e:
    commands.fail("plan", str(e))


def main(argv):
  if len(argv) > 1:
    commands.fail("plan", f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if config is None:
    commands.fail("plan", "--config is required (e.g. configs/smoke.py)")
  with commands.bad_input("plan"):
    rules = tuple(tuple(r) for r in config.mesh.rules)
    workload = _workload(config)
  print(f"rows {workload.rows}, seq {workload.seq} tokens, "
        f"{workload.decode_steps} sampled per row, micro_batches "
        f"{workload.micro_batches}, logits_chunk {workload.logits_chunk}, "
        f"dtype {config.model.dtype}, params {config.model.param_dtype}, "
        f"remat {config.model.remat_policy}, mfu {_MFU.value}")
  if _TABLE.value:
    rows = []
    for preset in plan_lib.TABLE_PRESETS:
      model = _model_config(config, preset)
      for name in plan_lib.MESHES:
        mesh = plan_lib.parse_mesh(name, _HBM.value)
        plan = plan_lib.make_plan(model, mesh, workload, rules)
        time = plan_lib.step_time(model, mesh, workload, rules, _MFU.value)
        rows.append(plan_lib.table_row(preset, plan, time))
    print(plan_lib.markdown_table(rows))
    return
  if not _MESH.value:
    commands.fail("plan", "--mesh is required (or --table)")
  try:
    mesh = plan_lib.parse_mesh(_MESH.value, _HBM.value)
  except ValueError as e:
    commands.fail("plan", str(e))
  with commands.bad_input("plan"):
    model = _model_config(config, _MODEL.value)
  plan = plan_lib.make_plan(model, mesh, workload, rules)
  print(f"model {_MODEL.value or config.model.spec}: "
        f"{models.count_params(model) / 1e9:.2f}B params")
  print(plan_lib.describe(plan))
  time = plan_lib.step_time(model, mesh, workload, rules, _MFU.value)
  if _CHECK.value:
    import jax  # pylint: disable=g-import-not-at-top
    if jax.device_count() != mesh.num_devices:
      commands.fail(
          "plan", f"--check needs {mesh.num_devices} devices for mesh "
          f"{mesh.shape}, {jax.device_count()} are here (on CPU set "
          f"XLA_FLAGS=--xla_force_host_platform_device_count="
          f"{mesh.num_devices})")
    memory, batch_bytes = plan_lib.compiled_memory(
        model, mesh.shape, workload, rules, config.rollout.samples_per_prompt)
    print(plan_lib.check_report(plan, memory, batch_bytes))
  if time is not None:
    print(f"time model: sampling {time.sample:.2f} s (prefill "
          f"{time.prefill:.2f} + decode {time.decode:.2f}), update "
          f"{time.update:.2f} s per step")
