"""`score-jax`'s own flag handling (score_jax/cli.py)."""

from absl import flags
import pytest

from score_jax import cli
from score_jax.commands import forward


def test_a_users_verbosity_wins_over_the_quiet_default(monkeypatch):
  """The CLI passes `--verbosity=-1` (warnings and up) unless told
  otherwise, in any of absl's spellings, `-v 1` included."""
  seen = []
  monkeypatch.setattr(forward, "main",
                      lambda argv: seen.append(flags.FLAGS.verbosity))
  for args in (["-v", "1"], ["--verbosity", "0"], ["--verbosity=2"], []):
    with pytest.raises(SystemExit) as e:
      cli.run(["score-jax", "forward", *args])
    assert e.value.code in (None, 0)
  assert seen == [1, 0, 2, -1]
