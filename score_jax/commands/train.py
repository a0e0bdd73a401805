"""`score-jax train --config=configs/<x>.py --workdir=<dir> [--config.k=v]`."""

from absl import flags
from absl import logging
from ml_collections import config_flags

from score_jax import commands
from score_jax import distributed

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config file (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, metrics, samples and "
    "reports; a run started again on it resumes.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process: host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-process: number of processes.")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Multi-process: this process's index.")


def main(argv):
  # Checked here, not with flags.mark_flags_as_required: absl flags are
  # process-global, and a required flag of one command would break parsing
  # of every other command imported in the same process.
  if len(argv) > 1:
    commands.fail("train", f"unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None or not _WORKDIR.value:
    commands.fail("train", "needs --config=configs/<x>.py and --workdir=<dir>")
  with commands.bad_input("train"):  # inconsistent multi-process flags
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                           _PROCESS_ID.value)
  import os  # pylint: disable=g-import-not-at-top
  from score_jax import train  # pylint: disable=g-import-not-at-top
  from score_jax.evaluation import reports  # pylint: disable=g-import-not-at-top
  with commands.bad_input("train"):
    # Config, schedule, model, task, workdir, the checkpoint to start from.
    trainer = train.Trainer(_CONFIG.value, _WORKDIR.value)
    trainer.restore()
  try:
    results = trainer.run()
  finally:
    trainer.close()
  if not distributed.is_main_process():
    return  # process 0 reports (every process has the same results)
  for name, metrics in results.items():
    summary = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()
                        if k.startswith(("acc@", "delta(")))
    logging.info("eval %s: %s", name, summary)
    print(f"eval {name}: {summary}")
  evals = os.path.join(_WORKDIR.value, "eval")
  evaluated = [name for name, metrics in results.items() if metrics]
  if len(evaluated) >= 2:  # first (the base) vs last (the trained policy)
    names = [evaluated[0], evaluated[-1]]
    print("\n" + reports.compare_runs(
        [os.path.join(evals, f"{n}.json") for n in names], names))
  print(f"\nworkdir: {_WORKDIR.value} (reports and plots in {evals})")
