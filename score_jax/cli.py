"""`score-jax <command> [--flags]`: the one place that parses flags.

Each command lives in `score_jax/commands/<name>.py`, defines its absl flags
and a `main(argv)`; it is imported only when chosen, so each command's
`--help` shows its own flags.
"""

import importlib
import os
import sys

from absl import app
from absl import flags

from score_jax import commands

COMMANDS = {
    "train": "Train with SCoRe (or a baseline) from a config file.",
    "eval": "Greedy N-turn self-correction evaluation of a checkpoint.",
    "convert": "Convert a checkpoint (GGUF/HF/Gemma/Orbax) to HF or Orbax.",
    "forward": "Run a forward pass of a model preset and report timings.",
    "plan": "Per-device memory of a training config on a mesh.",
}

_USAGE = """usage: score-jax <command> [--flag=value ...]

commands:
{commands}

`score-jax <command> --help` lists a command's flags."""


def usage() -> str:
  width = max(map(len, COMMANDS))
  lines = [f"  {name.ljust(width)}  {doc}" for name, doc in COMMANDS.items()]
  return _USAGE.format(commands="\n".join(lines))


def run(argv=None):
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(usage())
    return 0 if len(argv) >= 2 else 2
  command = argv[1]
  if command not in COMMANDS:
    print(f"score-jax: unknown command {command!r}\n\n{usage()}",
          file=sys.stderr)
    return 2
  module = importlib.import_module(f"score_jax.commands.{command}")
  # Orbax and JAX log every checkpoint step at INFO: warnings and up by
  # default. First, so a user's `--verbosity=0` / `-v 0` (absl: the last
  # value wins) shows everything.
  rest = ["--verbosity=-1"] + argv[2:]
  if any(a in ("-h", "--help", "--helpshort") for a in rest):
    print(f"score-jax {command}: {COMMANDS[command]}\n\n"
          f"{flags.FLAGS.module_help(module)}")
    return 0

  def parse(args):
    """absl's parse, with bad flags as one line and exit status 2: an unknown
    flag, a value of the wrong type, a misspelt `--config.<field>`
    (ml_collections raises AttributeError), a config file that is missing or
    does not load."""
    try:
      return flags.FLAGS(args)
    except (flags.Error, AttributeError) + commands.INPUT_ERRORS as e:
      if os.environ.get("SCORE_JAX_TRACEBACK"):
        raise
      commands.fail(command, f"bad flags: {commands.message(e)}")

  app.run(module.main, argv=[f"score-jax {command}"] + rest,
          flags_parser=parse)
  return 0


if __name__ == "__main__":
  sys.exit(run())
