"""`score-jax convert --from SPEC --to hf:<dir>|orbax:<dir>|gemma-flax:<dir>`.

Reads any checkpoint `load_model` reads (GGUF, HF, Gemma Flax, Orbax,
preset, packaged short names) and writes it out; with --check, loads the
written copy back and compares logits on a few tokens (a copy that differs
is removed).
"""

import shutil

from absl import flags
import numpy as np

from score_jax import checkpoints
from score_jax import commands

_FROM = flags.DEFINE_string("from", None, "Source model spec, e.g. "
                            "gemma3-270m, gguf:<file>, hf:<dir>.",
                            required=True)
_TO = flags.DEFINE_string("to", None, "Destination: hf:<dir>, orbax:<dir> or "
                          "gemma-flax:<dir>.", required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace an existing destination.")
_CHECK = flags.DEFINE_bool("check", True, "Reload the written copy and "
                           "compare logits on 8 tokens.")


def main(argv):
  if len(argv) > 1:
    commands.fail("convert", f"unexpected arguments: {argv[1:]}")
  with commands.bad_input("convert"):
    kind = _TO.value.partition(":")[0] if _TO.value else ""
    if kind not in ("hf", "orbax", "gemma-flax"):
      raise ValueError(f"--to={_TO.value!r}: expected hf:<dir>, orbax:<dir> "
                       "or gemma-flax:<dir>")
    src = checkpoints.load_model(_FROM.value)
    c = src.config
    print(f"read {_FROM.value}: {c.family}, {c.num_layers} layers, "
          f"D={c.embed_dim}, V={c.vocab_size} in {src.load_seconds:.1f}s")
    try:
      out = checkpoints.save_model(_TO.value, c, src.params,
                                   tokenizer_spec=src.tokenizer_spec,
                                   overwrite=_OVERWRITE.value)
    except FileExistsError as e:
      raise FileExistsError(f"{e.filename or _TO.value} exists; pass "
                            "--overwrite to replace it") from None
  print(f"wrote {_TO.value} ({out})")
  if _CHECK.value:
    ids = np.arange(1, 9, dtype=np.int32)[None] % c.vocab_size
    back = checkpoints.load_model(_TO.value, tokenizer=False)
    diff = float(np.abs(back.logits(ids) - src.logits(ids)).max())
    print(f"check: max |logits difference| on 8 tokens = {diff:.3g}")
    if diff > 1e-4:
      shutil.rmtree(out, ignore_errors=True)  # never leave a wrong copy
      raise SystemExit(f"convert: written copy differs (max {diff:.3g}); "
                       f"removed {out}")
